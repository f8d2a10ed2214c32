"""Release integrity (issue 27): containment, transactions, signatures that bind the release,
non-finite guards, bounded YAML, special files, escaping, labels and machine faults.

Every case runs on copies of the session's tiny build (``tiny_build``): no test here trains a
model but the two that stop training on its first steps. A case passes when the command gives
its one line (exit 2, or 1 for a failed check) or its correct result, never a traceback, and
writes or reads nothing outside its root (canaries: files whose access time would move).
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from compare import REMOVED, key_paths, mutated, one_line

from edgekd.bundle import verify_report
from edgekd.cli import main
from edgekd.errors import EdgeKDError

TESTS = Path(__file__).parent
KILL_SCRIPT = TESTS / "scripts" / "kill_in_transaction.py"


# ------------------------------------------------------------------------------------ helpers
def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


class Canary:
    """A file outside the root whose access time is in the past: a read would move it."""

    def __init__(self, path: Path, data: bytes = b"canary") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        stat = path.stat()
        os.utime(path, ns=(stat.st_mtime_ns - 10**15, stat.st_mtime_ns))
        self.path, self.data, self.atime = path, data, path.stat().st_atime_ns

    @property
    def untouched(self) -> bool:
        return self.path.stat().st_atime_ns == self.atime and self.path.read_bytes() == self.data


def files_of(folder: Path, *, tarball: bool = True) -> dict[str, bytes]:
    """Every file under ``folder`` (but the lock's own), with or without the tarball (whose
    gzip header holds the time it was written)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
        and not p.name.startswith(".edgekd.lock")
        and (tarball or not p.name.endswith(".tar.gz"))
    }


def leftovers(run: Path) -> list[str]:
    """Anything a transaction leaves beside or inside the bundle when it is done."""
    return sorted(
        p.name
        for p in run.rglob("*")
        if p.name.endswith((".tmp", "-txn.json"))
        or ".edgekd-next" in p.name
        or ".edgekd-old" in p.name
        or p.name == ".bundle.tmp"
    )


def _env() -> dict:
    root = str(TESTS.parent)
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.fixture(scope="module")
def template(tiny_build, tmp_path_factory) -> Path:
    """The tiny build's run folder without its stages: bundle and tarball."""
    target = tmp_path_factory.mktemp("template") / "run"
    shutil.copytree(tiny_build.run_dir, target, ignore=shutil.ignore_patterns("stages", "seeds"))
    return target


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> tuple[Path, Path]:
    from edgekd.bundle.signing import generate_keypair

    return generate_keypair(tmp_path_factory.mktemp("keys") / "release")


@pytest.fixture(scope="module")
def result(template, tmp_path_factory) -> Path:
    """A bench result of the tiny bundle's model.onnx, saved as --from-json reads it."""
    from edgekd.bench.runner import run_bench

    measured = run_bench(template / "bundle", warmup=0, iterations=2)
    path = tmp_path_factory.mktemp("result") / "result.json"
    path.write_text(json.dumps(measured))
    return path


@pytest.fixture
def run(template, tmp_path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(template, target)
    return target


@pytest.fixture
def bundle(run) -> Path:
    return run / "bundle"


@pytest.fixture(scope="module")
def signed_template(template, keys, tmp_path_factory) -> Path:
    from edgekd.bundle.transaction import sign_release

    target = tmp_path_factory.mktemp("signed") / "run"
    shutil.copytree(template, target)
    sign_release(target / "bundle", keys[0])
    return target


@pytest.fixture
def signed_run(signed_template, tmp_path) -> Path:
    target = tmp_path / "signed"
    shutil.copytree(signed_template, target)
    return target


def _edit_manifest(bundle: Path, change) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    change(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2))


# ------------------------------------------------------------------------ 1. containment
@pytest.mark.parametrize(
    "name, version",
    [
        ("ABS/db", "backup"),
        ("../victimdir/backup", "1"),
        ("tiny", "../../escape"),
        ("..", "1"),
        ("tiny", ""),
        (None, "1"),
    ],
)
def test_sign_makes_no_path_from_an_unchecked_manifest_name(bundle, keys, tmp_path, name, version):
    victim = tmp_path / "victimdir"
    victim.mkdir()
    name = name.replace("ABS", str(victim)) if isinstance(name, str) else name
    _edit_manifest(bundle, lambda m: m.update(name=name, version=version))
    before = files_of(bundle.parent)
    line = one_line(invoke("sign", bundle, "--key", keys[0]))
    assert "manifest.json" in line and "refusing to make a path from it" in line
    assert list(victim.iterdir()) == [] and files_of(bundle.parent) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "victimdir"]
    assert "refusing to make a path" in one_line(invoke("verify", bundle))


def test_tarball_member_names_are_relative_and_under_the_release_folder(signed_run):
    with tarfile.open(signed_run / "tiny-0.1.0.tar.gz") as tar:
        names = tar.getnames()
    assert names and all(n.startswith("tiny-0.1.0/") and ".." not in n.split("/") for n in names)
    assert "tiny-0.1.0/manifest.sig" in names and "tiny-0.1.0/model.onnx" in names


