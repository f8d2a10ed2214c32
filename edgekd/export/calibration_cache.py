"""TensorRT's INT8 calibration cache: the one module that writes, reads and re-versions it.

The format (``IInt8EntropyCalibrator2`` and its kin write it): a header line
``TRT-<version>-<algorithm>`` (``TRT-100300-EntropyCalibration2``: TensorRT 10.3.0's numbering,
:func:`tensorrt_version_number`), then one line per tensor, ``<name>: <scale>``, the scale
(``amax / 127``) as the 8 hex digits of its big-endian float32. A cache is read back by a
calibrator of the algorithm its header names (:func:`calibration_algorithm`), and only by the
TensorRT version it names, so ``edgekd engine`` rewrites the header for the TensorRT it builds
with (:func:`for_tensorrt_version`); the scales do not depend on the version.
"""

from __future__ import annotations

import struct
from pathlib import Path

from edgekd.errors import EdgeKDError

__all__ = [
    "CALIBRATORS",
    "tensorrt_version_number",
    "parse_header",
    "write_tensorrt_cache",
    "read_tensorrt_cache",
    "calibration_algorithm",
    "for_tensorrt_version",
]

# the algorithm a header names -> the trt calibrator class that reads its cache
CALIBRATORS = {
    "EntropyCalibration2": "IInt8EntropyCalibrator2",
    "EntropyCalibration": "IInt8EntropyCalibrator",
    "MinMaxCalibration": "IInt8MinMaxCalibrator",
    "LegacyCalibration": "IInt8LegacyCalibrator",
}


def tensorrt_version_number(version: str) -> int:
    """TensorRT's own numbering: 8.6.1 -> 8601, 10.3.0 -> 100300."""
    major, minor, patch = (int(p) for p in (version.split(".") + ["0", "0"])[:3])
    return major * 1000 + minor * 100 + patch if major < 10 else major * 10000 + minor * 100 + patch


def parse_header(line: str) -> tuple[str, str] | None:
    """``(version number, algorithm)`` of a cache's first line, or None when it is not one."""
    parts = line.strip().split("-", 2)
    if len(parts) != 3 or parts[0] != "TRT":
        return None
    return parts[1], parts[2]


def write_tensorrt_cache(scales: dict[str, float], path: Path, *, tensorrt_version: str = "10.3.0") -> Path:
    """Write ``scales`` (tensor -> scale, as :func:`edgekd.export.int8.qdq_activation_scales`
    reads them from the shipped Q/DQ file) as an ``EntropyCalibration2`` cache."""
    from edgekd.files import write_atomic

    lines = [f"TRT-{tensorrt_version_number(tensorrt_version)}-EntropyCalibration2"]
    for name in sorted(scales):
        lines.append(f"{name}: {struct.pack('>f', max(float(scales[name]), 1e-8 / 127.0)).hex()}")
    write_atomic(Path(path), "\n".join(lines) + "\n")
    return Path(path)


def read_tensorrt_cache(path: Path) -> tuple[str, dict[str, float]]:
    """The header and ``{tensor: scale}`` of a TensorRT calibration cache."""
    text = Path(path).read_text().splitlines()
    if not text or parse_header(text[0]) is None:
        raise EdgeKDError(f"{path}: not a TensorRT calibration cache (first line TRT-<version>-<algorithm>)")
    scales = {}
    for line in text[1:]:
        name, sep, value = line.rpartition(": ")
        if not sep:
            raise EdgeKDError(f"{path}: line {line!r} is not '<tensor>: <hex scale>'")
        scales[name] = struct.unpack(">f", bytes.fromhex(value.strip().rjust(8, "0")))[0]
    return text[0], scales


def calibration_algorithm(cache: bytes, *, where: str = "calibration.cache") -> str:
    """The ``trt`` calibrator class that reads ``cache``."""
    header = cache.split(b"\n", 1)[0].decode("ascii", "replace").strip()
    parsed = parse_header(header)
    if parsed is None or parsed[1] not in CALIBRATORS:
        raise EdgeKDError(
            f"{where}: not a TensorRT calibration cache (first line {header[:60]!r}; "
            f"expected TRT-<version>-<algorithm>, algorithm one of "
            f"{', '.join(CALIBRATORS)})"
        )
    return CALIBRATORS[parsed[1]]


def for_tensorrt_version(cache: bytes, version: str) -> bytes:
    """``cache`` with its header's version set to ``version`` (10.3.0 -> ``TRT-100300-...``)."""
    header, sep, rest = cache.partition(b"\n")
    parsed = parse_header(header.decode("ascii", "replace"))
    if parsed is None:
        return cache
    return f"TRT-{tensorrt_version_number(version)}-{parsed[1]}".encode() + sep + rest
