"""Run by tests/test_integrity.py: an ``edgekd`` command that SIGKILLs itself at one write of a
bundle transaction.

    python kill_in_transaction.py AT -- EDGEKD ARGS...

AT names the write: ``replace:<suffix>`` (the first ``os.replace`` onto a path ending in
<suffix>, e.g. ``card.json`` inside the staged copy, or ``.tar.gz``), ``exchange`` (the swap of
the staged copy and the bundle) or ``journal`` (right after the journal is written). The kill
comes before that write happens, as a power cut would: nothing after it runs, no cleanup.
"""

import os
import signal
import sys

import edgekd.bundle.transaction as transaction
from edgekd.cli import main

at, args = sys.argv[1], sys.argv[3:]


def die() -> None:
    print(f"killing myself at {at}", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


if at.startswith("replace:"):
    suffix, replace = at.split(":", 1)[1], os.replace

    def killing_replace(src, dst, *a, **k):
        if (
            str(dst).endswith(suffix)
            and ".edgekd-next" in str(dst) + str(src)
            or (suffix.endswith(".tar.gz") and str(dst).endswith(suffix))
        ):
            die()
        return replace(src, dst, *a, **k)

    os.replace = killing_replace
elif at == "exchange":
    transaction._exchange = lambda a, b: die()
elif at == "journal":
    step = transaction._step

    def killing_step(name: str) -> None:
        if name == "journal":
            die()
        step(name)

    transaction._step = killing_step

main(args)
