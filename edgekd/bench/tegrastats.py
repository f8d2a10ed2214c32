"""Jetson power, memory and load from ``tegrastats`` lines, and a sampler that runs it.

``tegrastats`` (NVIDIA Jetson Linux developer guide, "tegrastats Utility") prints one line per
interval. The fields this module reads, in every format the supported boards print:

* ``RAM 3162/7620MB (lfb 8x4MB)`` and ``SWAP 0/3810MB (cached 0MB)``: used / total MB.
* ``CPU [24%@1224,15%@1224,off,off]``: load % and MHz per core, ``off`` for a powered-down core;
  the older ``cpu [17%,13%]@408`` (one frequency for all cores) too.
* ``GR3D_FREQ 0%@76`` (Nano), ``GR3D_FREQ 12%@[1300,1300]`` (Orin: one MHz per GPC),
  ``GR3D_FREQ 0%`` (no frequency): iGPU load % and MHz.
* Power rails, ``NAME now/avg`` or ``NAME now/avg/max``, with or without the ``mW`` unit:
  Nano ``POM_5V_IN 1750/1628``; Xavier NX, Orin NX and Orin Nano ``VDD_IN 4567mW/4567mW``;
  AGX Orin ``VDD_GPU_SOC 2412mW/2412mW VDD_CPU_CV 1607mW/1607mW VIN_SYS_5V0 4707mW/4707mW``.

Total power of one line (:func:`total_power_mw`): the module input rail where the board has one
(``VDD_IN``, or ``POM_5V_IN`` on the Nano). AGX boards have no single input rail, so the total is
the sum of every listed rail except unconnected ``NC`` channels, and the label names the rails
summed (the same total jtop reports; it excludes carrier-board consumers that no rail measures).

The power summary (:func:`summarise_power`) of samples ``P_1..P_n`` (instantaneous totals, W)
taken while ``N`` images were inferred in ``T`` seconds:

    average power  = (1/n) * sum_i P_i                     (W)
    peak power     = max_i P_i                             (W)
    energy / image = average power * T / N * 1000          (mJ)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from edgekd.errors import EdgeKDError

__all__ = [
    "Rail",
    "CpuCore",
    "TegraSample",
    "parse_line",
    "total_power_mw",
    "summarise_power",
    "find_tegrastats",
    "TegrastatsSampler",
]

INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
_NUM = r"(\d+(?:\.\d+)?)"
_RAIL = re.compile(  # NAME now/avg[/max], each with or without "mW"; "1766/3964MB" is not a rail
    rf"(?<![\w/])([A-Za-z][A-Za-z0-9_]*) {_NUM}(?:mW)?/{_NUM}(?:mW)?(?:/{_NUM}(?:mW)?)?(?=\s|$)"
)
_TIME = re.compile(r"^\s*(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})")
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_SWAP = re.compile(r"\bSWAP (\d+)/(\d+)MB(?: \(cached (\d+)MB\))?")
_CPU = re.compile(r"\bCPU \[([^\]]*)\](?:@(\d+))?", re.IGNORECASE)
_CORE = re.compile(r"(\d+)%(?:@(\d+))?")
_GR3D = re.compile(r"\bGR3D(?:_FREQ)? (\d+)%(?:@\[?([\d,]+)\]?)?")


@dataclass(frozen=True)
class Rail:
    """One power rail: instantaneous and running-average mW, and the maximum where printed."""

    now_mw: float
    avg_mw: float
    max_mw: float | None = None


@dataclass(frozen=True)
class CpuCore:
    load_pct: int
    freq_mhz: int | None


@dataclass
class TegraSample:
    """One parsed tegrastats line; fields the line lacks are ``None`` (or empty)."""

    time: datetime | None = None
    ram_used_mb: int | None = None
    ram_total_mb: int | None = None
    swap_used_mb: int | None = None
    swap_total_mb: int | None = None
    swap_cached_mb: int | None = None
    cpu: list[CpuCore | None] = field(default_factory=list)  # None: the core is off
    gpu_load_pct: int | None = None
    gpu_freq_mhz: list[int] = field(default_factory=list)
    rails: dict[str, Rail] = field(default_factory=dict)


def parse_line(line: str) -> TegraSample:
    """Parse one tegrastats line.

    Raises
    ------
    ValueError
        When the line has neither a RAM field nor a power rail (not a tegrastats line).
    """
    sample = TegraSample()
    if m := _TIME.match(line):
        sample.time = datetime.strptime(m.group(1), "%m-%d-%Y %H:%M:%S")
    if m := _RAM.search(line):
        sample.ram_used_mb, sample.ram_total_mb = int(m.group(1)), int(m.group(2))
    if m := _SWAP.search(line):
        sample.swap_used_mb, sample.swap_total_mb = int(m.group(1)), int(m.group(2))
        sample.swap_cached_mb = int(m.group(3)) if m.group(3) is not None else None
    if m := _CPU.search(line):
        shared = int(m.group(2)) if m.group(2) else None
        for token in m.group(1).split(","):
            token = token.strip()
            core = _CORE.fullmatch(token)
            if token == "off" or core is None:
                sample.cpu.append(None)
            else:
                freq = int(core.group(2)) if core.group(2) else shared
                sample.cpu.append(CpuCore(int(core.group(1)), freq))
    if m := _GR3D.search(line):
        sample.gpu_load_pct = int(m.group(1))
        sample.gpu_freq_mhz = [int(f) for f in m.group(2).split(",") if f] if m.group(2) else []
    for m in _RAIL.finditer(line):
        name, now, avg, peak = m.groups()
        if name == "NC":  # an unconnected monitor channel, listed on some AGX Orin carriers
            continue
        sample.rails[name] = Rail(float(now), float(avg), float(peak) if peak else None)
    if sample.ram_used_mb is None and not sample.rails:
        raise ValueError(f"not a tegrastats line: {line.strip()[:80]!r}")
    return sample


def total_power_mw(sample: TegraSample) -> tuple[float, str] | None:
    """Instantaneous total power (mW) of a sample and what it measures, or None without rails.

    The module input rail when present (``VDD_IN``, ``POM_5V_IN``); otherwise the sum of every
    rail, labelled ``"sum of A+B+C"``.
    """
    for name in INPUT_RAILS:
        if name in sample.rails:
            return sample.rails[name].now_mw, name
    if not sample.rails:
        return None
    names = list(sample.rails)
    return float(sum(sample.rails[n].now_mw for n in names)), "sum of " + "+".join(names)


def summarise_power(samples: list[TegraSample], *, images: int, seconds: float) -> dict:
    """Average and peak power (W) and energy per image (mJ) over the samples of a timed run.

    Parameters
    ----------
    samples : list of TegraSample
        The lines tegrastats printed while the run was timed.
    images : int
        Images inferred in the timed run (iterations x batch size).
    seconds : float
        Wall time of the timed run.

    Returns
    -------
    dict
        ``samples``, ``measured`` (the rail or the rails summed), ``avg_w``, ``peak_w``,
        ``energy_per_image_mj``, ``rails_avg_mw`` (each rail's mean), ``gpu_load_pct_avg`` and
        ``ram_used_mb_peak``; power fields are None, with a ``note``, when no line had rails.
    """
    readings = [r for r in (total_power_mw(s) for s in samples) if r is not None]
    gpu = [s.gpu_load_pct for s in samples if s.gpu_load_pct is not None]
    ram = [s.ram_used_mb for s in samples if s.ram_used_mb is not None]
    out: dict = {
        "samples": len(samples),
        "measured": None,
        "avg_w": None,
        "peak_w": None,
        "energy_per_image_mj": None,
        "rails_avg_mw": {},
        "gpu_load_pct_avg": float(np.mean(gpu)) if gpu else None,
        "ram_used_mb_peak": max(ram) if ram else None,
    }
    if not readings:
        out["note"] = (
            "tegrastats printed no power rails"
            if samples
            else "no tegrastats line arrived during the run; lengthen it (--duration) "
            "or shorten --tegrastats-interval"
        )
        return out
    mw = np.array([r[0] for r in readings])
    out["measured"] = readings[-1][1]
    out["avg_w"] = float(mw.mean() / 1000)
    out["peak_w"] = float(mw.max() / 1000)
    out["energy_per_image_mj"] = out["avg_w"] * seconds / images * 1000 if images else None
    names = sorted({n for s in samples for n in s.rails})
    out["rails_avg_mw"] = {
        n: float(np.mean([s.rails[n].now_mw for s in samples if n in s.rails])) for n in names
    }
    return out


def find_tegrastats() -> str:
    """Path of the tegrastats executable, or an EdgeKDError saying it is not there."""
    for candidate in (shutil.which("tegrastats"), "/usr/bin/tegrastats"):
        if candidate and Path(candidate).is_file():
            return candidate
    raise EdgeKDError(
        "--tegrastats: tegrastats not found on PATH; it comes with Jetson Linux "
        "(L4T), so power can only be sampled on a Jetson"
    )


class TegrastatsSampler:
    """Runs ``tegrastats --interval N`` while a ``with`` block runs and keeps its parsed lines.

    Parameters
    ----------
    interval_ms : int
        Sampling interval handed to tegrastats (default 100 ms).
    executable : str, optional
        Path of tegrastats (default: found on PATH, see :func:`find_tegrastats`).

    Examples
    --------
    >>> with TegrastatsSampler(interval_ms=100) as sampler:  # doctest: +SKIP
    ...     run_timed_loop()
    >>> summarise_power(sampler.samples, images=800, seconds=4.2)  # doctest: +SKIP
    """

    def __init__(self, *, interval_ms: int = 100, executable: str | None = None) -> None:
        if interval_ms < 1:
            raise EdgeKDError(f"--tegrastats-interval: {interval_ms} ms; must be a positive integer")
        self.executable = executable or find_tegrastats()
        self.interval_ms = interval_ms
        self.samples: list[TegraSample] = []
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> TegrastatsSampler:
        self.samples = []
        self._proc = subprocess.Popen(
            [self.executable, "--interval", str(self.interval_ms)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                self.samples.append(parse_line(line))
            except ValueError:
                continue

    def __exit__(self, *exc) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=2)
        self._proc = None
