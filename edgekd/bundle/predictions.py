"""The test predictions a bundle carries (``predictions.npz``): what every model and artifact
predicted for every test image at build time, and the images each exported artifact changed.

Arrays (int64, one entry per test image in the order of the test split and ``eval_set.npz``):

- ``y_true``, ``groups``: the true class and the protected group;
- ``pred_<model>`` for every model of ``card["models"]`` (teacher, baseline, student, each
  artifact);
- ``changed_<artifact>`` for every exported artifact: the indices of the images whose
  prediction differs from the student's (:func:`edgekd.fairness.compression.changed_indices`).

The device compares what it measures with ``pred_student`` without torch
(``bench --eval --update-card``, ``edgekd engine``); a user looks at the changed images with
``eval_set.npz``. Read with ``allow_pickle=False``: the file can never run code.

    write_predictions(path, y_true=labels, groups=groups, predictions={"student": pred, ...},
                      artifacts=["onnx", "onnx_int8"])
    arrays = read_predictions(bundle_dir)
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np

from edgekd.errors import EdgeKDError
from edgekd.fairness.compression import changed_indices
from edgekd.files import atomic_output
from edgekd.paths import inside

__all__ = ["PREDICTIONS", "write_predictions", "read_predictions"]

PREDICTIONS = "predictions.npz"
_NAME = re.compile(r"^[A-Za-z0-9_]+$")  # a model's name as an npz key


def write_predictions(
    path: str | Path,
    *,
    y_true: np.ndarray,
    groups: np.ndarray,
    predictions: dict[str, np.ndarray],
    artifacts: list[str],
) -> Path:
    """Write ``predictions.npz`` atomically at ``path``; returns it.

    Parameters
    ----------
    path : file path
    y_true, groups : int arrays (n,)
    predictions : dict of model name -> int array (n,)
        Every model and artifact, in card order; must include ``student``.
    artifacts : list of str
        The exported artifacts (keys of ``predictions``) that get a ``changed_<name>``.
    """
    y_true, groups = np.asarray(y_true, dtype=np.int64), np.asarray(groups, dtype=np.int64)
    arrays = {"y_true": y_true, "groups": groups}
    for name, pred in predictions.items():
        if not _NAME.match(name):
            raise ValueError(f"model name {name!r} cannot be an npz key")
        pred = np.asarray(pred, dtype=np.int64)
        if pred.shape != y_true.shape:
            raise ValueError(
                f"{name}: {pred.shape[0] if pred.ndim else 0} predictions for {len(y_true)} test images"
            )
        arrays[f"pred_{name}"] = pred
    for name in artifacts:
        arrays[f"changed_{name}"] = changed_indices(predictions["student"], predictions[name])
    target = Path(path)
    with atomic_output(target) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]  # numpy stubs type **kwds as bool
    return target


def read_predictions(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a bundle's ``predictions.npz`` (``path``: the bundle or the file), checked:
    ``y_true``, ``groups`` and ``pred_student`` present, integer, one entry per test image, and
    every ``changed_*`` indices within the split; anything else is one line."""
    source = Path(path)
    source = source / PREDICTIONS if source.is_dir() else source
    if not source.is_file():
        raise EdgeKDError(
            f"{source}: no test predictions; a bundle built by edgekd 0.x before "
            f"predictions.npz has none (rebuild it)"
        )
    inside(source.name, source.parent, listed_in=source.parent)  # not a symlink out of the bundle
    try:
        with np.load(source, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (KeyError, ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise EdgeKDError(
            f"{source}: not an edgekd predictions file (npz of int arrays): "
            f"{str(err).splitlines()[0][:120] if str(err) else type(err).__name__}"
        ) from None
    missing = [key for key in ("y_true", "groups", "pred_student") if key not in arrays]
    if missing:
        raise EdgeKDError(f"{source}: lacks {', '.join(missing)}; it needs y_true, groups and pred_student")
    n = len(arrays["y_true"]) if arrays["y_true"].ndim == 1 else -1
    for name, array in arrays.items():
        per_image = not name.startswith("changed_")
        if array.ndim != 1 or array.dtype.kind not in "iu" or (per_image and len(array) != n):
            raise EdgeKDError(
                f"{source}: {name} must be "
                + ("one integer per test image" if per_image else "integer indices")
                + f"; it is {array.dtype} {tuple(array.shape)}"
            )
        if not per_image and len(array) and (array.min() < 0 or array.max() >= n):
            raise EdgeKDError(f"{source}: {name} holds indices outside the {n} test images")
    return arrays
