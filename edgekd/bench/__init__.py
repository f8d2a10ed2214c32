"""``edgekd bench``: latency, throughput, memory and power of an artifact on the device (no torch).

Modules, one job each: ``runner`` (options, backend choice, the result), ``timing`` (the timed
loop), ``stats`` (percentiles), ``backends`` (the backend table: onnxruntime, TensorRT engine,
torch loaders), ``trtexec`` (run and parse NVIDIA's trtexec), ``tegrastats`` (parse and sample
Jetson power), ``device`` (what machine this is), ``target`` (bundle or model file),
``evaluate`` (on-device accuracy and fairness), ``card_update`` (merge a result into a bundle's
card) and ``report`` (the lines printed under the table; the table rows live in
:mod:`edgekd.card.bench`).

The package is also the API's ``bench`` function: ``from edgekd import bench;
bench("runs/quickstart/bundle", batch_sizes="1,8")`` calls :func:`run_bench` (a module named
``bench`` and a function named ``bench`` cannot both be attributes of ``edgekd``, so the module
answers the call).
"""

import sys
import types

from edgekd.bench.card_update import update_card
from edgekd.bench.runner import BENCH_SCHEMA, parse_batch_sizes, run_bench

__all__ = ["BENCH_SCHEMA", "parse_batch_sizes", "run_bench", "update_card"]


class _CallableModule(types.ModuleType):
    def __call__(self, target, **options):
        """:func:`run_bench`."""
        return run_bench(target, **options)


sys.modules[__name__].__class__ = _CallableModule
