"""Training-time augmentation of uint8 batches: the recipe's ``teacher.augment`` / ``student.augment``.

A recipe turns it on per network (the baseline and the distilled student share ``student``'s, so
their comparison stays fair)::

    student:
      augment:
        enabled: true
        crop_scale: [0.08, 1.0]   # random resized crop (null: none)
        crop_ratio: [0.75, 1.333]
        hflip: 0.5                # probability of a horizontal flip (0: never)
        policy: randaugment       # none | randaugment | trivialaugment
        num_ops: 2                # RandAugment only
        magnitude: 9              # RandAugment only, 0-30

The transforms are torchvision's (``transforms.v2``: ``RandomResizedCrop``,
``RandomHorizontalFlip``, ``RandAugment``, ``TrivialAugmentWide``, in that order, as timm's
training transform orders them), run on the uint8 batch before it is normalised. Only the
training batches of :func:`edgekd.train.fit` pass through them; validation, test, export
calibration and bench see the images as they are.

Determinism. The pixels of an augmented image depend on ``(seed, epoch, index)`` only, where
``index`` is the image's place in the epoch's training split: not on the batch it falls in, its
place in that batch or the number of torchrun ranks. That keeps a resumed build equal to one that
never stopped, and lets the teacher-outputs cache (:mod:`edgekd.train.teacher_outputs`) hold the
teacher's outputs on exactly the images the student sees. A v2 transform given a batched tensor
draws ONE set of random parameters for the whole batch, so each image is transformed on its own,
with torch's CPU generator seeded from a hash of ``(seed, epoch, index)`` inside
``torch.random.fork_rng``: the loop's own random stream (dropout, ...) is left as it was.
The cost per batch is measured by ``benchmarks/bench_augment.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, field_validator

from edgekd.config import Section
from edgekd.files import sha256_json

__all__ = ["AugmentConfig", "Augmenter", "POLICIES", "image_seed"]

POLICIES = ("none", "randaugment", "trivialaugment")

Fraction = Annotated[float, Field(gt=0.0, le=1.0)]
Ratio = Annotated[float, Field(gt=0.0, le=100.0)]


class AugmentConfig(Section):
    """Augmentation of a network's training images (``teacher.augment``, ``student.augment``).

    Off by default: the quickstart's numbers were measured without it."""

    enabled: bool = Field(
        False, description="augment the training images (validation, test, export and bench never are)"
    )
    crop_scale: tuple[Fraction, Fraction] | None = Field(
        (0.08, 1.0),
        description="random resized crop: [min, max] share of the image's area "
        "(torchvision's and timm's default); null: no crop",
    )
    crop_ratio: tuple[Ratio, Ratio] = Field(
        (3 / 4, 4 / 3), description="random resized crop: [min, max] aspect ratio of the crop"
    )
    hflip: float = Field(0.5, ge=0.0, le=1.0, description="probability of a horizontal flip; 0: never")
    policy: Literal["none", "randaugment", "trivialaugment"] = Field(
        "none",
        description="automatic augmentation policy after crop and flip: RandAugment "
        "(Cubuk et al. 2020) or TrivialAugment (Mueller & Hutter 2021)",
    )
    num_ops: int = Field(2, ge=1, le=14, description="RandAugment: operations per image")
    magnitude: int = Field(9, ge=0, le=30, description="RandAugment: strength, 0-30")

    @field_validator("crop_scale", "crop_ratio")
    @classmethod
    def _ordered(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and value[0] > value[1]:
            raise ValueError(f"min {value[0]} is larger than max {value[1]}; give [min, max]")
        return value

    def effective(self) -> dict:
        """The settings that act (all of them for the card and the stage keys; when off, only
        ``enabled: false``)."""
        if not self.enabled:
            return {"enabled": False}
        out: dict = {"enabled": True, "crop_scale": list(self.crop_scale) if self.crop_scale else None}
        if self.crop_scale is not None:
            out["crop_ratio"] = list(self.crop_ratio)
        out.update(hflip=self.hflip, policy=self.policy)
        if self.policy == "randaugment":
            out.update(num_ops=self.num_ops, magnitude=self.magnitude)
        return out


_SALT = 0x6175_6721  # keeps these seeds apart from the loop's other (seed, epoch) streams


def image_seed(seed: int, epoch: int, index: int) -> int:
    """The 64-bit seed of one image's augmentation: a hash (numpy's ``SeedSequence``) of
    ``(seed, epoch, index)``."""
    entropy = [_SALT, int(seed), int(epoch), int(index)]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])


@dataclass(frozen=True)
class Augmenter:
    """The augmentation of one training run: ``augment(images, indices, epoch=e)``.

    ``images`` is a uint8 batch ``(N, H, W, 3)``, ``indices`` the images' places in epoch ``e``'s
    training split; returns the augmented batch, same shape and dtype (the input itself when
    augmentation is off). Two augmenters are equal when their settings and seed are.

    Example::

        augment = Augmenter(recipe.student.augment, seed=recipe.seed)
        batch = augment(split.images[idx], idx, epoch=3)
    """

    config: AugmentConfig | None
    seed: int
    _transforms: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def enabled(self) -> bool:
        return self.config is not None and self.config.enabled

    @property
    def key(self) -> str:
        """What identifies this augmentation's pixels (settings and seed), for cache keys."""
        settings = self.config.effective() if self.config is not None else {"enabled": False}
        return sha256_json({"augment": settings, "seed": self.seed})[:16]

    def __call__(self, images: np.ndarray, indices, *, epoch: int) -> np.ndarray:
        if not self.enabled:
            return images
        import torch

        indices = np.asarray(indices)
        if len(indices) != len(images):
            raise ValueError(f"{len(images)} images but {len(indices)} indices")
        batch = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        # channels-last, so the result is a contiguous (N, H, W, 3) array without a copy
        out = torch.empty(batch.shape, dtype=torch.uint8, memory_format=torch.channels_last)
        transform = self.pipeline(tuple(batch.shape[2:]))
        with torch.random.fork_rng(devices=[]):
            for row, index in enumerate(indices):
                # the CPU generator only: torch.manual_seed would also reseed every GPU's
                torch.default_generator.manual_seed(image_seed(self.seed, epoch, int(index)))
                out[row] = transform(batch[row])
        return out.permute(0, 2, 3, 1).numpy()

    def pipeline(self, size: tuple[int, int]):
        """torchvision's v2 pipeline for images of ``size`` (built once per size)."""
        if size not in self._transforms:
            from torchvision.transforms import v2

            cfg = self.config
            steps = []
            if cfg.crop_scale is not None:
                steps.append(
                    v2.RandomResizedCrop(size, scale=cfg.crop_scale, ratio=cfg.crop_ratio, antialias=True)
                )
            if cfg.hflip > 0:
                steps.append(v2.RandomHorizontalFlip(cfg.hflip))
            if cfg.policy == "randaugment":
                steps.append(v2.RandAugment(num_ops=cfg.num_ops, magnitude=cfg.magnitude))
            elif cfg.policy == "trivialaugment":
                steps.append(v2.TrivialAugmentWide())
            self._transforms[size] = v2.Compose(steps) if steps else (lambda image: image)
        return self._transforms[size]
