"""A generated, deliberately biased Trifeature set (after Hermann & Lampinen, NeurIPS 2020).

Each image shows one shape (the label) filled with a texture in a colour, rotated and placed at
random on a noisy grey background. The protected attribute is the colour's group (warm or cool),
as Mohammadshahi & Ioannou (2024) use colour as the protected attribute on Trifeature.

``bias`` plants a shortcut: in train and validation, an image of class ``c`` takes the class's
majority group (``c % 2``) with probability ``bias`` and the other group otherwise. The test split
is balanced: the same number of images in every (class, group) cell.

Determinism: every random draw comes from ``numpy.random.Generator`` seeded with
``(seed, split, epoch)``, the one transcendental per image (the rotation) uses Python's ``math``,
and everything else is integer or IEEE add/multiply/compare, so the same seed gives identical
arrays on any machine.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field

from edgekd.config import Section
from edgekd.data.registry import register_source
from edgekd.data.splits import DataSplits, Split

__all__ = ["SHAPES", "TEXTURES", "COLOURS", "GROUP_NAMES", "generate_split", "load_trifeature"]

Polygon = list[tuple[float, float]]


def _regular(n: int, radius: float, phase_deg: float = 90.0) -> Polygon:
    return [
        (
            radius * math.cos(math.radians(phase_deg + 360.0 * k / n)),
            radius * math.sin(math.radians(phase_deg + 360.0 * k / n)),
        )
        for k in range(n)
    ]


def _rect(x0: float, y0: float, x1: float, y1: float) -> Polygon:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _star(points: int, outer: float, inner: float) -> Polygon:
    out = []
    for k in range(2 * points):
        r = outer if k % 2 == 0 else inner
        a = math.radians(90.0 + 180.0 * k / points)
        out.append((r * math.cos(a), r * math.sin(a)))
    return out


# Shapes in unit coordinates (about [-1, 1]^2), each a list of disjoint polygons (even-odd fill).
SHAPES: dict[str, list[Polygon]] = {
    "triangle": [_regular(3, 1.0)],
    "square": [_rect(-0.75, -0.75, 0.75, 0.75)],
    "plus": [
        [
            (-0.3, -1.0),
            (0.3, -1.0),
            (0.3, -0.3),
            (1.0, -0.3),
            (1.0, 0.3),
            (0.3, 0.3),
            (0.3, 1.0),
            (-0.3, 1.0),
            (-0.3, 0.3),
            (-1.0, 0.3),
            (-1.0, -0.3),
            (-0.3, -0.3),
        ]
    ],
    "circle": [_regular(48, 0.85)],
    "tee": [
        [
            (-0.9, 0.95),
            (-0.9, 0.45),
            (-0.28, 0.45),
            (-0.28, -0.95),
            (0.28, -0.95),
            (0.28, 0.45),
            (0.9, 0.45),
            (0.9, 0.95),
        ]
    ],
    "rhombus": [[(0.0, 1.0), (0.6, 0.0), (0.0, -1.0), (-0.6, 0.0)]],
    "pentagon": [_regular(5, 0.95)],
    "star": [_star(5, 1.0, 0.42)],
    "fivesquare": [
        _rect(cx - 0.24, cy - 0.24, cx + 0.24, cy + 0.24)
        for cx, cy in ((-0.62, -0.62), (0.62, -0.62), (0.0, 0.0), (-0.62, 0.62), (0.62, 0.62))
    ],
    "trapezoid": [[(-0.95, -0.6), (0.95, -0.6), (0.5, 0.6), (-0.5, 0.6)]],
}

TEXTURES = ("solid", "stripes", "grid", "dots", "checker")

GROUP_NAMES = ("warm", "cool")
# RGB colours per group; the group of the colour is the protected attribute.
COLOURS: dict[str, list[tuple[int, int, int]]] = {
    "warm": [(230, 40, 40), (245, 140, 20), (235, 215, 30), (235, 60, 160)],
    "cool": [(40, 80, 230), (30, 200, 220), (40, 180, 70), (130, 60, 210)],
}

_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
_BACKGROUND = 128
_NOISE = 8  # uniform integer noise in [-_NOISE, _NOISE] on every pixel
_TEXTURE_FREQ = 3.0  # texture periods across the shape's unit box
_CACHE_BYTES = 1 << 30  # training epochs kept in memory during a build
_DARK = 0.8  # brightness of the texture's "off" cells relative to the colour (subtle: the shape
# must stay visible through its texture)


def _inside(polygons: list[Polygon], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test, vectorised over any array of points."""
    inside = np.zeros(x.shape, dtype=bool)
    for poly in polygons:
        for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1]):
            if y1 == y2:
                continue
            crosses = (y1 > y) != (y2 > y)
            x_at = x1 + (y - y1) * ((x2 - x1) / (y2 - y1))
            inside ^= crosses & (x < x_at)
    return inside


