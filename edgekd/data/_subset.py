"""Seeded subsets stratified over the (class, group) cells: ``data.test_size`` for every source
that reads its test split from files, and the validation split ``image_folder`` carves out of
training when its root has no ``val/`` folder.

Stratified by proportional allocation: cell ``k`` of ``count_k`` images keeps
``floor(n * count_k / total)`` of them, and the images still owed go one each to the cells with
the largest remainders (ties to the lower cell index); which images a cell keeps is a seeded
random draw. So a subset of a balanced test split stays balanced, and a biased one keeps its
bias. scikit-learn's stratified splitters are not used: they refuse a cell of one image, which
small (class, group) cells of real data sets have.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, SerializationInfo, SerializerFunctionWrapHandler, model_serializer

from edgekd.config import Section
from edgekd.errors import EdgeKDError

__all__ = ["SizedTestConfig", "stratified_subset", "kept_test_indices", "TEST_STREAM", "VAL_STREAM"]

# Each draw has its own random stream (with the recipe's seed), so adding a subset never moves
# the draws a source already made: the same recipe keeps its splits.
TEST_STREAM = 0x7E57
VAL_STREAM = 0x7A1


class SizedTestConfig(Section):
    """``test_size``, shared by the sources that read a fixed test split."""

    test_size: int | None = Field(
        None,
        ge=1,
        description="test images kept: a seeded subset stratified over (class, group) cells; all when unset",
    )

    @model_serializer(mode="wrap")
    def _unset_test_size(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo):
        # Left out of the dump while unset, so recipes written before the key existed keep their
        # resolved form and their stage keys (no retraining).
        out = handler(self)
        if isinstance(out, dict) and self.test_size is None:
            out.pop("test_size", None)
        return out


def stratified_subset(
    labels: np.ndarray, groups: np.ndarray, n: int, *, seed: int, stream: int = TEST_STREAM
) -> np.ndarray:
    """Sorted indices of ``n`` of the images, stratified over their (class, group) cells.

    Parameters
    ----------
    labels, groups : array of int, shape (N,)
        Each image's class and protected group.
    n : int
        How many to keep, ``0 <= n <= N``.
    seed : int
        The recipe's seed; with ``stream`` it fixes which images each cell keeps.

    Examples
    --------
    Cells of 6, 3 and 1 images, ``n = 5``: quotas 3, 1.5 and 0.5 give 3, 1 and 0, and the one
    image still owed goes to the first of the two remainders of 0.5: 3, 2 and 0.
    """
    labels, groups = np.asarray(labels, np.int64), np.asarray(groups, np.int64)
    cells = labels * (int(groups.max(initial=0)) + 1) + groups
    _, inverse, counts = np.unique(cells, return_inverse=True, return_counts=True)
    total = int(counts.sum())
    keep = n * counts // total  # integer arithmetic: no rounding surprises at exact quotas
    owed = n - int(keep.sum())
    keep[np.argsort(-(n * counts % total), kind="stable")[:owed]] += 1
    rng = np.random.default_rng([seed, stream])
    chosen = [rng.permutation(np.flatnonzero(inverse == k))[:m] for k, m in enumerate(keep)]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def kept_test_indices(
    test_size: int | None, labels: np.ndarray, groups: np.ndarray, *, seed: int, what: str
) -> np.ndarray:
    """Indices of the test images a recipe keeps: all of them when ``test_size`` is unset, else
    a stratified ``test_size`` of them; more than there are is one line naming ``what``."""
    if test_size is None:
        return np.arange(len(labels))
    if test_size > len(labels):
        raise EdgeKDError(
            f"data.test_size = {test_size}: {what} has only {len(labels)} images; "
            f"choose at most {len(labels)}, or leave data.test_size unset to keep "
            "them all"
        )
    return stratified_subset(labels, groups, test_size, seed=seed)
