"""Run by tests/test_faults.py: a build of RECIPE into OUT that is killed inside STAGE.

    python kill_in_stage.py STAGE SIGNAL RECIPE OUT [WAIT_FILE]

STAGE is teacher, baseline or student (killed after their first epoch), teacher_outputs (after
the second split's teacher outputs are computed), export (after model.onnx is written, before
the stage is done), bundle (while the bundle is assembled in .bundle.tmp), tarball (halfway
through the tarball's temporary file) or none. SIGNAL is KILL, INT or TERM, sent by the process
to itself. With WAIT_FILE, the build writes WAIT_FILE + ".ready" after the teacher's first
epoch and waits there until WAIT_FILE exists (tests run a second command meanwhile).
"""

import os
import signal
import sys
import time
from pathlib import Path

import edgekd.bundle.write as bundle_write
import edgekd.export.onnx as onnx_export
import edgekd.train.teacher_outputs as teacher_outputs
from edgekd.pipeline import build

stage, sig, recipe, out = sys.argv[1:5]
wait_file = Path(sys.argv[5]) if len(sys.argv) > 5 else None
SIGNAL = {"KILL": signal.SIGKILL, "INT": signal.SIGINT, "TERM": signal.SIGTERM}[sig]


def die() -> None:
    print(f"killing myself in {stage} with SIG{sig}", flush=True)
    os.kill(os.getpid(), SIGNAL)
    time.sleep(30)  # SIGINT arrives as KeyboardInterrupt in the main thread during this sleep
    raise SystemExit("the signal did not stop the build")


def on_epoch_end(name: str, epoch: int, record: dict) -> None:
    if wait_file is not None and name == "teacher" and epoch == 1:
        Path(f"{wait_file}.ready").write_text(str(os.getpid()))
        while not wait_file.exists():
            time.sleep(0.05)
    if name == stage and epoch == 1:
        die()


if stage == "teacher_outputs":
    calls = []
    forward = teacher_outputs.teacher_forward

    def killing_forward(*args, **kwargs):
        result = forward(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            die()
        return result

    teacher_outputs.teacher_forward = killing_forward
elif stage == "export":
    export = onnx_export.export_onnx

    def killing_export(*args, **kwargs):
        export(*args, **kwargs)
        die()

    onnx_export.export_onnx = killing_export
elif stage == "bundle":

    def killing_manifest(*args, **kwargs):
        die()

    bundle_write.write_manifest = killing_manifest
elif stage == "tarball":

    def killing_tarball(bundle: Path, path: Path, root: str) -> None:
        path.with_name(f".{path.name}.tmp").write_bytes(b"\x1f\x8b half a tarball")
        die()

    bundle_write.write_tarball = killing_tarball

if __name__ == "__main__":
    build(recipe, out=out, log=print, on_epoch_end=on_epoch_end)
