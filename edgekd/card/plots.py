"""The card's plots (PNG, matplotlib's Agg backend: no display needed on a build server).

Class, group, model and attribute names are data: each label goes through
:func:`edgekd.card.escape.plot_label` (one line, ``$`` escaped) with LaTeX off, so no name is
ever parsed as mathtext (a class ``price $_$ band`` once failed the build after training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.card.escape import plot_label
from edgekd.files import atomic_output

__all__ = ["PLOT_NAMES", "write_plots", "plot_training_curves", "save_figure"]

# under plots/ in a bundle
PLOT_NAMES = ("disparity_by_class.png", "recall_by_group.png", "training_curves.png")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["text.usetex"] = False  # labels are data: never LaTeX (plot_label: no mathtext)
    import matplotlib.pyplot as plt

    return plt


def write_plots(card: dict, out_dir: Path) -> list[Path]:
    """Write ``out_dir/disparity_by_class.png`` (per-class disparity bars of every model and
    artifact), ``out_dir/recall_by_group.png`` (recall per group and class, one panel per model
    and artifact) and ``out_dir/training_curves.png`` (:func:`plot_training_curves`); return the
    paths written. A disparity or recall that is undefined (no test image of the class in a
    group) is left out as a missing bar."""
    plt = _pyplot()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = [plot_label(c) for c in card["task"]["classes"]]
    group_keys = card["data"]["groups"]
    groups = [plot_label(g) for g in group_keys]
    models = list(card["models"])
    x = np.arange(len(classes))
    paths = []

    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(classes) + 2), 3.6))
    width = 0.8 / len(models)
    for i, name in enumerate(models):
        values = [row["disparity"] if row["disparity"] is not None else np.nan
                  for row in card["models"][name]["metrics"]["per_class"]]
        ax.bar(x + (i - (len(models) - 1) / 2) * width, values, width, label=plot_label(name))
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(x, classes, rotation=30, ha="right")
    sign = f"recall({groups[0]}) - recall({groups[1]})" if len(groups) == 2 else "max - min group recall"
    ax.set_ylabel(f"disparity: {sign}", fontsize=8)
    ax.set_title("Per-class recall disparity")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(save_figure(fig, out_dir / PLOT_NAMES[0]))
    plt.close(fig)

    ncols = min(3, len(models))
    nrows = -(-len(models) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.9 * nrows), sharey=True,
                             squeeze=False)
    width = 0.8 / len(groups)
    for ax, name in zip(axes.flat, models):
        rows = card["models"][name]["metrics"]["per_class"]
        for j, group in enumerate(group_keys):
            values = [r["recall_by_group"][group] if r["recall_by_group"][group] is not None else np.nan
                      for r in rows]
            ax.bar(x + (j - (len(groups) - 1) / 2) * width, values, width, label=groups[j])
        ax.set_xticks(x, classes, rotation=30, ha="right", fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(plot_label(name), fontsize=9)
    for ax in axes.flat[len(models):]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel("recall")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", ncol=len(groups), fontsize=7,
               title=plot_label(card["data"]["protected_attribute"]), title_fontsize=7)
    fig.suptitle("Recall per group and class", x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    paths.append(save_figure(fig, out_dir / PLOT_NAMES[1]))
    plt.close(fig)
    paths.append(plot_training_curves(card, out_dir / PLOT_NAMES[2]))
    return paths


def plot_training_curves(card: dict, path: Path) -> Path:
    """Per epoch of every trained model (``models/*/training/history``): training loss;
    validation top-1 (solid) and cell-balanced accuracy (dashed); validation mean |disparity|;
    and, where an adversary trained, its accuracy (solid) against its no-leak reference (dotted).
    The validation split carries the training split's bias, so its curves are not the card's
    test metrics."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    curves = {name: entry["training"]["history"] for name, entry in card["models"].items()
              if (entry.get("training") or {}).get("history")}
    adversary = {n: h for n, h in curves.items() if any("adversary_top1" in r for r in h)}
    panels = 3 + bool(adversary)
    fig, axes = plt.subplots(1, panels, figsize=(3.3 * panels, 3.0), squeeze=False)
    axes = axes[0]

    def draw(ax, history, key, colour, style="-", label=None):
        points = [(r["epoch"], r[key]) for r in history if r.get(key) is not None]
        if points:
            ax.plot(*zip(*points), style, color=colour, marker="o", markersize=3, label=label)

    for k, (name, history) in enumerate(curves.items()):
        colour = f"C{k % 10}"
        label = plot_label(name)
        draw(axes[0], history, "train_loss", colour, label=label)
        draw(axes[1], history, "val_top1", colour, label=label)
        draw(axes[1], history, "val_cell_balanced_accuracy", colour, "--")
        draw(axes[2], history, "val_mean_abs_disparity", colour, label=label)
        if name in adversary:
            draw(axes[3], history, "adversary_top1", colour, label=f"{label}: adversary")
            draw(axes[3], history, "adversary_reference", colour, ":", label=f"{label}: no-leak reference")
    titles = ["training loss (each its own objective)", "validation top-1 (- -: cell-balanced)",
              "validation mean |disparity|", "adversary accuracy"]
    for ax, title in zip(axes, titles):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
    for ax in axes[:panels]:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    fig.tight_layout()
    path = save_figure(fig, Path(path))
    plt.close(fig)
    return path


def save_figure(fig, path: Path) -> Path:
    """Save ``fig`` as a PNG at ``path`` atomically."""
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path
