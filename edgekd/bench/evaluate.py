"""Accuracy and fairness of an artifact measured on the device, over the bundle's evaluation set.

The images are normalised with the bundle's preprocess.json exactly as at build time
(:func:`edgekd.export.runtime.normalise`), run through the same backend that was timed, and the
predictions scored with :func:`edgekd.fairness.metrics.evaluate_predictions` (top-1, macro
recall/precision/F1, per-class recall by group, disparity, DPD, EOD). The last partial batch is
padded to the full batch size, so engines built for one batch size work too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgekd.bundle.eval_set import read_eval_set
from edgekd.errors import EdgeKDError
from edgekd.export.runtime import normalise

__all__ = ["evaluate_artifact"]


def evaluate_artifact(infer: Callable[[np.ndarray], np.ndarray], bundle: Path, preprocess: dict, *,
                      batch: int, dtype=np.float32) -> dict:
    """Metrics of ``infer`` (logits of a normalised batch) on ``bundle``'s ``eval_set.npz``.

    Parameters
    ----------
    infer : callable
        Logits (N, classes) for a float batch (N, C, H, W).
    bundle : Path
        The bundle directory holding ``eval_set.npz``.
    preprocess : dict
        The bundle's preprocess.json (input_size, mean, std, class_names, protected_groups).
    batch : int
        Images per call.

    Returns
    -------
    dict
        The metrics of :func:`edgekd.fairness.metrics.evaluate_predictions` plus ``batch``.
    """
    from edgekd.fairness.metrics import evaluate_predictions  # fairlearn: only when asked

    try:
        class_names, group_names = preprocess["class_names"], preprocess["protected_groups"]
        mean, std = preprocess["mean"], preprocess["std"]
    except KeyError as err:
        raise EdgeKDError(f"{bundle}/preprocess.json: no {err.args[0]!r}; --eval needs mean, std, "
                          f"class_names and protected_groups") from None
    images, labels, groups = read_eval_set(bundle, preprocess)  # sizes and ranges checked
    predictions = []
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        x = normalise(chunk, mean, std).astype(dtype, copy=False)
        if len(chunk) < batch:
            x = np.concatenate([x, np.zeros((batch - len(chunk), *x.shape[1:]), dtype=x.dtype)])
        predictions.append(np.asarray(infer(x))[:len(chunk)].argmax(1))
    pred = np.concatenate(predictions) if predictions else np.zeros(0, dtype=np.int64)
    metrics = evaluate_predictions(labels, pred, groups, class_names=class_names,
                                   group_names=group_names)
    return {"batch": batch, **metrics}
