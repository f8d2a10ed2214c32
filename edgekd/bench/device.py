"""What machine a bench ran on: CPU, OS, memory, GPU and, on a Jetson, board, L4T and power mode.

Everything is read from files and small commands (no torch, no root): ``/proc/cpuinfo``,
``/etc/os-release``, ``/proc/meminfo``; on a Jetson ``/proc/device-tree/model``,
``/etc/nv_tegra_release``, ``nvpmodel -q`` and the cpufreq/devfreq limits that
``jetson_clocks`` pins (clocks are locked when every CPU's and the GPU's minimum frequency equals
its maximum); elsewhere the GPU from ``nvidia-smi`` (or ``pynvml`` when installed). Paths take a
``root`` so tests can build a fake Jetson in a temporary directory.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = [
    "describe_device",
    "device_id",
    "jetson_info",
    "l4t_release",
    "peak_rss_mb",
    "reset_peak_rss",
    "gpu_memory_used_mb",
    "slug",
]

_GPU_DEVFREQ = re.compile(r"(gpu|gv11b|ga10b|gp10b|gm20b)$")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def _run(cmd: list[str], timeout: float = 5.0) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def slug(text: str) -> str:
    """Lower-case letters, digits and single dashes: ``"Jetson AGX Orin" -> "jetson-agx-orin"``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def _cpu_model(root: Path) -> str:
    info = _read(root / "proc/cpuinfo") or ""
    for key in ("model name", "Hardware", "Model"):
        if m := re.search(rf"^{key}\s*:\s*(.+)$", info, re.MULTILINE):
            return m.group(1).strip()
    if m := re.search(r"^CPU part\s*:\s*(\S+)$", info, re.MULTILINE):
        return f"ARM part {m.group(1)}"
    return platform.processor() or platform.machine() or "unknown"


def _os_name(root: Path) -> str:
    release = _read(root / "etc/os-release") or ""
    if m := re.search(r'^PRETTY_NAME="?([^"\n]+)"?$', release, re.MULTILINE):
        return m.group(1)
    return platform.platform()


def _memory_total_mb(root: Path) -> int | None:
    if m := re.search(r"^MemTotal:\s*(\d+) kB", _read(root / "proc/meminfo") or "", re.MULTILINE):
        return int(m.group(1)) // 1024
    return None


def l4t_release(text: str) -> str | None:
    """``"# R35 (release), REVISION: 4.1, GCID: ..." -> "35.4.1"`` (``/etc/nv_tegra_release``)."""
    if m := re.search(r"R(\d+) \(release\), REVISION: (\d+(?:\.\d+)*)", text):
        return f"{m.group(1)}.{m.group(2)}"
    return None


def _power_mode() -> tuple[str | None, int | None]:
    out = _run(["nvpmodel", "-q"])
    if out and (m := re.search(r"NV Power Mode:\s*(\S+)\s*\n\s*(\d+)", out)):
        return m.group(1), int(m.group(2))
    return None, None


def _clock_limits(root: Path) -> dict:
    """Whether min == max for every online CPU (cpufreq) and for the GPU (devfreq)."""
    cpus = []
    for cpu in sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq")):
        lo, hi = _read(cpu / "scaling_min_freq"), _read(cpu / "scaling_max_freq")
        if lo and hi:
            cpus.append(lo == hi)
    gpus = []
    for dev in sorted((root / "sys/class/devfreq").glob("*")):
        if _GPU_DEVFREQ.search(dev.name):
            lo, hi = _read(dev / "min_freq"), _read(dev / "max_freq")
            if lo and hi:
                gpus.append(lo == hi)
    cpu_locked = all(cpus) if cpus else None
    gpu_locked = all(gpus) if gpus else None
    known = [v for v in (cpu_locked, gpu_locked) if v is not None]
    return {
        "cpu_locked": cpu_locked,
        "gpu_locked": gpu_locked,
        "clocks_locked": all(known) if known else None,
    }


