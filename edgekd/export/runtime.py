"""Run an exported ONNX classifier through onnxruntime, the way the device will (no torch)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgekd.errors import EdgeKDError

__all__ = ["OnnxClassifier", "normalise", "batched_logits", "import_onnxruntime", "cpu_runtime_name"]


def normalise(images: np.ndarray, mean, std) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 normalised with ``preprocess.json``'s values."""
    x = images.astype(np.float32).transpose(0, 3, 1, 2) / np.float32(255.0)
    x -= np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
    x /= np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray(x)


def import_onnxruntime():
    """The onnxruntime module, whichever wheel provides it (``onnxruntime`` on a CPU,
    ``onnxruntime-gpu`` on a Jetson or a CUDA machine); one line saying how to get one if none."""
    try:
        import onnxruntime
    except ImportError:
        raise EdgeKDError(
            "onnxruntime is not installed: pip install 'edgekd[cpu]' for the CPU wheel, "
            "or on a Jetson NVIDIA's onnxruntime-gpu wheel (deploy/jetson/README.md)"
        ) from None
    return onnxruntime


def cpu_runtime_name() -> str:
    """How a card names the runtime the build evaluates ONNX files through."""
    return f"onnxruntime {import_onnxruntime().__version__} (CPUExecutionProvider)"


def batched_logits(
    infer: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    mean,
    std,
    *,
    batch_size: int | None = None,
    dtype=np.float32,
    pad: bool = False,
) -> np.ndarray:
    """Logits of ``infer`` (a runtime's call on a normalised batch) for uint8 images (N, H, W, 3).

    The one batched inference loop of exported models: the build's evaluation of every artifact
    and ``edgekd bench --eval`` both run it. ``pad=True`` pads the last partial batch to
    ``batch_size`` (engines built for one batch size) and drops the padding's outputs.
    ``batch_size`` defaults to :func:`~edgekd.data.rows.eval_batch_size` (256 up to 64 px).
    """
    from edgekd.data.rows import batches, eval_batch_size  # numpy only; read batch by batch

    batch_size = batch_size or eval_batch_size(images)
    out = []
    for chunk in batches(images, batch_size):
        x = normalise(chunk, mean, std).astype(dtype, copy=False)
        if pad and len(chunk) < batch_size:
            x = np.concatenate([x, np.zeros((batch_size - len(chunk), *x.shape[1:]), dtype=x.dtype)])
        out.append(np.asarray(infer(x))[: len(chunk)])
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


class OnnxClassifier:
    """An onnxruntime session over an image classifier with one input and one logits output.

    Parameters
    ----------
    path : path to the ``.onnx`` file
    providers : execution providers in order of preference, names or (name, options) pairs
        (default: CPU)
    threads : intra-op threads (default: onnxruntime's choice)
    """

    def __init__(
        self, path: str | Path, *, providers: list | None = None, threads: int | None = None
    ) -> None:
        ort = import_onnxruntime()
        path = Path(path)
        if not path.is_file():
            raise EdgeKDError(f"{path}: no such model file")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own exception types
            first = str(err).strip().splitlines()[0][:200]
            raise EdgeKDError(f"{path}: onnxruntime cannot load it as an ONNX model ({first})") from None
        self.path = path
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits for a normalised float32 batch (N, 3, H, W)."""
        return self.session.run([self.output_name], {self.input_name: x})[0]

    def predict_images(self, images: np.ndarray, mean, std, batch_size: int | None = None) -> np.ndarray:
        """Logits for uint8 images (N, H, W, 3), in batches."""
        return batched_logits(self.logits, images, mean, std, batch_size=batch_size)
