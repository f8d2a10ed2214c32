"""Accuracy and fairness of an artifact measured on the device, over the bundle's evaluation set.

The images are normalised with the bundle's preprocess.json exactly as at build time
(:func:`edgekd.export.runtime.normalise`), run through the same backend that was timed, and the
predictions scored with the card's metric set (top-1, macro
recall/precision/F1, per-class recall by group, disparity, DPD, EOD) from counts with numpy
alone (:func:`edgekd.fairness.metrics.evaluate_predictions`, the card's own engine,
under the card's ``data.min_support``), so the device needs no fairlearn, pandas or scikit-learn.
The last partial batch is padded to the full batch size, so engines built for one batch size work
too.

Agreement is measured against :func:`reference_predictions`: ``model.onnx`` (the student
exported, checked against torch at build time) through onnxruntime's CPU provider on the same
images, overall and in the (class, group) cell where it is lowest. The card says how far that is
from the student: :func:`student_agreement_bounds`.

Where the bundle carries the student's own test predictions (``predictions.npz``, written at
build time), :func:`student_step` makes the card's compression step ``student -> <what was
measured>`` from them (:func:`edgekd.card.compression.step_entry`, numpy only): the same per-cell
agreement, flips and McNemar test the build computes for its artifacts, measured on the device.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgekd.bundle.eval_set import read_eval_set
from edgekd.errors import EdgeKDError
from edgekd.export.files import MODEL_ONNX
from edgekd.export.runtime import batched_logits
from edgekd.fairness.metrics import evaluate_predictions

__all__ = [
    "evaluate_artifact",
    "eval_predictions",
    "logits_through",
    "reference_predictions",
    "REFERENCE_FILE",
    "agreement",
    "student_agreement_bounds",
    "card_min_support",
    "model_name",
    "student_step",
]

REFERENCE_FILE = MODEL_ONNX  # what device-side agreement is measured against


def _preprocessing(bundle: Path, preprocess: dict, images: np.ndarray) -> tuple:
    _, h, w = preprocess["input_size"]
    if images.shape[1:3] != (h, w):
        raise EdgeKDError(
            f"{bundle}/eval_set.npz: images are {images.shape[1]}x{images.shape[2]} but "
            f"preprocess.json input_size is {h}x{w}"
        )
    try:
        return (
            preprocess["class_names"],
            preprocess["protected_groups"],
            preprocess["mean"],
            preprocess["std"],
        )
    except KeyError as err:
        raise EdgeKDError(
            f"{bundle}/preprocess.json: no {err.args[0]!r}; --eval needs mean, std, "
            f"class_names and protected_groups"
        ) from None


def card_min_support(card: dict | None) -> int:
    """The ``min_support`` a card's metrics were measured with (1 for cards from before it was
    recorded, which counted every cell with an image)."""
    value = ((card or {}).get("data") or {}).get("min_support", 1)
    return value if isinstance(value, int) and value >= 1 else 1


def _bundle_min_support(bundle: Path) -> int:
    from edgekd.card.io import load_card

    try:
        return card_min_support(load_card(bundle))
    except EdgeKDError:  # no (valid) card: count every cell, as a card without the key does
        return 1


def eval_predictions(
    infer: Callable[[np.ndarray], np.ndarray], bundle: Path, preprocess: dict, *, batch: int, dtype=np.float32
) -> np.ndarray:
    """The predicted class of every image of ``bundle``'s ``eval_set.npz`` through ``infer``."""
    images, _, _ = read_eval_set(bundle, preprocess)
    _, _, mean, std = _preprocessing(bundle, preprocess, images)
    logits = batched_logits(infer, images, mean, std, batch_size=batch, dtype=dtype, pad=True)
    return logits.argmax(1) if len(logits) else np.zeros(0, dtype=np.int64)