def _texture(name: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Where the texture shows the full colour (True) rather than its dark variant."""
    fu, fv = u * _TEXTURE_FREQ, v * _TEXTURE_FREQ
    if name == "solid":
        return np.ones(u.shape, dtype=bool)
    if name == "stripes":
        return (np.floor(fu) % 2) == 0
    if name == "grid":
        return ((fu - np.floor(fu)) < 0.3) | ((fv - np.floor(fv)) < 0.3)
    if name == "dots":
        du, dv = fu - np.floor(fu) - 0.5, fv - np.floor(fv) - 0.5
        return (du * du + dv * dv) > 0.09
    if name == "checker":
        return ((np.floor(fu) + np.floor(fv)) % 2) == 0
    raise ValueError(f"unknown texture {name!r}")


def _render(
    labels: np.ndarray,
    colours: np.ndarray,
    textures: np.ndarray,
    scales: np.ndarray,
    angles: np.ndarray,
    offsets: np.ndarray,
    noise: np.ndarray,
    shape_names: list[str],
    size: int,
) -> np.ndarray:
    n = len(labels)
    centre = (np.arange(size, dtype=np.float64) + 0.5) * (2.0 / size) - 1.0
    py, px = np.meshgrid(-centre, centre, indexing="ij")  # y up, x right
    images = np.full((n, size, size, 3), _BACKGROUND, dtype=np.int32)
    cos = np.array([math.cos(a) for a in angles])[:, None, None]
    sin = np.array([math.sin(a) for a in angles])[:, None, None]
    # Inverse transform of every pixel into the shape's unit frame.
    dx = (px[None] - offsets[:, 0, None, None]) / scales[:, None, None]
    dy = (py[None] - offsets[:, 1, None, None]) / scales[:, None, None]
    u = cos * dx + sin * dy
    v = cos * dy - sin * dx
    for k, shape in enumerate(shape_names):
        idx = np.flatnonzero(labels == k)
        if len(idx) == 0:
            continue
        mask = _inside(SHAPES[shape], u[idx], v[idx])
        for t, texture in enumerate(TEXTURES):
            sel = textures[idx] == t
            if not sel.any():
                continue
            ii = idx[sel]
            bright = _texture(texture, u[ii], v[ii])
            colour = colours[ii][:, None, None, :].astype(np.float64)
            fill = np.where(bright[..., None], colour, np.floor(colour * _DARK))
            images[ii] = np.where(mask[sel][..., None], fill.astype(np.int32), images[ii])
    return np.clip(images + noise, 0, 255).astype(np.uint8)


def generate_split(
    split: str,
    n: int,
    *,
    seed: int,
    num_classes: int,
    image_size: int,
    bias: float,
    epoch: int = 0,
    max_rotation: float = 180.0,
) -> Split:
    """Generate one split.

    Parameters
    ----------
    split : {"train", "val", "test"}
        ``test`` is balanced per (class, group); the others follow ``bias``.
    n : int
        Number of images (``test`` rounds down to a multiple of classes x groups).
    seed, epoch : int
        The draw is a pure function of ``(seed, split, epoch)``.
    num_classes : int
        The first ``num_classes`` of :data:`SHAPES`.
    image_size : int
        Height and width in pixels.
    bias : float
        Probability that a train/val image of class ``c`` takes its majority group ``c % 2``.
    max_rotation : float
        Shapes are rotated uniformly in ``[-max_rotation, max_rotation]`` degrees.
    """
    rng = np.random.default_rng([seed, _SPLIT_IDS[split], epoch])
    n_groups = len(GROUP_NAMES)
    if split == "test":
        per_cell = n // (num_classes * n_groups)
        cells = np.arange(num_classes * n_groups).repeat(per_cell)
        labels, groups = cells // n_groups, cells % n_groups
        order = rng.permutation(len(labels))
        labels, groups = labels[order], groups[order]
    else:
        labels = rng.permutation(np.arange(n) % num_classes)
        majority = labels % n_groups
        keep = rng.random(n) < bias
        other = (majority + rng.integers(1, n_groups, size=n)) % n_groups
        groups = np.where(keep, majority, other)
    m = len(labels)
    palette = np.array([COLOURS[g] for g in GROUP_NAMES])  # (groups, colours, 3)
    colour_idx = rng.integers(0, palette.shape[1], size=m)
    colours = palette[groups, colour_idx]
    textures = rng.integers(0, len(TEXTURES), size=m)
    scales = 0.5 + 0.3 * rng.random(m)  # shape radius as a share of half the image
    angles = (2.0 * rng.random(m) - 1.0) * math.radians(max_rotation)
    room = 1.0 - scales
    offsets = (rng.random((m, 2)) * 2.0 - 1.0) * room[:, None]
    noise = rng.integers(-_NOISE, _NOISE + 1, size=(m, image_size, image_size, 3), dtype=np.int32)
    shape_names = list(SHAPES)[:num_classes]
    images = _render(labels, colours, textures, scales, angles, offsets, noise, shape_names, image_size)
    return Split(images=images, labels=labels.astype(np.int64), groups=groups.astype(np.int64))


class TrifeatureConfig(Section):
    """``data.source: trifeature``: the generated, deliberately biased shapes set."""

    source: Literal["trifeature"] = "trifeature"
    image_size: int = Field(64, ge=16, le=512, description="height and width in pixels")
    num_classes: int = Field(4, ge=2, le=10, description="the first N of the 10 shapes")
    bias: float = Field(0.9, ge=0.0, le=1.0, description="P(majority colour group) in train/val")
    train_size: int = Field(3200, ge=8, description="training images (per epoch)")
    val_size: int = Field(400, ge=8, description="validation images, biased like training")
    test_size: int = Field(800, ge=8, description="balanced over (class, group) cells")
    max_rotation: float = Field(180.0, ge=0.0, le=180.0, description="rotation range in degrees (+/-)")
    fresh_train_each_epoch: bool = Field(
        True, description="draw new training images every epoch (no overfitting to a small set)"
    )


@register_source(TrifeatureConfig)
def load_trifeature(cfg, *, seed: int) -> DataSplits:
    """Build the three splits of a recipe's ``data`` section (``source: trifeature``)."""
    common = dict(
        seed=seed, num_classes=cfg.num_classes, image_size=cfg.image_size, max_rotation=cfg.max_rotation
    )

    # Teacher, baseline and student see the same epochs: keep drawn epochs while they fit the
    # budget, so each epoch is rendered once per build rather than once per stage.
    cache: dict[int, Split] = {}
    bytes_per_split = cfg.train_size * cfg.image_size * cfg.image_size * 3

    def train_for_epoch(epoch: int) -> Split:
        if not cfg.fresh_train_each_epoch:
            epoch = 0
        if epoch not in cache:
            split = generate_split("train", cfg.train_size, bias=cfg.bias, epoch=epoch, **common)
            if (len(cache) + 1) * bytes_per_split > _CACHE_BYTES:
                return split
            cache[epoch] = split
        return cache[epoch]

    return DataSplits(
        train=train_for_epoch(0),
        val=generate_split("val", cfg.val_size, bias=cfg.bias, **common),
        test=generate_split("test", cfg.test_size, bias=0.5, **common),
        class_names=list(SHAPES)[: cfg.num_classes],
        group_names=list(GROUP_NAMES),
        protected_attribute="colour group",
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        description={
            "source": "trifeature",
            "synthetic": True,
            "summary": (
                f"Generated Trifeature-style shapes ({cfg.num_classes} classes, "
                f"{cfg.image_size}px, rotation +/-{cfg.max_rotation:g} deg), colour group as "
                f"protected attribute, train/val bias "
                f"{cfg.bias}, balanced test split"
            ),
            "textures": list(TEXTURES),
            "fresh_train_each_epoch": cfg.fresh_train_each_epoch,
        },
        train_for_epoch=train_for_epoch,
    )
