"""The images a compression step changed (Hooker et al.'s compression identified exemplars), shown.

For every exported artifact the card names a few of the test images whose prediction differs
from the student's, grouped by (class, group) cell (:func:`flipped_examples`), and the bundle
draws them as one PNG grid per artifact (:func:`draw_flipped_grid`): one row per cell, in the
order the card lists the cells, up to :data:`PER_CELL` thumbnails per row in the order of the
row's indices. card.md and card.html show the grid beside a table naming each row's cell and
indices (into the test split, the order of ``eval_set.npz`` and ``predictions.npz``).

Layout of a grid (what a reader or a test can cut it back into): every tile is ``tile x tile``
pixels (:func:`tile_size`), tiles and rows are separated and framed by :data:`GUTTER` white
pixels, and a thumbnail sits in its tile's top-left corner: row ``r``, column ``k`` starts at
``(GUTTER + k * (tile + GUTTER), GUTTER + r * (tile + GUTTER))`` (x, y).

The selection is numpy only; drawing uses Pillow (the build's side), imported where it draws.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.files import atomic_output

__all__ = [
    "PER_CELL",
    "CELLS",
    "THUMBNAIL",
    "GUTTER",
    "flipped_examples",
    "flipped_plot_name",
    "thumbnail",
    "tile_size",
    "draw_flipped_grid",
    "cell_order",
]

PER_CELL = 4  # thumbnails per cell
CELLS = 8  # cells per artifact
THUMBNAIL = 64  # longest side of a thumbnail in pixels; smaller images are shown as they are
GUTTER = 2


def flipped_plot_name(artifact: str) -> str:
    """``plots/flipped_<artifact>.png``: the grid of the images ``artifact`` changed."""
    return f"plots/flipped_{artifact}.png"


def cell_order(row: dict) -> tuple:
    """Sort key of a step's cell rows: changed cells first, then significant ones, then the
    lowest agreement, then the most flips; Python's sort keeps (class, group) order on ties."""
    agreement = row.get("agreement")
    return (
        not row.get("changed"),
        not row.get("significant"),
        agreement if agreement is not None else 1.0,
        -(row.get("right_to_wrong", 0) + row.get("wrong_to_right", 0)),
    )


def flipped_examples(
    y_true: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
    groups: np.ndarray,
    per_cell_rows: list[dict],
    *,
    class_names: list[str],
    group_names: list[str],
    cells: int = CELLS,
    per_cell: int = PER_CELL,
) -> list[dict]:
    """Up to ``cells`` cells of one step with at least one changed prediction, each with up to
    ``per_cell`` indices of its changed images: ``[{"class", "group", "changed", "indices"}]``.

    Cells come in :func:`cell_order` (``per_cell_rows``: the step's ``per_cell`` rows, with their
    significance); within a cell, the images right before and wrong after come first, then the
    other changes, each in index order. ``changed`` is how many predictions of the cell changed.
    """
    y_true, before, after, groups = (np.asarray(a, dtype=np.int64) for a in (y_true, before, after, groups))
    classes = {name: k for k, name in enumerate(class_names)}
    group_index = {name: g for g, name in enumerate(group_names)}
    broken = (before == y_true) & (after != y_true)
    out = []
    for row in sorted(per_cell_rows, key=cell_order):
        mask = (y_true == classes[row["class"]]) & (groups == group_index[row["group"]]) & (before != after)
        if not mask.any():
            continue
        first = np.concatenate([np.flatnonzero(mask & broken), np.flatnonzero(mask & ~broken)])
        out.append(
            {
                "class": row["class"],
                "group": row["group"],
                "changed": int(mask.sum()),
                "indices": [int(i) for i in first[:per_cell]],
            }
        )
        if len(out) == cells:
            break
    return out


def thumbnail(image: np.ndarray, size: int = THUMBNAIL) -> np.ndarray:
    """One test image (uint8, (H, W, 3)) as it is drawn: unchanged when its longest side is at
    most ``size``, else scaled down to it (aspect kept, Pillow's Lanczos filter)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if max(image.shape[:2]) <= size:
        return image.copy()
    from PIL import Image

    picture = Image.fromarray(image)
    picture.thumbnail((size, size), Image.Resampling.LANCZOS)
    return np.asarray(picture.convert("RGB"), dtype=np.uint8)


def tile_size(images: np.ndarray, size: int = THUMBNAIL) -> int:
    """The side of a grid's square tiles: the longest thumbnail side of ``images``."""
    return min(int(max(images.shape[1:3])), size)


def draw_flipped_grid(images: np.ndarray, examples: list[dict], path: Path, size: int = THUMBNAIL) -> Path:
    """Write the PNG grid of ``examples`` (:func:`flipped_examples`), cut from ``images`` (the
    test split, uint8 (N, H, W, 3)), atomically at ``path``; the layout is the module's."""
    from PIL import Image

    tile = tile_size(images, size)
    columns = max(len(cell["indices"]) for cell in examples)
    step = tile + GUTTER
    grid = np.full((GUTTER + len(examples) * step, GUTTER + columns * step, 3), 255, dtype=np.uint8)
    for r, cell in enumerate(examples):
        for k, index in enumerate(cell["indices"]):
            small = thumbnail(images[index], size)
            y, x = GUTTER + r * step, GUTTER + k * step
            grid[y : y + small.shape[0], x : x + small.shape[1]] = small
    with atomic_output(Path(path)) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")
    return Path(path)
