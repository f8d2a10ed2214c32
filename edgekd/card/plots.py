"""The card's plots (PNG, matplotlib's Agg backend: no display needed on a build server).

Class, group, model and attribute names are data: each label goes through
:func:`edgekd.card.escape.plot_label` (one line, ``$`` escaped) with LaTeX off, so no name is
ever parsed as mathtext (a class ``price $_$ band`` once failed the build after training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.card.escape import plot_label
from edgekd.files import atomic_output

__all__ = [
    "PLOT_NAMES",
    "COMPRESSION_PLOT",
    "write_plots",
    "plot_training_curves",
    "plot_compression_by_group",
    "save_figure",
]

# under plots/ in a bundle
PLOT_NAMES = ("disparity_by_class.png", "recall_by_group.png", "training_curves.png")
# cells by steps of card["compression_by_group"]; each artifact's flipped images: plots/flipped_<name>.png
COMPRESSION_PLOT = "compression_by_group.png"
MAX_HEATMAP_ROWS = 40  # more cells than this: the changed ones and the most flipped are drawn
HEATMAP_SATURATION = 0.1  # |recall change| at which the heatmap's colour is full


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["text.usetex"] = False  # labels are data: never LaTeX (plot_label: no mathtext)
    import matplotlib.pyplot as plt

    return plt


def write_plots(card: dict, out_dir: Path, images=None) -> list[Path]:
    """Write ``out_dir/disparity_by_class.png`` (per-class disparity bars of every model and
    artifact), ``out_dir/recall_by_group.png`` (recall per group and class, one panel per model
    and artifact) and ``out_dir/training_curves.png`` (:func:`plot_training_curves`); return the
    paths written. A disparity or recall that is undefined (no test image of the class in a
    group) is left out as a missing bar.

    A card with a ``compression_by_group`` section also gets its heatmap
    (:func:`plot_compression_by_group`) and, given the test ``images`` (uint8 (N, H, W, 3)), the
    grid of each artifact's flipped images its steps name (:mod:`edgekd.card.flipped`)."""
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
        values = [
            row["disparity"] if row["disparity"] is not None else np.nan
            for row in card["models"][name]["metrics"]["per_class"]
        ]
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
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.9 * nrows), sharey=True, squeeze=False)
    width = 0.8 / len(groups)
    for ax, name in zip(axes.flat, models):
        rows = card["models"][name]["metrics"]["per_class"]
        for j, group in enumerate(group_keys):
            values = [
                r["recall_by_group"][group] if r["recall_by_group"][group] is not None else np.nan
                for r in rows
            ]
            ax.bar(x + (j - (len(groups) - 1) / 2) * width, values, width, label=groups[j])
        ax.set_xticks(x, classes, rotation=30, ha="right", fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(plot_label(name), fontsize=9)
    for ax in axes.flat[len(models) :]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel("recall")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="upper right",
        ncol=len(groups),
        fontsize=7,
        title=plot_label(card["data"]["protected_attribute"]),
        title_fontsize=7,
    )
    fig.suptitle("Recall per group and class", x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    paths.append(save_figure(fig, out_dir / PLOT_NAMES[1]))
    plt.close(fig)
    paths.append(plot_training_curves(card, out_dir / PLOT_NAMES[2]))
    section = card.get("compression_by_group") or {}
    if section.get("steps"):
        paths.append(plot_compression_by_group(card, out_dir / COMPRESSION_PLOT))
        if images is not None:
            from edgekd.card.flipped import draw_flipped_grid

            for step in section["steps"]:
                examples = step.get("examples") or {}
                if examples.get("plot") and examples.get("cells"):
                    paths.append(
                        draw_flipped_grid(images, examples["cells"], out_dir / Path(examples["plot"]).name)
                    )
    return paths


def _heatmap_rows(steps: list[dict]) -> tuple[list[tuple[str, str]], int]:
    """The (class, group) cells the heatmap draws, in the steps' (class, group) order, and how many
    cells there are: all of them, or (more than :data:`MAX_HEATMAP_ROWS`) the cells changed in
    any step first, then those with the most flips."""
    present = list(dict.fromkeys((r["class"], r["group"]) for step in steps for r in step["per_cell"]))
    if len(present) <= MAX_HEATMAP_ROWS:
        return present, len(present)
    weight = {cell: (0, 0) for cell in present}
    for step in steps:
        for r in step["per_cell"]:
            changed, flips = weight[r["class"], r["group"]]
            weight[r["class"], r["group"]] = (
                changed + bool(r.get("changed")),
                flips + r["right_to_wrong"] + r["wrong_to_right"],
            )
    chosen = set(sorted(present, key=lambda cell: (-weight[cell][0], -weight[cell][1]))[:MAX_HEATMAP_ROWS])
    return [cell for cell in present if cell in chosen], len(present)


def plot_compression_by_group(card: dict, path: Path) -> Path:
    """Cells (rows: class / group) by steps (columns) of ``card["compression_by_group"]``,
    coloured by the cell's recall change over the step (red: recall lost; full colour from
    :data:`HEATMAP_SATURATION` on), annotated with its
    flips ``right->wrong/wrong->right``; a changed cell (significant and at least ``min_effect``)
    is marked ``*`` and boxed."""
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    section = card["compression_by_group"]
    steps = [s for s in section["steps"] if s.get("per_cell")]
    cells, total = _heatmap_rows(steps)
    values = np.full((len(cells), len(steps)), np.nan)
    index = {cell: i for i, cell in enumerate(cells)}
    fig, ax = plt.subplots(figsize=(2.8 + 1.1 * len(steps), 1.4 + 0.3 * len(cells)))
    notes = []
    for j, step in enumerate(steps):
        for r in step["per_cell"]:
            i = index.get((r["class"], r["group"]))
            if i is None or r.get("accuracy_change") is None:
                continue
            values[i, j] = r["accuracy_change"]
            flips = f"{r['right_to_wrong']}/{r['wrong_to_right']}" + ("*" if r.get("changed") else "")
            notes.append((j, i, flips, bool(r.get("changed"))))
    finite = np.abs(values[np.isfinite(values)])
    largest = float(finite.max()) if finite.size else 0.0
    # compression moves a cell by a few points, distillation from a weak baseline by tens: the
    # colour saturates at HEATMAP_SATURATION so the small changes stay visible (the numbers say all)
    limit = min(max(0.05, largest), HEATMAP_SATURATION)
    image = ax.imshow(values, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    for j, i, text, changed in notes:
        dark = abs(values[i, j]) > 0.6 * limit  # white on the deep colours
        ax.text(
            j,
            i,
            text,
            ha="center",
            va="center",
            fontsize=7,
            color="white" if dark else "#999999" if text == "0/0" else "black",
            fontweight="bold" if changed else "normal",
        )
        if changed:
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.5))
    ax.set_xticks(
        np.arange(len(steps)),
        [
            plot_label(
                f"{s['step']}"
                + ("" if s.get("measured_on") in (None, "build") else f" ({s['measured_on']})"),
                40,
            )
            for s in steps
        ],
        rotation=30,
        ha="right",
        fontsize=7,
    )
    ax.set_yticks(np.arange(len(cells)), [plot_label(f"{c} / {g}", 40) for c, g in cells], fontsize=7)
    fig.colorbar(
        image,
        ax=ax,
        label="recall change (after - before)",
        shrink=0.8,
        extend="both" if largest > limit else "neither",
    )
    shown = f"; {len(cells)} of {total} cells (changed and most flipped)" if len(cells) < total else ""
    ax.set_title(f"Compression by group: flips right->wrong/wrong->right, * changed{shown}", fontsize=8)
    fig.tight_layout()
    path = save_figure(fig, Path(path))
    plt.close(fig)
    return path


def plot_training_curves(card: dict, path: Path) -> Path:
    """Per epoch of every trained model (``models/*/training/history``): training loss;
    validation top-1 (solid) and cell-balanced accuracy (dashed); validation mean |disparity|;
    and, where an adversary trained, its accuracy (solid) against its no-leak reference (dotted).
    The validation split carries the training split's bias, so its curves are not the card's
    test metrics."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    curves = {
        name: entry["training"]["history"]
        for name, entry in card["models"].items()
        if (entry.get("training") or {}).get("history")
    }
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
    titles = [
        "training loss (each its own objective)",
        "validation top-1 (- -: cell-balanced)",
        "validation mean |disparity|",
        "adversary accuracy",
    ]
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
