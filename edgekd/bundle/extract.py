"""Unpack a release tarball safely: no member may land outside the target directory, and none
may be larger than the manifest inside the archive says, than a per-member cap, or add up to
more than a cap for the whole extraction. Every check runs on the member headers and the
(size-capped) manifest before a single byte is written."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from edgekd.bundle.manifest import MANIFEST, MAX_MANIFEST_BYTES, SIGNATURE
from edgekd.errors import EdgeKDError

__all__ = ["extract_bundle", "MAX_MEMBER_BYTES", "MAX_TOTAL_BYTES"]

MAX_MEMBER_BYTES = 8 << 30  # one file of a bundle (an fp32 engine of a large model stays below)
MAX_TOTAL_BYTES = 16 << 30  # the whole extraction
_SMALL = {MANIFEST: MAX_MANIFEST_BYTES, SIGNATURE: 64 << 10}


def _check_member(member: tarfile.TarInfo, target: Path, archive: Path) -> None:
    name = member.name
    where = (target / name).resolve()
    if Path(name).is_absolute() or not where.is_relative_to(target):
        raise EdgeKDError(f"{archive}: refusing member {name!r}: it would be written outside {target}")
    if member.issym() or member.islnk():
        link = Path(member.linkname)
        resolved = (where.parent / link).resolve() if member.issym() else (target / link).resolve()
        if link.is_absolute() or not resolved.is_relative_to(target):
            raise EdgeKDError(
                f"{archive}: refusing link {name!r} -> {member.linkname!r}: it points outside {target}"
            )
    elif not (member.isfile() or member.isdir()):
        raise EdgeKDError(
            f"{archive}: refusing member {name!r}: only files and directories are allowed in a bundle"
        )


def _check_sizes(
    tar: tarfile.TarFile,
    members: list[tarfile.TarInfo],
    archive: Path,
    *,
    max_member_bytes: int,
    max_total_bytes: int,
) -> None:
    """Sizes from the member headers against the caps and the archive's own manifest."""
    files = [m for m in members if m.isfile()]
    manifests = [m for m in files if len(Path(m.name).parts) == 2 and Path(m.name).name == MANIFEST]
    if len(manifests) != 1:
        raise EdgeKDError(
            f"{archive}: expected one <name>-<version>/{MANIFEST}, found "
            f"{len(manifests)}; not an edgekd bundle"
        )
    if manifests[0].size > MAX_MANIFEST_BYTES:
        raise EdgeKDError(
            f"{archive}: {manifests[0].name} is {manifests[0].size} bytes, above the "
            f"{MAX_MANIFEST_BYTES} a manifest may have"
        )
    try:
        listed = json.loads(tar.extractfile(manifests[0]).read())["files"]
        sizes = {rel: int(entry["size"]) for rel, entry in listed.items()}
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError, tarfile.TarError):
        raise EdgeKDError(
            f"{archive}: {manifests[0].name} is not a valid edgekd manifest (JSON with "
            f"'files' and their sizes)"
        ) from None
    total = 0
    for member in files:
        rel = Path(*Path(member.name).parts[1:]).as_posix()
        cap = min(_SMALL.get(rel, max_member_bytes), max_member_bytes)
        if member.issparse():
            raise EdgeKDError(f"{archive}: refusing sparse member {member.name!r}")
        if member.size > cap:
            raise EdgeKDError(
                f"{archive}: refusing member {member.name!r}: {member.size} bytes, above "
                f"the cap of {cap} bytes per file"
            )
        if rel in sizes and member.size != sizes[rel]:
            raise EdgeKDError(
                f"{archive}: refusing member {member.name!r}: {member.size} bytes, but "
                f"its manifest says {sizes[rel]}"
            )
        total += member.size
        if total > max_total_bytes:
            raise EdgeKDError(
                f"{archive}: refusing to extract more than {max_total_bytes} bytes in "
                f"all (reached at {member.name!r})"
            )


def extract_bundle(
    archive: str | Path,
    target: str | Path,
    *,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> Path:
    """Extract ``archive`` (``<name>-<version>.tar.gz``) into ``target``; return the bundle
    directory inside it (the archive's single top-level folder).

    Every member is checked first (absolute paths, ``..``, links pointing out, devices; its size
    against the archive's manifest, ``max_member_bytes`` and, summed, ``max_total_bytes``), and
    on Python 3.12+ the ``data`` extraction filter applies as well.
    """
    archive, target = Path(archive), Path(target).resolve()
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as err:
        raise EdgeKDError(f"{archive}: not a readable tar archive ({err})") from None
    with tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as err:
            raise EdgeKDError(f"{archive}: not a readable tar archive ({err})") from None
        for member in members:
            _check_member(member, target, archive)
        _check_sizes(
            tar, members, archive, max_member_bytes=max_member_bytes, max_total_bytes=max_total_bytes
        )
        target.mkdir(parents=True, exist_ok=True)
        if hasattr(tarfile, "data_filter"):
            tar.extractall(target, members=members, filter="data")
        else:  # Python < 3.12: the checks above are the filter
            tar.extractall(target, members=members)
    roots = {Path(m.name).parts[0] for m in members if Path(m.name).parts}
    if len(roots) != 1:
        raise EdgeKDError(f"{archive}: expected one top-level folder (<name>-<version>/), found {len(roots)}")
    return target / roots.pop()
