"""``edgekd bench``: latency, throughput, memory and power of an artifact on the device (no torch).

Modules, one job each: ``runner`` (options, backend choice, the result), ``timing`` (the timed
loop), ``stats`` (percentiles), ``backends`` (onnxruntime, TensorRT engine, torch loaders),
``trtexec`` (run and parse NVIDIA's trtexec), ``tegrastats`` (parse and sample Jetson power),
``device`` (what machine this is), ``target`` (bundle or model file), ``evaluate`` (on-device
accuracy and fairness), ``card_update`` (merge a result into a bundle's card) and ``report``
(the lines printed under the table; the table rows live in :mod:`edgekd.card.bench`).
"""

from edgekd.bench.card_update import update_card
from edgekd.bench.runner import BENCH_SCHEMA, parse_batch_sizes, run_bench

__all__ = ["BENCH_SCHEMA", "parse_batch_sizes", "run_bench", "update_card"]
