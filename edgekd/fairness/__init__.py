"""Accuracy and group-fairness metrics (no torch).

:mod:`.metric_table` declares the headline metrics once; :mod:`.counts` computes them from
(class, group) counts with numpy alone (bootstrap, device); :mod:`.metrics` computes the card's
full per-class set through fairlearn; :mod:`.bootstrap` and :mod:`.significance` add intervals
and tests. Nothing is imported here, so the device side can take the numpy-only parts without
fairlearn's stack.
"""
