"""Accuracy and group-fairness metrics (numpy and fairlearn; no torch)."""

from edgekd.fairness.metrics import evaluate_predictions, group_recalls, headline, per_class_disparity

__all__ = ["evaluate_predictions", "group_recalls", "headline", "per_class_disparity"]
