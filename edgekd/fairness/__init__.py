"""Accuracy and group-fairness metrics (no torch).

:mod:`.metric_table` declares the headline metrics once; :mod:`.counts` reduces an evaluation
to (class, group) counts; :mod:`.metrics` computes the card's whole metric set from them with
numpy alone (the one engine: card, bench, sweep, bootstrap); :mod:`.reference` computes the same
through fairlearn, the independent check; :mod:`.bootstrap` and :mod:`.significance` add
intervals and tests. Nothing is imported here, so the device side can take the numpy-only parts without
fairlearn's stack.
"""
