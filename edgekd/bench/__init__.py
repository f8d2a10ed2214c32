"""``edgekd bench``: latency, throughput, memory and power of an artifact on the device (no torch).

Modules, one job each: ``runner`` (options, backend choice, the result: :func:`run_bench
<edgekd.bench.runner.run_bench>`), ``timing`` (the timed loop), ``stats`` (percentiles),
``backends`` (the backend table: onnxruntime, TensorRT engine, torch loaders), ``trtexec`` (run
and parse NVIDIA's trtexec), ``tegrastats`` (parse and sample Jetson power), ``device`` (what
machine this is), ``target`` (bundle or model file), ``evaluate`` (on-device accuracy and
fairness), ``card_update`` (merge a result into a bundle's card), ``all_artifacts`` (``bench
--all``), ``engine`` (``edgekd engine``) and ``report`` (the lines printed under the table; the
table rows live in :mod:`edgekd.card.bench`).

This file imports nothing: ``import edgekd`` imports it (see :mod:`edgekd`, whose ``bench`` is
the API's function), so import the modules by path::

    from edgekd.bench.runner import run_bench
    from edgekd.bench.card_update import update_card
"""
