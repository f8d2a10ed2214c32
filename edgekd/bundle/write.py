"""Write a build's release bundle directory and its ``<name>-<version>.tar.gz``."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

from edgekd.bundle.manifest import write_manifest
from edgekd.card.html import render_html
from edgekd.card.markdown import render_markdown
from edgekd.card.plots import write_plots
from edgekd.recipe import dump_recipe
from edgekd.stages import write_atomic, write_json

__all__ = ["write_bundle", "tarball_path"]


def tarball_path(run_dir: Path, name: str, version: str) -> Path:
    return Path(run_dir) / f"{name}-{version}.tar.gz"


def write_bundle(run_dir: Path, recipe, data, card: dict, *, artifacts: dict[str, Path],
                 manifest_extra: dict | None = None) -> Path:
    """Write ``run_dir/bundle`` whole or not at all, then the tarball beside it.

    The bundle is assembled in a temporary sibling directory and swapped in at the end, so an
    interrupted build never leaves a half-written bundle.
    """
    run_dir = Path(run_dir)
    final, tmp = run_dir / "bundle", run_dir / ".bundle.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, source in artifacts.items():
        shutil.copyfile(source, tmp / name)
    write_atomic(tmp / "recipe.yaml", dump_recipe(recipe))
    write_json(tmp / "preprocess.json", data.preprocess())
    plots = write_plots(card, tmp / "plots")
    card["plots"] = [p.relative_to(tmp).as_posix() for p in plots]
    write_json(tmp / "card.json", card)
    write_atomic(tmp / "card.md", render_markdown(card))
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
    tmp = path.with_name(f".{path.name}.tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for file in sorted(p for p in bundle.rglob("*") if p.is_file()):
            tar.add(file, arcname=f"{root}/{file.relative_to(bundle).as_posix()}")
    tmp.replace(path)
