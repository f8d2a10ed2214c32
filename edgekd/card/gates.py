"""Release gates: thresholds from the recipe's ``card.gates``, checked on every shipped model.

A gate applies to the distilled student and to every exported artifact (what can ship); the
teacher and the baseline are references, not releases. Drift gates (agreement with the torch
student, top-1 drop against it) apply to exported artifacts only. Each evaluated gate is one
entry ``{name, artifact, metric, threshold, comparison, value, passed}``; a gate whose value is
undefined (no class with support in every group) fails, since a release cannot show it holds.
"""

from __future__ import annotations

from edgekd.errors import EdgeKDError

__all__ = ["GATE_METRICS", "evaluate_gates", "failed_gates", "describe_gate"]

# gate name -> (what it measures, comparison, how to read the value from a model entry)
GATE_METRICS = {
    "min_top1": ("top-1 accuracy", ">=", lambda m, card: m["metrics"]["top1"]),
    "max_mean_abs_disparity": ("mean |per-class recall disparity|", "<=",
                               lambda m, card: m["metrics"]["mean_abs_disparity"]),
    "max_dpd": ("mean demographic parity difference", "<=", lambda m, card: m["metrics"]["dpd"]["mean"]),
    "max_eod": ("mean equalized odds difference", "<=", lambda m, card: m["metrics"]["eod"]["mean"]),
    "max_disparity_increase_vs_teacher": (
        "mean |disparity| minus the teacher's", "<=",
        lambda m, card: _minus(m["metrics"]["mean_abs_disparity"],
                               card["models"]["teacher"]["metrics"]["mean_abs_disparity"])),
}
DRIFT_METRICS = {
    "min_agreement_vs_student": ("prediction agreement with the torch student", ">=",
                                 lambda m, card: m["vs_student"]["prediction_agreement"]),
    "max_top1_drop_vs_student": ("top-1 drop against the torch student", "<=",
                                 lambda m, card: _minus(0.0, m["vs_student"]["top1_change"])),
}


def _minus(a, b):
    return None if a is None or b is None else float(a) - float(b)


def evaluate_gates(card: dict, gates_cfg: dict) -> list[dict]:
    """Every configured gate on every shipped model of ``card``.

    Parameters
    ----------
    card : dict
        A card with ``models`` (each with ``metrics``; exported artifacts with ``vs_student``).
    gates_cfg : dict
        Gate name -> threshold, or ``None`` for off (``recipe.card.gates.model_dump()``).

    Returns
    -------
    list of dict
        ``{name, artifact, metric, threshold, comparison, value, passed}`` per gate and shipped
        model (distilled student and exported artifacts, in card order).
    """
    known = {**GATE_METRICS, **DRIFT_METRICS}
    for gate in gates_cfg:
        if gate not in known:
            raise EdgeKDError(f"card.gates.{gate}: unknown gate; allowed: {', '.join(known)}")
    results = []
    shipped = [name for name, entry in card["models"].items()
               if name == "student" or entry.get("kind") != "torch"]
    for name in shipped:
        entry = card["models"][name]
        table = dict(GATE_METRICS)
        if entry.get("kind") != "torch":
            table.update(DRIFT_METRICS)
        for gate, (metric, comparison, read) in table.items():
            threshold = gates_cfg.get(gate)
            if threshold is None:
                continue
            value = read(entry, card)
            passed = value is not None and (value >= threshold if comparison == ">=" else value <= threshold)
            results.append({"name": gate, "artifact": name, "metric": metric, "threshold": threshold,
                            "comparison": comparison, "value": value, "passed": bool(passed)})
    return results


def failed_gates(card: dict) -> list[dict]:
    return [g for g in card.get("gates", []) if not g["passed"]]


def describe_gate(gate: dict) -> str:
    """One line for a failed gate: name, artifact, value and threshold."""
    value = "undefined" if gate["value"] is None else f"{gate['value']:.4f}"
    return (f"gate failed: {gate['name']} on {gate['artifact']}: {gate['metric']} is {value}, "
            f"needs {gate['comparison']} {gate['threshold']}")
