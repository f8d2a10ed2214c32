"""Release gates: thresholds from the recipe's ``card.gates``, checked on every releasable model.

A gate applies to the distilled student and to every exported artifact (what can ship); the
teacher and the baseline are references, not releases. The metric gates come from the metric
table (:mod:`edgekd.fairness.metric_table`: each metric with a ``gate``); the others compare with
a reference: the student's mean |disparity| against the teacher's, and for exported artifacts
only, agreement with and top-1 drop against the torch student, overall and where it is worst:
the (class, group) cell and the group that agree least with the student, and the group whose
accuracy dropped most (``vs_student``'s summary, :func:`edgekd.card.evaluation.worst_agreement`;
these three are on by default, :data:`GATE_DEFAULTS`). Each evaluated gate is one entry
``{name, artifact, metric, threshold, comparison, value, passed}``; a gate whose value is
undefined (no class with support in every group) fails, since a release cannot show it holds.

Two gates take their threshold from the export section rather than ``card.gates``
(:func:`int8_gates`): ``int8_min_agreement``, each INT8 file's agreement with fp32 on the
validation images against ``export.int8.min_agreement``, and ``int8_min_cell_agreement``, the
agreement of its worst (class, group) cell there against ``export.int8.min_cell_agreement``,
read from the file's ``export`` entry on the card. With ``export.int8.on_miss: warn`` a miss is
kept on the card with ``on_miss: warn``: it does not pass, but it does not fail the release either
(:func:`failed_gates` leaves it out, :func:`warned_gates` lists it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import Field, create_model

from edgekd.config import Section
from edgekd.errors import EdgeKDError
from edgekd.fairness.metric_table import difference, gated_metrics

__all__ = [
    "Gate",
    "gate_table",
    "GatesConfig",
    "evaluate_gates",
    "int8_gates",
    "failed_gates",
    "warned_gates",
    "describe_gate",
    "INT8_GATE",
    "INT8_CELL_GATE",
    "GATE_DEFAULTS",
]

INT8_GATE = "int8_min_agreement"
INT8_CELL_GATE = "int8_min_cell_agreement"

# The worst-place gates are on unless a recipe turns them off (null). Each default passes the
# quickstart's healthy artifacts with room for a retrained student's noise (their measured values
# are in the descriptions below) and fails a cell that loses 15 of its 100 predictions, or a group
# whose accuracy drops by more than 3 points (a fifth of one of its four cells going wrong).
GATE_DEFAULTS = {
    "min_cell_agreement_vs_student": 0.85,
    "min_group_agreement_vs_student": 0.95,
    "max_group_recall_drop_vs_student": 0.03,
}


@dataclass(frozen=True)
class Gate:
    """One kind of gate: what it measures, how it compares, how it reads the value of a model
    entry of the card (``read(entry, card)``), and whether it applies to exported artifacts only."""

    name: str
    metric: str
    comparison: str
    read: Callable[[dict, dict], float | None]
    artifacts_only: bool = False


def _metric_gate(metric) -> Gate:
    return Gate(
        metric.gate, metric.description, metric.comparison, lambda entry, card: metric.read(entry["metrics"])
    )


_REFERENCE_GATES = (
    Gate(
        "max_disparity_increase_vs_teacher",
        "mean |disparity| minus the teacher's",
        "<=",
        lambda entry, card: difference(
            entry["metrics"]["mean_abs_disparity"], card["models"]["teacher"]["metrics"]["mean_abs_disparity"]
        ),
    ),
    Gate(
        "min_agreement_vs_student",
        "prediction agreement with the torch student",
        ">=",
        lambda entry, card: entry["vs_student"]["prediction_agreement"],
        artifacts_only=True,
    ),
    Gate(
        "max_top1_drop_vs_student",
        "top-1 drop against the torch student",
        "<=",
        lambda entry, card: difference(0.0, entry["vs_student"]["top1_change"]),
        artifacts_only=True,
    ),
    Gate(
        "min_cell_agreement_vs_student",
        "prediction agreement with the torch student in its worst (class, group) cell",
        ">=",
        lambda entry, card: _worst(entry, "worst_cell_agreement", "agreement"),
        artifacts_only=True,
    ),
    Gate(
        "min_group_agreement_vs_student",
        "prediction agreement with the torch student in its worst group",
        ">=",
        lambda entry, card: _worst(entry, "worst_group_agreement", "agreement"),
        artifacts_only=True,
    ),
    Gate(
        "max_group_recall_drop_vs_student",
        "accuracy lost against the torch student in the group that lost most",
        "<=",
        lambda entry, card: difference(0.0, _worst(entry, "worst_group_accuracy_change", "accuracy_change")),
        artifacts_only=True,
    ),
)
_DESCRIPTIONS = {
    "min_agreement_vs_student": "exported artifacts: argmax agreement with the torch student",
    "max_top1_drop_vs_student": "exported artifacts: top-1 lost against the torch student",
    "min_cell_agreement_vs_student": "exported artifacts: argmax agreement with the torch student in "
    "the (class, group) cell of at least card.min_support test images "
    "where it is lowest (default 0.85; quickstart: 0.94 INT8 CPU, "
    "0.96 INT8 TensorRT form, 1.0 fp16)",
    "min_group_agreement_vs_student": "exported artifacts: argmax agreement with the torch student in "
    "the group where it is lowest (default 0.95; quickstart: "
    "0.9775 INT8 CPU, 0.9875 INT8 TensorRT form, 1.0 fp16)",
    "max_group_recall_drop_vs_student": "exported artifacts: accuracy (the recall of all its classes) "
    "lost against the torch student in the group that lost most "
    "(default 0.03; quickstart: 0.0125 INT8 CPU, 0.0075 INT8 "
    "TensorRT form, 0 fp16)",
}


def _worst(entry: dict, key: str, field: str) -> float | None:
    """A field of ``vs_student``'s worst-place summary; None (the gate fails: it cannot show it
    holds) when the entry has none."""
    worst = (entry.get("vs_student") or {}).get(key)
    return worst.get(field) if isinstance(worst, dict) else None


def gate_table() -> dict[str, Gate]:
    """Every gate by name: one per gated metric of the table, then the reference gates."""
    return {**{m.gate: _metric_gate(m) for m in gated_metrics()}, **{g.name: g for g in _REFERENCE_GATES}}


GatesConfig = create_model(
    "GatesConfig",
    __base__=Section,
    __doc__="``card.gates``: release thresholds on the student and every exported artifact (off "
    "when unset). A failed gate makes ``edgekd build`` and ``edgekd card --check`` exit 1.",
    **{
        name: (
            float | None,
            Field(
                GATE_DEFAULTS.get(name),
                ge=-1.0 if name == "max_disparity_increase_vs_teacher" else 0.0,
                le=1.0,
                description=_DESCRIPTIONS.get(name),
            ),
        )
        for name in gate_table()
    },
)


def evaluate_gates(card: dict, gates_cfg: dict) -> list[dict]:
    """Every configured gate on every releasable model of ``card``.

    Parameters
    ----------
    card : dict
        A card with ``models`` (each with ``metrics``; exported artifacts with ``vs_student``).
    gates_cfg : dict
        Gate name -> threshold, or ``None`` for off (``recipe.card.gates.model_dump()``).

    Returns
    -------
    list of dict
        ``{name, artifact, metric, threshold, comparison, value, passed}`` per gate and releasable
        model (distilled student and exported artifacts, in card order), then
        :func:`int8_gates`.
    """
    gates = gate_table()
    for name in gates_cfg:
        if name not in gates:
            raise EdgeKDError(f"card.gates.{name}: unknown gate; allowed: {', '.join(gates)}")
    results = []
    releasable = [
        name for name, entry in card["models"].items() if name == "student" or entry.get("kind") != "torch"
    ]
    for name in releasable:
        entry = card["models"][name]
        for gate in gates.values():
            threshold = gates_cfg.get(gate.name)
            if threshold is None or (gate.artifacts_only and entry.get("kind") == "torch"):
                continue
            value = gate.read(entry, card)
            passed = value is not None and (
                value >= threshold if gate.comparison == ">=" else value <= threshold
            )
            results.append(
                {
                    "name": gate.name,
                    "artifact": name,
                    "metric": gate.metric,
                    "threshold": threshold,
                    "comparison": gate.comparison,
                    "value": value,
                    "passed": bool(passed),
                }
            )
    return results + int8_gates({**card, "models": {n: card["models"][n] for n in releasable}})


def int8_gates(card: dict) -> list[dict]:
    """The INT8 search's bounds as gates, for every INT8 file on ``card``: ``int8_min_agreement``
    (the shipped file's ``export.agreement_with_fp32_on_validation`` against its
    ``export.min_agreement``) and, on cards that record a measured cell (none has the images:
    nothing to bound, as in the search), ``int8_min_cell_agreement`` (its
    ``export.worst_cell_on_validation`` agreement against ``export.min_cell_agreement``), both
    ``>=``, with ``on_miss: warn`` when ``export.on_miss`` is ``warn``, and on a miss the line
    saying which try shipped and why (``export.shipped.reason``) as ``detail``. Read from the card
    alone, so a card's gate can be checked against its models."""
    gates = []
    for name, entry in card["models"].items():
        export = entry.get("export")
        if (
            not isinstance(export, dict)
            or "min_agreement" not in export
            or "agreement_with_fp32_on_validation" not in export
        ):
            continue
        reason = (export.get("shipped") or {}).get("reason")
        checks = [
            (
                INT8_GATE,
                "INT8 argmax agreement with fp32 on the validation images (cell-weighted)",
                export["agreement_with_fp32_on_validation"],
                export["min_agreement"],
            )
        ]
        worst = export.get("worst_cell_on_validation")
        if "min_cell_agreement" in export and isinstance(worst, dict):
            checks.append(
                (
                    INT8_CELL_GATE,
                    "INT8 argmax agreement with fp32 in the worst (class, group) "
                    "cell of the validation images",
                    worst.get("agreement"),
                    export["min_cell_agreement"],
                )
            )
        for gate, metric, value, threshold in checks:
            passed = value is not None and value >= threshold
            gates.append(
                {
                    "name": gate,
                    "artifact": name,
                    "metric": metric,
                    "threshold": threshold,
                    "comparison": ">=",
                    "value": value,
                    "passed": bool(passed),
                    **({"on_miss": "warn"} if export.get("on_miss") == "warn" else {}),
                    **({"detail": f"shipped: {reason}"} if reason and not passed else {}),
                }
            )
    return gates


def failed_gates(card: dict) -> list[dict]:
    """The gates that did not pass and fail the release (a miss marked ``on_miss: warn`` does not)."""
    return [g for g in card.get("gates", []) if not g["passed"] and g.get("on_miss") != "warn"]


def warned_gates(card: dict) -> list[dict]:
    """The gates that did not pass but only warn (``on_miss: warn``)."""
    return [g for g in card.get("gates", []) if not g["passed"] and g.get("on_miss") == "warn"]


def describe_gate(gate: dict) -> str:
    """One line for a failed (or warning) gate: name, artifact, value and threshold."""
    value = "undefined" if gate["value"] is None else f"{gate['value']:.4f}"
    head = (
        "gate warning (on_miss: warn)"
        if gate.get("on_miss") == "warn" and not gate["passed"]
        else "gate failed"
    )
    return (
        f"{head}: {gate['name']} on {gate['artifact']}: {gate['metric']} is {value}, "
        f"needs {gate['comparison']} {gate['threshold']}"
        + (f" ({gate['detail']})" if gate.get("detail") else "")
    )