@pytest.mark.parametrize("how", ["dot", "twice", "double slash", "backslash"])
def test_a_manifest_path_listed_twice_or_not_canonical_is_refused(bundle, keys, how):
    text = (bundle / "manifest.json").read_text()
    if how == "twice":
        text = text.replace(
            '"model.onnx": {', '"model.onnx": {"sha256": "0", "size": 1},\n    "model.onnx": {', 1
        )
    else:
        manifest = json.loads(text)
        files = manifest["files"]
        new = {
            "dot": "./model.onnx",
            "double slash": "plots//disparity_by_class.png",
            "backslash": "plots\\disparity_by_class.png",
        }[how]
        old = "model.onnx" if how == "dot" else "plots/disparity_by_class.png"
        files[new] = files.pop(old)
        text = json.dumps(manifest)
    (bundle / "manifest.json").write_text(text)
    needle = "twice" if how == "twice" else "not a plain relative path"
    assert needle in one_line(invoke("verify", bundle))
    assert needle in one_line(invoke("sign", bundle, "--key", keys[0]))
    assert not (bundle / "manifest.sig").exists()


def test_manifest_json_symlinked_out_of_the_bundle_is_never_read(bundle, keys, tmp_path):
    canary = Canary(tmp_path / "elsewhere" / "manifest.json", (bundle / "manifest.json").read_bytes())
    (bundle / "manifest.json").unlink()
    (bundle / "manifest.json").symlink_to(canary.path)
    for args in (
        ["verify", bundle],
        ["verify", bundle, "--key", keys[1]],
        ["sign", bundle, "--key", keys[0]],
    ):
        result = invoke(*args)
        assert result.exit_code in (1, 2), result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert "symlink" in result.output or "no manifest.json" in result.output, result.output
    assert canary.untouched and not (bundle / "manifest.sig").exists()


def test_bench_from_json_artifact_outside_the_bundle_is_refused_unread(bundle, result, tmp_path):
    canary = Canary(tmp_path / "hostname")
    before = files_of(bundle)
    for file in ["../../hostname", str(canary.path), "./model.onnx", "plots/../../../hostname"]:
        hostile = json.loads(result.read_text())
        hostile["artifact"]["file"] = file
        path = tmp_path / "hostile.json"
        path.write_text(json.dumps(hostile))
        out = invoke("bench", bundle, "--from-json", path, "--update-card")
        assert out.exit_code == 2 and out.output.strip().splitlines()[-1].startswith("error: "), out.output
        assert "bench result artifact.file" in out.output, out.output
    assert canary.untouched and files_of(bundle) == before


@pytest.mark.parametrize(
    "drop", ["device", "results", "artifact", "artifact.sha256", "latency_ms", "everything"]
)
def test_a_bench_result_missing_fields_is_one_line(bundle, result, tmp_path, drop):
    data = json.loads(result.read_text())
    if drop == "everything":
        data = {"schema": data["schema"]}
    elif drop == "artifact.sha256":
        del data["artifact"]["sha256"]
    elif drop == "latency_ms":
        del data["results"][0]["latency_ms"]
    else:
        del data[drop]
    path = tmp_path / "partial.json"
    path.write_text(json.dumps(data))
    before = files_of(bundle)
    for extra in ([], ["--update-card"]):
        line = one_line(invoke("bench", bundle, "--from-json", path, *extra))
        assert (
            f"--from-json: {path}" in line
            and "not an edgekd bench result" in line
            or "artifact.sha256 is missing" in line
        ), line
    assert files_of(bundle) == before


def test_every_field_of_a_bench_result_removed_or_mistyped_is_shown_or_one_line(bundle, result, tmp_path):
    """Each node of a real result (to depth 4) deleted or replaced by a string: ``bench
    --from-json`` shows it or refuses it in one line, and one that passes the check merges into
    a card that renders; never a traceback."""
    from edgekd.bench.card_update import check_result
    from edgekd.card.bench import add_bench_result
    from edgekd.card.html import render_html
    from edgekd.card.io import load_card
    from edgekd.card.schema import check_card

    real = json.loads(result.read_text())
    card = load_card(bundle)
    path = tmp_path / "mutated.json"
    shown = refused = 0
    for where in list(key_paths(real))[1:]:
        for value in ("x", KeyError):
            if value is KeyError and isinstance(where[-1], int):
                continue
            broken = mutated(real, where, REMOVED if value is KeyError else value)
            path.write_text(json.dumps(broken))
            out = invoke("bench", bundle, "--from-json", path)
            assert out.exception is None or isinstance(out.exception, SystemExit), (where, out.output)
            if out.exit_code:
                assert out.exit_code == 2 and len(out.output.strip().splitlines()) == 1, out.output
                refused += 1
                continue
            shown += 1
            check_result(broken, "mutated")
            merged = check_card(add_bench_result(card, broken))
            render_html(merged, [])
    print(f"bench result mutations: {shown} shown, {refused} refused in one line")
    assert shown > 20 and refused > 10


# --------------------------------------------------------------- 2. special output files
@pytest.mark.parametrize("kind", ["char device", "fifo", "symlink to stdout", "directory"])
def test_bench_json_never_replaces_a_special_file(bundle, result, tmp_path, kind):
    target = tmp_path / "out.json"
    if kind == "char device":
        target = Path("/dev/null")
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "symlink to stdout":
        target.symlink_to("/proc/self/fd/1")
    else:
        target.mkdir()
    before = os.lstat(target)
    line = one_line(invoke("bench", bundle, "--from-json", result, "--json", target))
    assert f"--json: {target} exists and is a" in line and "not a regular file" in line
    after = os.lstat(target)
    assert (after.st_mode, after.st_ino, after.st_rdev) == (before.st_mode, before.st_ino, before.st_rdev)


