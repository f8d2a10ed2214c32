"""Write a build's release bundle directory and its ``<name>-<version>.tar.gz``."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

from pydantic import Field

from edgekd.bundle.manifest import MANIFEST, SIGNATURE, bundle_files, read_manifest, write_manifest
from edgekd.card.html import render_html
from edgekd.card.io import CARD_JSON, CARD_MD, write_card_json
from edgekd.card.markdown import render_markdown
from edgekd.card.plots import write_plots
from edgekd.config import Section
from edgekd.errors import EdgeKDError
from edgekd.files import atomic_output, write_atomic, write_json
from edgekd.paths import canonical_relpath, release_name

__all__ = ["BundleConfig", "write_bundle", "tarball_path", "write_tarball", "release_tarball",
           "refresh_tarball"]


class BundleConfig(Section):
    """``bundle``: what goes into the release bundle besides the models and the card."""

    include_eval_set: bool = Field(
        False, description="ship the test split as eval_set.npz for edgekd bench --eval")


def tarball_path(run_dir: Path, name: str, version: str) -> Path:
    """``run_dir/<name>-<version>.tar.gz``, the name and version checked first
    (:func:`edgekd.paths.release_name`): no path made from them leaves ``run_dir``."""
    return Path(run_dir) / f"{release_name(name, version, listed_in='the release')}.tar.gz"


def release_tarball(bundle: Path) -> Path | None:
    """The release tarball of a build's ``<run>/bundle`` (``<run>/<name>-<version>.tar.gz``, the
    name and version from its manifest, checked), when the bundle is a build's and the tarball
    exists; otherwise None."""
    bundle = Path(bundle)
    if bundle.name != "bundle":
        return None
    manifest = read_manifest(bundle)
    root = release_name(manifest["name"], manifest["version"], listed_in=bundle / MANIFEST)
    path = bundle.parent / f"{root}.tar.gz"
    return path if path.is_file() and not path.is_symlink() else None


def refresh_tarball(bundle: Path) -> Path | None:
    """Rewrite the release tarball beside a build's bundle (:func:`release_tarball`) from the
    bundle as it is now; returns its path, or None when there is none to refresh."""
    path = release_tarball(bundle)
    if path is not None:
        manifest = read_manifest(bundle)
        write_tarball(bundle, path, release_name(manifest["name"], manifest["version"],
                                                 listed_in=bundle / MANIFEST))
    return path


def write_bundle(run_dir: Path, recipe, data, card: dict, *, artifacts: dict[str, Path],
                 manifest_extra: dict | None = None) -> Path:
    """Write ``run_dir/bundle`` whole or not at all, then the tarball beside it.

    ``card`` is written as it is (its ``plots`` name the files drawn here). The bundle is
    assembled in a temporary sibling directory and swapped in at the end, so an interrupted
    build never leaves a half-written bundle; a write that fails (a full disk) removes the
    temporary directory and is one line.
    """
    from edgekd.bundle.transaction import fault_line, recover

    run_dir = Path(run_dir)
    final, tmp = run_dir / "bundle", run_dir / ".bundle.tmp"
    root = release_name(recipe.name, recipe.version, listed_in="the recipe")
    recover(final)  # an interrupted bench --update-card or sign of the previous bundle
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, source in artifacts.items():
            shutil.copyfile(source, tmp / name)
        write_atomic(tmp / "recipe.yaml", recipe.to_yaml())
        write_json(tmp / "preprocess.json", data.preprocess())
        plots = write_plots(card, tmp / "plots")
        write_card_json(tmp / CARD_JSON, card)
        write_atomic(tmp / CARD_MD, render_markdown(card))
        write_atomic(tmp / "card.html", render_html(card, plots))
        write_manifest(tmp, name=recipe.name, version=recipe.version, extra=manifest_extra)
        old = run_dir / ".bundle.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
        write_tarball(final, run_dir / f"{root}.tar.gz", root)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise EdgeKDError(fault_line(err, final).replace("could not write the change",
                                                          "could not write the bundle")) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def write_tarball(bundle: Path, path: Path, root: str) -> None:
    """``path`` (gzip tar) of the bundle's regular files under the top folder ``root``.

    Member names are ``root/<relative path>`` with ``root`` a checked release name and each
    relative path canonical (:func:`edgekd.paths.canonical_relpath`): never absolute, never
    ``..``; symlinks in the bundle are not archived (verify reports them)."""
    if "/" in canonical_relpath(root, listed_in=path):
        raise EdgeKDError(f"{path}: top folder {root!r} must be one folder name")
    files = [*bundle_files(bundle)[0], *(n for n in (MANIFEST, SIGNATURE)
                                          if (bundle / n).is_file() and not (bundle / n).is_symlink())]
    with atomic_output(path) as tmp, tarfile.open(tmp, "w:gz") as tar:
        for rel in sorted(files):
            name = f"{root}/{canonical_relpath(rel, listed_in=bundle)}"
            tar.add(bundle / rel, arcname=name, recursive=False)
