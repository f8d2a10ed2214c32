"""Write a build's release bundle directory and its ``<name>-<version>.tar.gz``."""

from __future__ import annotations

import shutil
from pathlib import Path

from pydantic import Field

from edgekd.bundle.manifest import write_manifest
from edgekd.bundle.tarball import write_tarball
from edgekd.card.html import render_html
from edgekd.card.io import CARD_JSON, CARD_MD, write_card_json
from edgekd.card.markdown import render_markdown
from edgekd.card.plots import write_plots
from edgekd.config import Section
from edgekd.context import Log, step
from edgekd.errors import EdgeKDError
from edgekd.files import write_atomic, write_json
from edgekd.paths import release_name

__all__ = ["BundleConfig", "write_bundle"]


def _silent(message: str) -> None:
    """The default log: a bundle written outside a build says nothing."""


class BundleConfig(Section):
    """``bundle``: what goes into the release bundle besides the models and the card."""

    include_eval_set: bool = Field(
        False, description="ship the test split as eval_set.npz for edgekd bench --eval"
    )


def write_bundle(
    run_dir: Path,
    recipe,
    data,
    card: dict,
    *,
    artifacts: dict[str, Path],
    manifest_extra: dict | None = None,
    log: Log = _silent,
    images=None,
) -> Path:
    """Write ``run_dir/bundle`` whole or not at all, then the tarball beside it.

    ``card`` is written as it is (its ``plots`` name the files drawn here). The bundle is
    assembled in a temporary sibling directory and swapped in at the end, so an interrupted
    build never leaves a half-written bundle; a write that fails (a full disk) removes the
    temporary directory and is one line. ``log`` hears each step (the plots take seconds).
    ``images`` (the test split, uint8 (N, H, W, 3)) are what the grids of the images each
    artifact changed are cut from (:func:`edgekd.card.plots.write_plots`).
    """
    from edgekd.bundle.transaction import fault_line, recover

    run_dir = Path(run_dir)
    final, tmp = run_dir / "bundle", run_dir / ".bundle.tmp"
    root = release_name(recipe.name, recipe.version, listed_in="the recipe")
    recover(final)  # an interrupted bench --update-card or sign of the previous bundle
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        with step(log, f"bundle: copying {', '.join(artifacts) or 'no files'}"):
            for name, source in artifacts.items():
                shutil.copyfile(source, tmp / name)
        write_atomic(tmp / "recipe.yaml", recipe.to_yaml())
        write_json(tmp / "preprocess.json", data.preprocess())
        with step(log, "bundle: drawing the card's plots"):
            plots = write_plots(card, tmp / "plots", images=images)
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
        with step(log, f"bundle: writing {root}.tar.gz"):
            write_tarball(final, run_dir / f"{root}.tar.gz", root)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise EdgeKDError(
            fault_line(err, final).replace("could not write the change", "could not write the bundle")
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