def test_inputs_that_are_devices_or_huge_are_one_line_and_never_read(bundle, tmp_path):
    zero = tmp_path / "result.json"
    zero.symlink_to("/dev/zero")  # read whole, it would never end
    assert "a character device, not a result file" in one_line(invoke("bench", bundle, "--from-json", zero))
    recipe = tmp_path / "huge.yaml"
    with open(recipe, "wb") as fh:
        fh.truncate(10 << 30)  # sparse: 10 GB that nobody should read
    assert "10737418240 bytes, above the 1048576 a recipe may have" in one_line(
        invoke("build", recipe, "--out", tmp_path / "runs")
    )
    (tmp_path / "keydir").mkdir()
    assert "exists and is a directory" in one_line(invoke("keygen", tmp_path / "keydir"))


@pytest.mark.parametrize("kind", ["symlink", "directory"])
def test_a_lock_path_that_is_a_symlink_or_a_directory_is_refused(bundle, result, tmp_path, kind):
    canary = Canary(tmp_path / "precious.txt")
    lock = bundle.parent / ".edgekd.lock"
    lock.unlink(missing_ok=True)  # the build's own lock file
    if kind == "symlink":
        lock.symlink_to(canary.path)
    else:
        lock.mkdir()
    before = files_of(bundle)
    line = one_line(invoke("bench", bundle, "--from-json", result, "--update-card"))
    assert ".edgekd.lock" in line and f"a {kind}, not the lock file edgekd makes" in line
    assert canary.untouched and files_of(bundle) == before


def test_out_under_a_regular_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    line = one_line(invoke("build", TESTS / "tiny.yaml", "--out", tmp_path / "file" / "runs"))
    assert f"--out: {tmp_path / 'file' / 'runs'}: {tmp_path / 'file'} is not a folder" in line
    line = one_line(
        invoke("sweep", TESTS / "tiny.yaml", "--grid", "distill.temperature=2,4", "--out", tmp_path / "file")
    )
    assert "is not a folder" in line


# ------------------------------------------------------------------ 3. signatures and identity
def test_verify_prints_the_release_and_compares_an_expected_name_and_version(signed_run, keys):
    tarball = signed_run / "tiny-0.1.0.tar.gz"
    for target in (signed_run / "bundle", tarball):
        ok = invoke("verify", target, "--key", keys[1], "--name", "tiny", "--version", "0.1.0")
        assert ok.exit_code == 0 and "release tiny 0.1.0; signature by key" in ok.output, ok.output
        wrong = invoke("verify", target, "--key", keys[1], "--name", "othermodel", "--version", "2.0.0")
        assert wrong.exit_code == 1
        assert "wrong release: the manifest names 'tiny', not the expected 'othermodel'" in wrong.output
        assert "version '0.1.0', not the expected '2.0.0'" in wrong.output


def test_a_renamed_signed_release_fails(signed_run, keys, tmp_path):
    """The tarball renamed, file and top folder, to othermodel-2.0.0: the signature over the
    manifest still holds, but the manifest says tiny 0.1.0, so verify fails."""
    unpacked = tmp_path / "unpacked"
    with tarfile.open(signed_run / "tiny-0.1.0.tar.gz") as tar:
        tar.extractall(unpacked, filter="data")
    (unpacked / "tiny-0.1.0").rename(unpacked / "othermodel-2.0.0")
    renamed = tmp_path / "othermodel-2.0.0.tar.gz"
    with tarfile.open(renamed, "w:gz") as tar:
        tar.add(unpacked / "othermodel-2.0.0", arcname="othermodel-2.0.0")
    result = invoke("verify", renamed, "--key", keys[1])
    assert result.exit_code == 1, result.output
    assert (
        "renamed release: the archive's top folder is 'othermodel-2.0.0' but its manifest is "
        "release 'tiny-0.1.0'" in result.output
    )
    assert "'othermodel-2.0.0.tar.gz' holds release 'tiny-0.1.0'" in result.output
    only_file = tmp_path / "othermodel-2.0.0-copy.tar.gz"
    shutil.copy(signed_run / "tiny-0.1.0.tar.gz", only_file)
    assert invoke("verify", only_file, "--key", keys[1]).exit_code == 1


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{}",
        b"not json",
        b"null",
        b'{"schema": "edgekd.signature/v1", "algorithm": "ed25519", '
        b'"signature": "AAAA", "public_key": "AAAA", "key_id": "x", '
        b'"manifest_sha256": "0"}',
    ],
)
def test_an_empty_or_malformed_signature_is_invalid_never_signed(signed_run, keys, content):
    bundle = signed_run / "bundle"
    (bundle / "manifest.sig").write_bytes(content)
    for extra in ([], ["--key", keys[1]]):
        result = invoke("verify", bundle, *extra)
        assert result.exit_code == 1, result.output
        assert "invalid signature: manifest.sig" in result.output and "signed," not in result.output


def test_a_private_key_open_to_others_is_refused(bundle, keys, tmp_path):
    loose = tmp_path / "loose"
    shutil.copy(keys[0], loose)
    before = files_of(bundle.parent)
    for mode in (0o666, 0o640, 0o604):
        loose.chmod(mode)
        line = one_line(invoke("sign", bundle, "--key", loose))
        assert f"private key with mode {mode:04o}" in line and f"chmod 600 {loose}" in line
    assert files_of(bundle.parent) == before


# ------------------------------------------------------------------------- 4. transactions
class _Killed(BaseException):
    """A simulated kill: not an Exception, so no error handler of edgekd runs (finally blocks
    do, as the kernel would drop the lock of a killed process)."""


