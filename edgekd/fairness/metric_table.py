"""The card's headline metrics, each declared once.

Every place that shows or checks a headline metric reads this table: the card's Markdown and its
Hugging Face front matter, the terminal summary of ``edgekd build``, the sweep's CSV, table and
plots, the release gates (and the recipe's ``card.gates`` keys), the bootstrap intervals and the
lines ``edgekd bench --eval`` prints. Adding a metric is one :class:`Metric` here (or a
:func:`register_metric` call anywhere) plus its function of :class:`~edgekd.fairness.counts.CellCounts`::

    register_metric(Metric(key="worst_cell_recall", label="worst cell", title="worst-cell recall",
                           description="recall of the worst (class, group) cell",
                           higher_is_better=True, from_counts=worst_cell_recall))

Numpy only (no fairlearn, no pandas): the device side imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edgekd.fairness.counts import CellCounts, mean_abs_disparity, mean_dpd, mean_eod, top1
from edgekd.registry import Registry

__all__ = ["Metric", "METRICS", "register_metric", "gated_metrics", "headline", "difference"]


@dataclass(frozen=True)
class Metric:
    """One headline metric of a model or artifact.

    Parameters
    ----------
    key : str
        Its name in a summary row, the sweep CSV and the bootstrap intervals (``top1``).
    label, title, description : str
        Short column header (terminal), card column header, and the noun a sentence uses
        (gates, front matter): ``top-1``, ``top-1``, ``top-1 accuracy``.
    higher_is_better : bool
        The direction of better; it sets a gate's comparison (``>=`` a minimum, ``<=`` a maximum).
    from_counts : callable
        The value from one evaluation's (class, group) counts, or ``None`` where undefined.
    path : tuple of str, optional
        Where :func:`~edgekd.fairness.metrics.evaluate_predictions` puts the value in an
        evaluation's metrics (``("dpd", "mean")``). ``None`` (metrics added later): it is computed
        from counts and stored under ``key``.
    interval : bool
        Whether the card gives it a bootstrap confidence interval.
    gate : str, optional
        The release gate on it (``min_top1``); its threshold is ``card.gates.<gate>``.
    hub_type : str, optional
        Its ``type`` in the card's model-index front matter (default: ``key``).
    """

    key: str
    label: str
    title: str
    description: str
    higher_is_better: bool
    from_counts: Callable[[CellCounts], float | None]
    path: tuple[str, ...] | None = None
    interval: bool = True
    gate: str | None = None
    hub_type: str | None = None

    @property
    def comparison(self) -> str:
        """How a gate compares the value with its threshold."""
        return ">=" if self.higher_is_better else "<="

    def read(self, metrics: dict) -> float | None:
        """The value from an evaluation's metrics dict (``None`` when it has none)."""
        node = metrics
        for part in self.path or (self.key,):
            if not isinstance(node, dict):
                return None
            node = node.get(part)
        return None if node is None else float(node)


METRICS: Registry[Metric] = Registry("metric")


def register_metric(metric: Metric) -> Metric:
    """Add ``metric`` to the table (after the four below: the card shows them in this order)."""
    return METRICS.add(metric.key, metric)


def gated_metrics() -> list[Metric]:
    """The metrics with a release gate, in table order."""
    return [m for m in METRICS.values() if m.gate]


register_metric(
    Metric(
        key="top1",
        label="top-1",
        title="top-1",
        description="top-1 accuracy",
        higher_is_better=True,
        from_counts=top1,
        path=("top1",),
        gate="min_top1",
        hub_type="accuracy",
    )
)
register_metric(
    Metric(
        key="mean_abs_disparity",
        label="mean |disp|",
        title="mean |disparity|",
        description="mean |per-class recall disparity|",
        higher_is_better=False,
        from_counts=mean_abs_disparity,
        path=("mean_abs_disparity",),
        gate="max_mean_abs_disparity",
        hub_type="mean_abs_recall_disparity",
    )
)
register_metric(
    Metric(
        key="dpd",
        label="DPD",
        title="mean DPD",
        description="mean demographic parity difference",
        higher_is_better=False,
        from_counts=mean_dpd,
        path=("dpd", "mean"),
        gate="max_dpd",
        hub_type="mean_dpd",
    )
)
register_metric(
    Metric(
        key="eod",
        label="EOD",
        title="mean EOD",
        description="mean equalized odds difference",
        higher_is_better=False,
        from_counts=mean_eod,
        path=("eod", "mean"),
        gate="max_eod",
        hub_type="mean_eod",
    )
)


def headline(metrics: dict) -> dict[str, float | None]:
    """Every table metric of one evaluation's metrics dict, by key."""
    return {m.key: m.read(metrics) for m in METRICS.values()}


def difference(after: float | None, before: float | None) -> float | None:
    """``after - before``, or ``None`` when either is undefined."""
    return None if after is None or before is None else float(after) - float(before)
