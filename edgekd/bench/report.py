"""The lines printed under the bench table: device, runtime, memory, power and on-device metrics."""

from __future__ import annotations

from edgekd.fairness.metric_table import METRICS

__all__ = ["describe_result"]


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def describe_result(result: dict) -> list[str]:
    """A few readable lines about where and how a bench result was measured."""
    device = result["device"]
    cpu = device["cpu"]
    where = f"device: {device['id']} ({cpu['model']}, {cpu['usable_cores']} of {cpu['logical_cores']} " \
            f"cores, {device['os']})"
    lines = [where]
    jetson = device.get("jetson")
    if jetson:
        clocks = {True: "locked", False: "not locked", None: "?"}[jetson["clocks_locked"]]
        lines.append(f"jetson: {jetson['model']}, L4T {jetson['l4t'] or '?'}, JetPack "
                     f"{jetson['jetpack'] or '?'}, power mode {jetson['power_mode'] or '?'}, "
                     f"clocks {clocks}")
    for gpu in device.get("gpus") or []:
        lines.append(f"gpu: {gpu['name']}, {gpu['memory_total_mb']} MB, driver {gpu['driver']}")
    runtime = result["runtime"]
    text = f"runtime: {runtime.get('name')} {runtime.get('version') or ''}".rstrip()
    if runtime.get("providers"):
        text += f" [{', '.join(runtime['providers'])}]"
    if runtime.get("threads"):
        text += f", {runtime['threads']} thread{'s' if runtime['threads'] != 1 else ''}"
    lines.append(text + f"; session created in {_ms(result['session_s'])}")
    for r in result["results"]:
        power = r.get("power")
        if power and power.get("avg_w") is not None:
            lines.append(f"power, batch {r['batch']}: {power['avg_w']:.2f} W average, "
                         f"{power['peak_w']:.2f} W peak, {power['energy_per_image_mj']:.2f} mJ/image "
                         f"({power['measured']}, {power['samples']} samples)")
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
            if metric.key == "top1" and ev.get("build_top1") is not None:
                part += f" (build: {ev['build_top1']:.4f}, change {ev['top1_change_vs_build']:+.4f})"
            parts.append(part)
        lines.append(f"eval on device ({ev['n']} images): " + ", ".join(parts))
    return lines