class Interrupter:
    """Counts every write of a transaction (rename, replace, link, mkdir, the swap) and raises
    ``error`` at the ``at``-th: a kill (``_Killed``) or an ``OSError`` (a full disk)."""

    def __init__(self, monkeypatch, at: int, error) -> None:
        import edgekd.bundle.transaction as transaction

        self.at, self.error, self.count, self.names = at, error, 0, []
        for module, name in (
            (os, "replace"),
            (os, "rename"),
            (os, "link"),
            (os, "mkdir"),
            (transaction, "_exchange"),
        ):
            monkeypatch.setattr(module, name, self._wrap(getattr(module, name), name))

    def _wrap(self, fn, name):
        def counted(*args, **kwargs):
            if name == "mkdir" and os.path.exists(args[0]):
                return fn(*args, **kwargs)  # an existing folder: no write (and no real error)
            self.count += 1
            self.names.append(f"{name} {Path(str(args[-1] if args else '')).name}")
            if self.count == self.at:
                raise self.error()
            return fn(*args, **kwargs)

        return counted


def _state(run: Path, pub: Path | None) -> tuple[tuple, tuple]:
    """card.json and manifest.sig of the bundle and of the tarball, each after checking it
    verifies (with its signature when ``pub``)."""
    bundle, tarball = run / "bundle", run / "tiny-0.1.0.tar.gz"
    for target in (bundle, tarball):
        problems, _ = verify_report(target, pub)
        assert problems == [], (target, problems)
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
        packed = tuple(
            tar.extractfile(f"tiny-0.1.0/{n}").read() if f"tiny-0.1.0/{n}" in names else None
            for n in ("card.json", "manifest.sig")
        )
    here = tuple(
        (bundle / n).read_bytes() if (bundle / n).exists() else None for n in ("card.json", "manifest.sig")
    )
    return here, packed


def _update(run: Path, result: Path, key: Path | None):
    from edgekd.bench.card_update import load_result, update_card

    return update_card(run / "bundle", load_result(result), key=key, log=None)


def _sign(run: Path, result: Path, key: Path | None):
    from edgekd.bundle.transaction import sign_release

    return sign_release(run / "bundle", key)


@pytest.mark.parametrize(
    "command, signed, resign",
    [("update", True, True), ("update", True, False), ("sign", False, True)],
    ids=["update-card --key", "update-card drops the signature", "sign"],
)
def test_a_kill_at_every_write_leaves_a_verifiable_bundle_the_next_command_finishes(
    signed_template, template, result, keys, tmp_path, monkeypatch, command, signed, resign
):
    source = signed_template if signed else template
    action = {"update": _update, "sign": _sign}[command]
    key = keys[0] if resign else None
    pub = keys[1] if resign else None  # the new state's signature holds under it
    mid = keys[1] if signed and resign else None  # so does the old state's
    reference = tmp_path / "reference"
    shutil.copytree(source, reference)
    before = _state(reference, keys[1] if signed else None)
    action(reference, result, key)
    after = _state(reference, pub)
    assert after != before and after[0] == after[1]
    k, kills = 0, 0
    while True:
        k += 1
        run = tmp_path / f"k{k}"
        shutil.copytree(source, run)
        with monkeypatch.context() as patch:
            interrupter = Interrupter(patch, k, _Killed)
            try:
                action(run, result, key)
            except _Killed:
                kills += 1
            else:
                break
        state = _state(run, mid)  # old or new bundle, old or new tarball: each verifies
        assert state[0] in (before[0], after[0]) and state[1] in (before[1], after[1]), interrupter.names
        action(run, result, key)  # the next command finishes (or repeats) the change
        assert _state(run, pub) == after, interrupter.names
        assert files_of(run, tarball=False) == files_of(reference, tarball=False)
        assert leftovers(run) == [], leftovers(run)
        shutil.rmtree(run)
    print(f"{command}: killed at each of {kills} writes; every state verified and was finished")
    assert kills >= 8, interrupter.names


def test_without_an_atomic_exchange_a_kill_between_the_renames_is_put_right_next_time(
    signed_template, result, keys, tmp_path, monkeypatch
):
    """Where renameat2's exchange is missing, the swap is two renames; a kill between them
    leaves no bundle folder for a moment, and the next command finishes the change."""
    import edgekd.bundle.transaction as transaction

    reference = tmp_path / "reference"
    shutil.copytree(signed_template, reference)
    _update(reference, result, keys[0])
    run = tmp_path / "run"
    shutil.copytree(signed_template, run)

    def kill_between(name: str) -> None:
        if name == "swap-between-renames":
            raise _Killed()

    with monkeypatch.context() as patch:
        patch.setattr(transaction, "_exchange", lambda a, b: False)
        patch.setattr(transaction, "_step", kill_between)
        with pytest.raises(_Killed):
            _update(run, result, keys[0])
    assert not (run / "bundle").exists() and (run / ".bundle.edgekd-old").is_dir()
    done = invoke("bench", run / "bundle", "--from-json", result, "--update-card", "--key", keys[0])
    assert done.exit_code == 0 and "finished a change that was interrupted" in done.output, done.output
    assert _state(run, keys[1]) == _state(reference, keys[1]) and leftovers(run) == []


