"""One command at a time per run folder: an exclusive lock on ``<folder>/.edgekd.lock``.

``edgekd build`` (and each sweep point) and ``edgekd bench --update-card`` write into a run
folder; two of them at once would train the same stage twice and tear each other's temporary
files. :func:`run_lock` takes an operating-system lock (``flock`` through the filelock library)
before anything is written. A second command gets one line naming the folder and the holder
(pid, host, command, start time, kept in ``.edgekd.lock.json`` beside the lock) and changes
nothing. The kernel drops the lock when its process dies, even by SIGKILL, so a stale lock of a
dead process is simply taken over by the next command; its holder note is then rewritten. A
lock path that is not a regular file (a symlink, a directory, a FIFO) is refused with one line:
opening it would follow the link and truncate whatever it points to.

Torch-free: ``bench --update-card`` runs on the device.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgekd.errors import EdgeKDError

__all__ = ["LOCK_FILE", "HOLDER_FILE", "run_lock", "run_locks", "held_by_parent"]

LOCK_FILE = ".edgekd.lock"
HOLDER_FILE = ".edgekd.lock.json"
_HELD: set[Path] = set()  # folders this process holds: taking one again is a no-op


def _holder(folder: Path) -> str:
    try:
        info = json.loads((folder / HOLDER_FILE).read_text())
        return f"pid {info['pid']} on {info['host']}, `{info['command']}`, since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (no holder note)"


@contextmanager
def run_lock(folder: str | Path, *, command: str | None = None) -> Iterator[Path]:
    """Hold the run folder's lock for the ``with`` block.

    Parameters
    ----------
    folder : str or Path
        The run folder (created if missing).
    command : str, optional
        What holds it, for the message another command gets (default: this process's argv).

    Raises
    ------
    EdgeKDError
        When another live process holds the lock.
    """
    from filelock import FileLock, Timeout

    from edgekd.paths import output_dir, special_file

    folder = Path(folder)
    output_dir(folder, option="run folder")
    folder.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    if key in _HELD:  # this process holds it already (the bench command, then update_card)
        yield folder
        return
    for name in (LOCK_FILE, HOLDER_FILE):  # opening a symlink would write where it points
        kind = special_file(folder / name)
        if kind is not None:
            raise EdgeKDError(
                f"{folder / name}: {kind}, not the lock file edgekd makes; refusing to "
                f"open it (remove it if no edgekd command is running)"
            )
    lock = FileLock(folder / LOCK_FILE, timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        raise EdgeKDError(
            f"{folder}: in use by {_holder(folder)}; one edgekd command per run "
            f"folder: wait for it to finish, or use another --out"
        ) from None
    _HELD.add(key)
    try:
        from edgekd.files import write_json

        try:  # the note only names the holder: a full disk must not stop the lock itself
            write_json(
                folder / HOLDER_FILE,
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "command": command or " ".join(["edgekd", *sys.argv[1:]])[:300],
                    "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                },
            )
        except OSError:
            pass
        yield folder
    finally:
        _HELD.discard(key)
        (folder / HOLDER_FILE).unlink(missing_ok=True)
        lock.release()


@contextmanager
def run_locks(
    run_dir: str | Path, shared_dir: str | Path | None = None, *, enabled: bool = True
) -> Iterator[None]:
    """The locks of a build: its run folder, and the folder whose shared stages (teacher,
    baseline, teacher outputs) it trains when that is another one (a sweep point). The shared
    folder is taken first, as ``edgekd build`` of the base recipe takes it, so no two commands
    wait on each other in a cycle. ``enabled=False`` (torchrun ranks other than 0) takes none."""
    if not enabled:
        yield
        return
    run_dir = Path(run_dir)
    shared = Path(shared_dir) if shared_dir is not None else None
    if shared is None or shared.resolve() == run_dir.resolve():
        with run_lock(run_dir):
            yield
        return
    with run_lock(shared), run_lock(run_dir):
        yield


@contextmanager
def held_by_parent(folder: str | Path) -> Iterator[None]:
    """In a build process that ``sweep --jobs`` or ``tune --jobs`` started: the parent holds
    ``folder``'s lock (the shared run folder, whose stages it trained before starting any
    worker) for all its workers, so a :func:`run_lock` of it here takes nothing."""
    key = Path(folder).resolve()
    if key in _HELD:
        yield
        return
    _HELD.add(key)
    try:
        yield
    finally:
        _HELD.discard(key)
