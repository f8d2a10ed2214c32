"""Write a build's release bundle directory and its ``<name>-<version>.tar.gz``."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

from pydantic import Field

from edgekd.bundle.manifest import write_manifest
from edgekd.card.html import render_html
from edgekd.card.io import CARD_JSON, CARD_MD
from edgekd.card.markdown import render_markdown
from edgekd.card.plots import write_plots
from edgekd.config import Section
from edgekd.files import atomic_output, write_atomic, write_json

__all__ = ["BundleConfig", "write_bundle", "tarball_path"]


class BundleConfig(Section):
    """``bundle``: what goes into the release bundle besides the models and the card."""

    include_eval_set: bool = Field(
        False, description="ship the test split as eval_set.npz for edgekd bench --eval")


def tarball_path(run_dir: Path, name: str, version: str) -> Path:
    return Path(run_dir) / f"{name}-{version}.tar.gz"


def write_bundle(run_dir: Path, recipe, data, card: dict, *, artifacts: dict[str, Path],
                 manifest_extra: dict | None = None) -> Path:
    """Write ``run_dir/bundle`` whole or not at all, then the tarball beside it.

    ``card`` is written as it is (its ``plots`` name the files drawn here). The bundle is
    assembled in a temporary sibling directory and swapped in at the end, so an interrupted
    build never leaves a half-written bundle.
    """
    run_dir = Path(run_dir)
    final, tmp = run_dir / "bundle", run_dir / ".bundle.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, source in artifacts.items():
        shutil.copyfile(source, tmp / name)
    write_atomic(tmp / "recipe.yaml", recipe.to_yaml())
    write_json(tmp / "preprocess.json", data.preprocess())
    plots = write_plots(card, tmp / "plots")
    write_json(tmp / CARD_JSON, card)
    write_atomic(tmp / CARD_MD, render_markdown(card))
    write_atomic(tmp / "card.html", render_html(card, plots))
    write_manifest(tmp, name=recipe.name, version=recipe.version, extra=manifest_extra)
    old = run_dir / ".bundle.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    _write_tarball(final, tarball_path(run_dir, recipe.name, recipe.version),
                   f"{recipe.name}-{recipe.version}")
    return final


def _write_tarball(bundle: Path, path: Path, root: str) -> None:
    with atomic_output(path) as tmp, tarfile.open(tmp, "w:gz") as tar:
        for file in sorted(p for p in bundle.rglob("*") if p.is_file()):
            tar.add(file, arcname=f"{root}/{file.relative_to(bundle).as_posix()}")
