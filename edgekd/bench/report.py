"""The lines printed under the bench table: device, runtime, memory, power and on-device metrics."""

from __future__ import annotations

from edgekd.fairness.metric_table import METRICS

__all__ = ["describe_result"]


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _w(value) -> str:
    return "?" if value is None else f"{value:.2f} W"


def _mj(value) -> str:
    return "?" if value is None else f"{value:.2f} mJ/image"


def describe_result(result: dict) -> list[str]:
    """A few readable lines about where and how a bench result was measured. A result read
    from a file may lack the machine's details (``?`` where one is missing): only the fields the
    card needs are required (:func:`edgekd.bench.card_update.check_result`)."""
    device = result.get("device") or {}
    cpu = device.get("cpu") or {}
    where = (
        f"device: {device.get('id', '?')} ({cpu.get('model', '?')}, {cpu.get('usable_cores', '?')} "
        f"of {cpu.get('logical_cores', '?')} cores, {device.get('os', '?')})"
    )
    lines = [where]
    jetson = device.get("jetson")
    if isinstance(jetson, dict):
        clocks = {True: "locked", False: "not locked"}.get(jetson.get("clocks_locked"), "?")
        lines.append(
            f"jetson: {jetson.get('model', '?')}, L4T {jetson.get('l4t') or '?'}, JetPack "
            f"{jetson.get('jetpack') or '?'}, power mode {jetson.get('power_mode') or '?'}, "
            f"clocks {clocks}"
        )
    for gpu in device.get("gpus") or []:
        lines.append(
            f"gpu: {gpu.get('name', '?')}, {gpu.get('memory_total_mb', '?')} MB, driver "
            f"{gpu.get('driver', '?')}"
        )
    runtime = result.get("runtime") or {}
    text = f"runtime: {runtime.get('name')} {runtime.get('version') or ''}".rstrip()
    if runtime.get("providers"):
        text += f" [{', '.join(map(str, runtime['providers']))}]"
    if runtime.get("threads"):
        text += f", {runtime['threads']} thread{'s' if runtime['threads'] != 1 else ''}"
    lines.append(text + f"; session created in {_ms(result.get('session_s'))}")
    for r in result.get("results") or []:
        power = r.get("power")
        if power and power.get("avg_w") is not None:
            lines.append(
                f"power, batch {r['batch']}: {power['avg_w']:.2f} W average, "
                f"{_w(power.get('peak_w'))} peak, {_mj(power.get('energy_per_image_mj'))} "
                f"({power.get('measured', '?')}, {power.get('samples', '?')} samples)"
            )
        elif power:
            lines.append(f"power, batch {r['batch']}: {power.get('note', 'not measured')}")
    ev = result.get("eval")
    if ev:
        parts = []
        for metric in METRICS.values():
            value = metric.read(ev)
            if value is None:
                continue
            part = f"{metric.title} {value:.4f}"
            if (
                metric.key == "top1"
                and ev.get("build_top1") is not None
                and ev.get("top1_change_vs_build") is not None
            ):
                part += f" (build: {ev['build_top1']:.4f}, change {ev['top1_change_vs_build']:+.4f})"
            parts.append(part)
        lines.append(f"eval on device ({ev.get('n', '?')} images): " + ", ".join(parts))
    return lines
