"""The ``edgekd`` command: thin click wrappers that parse, call the library and print.

A user mistake raises :class:`~edgekd.errors.EdgeKDError`; it is printed as one line and the
command exits with code 2. Device-side commands (card, verify) import no torch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from edgekd import __version__
from edgekd.errors import EdgeKDError

__all__ = ["main"]


def _fail(message: str, code: int = 2) -> None:
    for line in message.splitlines():
        click.echo(f"error: {line}", err=True)
    sys.exit(code)


class _Group(click.Group):
    """Turns EdgeKDError into one line and exit 2, and Ctrl-C into a resumable stop."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdgeKDError as err:
            _fail(str(err), err.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted; run the same command again to resume from the last finished epoch",
                  130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgekd")
def main() -> None:
    """Distil, debias, export and ship vision models with a fairness card."""


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"),
              show_default=True, help="Runs directory; the build goes to OUT/<recipe name>.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe key, e.g. --set distill.temperature=8 (repeatable).")
def build(recipe: Path, out: Path, overrides: tuple[str, ...]) -> None:
    """Run the pipeline of RECIPE and write the release bundle."""
    from edgekd.card import format_table
    from edgekd.pipeline import build as run_build

    result = run_build(recipe, out=out, overrides=overrides, log=lambda m: click.echo(m))
    click.echo("")
    click.echo(format_table(result.rows))
    click.echo("")
    click.echo(f"stages: " + ", ".join(f"{k} {v}" for k, v in result.stage_status.items()))
    click.echo(f"bundle: {result.bundle_dir}")
    for gate in result.failed_gates:
        click.echo(f"gate failed: {gate['name']} on {gate['artifact']}: {gate['value']} "
                   f"(needs {gate['comparison']} {gate['threshold']})", err=True)
    if result.failed_gates:
        sys.exit(1)


@main.command()
@click.argument("bundle", type=click.Path(file_okay=False, path_type=Path))
@click.option("--format", "formats", default="md", show_default=True,
              help="Comma-separated: md, json.")
@click.option("--check", is_flag=True, help="Exit non-zero when a gate fails or a file is wrong.")
def card(bundle: Path, formats: str, check: bool) -> None:
    """Print a bundle's card, or check its gates and checksums."""
    from edgekd.bundle import verify_bundle
    from edgekd.card import render_markdown

    card_path = bundle / "card.json"
    if not card_path.is_file():
        raise EdgeKDError(f"{bundle}: no card.json; not an edgekd bundle")
    try:
        data = json.loads(card_path.read_text())
    except ValueError as err:
        raise EdgeKDError(f"{card_path}: not valid JSON ({err})") from None
    chosen = [f.strip() for f in formats.split(",") if f.strip()]
    allowed = ("md", "json")
    for fmt in chosen:
        if fmt not in allowed:
            raise EdgeKDError(f"--format: unknown format {fmt!r}; choose from: {', '.join(allowed)}")
    if check:
        problems = verify_bundle(bundle) + [
            f"gate failed: {g['name']} on {g['artifact']}: {g['value']} (needs {g['comparison']} "
            f"{g['threshold']})" for g in data.get("gates", []) if not g["passed"]]
        for line in problems:
            click.echo(line, err=True)
        if problems:
            sys.exit(1)
        click.echo(f"{bundle}: all gates pass, all checksums match")
        return
    for fmt in chosen:
        click.echo(render_markdown(data) if fmt == "md" else json.dumps(data, indent=2))


@main.command()
@click.argument("bundle", type=click.Path(file_okay=False, path_type=Path))
def verify(bundle: Path) -> None:
    """Check every file of BUNDLE against its manifest."""
    from edgekd.bundle import verify_bundle

    problems = verify_bundle(bundle)
    for line in problems:
        click.echo(line, err=True)
    if problems:
        sys.exit(1)
    click.echo(f"{bundle}: every file matches the manifest")