@pytest.mark.parametrize(
    "code, command",
    [(errno.ENOSPC, "update"), (errno.EROFS, "sign")],
    ids=["full disk in update-card", "read-only in sign"],
)
def test_a_failed_write_at_any_step_changes_nothing_and_is_one_line(
    signed_template, template, result, keys, tmp_path, monkeypatch, code, command
):
    """A full disk (or a file system turned read-only) at the k-th write of a change, for every
    k: one line, and bundle and tarball exactly as before; past the last write the change is
    whole."""
    source = signed_template if command == "update" else template
    action = {"update": _update, "sign": _sign}[command]
    before = files_of(source)

    def error():
        return OSError(code, os.strerror(code), "somefile")

    k, failures = 0, 0
    while True:
        k += 1
        run = tmp_path / f"k{k}"
        shutil.copytree(source, run)
        failed = None
        with monkeypatch.context() as patch:
            interrupter = Interrupter(patch, k, error)
            try:
                action(run, result, keys[0])
            except EdgeKDError as err:
                failed = err
        if failed is not None:
            failures += 1
            assert "\n" not in str(failed) and os.strerror(code) in str(failed)
            assert files_of(run) == before and leftovers(run) == []
        else:  # past the last write, or a write whose failure is harmless (the lock's note)
            assert _state(run, keys[1]) != _state(source, keys[1] if command == "update" else None)
            if interrupter.count < k:
                break
        shutil.rmtree(run)
    print(f"{command}: {failures} writes failed in turn, each one line, nothing changed")
    assert failures >= 5


@pytest.mark.parametrize("at", ["replace:card.json", "journal", "exchange", "replace:.tar.gz"])
def test_a_real_sigkill_inside_update_card_is_finished_by_the_next_command(signed_run, result, keys, at):
    bundle = signed_run / "bundle"
    args = ["bench", str(bundle), "--from-json", str(result), "--update-card", "--key", str(keys[0])]
    killed = subprocess.run(
        [sys.executable, str(KILL_SCRIPT), at, "--", *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    ok = invoke("verify", bundle, "--key", keys[1])  # old or new: the bundle verifies
    assert ok.exit_code == 0, ok.output
    assert invoke("verify", signed_run / "tiny-0.1.0.tar.gz", "--key", keys[1]).exit_code == 0
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert "re-signed" in again.output
    assert leftovers(signed_run) == []
    for target in (bundle, signed_run / "tiny-0.1.0.tar.gz"):
        ok = invoke("verify", target, "--key", keys[1])
        assert ok.exit_code == 0 and "extra file" not in ok.output, ok.output
    with tarfile.open(signed_run / "tiny-0.1.0.tar.gz") as tar:  # the tarball carries the update
        card = json.loads(tar.extractfile("tiny-0.1.0/card.json").read())
    assert card["bench"] and card == json.loads((bundle / "card.json").read_text())


def test_bench_all_update_card_with_key_re_signs_and_refreshes_the_tarball(
    signed_run, result, keys, tmp_path
):
    single = json.loads(result.read_text())
    merged = tmp_path / "all.json"
    merged.write_text(
        json.dumps({"schema": "edgekd.bench-all/v1", "device": single["device"], "results": [single]})
    )
    bundle = signed_run / "bundle"
    done = invoke("bench", bundle, "--from-json", merged, "--update-card", "--key", keys[0])
    assert done.exit_code == 0, done.output
    assert f"signature: {bundle / 'manifest.sig'} re-signed" in done.output
    for target in (bundle, signed_run / "tiny-0.1.0.tar.gz"):
        assert invoke("verify", target, "--key", keys[1]).exit_code == 0
    with tarfile.open(signed_run / "tiny-0.1.0.tar.gz") as tar:
        assert json.loads(tar.extractfile("tiny-0.1.0/card.json").read())["bench"]
    dropped = invoke("bench", bundle, "--from-json", merged, "--update-card")
    assert "no longer held and was removed" in dropped.output and not (bundle / "manifest.sig").exists()
    with tarfile.open(signed_run / "tiny-0.1.0.tar.gz") as tar:  # nor does the tarball keep it
        assert "tiny-0.1.0/manifest.sig" not in tar.getnames()


def test_a_stray_temporary_of_an_older_writer_is_removed_by_the_next_update(bundle, result):
    stray = bundle / ".card.json.k3j_9xqz.tmp"
    stray.write_text("half a card")
    assert "extra file: .card.json.k3j_9xqz.tmp" in invoke("verify", bundle).output
    done = invoke("bench", bundle, "--from-json", result, "--update-card")
    assert done.exit_code == 0, done.output
    assert not stray.exists() and invoke("verify", bundle).exit_code == 0


def _limited(args: list[str], limit: int) -> subprocess.CompletedProcess:
    """``edgekd ARGS`` with every file write capped at ``limit`` bytes (RLIMIT_FSIZE): the
    write that passes it fails with EFBIG, as on a full disk."""
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        "from edgekd.cli import main\nmain(sys.argv[1:])\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=_env(), capture_output=True, text=True, timeout=120
    )


def test_a_full_disk_during_sign_and_update_card_is_one_line_and_changes_nothing(
    signed_run, run, result, keys
):
    for folder, args in (
        (run, ["sign", str(run / "bundle"), "--key", str(keys[0])]),
        (
            signed_run,
            [
                "bench",
                str(signed_run / "bundle"),
                "--from-json",
                str(result),
                "--update-card",
                "--key",
                str(keys[0]),
            ],
        ),
    ):
        before = files_of(folder)
        done = _limited(args, 64 << 10)  # the signature fits, the tarball (or card.html) does not
        assert done.returncode == 2, done.stdout + done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "File too large" in lines[0], (
            done.stderr
        )
        assert "Traceback" not in done.stderr
        assert files_of(folder) == before and leftovers(folder) == []


def test_a_full_disk_while_a_build_writes_its_bundle_leaves_no_bundle_tmp(tiny_build, tmp_path, monkeypatch):
    from types import SimpleNamespace

    import edgekd.bundle.write as write
    from edgekd.recipe import load_recipe

    recipe = load_recipe(TESTS / "tiny.yaml")
    card = json.loads((tiny_build.bundle_dir / "card.json").read_text())
    data = SimpleNamespace(
        preprocess=lambda: json.loads((tiny_build.bundle_dir / "preprocess.json").read_text())
    )
    artifacts = {"model.onnx": tiny_build.bundle_dir / "model.onnx"}
    copies = []

    def full(source, target):
        copies.append(target)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    monkeypatch.setattr(write.shutil, "copyfile", full)
    with pytest.raises(EdgeKDError, match=r"could not write the bundle: No space left on device") as err:
        write.write_bundle(tmp_path, recipe, data, card, artifacts=artifacts)
    assert "\n" not in str(err.value) and copies
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no .bundle.tmp, no bundle


def _mount_read_only(folder: Path):
    done = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot bind-mount here (needs root); the EROFS cases above cover it")
    ro = subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], capture_output=True)
    if ro.returncode != 0:
        subprocess.run(["umount", str(folder)])
        pytest.skip("cannot remount read-only here")


