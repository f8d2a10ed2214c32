"""A bundle's "Compression by group" as a results file: for every step of the chain, how often it kept
the prediction, its flips each way, and its worst (class, group) cell and group.

    edgekd build recipes/quickstart.yaml
    python benchmarks/bench_compression_by_group.py runs/quickstart/bundle

Every step is recomputed from the bundle's ``predictions.npz`` (the predictions the card was
measured on) and must equal the card's step, so the file holds what the shipped files do, not a
copy of the card's text. Writes ``benchmarks/results/compression_by_group_<recipe name>.json``:
one row per step, the worst cell and group with their agreement and size, the cells whose
change is significant and at least ``card.min_effect``, and how many predictions it changed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import write_result  # noqa: E402

from edgekd.bundle.predictions import read_predictions  # noqa: E402
from edgekd.card.compression import step_entry  # noqa: E402
from edgekd.card.io import load_card  # noqa: E402


def rows_of(bundle: Path) -> tuple[dict, list[dict]]:
    """The card of ``bundle`` and one row per build-time step, each checked against the
    predictions it was computed from."""
    card = load_card(bundle)
    arrays = read_predictions(bundle)
    section = card["compression_by_group"]
    settings = {key: section[key] for key in ("alpha", "min_effect", "min_support")}
    names = dict(class_names=card["task"]["classes"], group_names=card["data"]["groups"])
    rows = []
    for step in section["steps"]:
        if step["measured_on"] != "build":
            continue
        again = step_entry(
            step["before"],
            step["after"],
            arrays["y_true"],
            arrays[f"pred_{step['before']}"],
            arrays[f"pred_{step['after']}"],
            arrays["groups"],
            **names,
            **settings,
            measured_on="build",
        )
        if json.loads(json.dumps(again)) != {k: v for k, v in step.items() if k != "examples"}:
            raise SystemExit(f"{bundle}: the card's step {step['step']} differs from its predictions.npz")
        overall, cell, group = step["overall"], step["worst_cell"] or {}, step["worst_group"] or {}
        rows.append(
            {
                "step": step["step"],
                "agreement": overall["agreement"],
                "right_to_wrong": overall["right_to_wrong"],
                "wrong_to_right": overall["wrong_to_right"],
                "top1_change": overall["accuracy_change"],
                "mcnemar_p": overall["p"],
                "worst_cell": f"{cell.get('class')} / {cell.get('group')}" if cell else None,
                "worst_cell_agreement": cell.get("agreement"),
                "worst_cell_images": cell.get("images"),
                "worst_group": group.get("group"),
                "worst_group_agreement": group.get("agreement"),
                "changed_cells": ", ".join(step["changed_cells"]) or "none",
                "changed_images": step["changed_images"],
            }
        )
    return card, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path, help="a built bundle (runs/<name>/bundle)")
    args = parser.parse_args()
    card, rows = rows_of(args.bundle)
    section = card["compression_by_group"]
    path = write_result(
        f"compression_by_group_{card['name']}",
        {
            "recipe": card["name"],
            "test_images": len(read_predictions(args.bundle)["y_true"]),
            "alpha": section["alpha"],
            "min_effect": section["min_effect"],
            "min_support": section["min_support"],
            "rows": rows,
        },
    )
    print(path)


if __name__ == "__main__":
    main()
