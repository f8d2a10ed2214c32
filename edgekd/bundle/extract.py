"""Unpack a release tarball safely: no member may land outside the target directory."""

from __future__ import annotations

import tarfile
from pathlib import Path

from edgekd.errors import EdgeKDError

__all__ = ["extract_bundle"]


def _check_member(member: tarfile.TarInfo, target: Path, archive: Path) -> None:
    name = member.name
    where = (target / name).resolve()
    if Path(name).is_absolute() or not where.is_relative_to(target):
        raise EdgeKDError(f"{archive}: refusing member {name!r}: it would be written outside "
                          f"{target}")
    if member.issym() or member.islnk():
        link = Path(member.linkname)
        resolved = (where.parent / link).resolve() if member.issym() else (target / link).resolve()
        if link.is_absolute() or not resolved.is_relative_to(target):
            raise EdgeKDError(f"{archive}: refusing link {name!r} -> {member.linkname!r}: it points "
                              f"outside {target}")
    elif not (member.isfile() or member.isdir()):
        raise EdgeKDError(f"{archive}: refusing member {name!r}: only files and directories are "
                          "allowed in a bundle")


def extract_bundle(archive: str | Path, target: str | Path) -> Path:
    """Extract ``archive`` (``<name>-<version>.tar.gz``) into ``target``; return the bundle
    directory inside it (the archive's single top-level folder).

    Every member is checked first (absolute paths, ``..``, links pointing out, devices), and on
    Python 3.12+ the ``data`` extraction filter applies as well.
    """
    archive, target = Path(archive), Path(target).resolve()
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as err:
        raise EdgeKDError(f"{archive}: not a readable tar archive ({err})") from None
    with tar:
        members = tar.getmembers()
        for member in members:
            _check_member(member, target, archive)
        target.mkdir(parents=True, exist_ok=True)
        if hasattr(tarfile, "data_filter"):
            tar.extractall(target, members=members, filter="data")
        else:  # Python < 3.12: the checks above are the filter
            tar.extractall(target, members=members)
    roots = {Path(m.name).parts[0] for m in members if Path(m.name).parts}
    if len(roots) != 1:
        raise EdgeKDError(f"{archive}: expected one top-level folder (<name>-<version>/), "
                          f"found {len(roots)}")
    return target / roots.pop()