def test_a_read_only_file_system_is_one_line_for_update_card_sign_and_out(run, result, keys, tmp_path):
    before = files_of(run)
    _mount_read_only(run)
    try:
        bundle = run / "bundle"
        for args in (
            ["bench", bundle, "--from-json", result, "--update-card"],
            ["sign", bundle, "--key", keys[0]],
            ["build", TESTS / "tiny.yaml", "--out", run / "runs"],
        ):
            line = one_line(invoke(*args))
            assert "read-only file system" in line, line
    finally:
        subprocess.run(["umount", str(run)], check=True)
    assert files_of(run) == before


# ------------------------------------------------------------- 5. eval sets that lie about size
def test_an_eval_set_declaring_a_million_images_is_refused_before_allocating(bundle):
    import zipfile

    with zipfile.ZipFile(bundle / "eval_set.npz", "w") as archive:
        with archive.open("images.npy", "w") as member:
            np.lib.format.write_array_header_1_0(
                member, {"descr": "|u1", "fortran_order": False, "shape": (1_000_000, 32, 32, 3)}
            )
            member.write(b"\0" * 30_000)
        for name in ("labels", "groups"):
            with archive.open(f"{name}.npy", "w") as member:
                np.save(member, np.zeros(10, dtype=np.int64))
    line = one_line(invoke("bench", bundle, "--eval", "--warmup", "0", "--iterations", "1"))
    assert (
        "images.npy declares (1000000, 32, 32, 3) uint8 (3072000000 bytes) but the archive holds "
        "30000 bytes" in line
    )


# ------------------------------------------------------------------ 6. non-finite numbers
@pytest.mark.parametrize(
    "setting, key",
    [
        ("teacher.weight_decay=.inf", "teacher.weight_decay"),
        ("student.lr=.nan", "student.lr"),
        ("card.gates={max_mean_abs_disparity: -.inf}", "card.gates.max_mean_abs_disparity"),
    ],
)
def test_a_non_finite_recipe_number_is_one_line_naming_the_key(tmp_path, setting, key):
    line = one_line(invoke("build", TESTS / "tiny.yaml", "--out", tmp_path, "--set", setting))
    assert f"{key} = " in line and ("finite" in line), line
    assert not (tmp_path / "tiny" / "stages").exists()


def _diverging():
    """An objective whose own term goes NaN on its second step."""
    from edgekd.distill import CrossEntropy

    class Diverging(CrossEntropy):
        calls = 0

        def forward(self, logits, batch):
            Diverging.calls += 1
            loss = super().forward(logits, batch)
            return loss * float("nan") if Diverging.calls == 2 else loss

    return Diverging()


@pytest.mark.parametrize(
    "how, term",
    [
        ("own term", "the objective's own term (Diverging"),
        ("weights", "the network's outputs (logits); its weights are no longer finite"),
    ],
)
def test_a_non_finite_loss_stops_training_naming_stage_epoch_and_term(tmp_path, monkeypatch, how, term):
    import torch

    from edgekd.data import load_data
    from edgekd.distill import CrossEntropy
    from edgekd.models import create_model
    from edgekd.recipe import parse_recipe
    from edgekd.stages import Stage
    from edgekd.train import fit

    recipe = parse_recipe(
        {
            "name": "nan",
            "data": {"image_size": 32, "num_classes": 2, "train_size": 96, "val_size": 16, "test_size": 16},
            "student": {"arch": "test_efficientnet", "epochs": 2, "batch_size": 32},
        }
    )
    data = load_data(recipe.data, seed=0)
    torch.manual_seed(0)
    model = create_model(recipe.student, 2, key="student")
    if how == "own term":
        objective = _diverging()
    else:
        objective = CrossEntropy()
        step = torch.optim.AdamW.step

        def poisoned(self, *args, **kwargs):  # the first step leaves every weight infinite
            out = step(self, *args, **kwargs)
            with torch.no_grad():
                for group in self.param_groups:
                    for p in group["params"]:
                        p.fill_(float("inf"))
            return out

        monkeypatch.setattr(torch.optim.AdamW, "step", poisoned)
    stage = Stage(tmp_path, "student", {})
    stage.start()
    with pytest.raises(EdgeKDError) as err:
        fit(model, objective, data, recipe.student, stage, seed=0, log=lambda m: None)
    line = str(err.value)
    assert "\n" not in line and re.match(
        r"student: the training loss is (nan|inf) at epoch 1, step 2 of 3", line
    ), line
    assert term in line, line
    assert not stage.path("best.pt").exists()  # nothing of the diverged run is kept