def jetson_info(root: Path = Path("/")) -> dict | None:
    """Board model, L4T and JetPack releases, power mode and clock locking; None off a Jetson."""
    release = _read(root / "etc/nv_tegra_release")
    model = _read(root / "proc/device-tree/model")
    if release is None and not (model and "jetson" in model.lower()):
        return None
    mode, mode_id = _power_mode() if root == Path("/") else (None, None)
    jetpack = (
        _run(["dpkg-query", "--showformat=${Version}", "--show", "nvidia-jetpack"])
        if root == Path("/")
        else None
    )
    return {
        "model": model,
        "l4t": l4t_release(release or ""),
        "jetpack": jetpack,
        "power_mode": mode,
        "power_mode_id": mode_id,
        **_clock_limits(root),
    }


def _gpus() -> list[dict]:
    try:
        import pynvml  # optional; not a dependency

        pynvml.nvmlInit()
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            out.append(
                {
                    "name": name.decode() if isinstance(name, bytes) else name,
                    "memory_total_mb": pynvml.nvmlDeviceGetMemoryInfo(h).total // 2**20,
                    "driver": str(pynvml.nvmlSystemGetDriverVersion()),
                }
            )
        return out
    except Exception:  # absent, or no NVIDIA driver: fall back to nvidia-smi
        pass
    out = _run(
        ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"]
    )
    gpus = []
    for line in (out or "").splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            total = int(parts[1]) if parts[1].isdigit() else None
            gpus.append({"name": parts[0], "memory_total_mb": total, "driver": parts[2]})
    return gpus


def gpu_memory_used_mb(pid: int | None = None) -> float | None:
    """GPU memory held by process ``pid`` (default: this one) per nvidia-smi; None without one."""
    pid = os.getpid() if pid is None else pid
    out = _run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"])
    for line in (out or "").splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(pid) and parts[1].isdigit():
            return float(parts[1])
    return None


def peak_rss_mb(*, children: bool = False) -> float | None:
    """Peak resident set size of this process (or of its largest waited-for child), in MB.

    ``getrusage`` reports ``ru_maxrss`` in KiB on Linux and in bytes on macOS; where there is no
    ``resource`` module (Windows) the answer is None.
    """
    try:
        import resource
    except ImportError:
        return None
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    rss = resource.getrusage(who).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def reset_peak_rss() -> bool:
    """Start a new peak-RSS window for this process (Linux >= 4.0: writing 5 to
    ``/proc/self/clear_refs`` resets the high-water mark that :func:`peak_rss_mb` reads), so
    artifacts benched one after another in one process each get their own peak. False where
    that is not possible (the peak then covers everything run so far)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def describe_device(root: Path = Path("/")) -> dict:
    """The device block of a bench result (see the module docstring for the sources)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    info = {
        "cpu": {"model": _cpu_model(root), "logical_cores": os.cpu_count(), "usable_cores": usable},
        "machine": platform.machine(),
        "os": _os_name(root),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "memory_total_mb": _memory_total_mb(root),
        "jetson": jetson_info(root),
        "gpus": [] if root != Path("/") else _gpus(),
    }
    info["id"] = device_id(info)
    return info


def device_id(info: dict) -> str:
    """A stable key for a device: the Jetson board, else CPU model, usable cores and GPU.

    ``"nvidia-jetson-orin-nano-developer-kit"``, ``"amd-epyc-2cpu"``,
    ``"intel-r-xeon-r-cpu-8cpu+nvidia-a100-sxm4-40gb"``.
    """
    jetson = info.get("jetson")
    if jetson and jetson.get("model"):
        return slug(jetson["model"])
    key = f"{slug(info['cpu']['model'])}-{info['cpu']['usable_cores']}cpu"
    gpus = info.get("gpus") or []
    if gpus:
        key += "+" + slug(gpus[0]["name"])
    return key
