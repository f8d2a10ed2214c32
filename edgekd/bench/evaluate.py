"""Accuracy and fairness of an artifact measured on the device, over the bundle's evaluation set.

The images are normalised with the bundle's preprocess.json exactly as at build time
(:func:`edgekd.export.runtime.normalise`), run through the same backend that was timed, and the
predictions scored with the card's metric set (top-1, macro
recall/precision/F1, per-class recall by group, disparity, DPD, EOD) from counts with numpy
alone (:func:`edgekd.fairness.counts.evaluate_counts`, equal to the card's fairlearn numbers), so
the device needs no fairlearn, pandas or scikit-learn. The last partial batch is
padded to the full batch size, so engines built for one batch size work too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgekd.bundle.eval_set import read_eval_set
from edgekd.errors import EdgeKDError
from edgekd.export.runtime import batched_logits
from edgekd.fairness.counts import evaluate_counts

__all__ = ["evaluate_artifact", "logits_through"]


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
        The metrics of :func:`edgekd.fairness.counts.evaluate_counts` plus ``batch``.
    """
    images, labels, groups = read_eval_set(bundle)
    _, h, w = preprocess["input_size"]
    if images.shape[1:3] != (h, w):
        raise EdgeKDError(f"{bundle}/eval_set.npz: images are {images.shape[1]}x{images.shape[2]} but "
                          f"preprocess.json input_size is {h}x{w}")
    try:
        class_names, group_names = preprocess["class_names"], preprocess["protected_groups"]
        mean, std = preprocess["mean"], preprocess["std"]
    except KeyError as err:
        raise EdgeKDError(f"{bundle}/preprocess.json: no {err.args[0]!r}; --eval needs mean, std, "
                          f"class_names and protected_groups") from None
    logits = batched_logits(infer, images, mean, std, batch_size=batch, dtype=dtype, pad=True)
    pred = logits.argmax(1) if len(logits) else np.zeros(0, dtype=np.int64)
    metrics = evaluate_counts(labels, pred, groups, class_names=class_names, group_names=group_names)
    return {"batch": batch, **metrics}


def logits_through(backend: str, path: Path, images: np.ndarray, mean, std, *,
                   threads: int | None = None) -> np.ndarray:
    """Logits of the model file ``path`` on uint8 images through ``backend`` of the backend table
    (onnxruntime on its CPU provider): how the build evaluates every exported artifact."""
    from edgekd.bench.backends import BACKENDS

    runner = BACKENDS.get(backend)
    if runner is None or runner.load is None:
        raise EdgeKDError(f"{path}: no in-process backend {backend!r} to evaluate it")
    providers = ["CPUExecutionProvider"] if backend == "onnxruntime" else None
    loaded = runner.load(path, providers=providers, threads=threads)
    return batched_logits(loaded.infer, images, mean, std, batch_size=loaded.fixed_batch or 256,
                          dtype=loaded.input_dtype, pad=loaded.fixed_batch is not None)
