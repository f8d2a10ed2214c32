"""Faults: a build killed inside any stage resumes to the card of an uninterrupted build, and a
second command on a run folder in use gets the lock's one line and changes nothing.

Each kill runs the tiny recipe in a subprocess (tests/scripts/kill_in_stage.py) that signals
itself inside the stage, then re-runs the same build and compares card.json byte for byte with
the session's uninterrupted ``tiny_build``. One case runs in the default suite; the whole matrix
(every stage, SIGKILL, SIGINT and SIGTERM) is marked slow (``pytest -m slow tests/test_faults.py``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekd.cli import main
from edgekd.pipeline import build

TESTS = Path(__file__).parent
SCRIPT = TESTS / "scripts" / "kill_in_stage.py"
KILLED = {"KILL": -signal.SIGKILL, "TERM": -signal.SIGTERM}


def _env() -> dict:
    root = str(TESTS.parent)
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _killed_build(stage: str, sig: str, out: Path, wait_file: Path | None = None) -> subprocess.Popen:
    args = [sys.executable, str(SCRIPT), stage, sig, str(TESTS / "tiny.yaml"), str(out)]
    if wait_file is not None:
        args.append(str(wait_file))
    return subprocess.Popen(args, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` (size, mtime in ns), but the lock's own files."""
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".edgekd.lock")
    }


def _assert_resumes_to_the_same_card(out: Path, tiny_build) -> None:
    result = build(TESTS / "tiny.yaml", out=out, log=lambda m: None)
    assert (result.bundle_dir / "card.json").read_bytes() == (
        tiny_build.bundle_dir / "card.json"
    ).read_bytes()
    assert not list(out.rglob("*.tmp")) and not (out / "tiny" / ".bundle.tmp").exists()
    ok = CliRunner().invoke(main, ["verify", str(out / "tiny" / "tiny-0.1.0.tar.gz")])
    assert ok.exit_code == 0, ok.output


def test_a_second_build_on_a_busy_folder_gets_one_line_and_a_kill_resumes(tiny_build, tmp_path):
    out, gate = tmp_path / "runs", tmp_path / "go"
    first = _killed_build("student", "KILL", out, wait_file=gate)
    deadline = time.monotonic() + 120
    while not Path(f"{gate}.ready").exists():
        assert first.poll() is None, first.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    before = _snapshot(out)
    second = CliRunner().invoke(main, ["build", str(TESTS / "tiny.yaml"), "--out", str(out)])
    assert second.exit_code == 2
    lines = second.stderr.strip().splitlines()  # stdout: the threads line before the lock
    assert len(lines) == 1, second.output
    assert lines[0].startswith(f"error: {out / 'tiny'}: in use by pid {first.pid} on ")
    assert "kill_in_stage.py" in lines[0] or "edgekd" in lines[0]
    assert _snapshot(out) == before  # the second build touched nothing
    gate.write_text("go")
    output, _ = first.communicate(timeout=300)
    assert first.returncode == KILLED["KILL"], output
    assert "killing myself in student" in output
    _assert_resumes_to_the_same_card(out, tiny_build)  # the dead holder's lock is taken over


@pytest.mark.slow
@pytest.mark.timeout(900)  # a killed build and its resumed build
@pytest.mark.parametrize(
    "stage, sig",
    [
        ("teacher", "KILL"),
        ("baseline", "KILL"),
        ("teacher_outputs", "KILL"),
        ("student", "INT"),
        ("student", "TERM"),
        ("export", "KILL"),
        ("bundle", "KILL"),
        ("tarball", "KILL"),
        ("teacher", "TERM"),
        ("teacher_outputs", "INT"),
        ("export", "INT"),
        ("bundle", "TERM"),
        ("tarball", "INT"),
    ],
)
def test_a_build_killed_inside_a_stage_resumes_to_the_same_card(tiny_build, tmp_path, stage, sig):
    out = tmp_path / "runs"
    killed = _killed_build(stage, sig, out)
    output, _ = killed.communicate(timeout=300)
    assert killed.returncode != 0 and f"killing myself in {stage}" in output, output
    if sig in KILLED:
        assert killed.returncode == KILLED[sig], output
    _assert_resumes_to_the_same_card(out, tiny_build)


def test_a_sweep_on_a_busy_base_run_gets_the_lock_line(tmp_path):
    """A sweep trains its points beside the base run, whose teacher they share: a base run in
    use stops the sweep before anything is written."""
    out = tmp_path / "runs"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from edgekd.lock import run_lock\n"
            "with run_lock(sys.argv[1], command='edgekd build tiny.yaml'):\n"
            "    print('held', flush=True); sys.stdin.read()",
            str(out / "tiny"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = _snapshot(out)
        result = CliRunner().invoke(
            main, ["sweep", str(TESTS / "tiny.yaml"), "--grid", "distill.temperature=2,8", "--out", str(out)]
        )
        assert result.exit_code == 2
        assert (
            result.output.strip()
            .splitlines()[-1]
            .startswith(f"error: {out / 'tiny'}: in use by pid {holder.pid} on ")
        )
        assert "`edgekd build tiny.yaml`" in result.output
        assert _snapshot(out) == before and not (out / "tiny" / "sweep").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_decode_killed_midway_leaves_an_orphan_the_next_load_removes(tmp_path):
    from PIL import Image

    from edgekd.data._images import load_images

    paths = []
    for i in range(4):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (20, 10), (i * 50, 0, 0)).save(paths[-1])
    cache = tmp_path / "cache"
    killed = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, signal, sys\n"
            "from pathlib import Path\n"
            "import edgekd.data._images as images\n"
            "decode, calls = images._decode, []\n"
            "def dying(*args):\n"
            "    calls.append(1)\n"
            "    if len(calls) == 3:\n"
            "        os.kill(os.getpid(), signal.SIGKILL)\n"
            "    return decode(*args)\n"
            "images._decode = dying\n"
            "images.load_images([Path(p) for p in sys.argv[2:]], size=8, cache_dir=Path(sys.argv[1]),"
            " workers=1)\n",
            str(cache),
            *map(str, paths),
        ],
        env=_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    _, stderr = killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL, stderr
    orphans = list(cache.glob(".images-*.npy.*.tmp"))
    assert len(orphans) == 1 and orphans[0].name.endswith(f".{killed.pid}.tmp")
    loaded = load_images(paths, size=8, cache_dir=cache)
    assert not orphans[0].exists() and len(loaded.images) == 4
    assert sorted(p.name for p in cache.iterdir() if p.name.startswith(".")) == []