def test_card_json_never_holds_nan_or_infinity(tmp_path, tiny_build):
    from edgekd.card.io import card_text, write_card_json

    card = json.loads((tiny_build.bundle_dir / "card.json").read_text())
    card["models"]["student"]["metrics"]["top1"] = float("nan")
    with pytest.raises(
        EdgeKDError,
        match=r"card.json: models.student.metrics.top1 is not a finite "
        r"number \(NaN or infinity\)",
    ):
        write_card_json(tmp_path / "card.json", card)
    assert not (tmp_path / "card.json").exists()
    card["models"]["student"]["metrics"]["top1"] = 0.5
    assert json.loads(card_text(card)) == card


# ------------------------------------------------------------------------- 7. bounded YAML
BILLION_LAUGHS = """name: laughs
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


@pytest.mark.parametrize(
    "text, needle",
    [
        (BILLION_LAUGHS, "aliases expand to more than 100000 values"),
        ("name: deep\nx: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested deeper than 64 levels"),
        ("name: x\n" + "".join(f"k{i}: &a{i} 1\nv{i}: *a{i}\n" for i in range(101)), "more than 100 aliases"),
        ("name: big\n#" + "x" * (1 << 20) + "\n", "above the 1048576 a recipe may have"),
    ],
)
def test_a_recipe_that_would_cost_the_machine_is_one_line(tmp_path, text, needle):
    recipe = tmp_path / "hostile.yaml"
    recipe.write_text(text)
    assert len(BILLION_LAUGHS.encode()) < 400
    line = one_line(invoke("build", recipe, "--out", tmp_path / "runs"))
    assert needle in line and str(recipe) in line
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- 8. escaping
_FRAGMENTS = [
    "<script>alert(1)</script>",
    "![x](http://evil.example/x.png)",
    "\n",
    "\r\n",
    "\u2028",
    "\x85",
    "|",
    "`",
    "**",
    "$",
    "[a](https://evil.example)",
    "<img src=x onerror=y>",
    "&lt;b&gt;",
    "www.evil.example",
    "http://evil.example/p.png",
    "\\",
    "# ",
    "- ",
    "> ",
    "1. ",
    "---",
    "<http://evil.example>",
    "</td></tr>",
    "\"'",
    "_x_",
    "~~s~~",
    "\t",
    "é",
]
_ALLOWED_TAGS = {
    "html",
    "head",
    "meta",
    "title",
    "style",
    "body",
    "h1",
    "h2",
    "h3",
    "h4",
    "p",
    "table",
    "tr",
    "th",
    "td",
    "ul",
    "li",
    "strong",
    "code",
    "pre",
    "figure",
    "img",
    "figcaption",
    "details",
    "summary",
}


def _hostile(rng: random.Random) -> str:
    return "".join(rng.choice(_FRAGMENTS + ["a", "b", " "]) for _ in range(rng.randint(1, 8)))


def _assert_safe(md: str, page: str, plots: int) -> None:
    body = md.split("\n---\n", 1)[1]
    assert not re.search(r"(?<!\\)<", body), re.search(r".{0,40}(?<!\\)<.{0,40}", body).group()
    images = re.findall(r"(?<!\\)!\[", body)
    assert len(images) == plots and all(
        re.match(r"^!\[[a-z ]+\]\(plots/[a-z_]+\.png\)$", line)
        for line in body.splitlines()
        if re.search(r"(?<!\\)!\[", line)
    )
    assert not re.search(r"(?<!\\)\]\(", body.replace("](plots/", ""))
    for tag, attributes in re.findall(r"<\s*/?\s*([A-Za-z][A-Za-z0-9]*)([^>]*)>", page):
        assert tag.lower() in _ALLOWED_TAGS, tag
        names = re.findall(r'\s([a-z-]+)="[^"]*"', attributes)
        assert re.sub(r'\s[a-z-]+="[^"]*"', "", attributes).strip() == "", attributes
        assert set(names) <= {"alt", "src", "lang", "charset"}, attributes
    for src in re.findall(r'src="([^"]*)"', page):
        assert src.startswith(("data:image/png;base64,", "plots/")), src


def test_a_fuzz_of_card_strings_puts_no_raw_html_and_no_remote_url_in_card_md_or_html(tiny_build):
    from edgekd.card.html import render_html
    from edgekd.card.markdown import render_markdown
    from edgekd.card.schema import check_card

    base = json.loads((tiny_build.bundle_dir / "card.json").read_text())
    rng = random.Random(27)
    for _ in range(60):
        card = json.loads(json.dumps(base))
        card["task"]["classes"] = [_hostile(rng) + f" {k}" for k in range(len(card["task"]["classes"]))]
        for entry in card["models"].values():
            for row, name in zip(entry["metrics"]["per_class"], card["task"]["classes"]):
                row["class"] = name
        old_groups, groups = card["data"]["groups"], [_hostile(rng) + " g0", _hostile(rng) + " g1"]
        card["data"]["groups"] = groups
        for entry in card["models"].values():
            for row in entry["metrics"]["per_class"]:
                rbg = row.get("recall_by_group") or {}
                row["recall_by_group"] = {new: rbg.get(old) for old, new in zip(old_groups, groups)}
        card["data"]["protected_attribute"] = _hostile(rng)
        card["data"]["summary"] = _hostile(rng)
        card["data"]["warnings"] = [_hostile(rng)]
        card["name"], card["version"] = _hostile(rng), _hostile(rng)
        card["data"]["test_counts_by_group"] = {g: 1 for g in groups}
        result = json.loads(
            json.dumps(
                {
                    "backend": _hostile(rng),
                    "device": {"id": _hostile(rng)},
                    "artifact": {"file": _hostile(rng)},
                    "results": [{"batch": 1, "latency_ms": {"p50": 1.0}}],
                }
            )
        )
        card["bench"] = {result["device"]["id"]: {result["backend"]: {result["artifact"]["file"]: result}}}
        card["plots"] = card["plots"] + ["plots/a](javascript:alert(1)) ![b](x.png"]
        check_card(card)
        md = render_markdown(card)
        page = render_html(card, [tiny_build.bundle_dir / p for p in base["plots"]])
        _assert_safe(md, page, plots=len(base["plots"]))


def test_three_routes_of_a_remote_image_into_the_card_are_closed(bundle, result, tmp_path):
    """A card.json string, a device id in a bench result and a CSV class name."""
    image = "x\n![x](http://evil.example/track.png)\n<b>raw</b>"
    hostile = json.loads(result.read_text())
    hostile["device"]["id"] = image
    path = tmp_path / "device.json"
    path.write_text(json.dumps(hostile))
    merged = invoke("bench", bundle, "--from-json", path, "--update-card")
    assert merged.exit_code == 0, merged.output
    assert invoke("verify", bundle).exit_code == 0
    card = json.loads((bundle / "card.json").read_text())
    card["data"]["summary"] = image
    (bundle / "card.json").write_text(json.dumps(card))
    page = invoke("card", bundle, "--format", "html").output
    md = invoke("card", bundle, "--format", "md").output
    _assert_safe(md, page, plots=4)
    assert "http\\://evil.example/track.png" in md and "\\<b\\>raw\\</b\\>" in md
    assert "&lt;b&gt;raw&lt;/b&gt;" in page
    _assert_safe((bundle / "card.md").read_text(), (bundle / "card.html").read_text(), plots=4)
    from edgekd.card.markdown import render_markdown  # a CSV class name reaches the card as-is

    card["task"]["classes"][0] = "<i>cat</i> ![x](http://evil.example/c.png)"
    for entry in card["models"].values():
        entry["metrics"]["per_class"][0]["class"] = card["task"]["classes"][0]
    assert "\\<i\\>cat\\</i\\> !\\[x\\](http\\://evil.example/c.png)" in render_markdown(card)


def test_plots_draw_a_class_named_with_dollars_as_text(tiny_build, tmp_path):
    from PIL import Image

    from edgekd.card.plots import write_plots

    card = json.loads((tiny_build.bundle_dir / "card.json").read_text())
    card["task"]["classes"] = ["price $_$ band", "$\\frac{1}{0}$", "a" * 300, "x\ny"]
    card["data"]["protected_attribute"] = "$^$"
    for path in write_plots(card, tmp_path / "plots"):
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 100


# ------------------------------------------------------------------------------ 9. labels
@pytest.fixture
def shop(tmp_path) -> Path:
    from PIL import Image

    root = tmp_path / "shop"
    (root / "img").mkdir(parents=True)
    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8)).save(root / "img" / name)
    return root


@pytest.mark.parametrize(
    "label, column, needle",
    [
        ("c" * 1001, "label", "has 1001 characters; at most 200"),
        ('"cat\n![x](http://e/x.png)"', "label", "contains the character '\\n'"),
        ("g\x07", "group", "contains the character '\\x07'"),
        ("  ", "group", "is empty"),
    ],
)
def test_a_bad_label_is_one_line_before_any_image_is_decoded(shop, tmp_path, label, column, needle):
    rows = ["path,label,group", "img/a.png,dog,x"]
    rows.append(f"img/b.png,{label},y" if column == "label" else f"img/b.png,dog,{label}")
    for split in ("train", "val", "test"):
        (shop / f"{split}.csv").write_text("\n".join(rows) + "\n")
    recipe = tmp_path / "files.yaml"
    recipe.write_text(
        json.dumps(
            {
                "name": "files",
                "data": {
                    "source": "csv",
                    "root": "shop",
                    "image_size": 16,
                    "cache_dir": str(tmp_path / "cache"),
                },
                "teacher": {"arch": "test_efficientnet", "epochs": 1},
                "student": {"arch": "test_efficientnet", "epochs": 1},
            }
        )
    )
    line = one_line(invoke("build", recipe, "--out", tmp_path / "runs"))
    assert needle in line and "train.csv" in line
    assert not (tmp_path / "cache").exists() and not (tmp_path / "runs" / "files" / "stages").exists()
    protected = json.loads(recipe.read_text())
    for split in ("train", "val", "test"):
        (shop / f"{split}.csv").write_text("path,label,group\nimg/a.png,dog,x\nimg/b.png,cat,y\n")
    protected["data"]["protected_attribute"] = "p" * 1001
    recipe.write_text(json.dumps(protected))
    assert "protected attribute" in one_line(invoke("build", recipe, "--out", tmp_path / "runs"))