def evaluate_artifact(
    infer: Callable[[np.ndarray], np.ndarray],
    bundle: Path,
    preprocess: dict,
    *,
    batch: int,
    dtype=np.float32,
    reference: np.ndarray | None = None,
    reference_name: str = REFERENCE_FILE,
    predictions: np.ndarray | None = None,
    min_support: int | None = None,
) -> dict:
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
    reference : int array, optional
        Another model's predictions on the same images (:func:`reference_predictions`); adds
        ``agreement``: the share of images where both predict the same class.
    reference_name : str
        What ``reference`` came from, recorded beside the agreement.
    predictions : int array, optional
        Predictions already computed through ``infer`` (:func:`eval_predictions`).
    min_support : int, optional
        Fewest test images a rate may rest on; default: the bundle card's ``data.min_support``,
        so the numbers are the card's.

    Returns
    -------
    dict
        The metrics of :func:`edgekd.fairness.metrics.evaluate_predictions` plus ``batch`` (and
        ``agreement`` ``{"with": reference_name, "prediction_agreement": float}``).
    """
    images, labels, groups = read_eval_set(bundle, preprocess)
    class_names, group_names, _, _ = _preprocessing(bundle, preprocess, images)
    pred = (
        predictions
        if predictions is not None
        else eval_predictions(infer, bundle, preprocess, batch=batch, dtype=dtype)
    )
    if min_support is None:
        min_support = _bundle_min_support(bundle)
    metrics = evaluate_predictions(
        labels, pred, groups, class_names=class_names, group_names=group_names, min_support=min_support
    )
    out = {"batch": batch, **metrics}
    if reference is not None:
        from edgekd.fairness.compression import worst_cell_agreement

        out["agreement"] = {
            "with": reference_name,
            "prediction_agreement": agreement(pred, reference),
            "worst_cell_agreement": worst_cell_agreement(
                labels,
                reference,
                pred,
                groups,
                class_names=class_names,
                group_names=group_names,
                min_support=min_support,
            ),
        }
    return out


def model_name(card: dict | None, file: str) -> str:
    """The card's name for the model in ``file`` (``model.int8.onnx`` -> ``onnx_int8``), or the
    file name for a file the card does not list."""
    models = (card or {}).get("models") or {}
    return next((name for name, entry in models.items() if entry.get("file") == file), file)


def student_step(
    bundle: Path,
    predictions: np.ndarray,
    *,
    after: str,
    measured_on: str,
    card: dict | None,
    preprocess: dict,
) -> dict | None:
    """The card's compression step ``student -> after`` measured on the device: the student's
    test predictions from the bundle's ``predictions.npz`` against ``predictions`` (the eval
    set's, same images and order), with the card's settings (:func:`step_settings`). None when
    the bundle has no ``predictions.npz``."""
    from edgekd.bundle.predictions import PREDICTIONS, read_predictions
    from edgekd.card.compression import step_entry, step_settings

    if not (Path(bundle) / PREDICTIONS).is_file():
        return None
    shipped = read_predictions(bundle)
    y_true, groups = shipped["y_true"], shipped["groups"]
    _, labels, eval_groups = read_eval_set(bundle, preprocess)
    if len(y_true) != len(labels) or not (
        np.array_equal(y_true, labels) and np.array_equal(groups, eval_groups)
    ):
        raise EdgeKDError(
            f"{Path(bundle) / PREDICTIONS}: its y_true and groups are not those of "
            f"{Path(bundle) / 'eval_set.npz'}; both must hold the test split in one order"
        )
    return step_entry(
        "student",
        after,
        y_true,
        shipped["pred_student"],
        predictions,
        groups,
        class_names=preprocess["class_names"],
        group_names=preprocess["protected_groups"],
        measured_on=measured_on,
        **step_settings(card),
    )


def agreement(a: np.ndarray, b: np.ndarray) -> float | None:
    """Share of images where two models predict the same class (None for no image)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"predictions of {a.shape} and {b.shape} images cannot be compared")
    return float(np.mean(a == b)) if len(a) else None


def reference_predictions(bundle: Path, preprocess: dict, *, threads: int | None = None) -> np.ndarray:
    """``model.onnx``'s predictions on the eval set through onnxruntime's CPU provider: what
    device-side agreement is measured against (the student's predictions are not shipped)."""
    path = Path(bundle) / REFERENCE_FILE
    if not path.is_file():
        raise EdgeKDError(f"{bundle}: has no {REFERENCE_FILE} to measure agreement against")
    images, _, _ = read_eval_set(bundle, preprocess)
    _, _, mean, std = _preprocessing(bundle, preprocess, images)
    logits = logits_through("onnxruntime", path, images, mean, std, threads=threads)
    return logits.argmax(1) if len(logits) else np.zeros(0, dtype=np.int64)


def student_agreement_bounds(
    agreement_with_reference: float | None, reference_vs_student: float | None
) -> list[float] | None:
    """Bounds on an artifact's agreement with the torch student, from its agreement with
    ``model.onnx`` (``a``) and model.onnx's agreement with the student at build time (``r``), on
    the same images: disagreements add at most, so the student agreement is within
    ``[a - (1 - r), a + (1 - r)]`` clipped to [0, 1]; exact when ``r`` is 1."""
    if agreement_with_reference is None or reference_vs_student is None:
        return None
    slack = 1.0 - float(reference_vs_student)
    return [max(0.0, agreement_with_reference - slack), min(1.0, agreement_with_reference + slack)]


def logits_through(
    backend: str, path: Path, images: np.ndarray, mean, std, *, threads: int | None = None
) -> np.ndarray:
    """Logits of the model file ``path`` on uint8 images through ``backend`` of the backend table
    (onnxruntime on its CPU provider): how the build evaluates every exported artifact."""
    from edgekd.bench.backends import BACKENDS

    runner = BACKENDS[backend] if backend in BACKENDS else None
    if runner is None or runner.load is None:
        raise EdgeKDError(f"{path}: no in-process backend {backend!r} to evaluate it")
    providers = ["CPUExecutionProvider"] if backend == "onnxruntime" else None
    loaded = runner.load(path, providers=providers, threads=threads)
    return batched_logits(
        loaded.infer,
        images,
        mean,
        std,
        batch_size=loaded.fixed_batch,
        dtype=loaded.input_dtype,
        pad=loaded.fixed_batch is not None,
    )
