"""A change to a finished bundle as one transaction: a staged copy, a journal, one swap.

``bench --update-card``, ``edgekd engine`` and ``edgekd sign`` change a bundle after its build
(card files, manifest, signature, an engine) and then its release tarball. Written file by file
in place, a full disk or a kill between two writes would leave a card newer than its manifest:
a bundle that no longer verifies and that the next command refuses. So every change goes through
:func:`bundle_change`, under the run folder's lock::

    with bundle_change(bundle, key=key, log=log) as staged:
        write_json(staged / "card.json", card)     # writes go to the staged copy only
        ...                                          # then its manifest is rewritten

Beside the bundle (``<folder>/bundle``) it uses, all in the same folder and file system:

- ``.bundle.edgekd-next/``: the staged copy. Unchanged files are hard links (copies where the
  file system has none), so staging costs no space for the models; every write replaces a file
  by a rename, so the old bundle's files are never written through a link.
- ``.bundle.edgekd-txn.json``: the journal, written (atomically) once the staged copy is complete
  and verifies against its new manifest; it names that manifest's sha256. It is the commit
  point: before it, the change never happened; after it, the change is finished by whoever comes
  next.

The steps, in order: (1) finish or discard an earlier interrupted change (:func:`recover`);
(2) stage: link the bundle, apply the change, rewrite the manifest, re-sign it with ``key`` or
remove ``manifest.sig`` (saying so); (3) check the staged bundle verifies; (4) write the journal;
(5) swap the staged folder and the bundle in one ``renameat2(RENAME_EXCHANGE)`` (two renames
where the system has no exchange; a kill between them leaves no ``bundle`` folder for a moment,
which the next ``sign`` or ``bench --update-card`` puts back first, :func:`recover_missing`);
(6) rewrite the tarball beside the bundle (a temporary file renamed over it); (7) remove the
journal, then the old copy.

A kill at any point leaves ``bundle`` either the old bundle or the new one, each verifying with
its own manifest (and signature), and the tarball either the old release or the new one; the
next command that changes the bundle (or :func:`recover`) rolls a journaled change forward and
discards an unjournaled one. An error (a full disk, a read-only file system) before the swap
discards the staged copy, after it swaps back: the command then changes nothing and says so in
one line. Temporary files only ever land in the staged copy or beside the bundle, never in it,
so none is counted as an extra file.

Torch-free: ``bench --update-card`` runs on the device.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from edgekd.bundle.manifest import MANIFEST, SIGNATURE, bundle_files, manifest_bytes, manifest_problems
from edgekd.bundle.signing import load_private_key, sign_bundle, signature_after_change
from edgekd.bundle.tarball import refresh_tarball, release_tarball
from edgekd.errors import EdgeKDError
from edgekd.files import read_json, write_json

__all__ = [
    "bundle_change",
    "recover",
    "recover_missing",
    "pending",
    "staged_dir",
    "journal_path",
    "old_dir",
    "fault_line",
    "sign_release",
]

_STRAY_TMP = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # atomic_output's mkstemp names


def staged_dir(bundle: Path) -> Path:
    return bundle.parent / f".{bundle.name}.edgekd-next"


def old_dir(bundle: Path) -> Path:
    return bundle.parent / f".{bundle.name}.edgekd-old"


def journal_path(bundle: Path) -> Path:
    return bundle.parent / f".{bundle.name}.edgekd-txn.json"


def _step(name: str) -> None:
    """A point between two writes of the transaction (tests interrupt the change here)."""


# -------------------------------------------------------------------------------- the swap
def _libc_renameat2():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _libc_renameat2()
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories atomically; False where the system or file system cannot."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def _swap(bundle: Path, staged: Path) -> None:
    """``staged`` becomes ``bundle``; the old bundle ends in ``staged`` (exchange) or in
    :func:`old_dir` (two renames)."""
    _step("swap")
    if bundle.exists() and _exchange(bundle, staged):
        return
    if bundle.exists():
        shutil.rmtree(old_dir(bundle), ignore_errors=True)
        os.rename(bundle, old_dir(bundle))
        _step("swap-between-renames")
    os.rename(staged, bundle)


# ------------------------------------------------------------------------------- recovery
def _manifest_sha(bundle: Path) -> str | None:
    try:
        return hashlib.sha256(manifest_bytes(bundle)).hexdigest()
    except (EdgeKDError, OSError):
        return None


def _discard(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _remove_stray_temporaries(bundle: Path) -> None:
    """Temporaries a killed writer of an older edgekd left inside the bundle, unlisted."""
    if not bundle.is_dir() or bundle.is_symlink():
        return
    try:
        listed = set(json.loads(manifest_bytes(bundle)).get("files", {}))
    except (EdgeKDError, OSError, ValueError, AttributeError, RecursionError):
        return  # never read through a symlink; verify names what is wrong
    for rel in bundle_files(bundle)[0]:
        if rel not in listed and _STRAY_TMP.match(rel.rsplit("/", 1)[-1]):
            (bundle / rel).unlink()


def recover(bundle: str | Path, *, log: Callable[[str], None] | None = None) -> str | None:
    """Finish or discard a change of ``bundle`` that a kill interrupted (call under the run
    folder's lock). Returns a line saying what was done, or None when there was nothing.

    A journaled change is rolled forward (the staged copy swapped in if it was not yet, the
    tarball rewritten); an unjournaled staged copy is discarded; the bundle is put back from the
    old copy when a kill fell between the two renames of a swap without exchange.
    """
    bundle = Path(bundle)
    journal, staged, old = journal_path(bundle), staged_dir(bundle), old_dir(bundle)
    note = None
    if journal.exists():
        try:
            record = read_json(journal)
            wanted = record["manifest_sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            wanted = None
        if wanted is not None and _manifest_sha(bundle) != wanted and _manifest_sha(staged) == wanted:
            _swap(bundle, staged)
        if wanted is not None and _manifest_sha(bundle) == wanted:
            _refresh_tarball(bundle)
            note = f"{bundle}: finished a change that was interrupted (journal {journal.name})"
        journal.unlink()
    elif not bundle.exists() and old.is_dir():  # a kill between the renames, before the journal
        os.rename(old, bundle)
        note = f"{bundle}: put back after an interrupted change"
    for leftover in (staged, old):
        _discard(leftover)
    _remove_stray_temporaries(bundle)
    if note and log is not None:
        log(note)
    return note


def pending(bundle: str | Path) -> bool:
    """True when a change of ``bundle`` was interrupted (its journal or a copy beside it)."""
    bundle = Path(bundle)
    return any(p.exists() for p in (journal_path(bundle), staged_dir(bundle), old_dir(bundle)))


def recover_missing(bundle: str | Path, *, log: Callable[[str], None] | None = None) -> None:
    """Before a command finds ``bundle`` missing: when a kill between the two renames of a swap
    (no exchange on this system) left it so, put it back (or finish the change) under the run
    folder's lock. Does nothing, and takes no lock, otherwise."""
    from edgekd.lock import run_lock

    bundle = Path(bundle)
    if bundle.exists() or bundle.is_symlink() or not pending(bundle):
        return
    with run_lock(bundle.resolve().parent):
        recover(bundle, log=log)


# ------------------------------------------------------------------------------ the change
def _stage(bundle: Path, staged: Path) -> None:
    """A copy of ``bundle`` at ``staged``: hard links of its regular files (copies where links
    fail), its manifest and signature included; its symlinks are not carried over."""
    _discard(staged)
    staged.mkdir()
    files, _ = bundle_files(bundle)
    extra = [
        name
        for name in (MANIFEST, SIGNATURE)
        if (bundle / name).is_file() and not (bundle / name).is_symlink()
    ]
    for rel in [*files, *extra]:
        source, target = bundle / rel, staged / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
    _step("staged")


def _refresh_tarball(bundle: Path) -> Path | None:

    _step("tarball")
    return refresh_tarball(bundle)


def fault_line(err: OSError, bundle: Path, *, swapped: bool = False) -> str:
    """One line for a write that failed (full disk, read-only file system, ...)."""
    what = err.strerror or type(err).__name__
    where = f" ({err.filename})" if err.filename else ""
    return (
        f"{bundle}: could not write the change: {what}{where}; "
        + ("the bundle was put back as it was" if swapped else "the bundle is unchanged")
        + " (free space or make the folder writable, then run the command again)"
    )


@contextmanager
def bundle_change(
    bundle: str | Path,
    *,
    key: str | Path | None = None,
    log: Callable[[str], None] | None = None,
    rewrite_manifest: bool = True,
) -> Iterator[Path]:
    """Stage ``bundle``, let the ``with`` block change the staged copy, then commit it whole.

    On leaving the block the staged manifest is rewritten (``rewrite_manifest``, keeping its
    name, version and other keys), then signed with the private ``key`` or its now stale
    ``manifest.sig`` removed (``log`` gets the line saying which); the staged bundle must verify,
    and is swapped in; the tarball beside it is rewritten. Call under the run folder's lock.

    Raises
    ------
    EdgeKDError
        One line when a write fails (nothing changed) or the staged bundle does not verify.
    """

    bundle = Path(bundle)
    recover(bundle, log=log)
    staged, journal = staged_dir(bundle), journal_path(bundle)
    swapped = False
    try:
        _stage(bundle, staged)
        yield staged
        if rewrite_manifest:
            _rewrite_manifest(staged)
            note = signature_after_change(staged, key, shown_as=bundle)
        else:
            note = None
        _step("signed")
        problems = manifest_problems(staged)
        if problems:
            raise EdgeKDError(
                f"{bundle}: the changed bundle would not match its manifest "
                f"({problems[0]}); nothing was changed"
            )
        write_json(
            journal,
            {
                "schema": "edgekd.bundle-change/v1",
                "bundle": bundle.name,
                "manifest_sha256": _manifest_sha(staged),
            },
        )
        _step("journal")
        _swap(bundle, staged)
        swapped = True
        _refresh_tarball(bundle)
    except OSError as err:
        _undo(bundle, staged, journal, swapped)
        raise EdgeKDError(fault_line(err, bundle, swapped=swapped)) from None
    except Exception:
        _undo(bundle, staged, journal, swapped)
        raise
    try:  # the change is whole: bundle and tarball are new; what is left is tidying up
        journal.unlink()
        _step("committed")
        for leftover in (staged, old_dir(bundle)):
            _discard(leftover)
    except OSError:
        pass  # the next command's recover() removes them
    if note and log is not None:
        log(note)


def _undo(bundle: Path, staged: Path, journal: Path, swapped: bool) -> None:
    """After an error (not a kill): swap back if the swap happened, then drop the staged copy
    and the journal. Best effort: what cannot be undone now, :func:`recover` does next time."""
    try:
        if swapped:
            if staged.is_dir():
                _swap(bundle, staged)  # the old bundle, in staged, comes back
            elif old_dir(bundle).is_dir():
                _discard(bundle)
                os.rename(old_dir(bundle), bundle)
        journal.unlink(missing_ok=True)
        _discard(staged)
        _discard(old_dir(bundle))
    except OSError:
        pass


def _rewrite_manifest(staged: Path) -> None:
    from edgekd.bundle.manifest import read_manifest, write_manifest

    manifest = read_manifest(staged)
    keep = {k: v for k, v in manifest.items() if k not in ("schema", "name", "version", "files")}
    write_manifest(staged, name=manifest["name"], version=manifest["version"], extra=keep)


def sign_release(bundle: str | Path, key_path: str | Path, *, log=None) -> tuple[dict, Path | None]:
    """Sign ``bundle`` (:func:`edgekd.bundle.signing.sign_bundle`) and rewrite the tarball beside
    it, as one change (:func:`bundle_change`) under the run folder's lock: a kill or a full disk
    leaves the bundle and its tarball either unsigned or signed, never a mix that the next command
    cannot finish. Returns the signature record and the tarball (None without)."""
    from edgekd.lock import run_lock

    bundle = Path(bundle)
    load_private_key(key_path)  # a bad key is one line before anything is locked or staged
    recover_missing(bundle, log=log)  # a bundle an interrupted swap left missing comes back
    if bundle.is_symlink() or not bundle.is_dir():
        raise EdgeKDError(
            f"{bundle}: not a bundle directory (sign the bundle folder; its tarball is re-written)"
        )
    with run_lock(bundle.resolve().parent):
        with bundle_change(bundle, rewrite_manifest=False, log=log) as staged:
            record = sign_bundle(staged, key_path)
        return record, release_tarball(bundle)
