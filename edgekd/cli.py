"""The ``edgekd`` command: thin click wrappers that parse, call the library and print.

A user mistake raises :class:`~edgekd.errors.EdgeKDError`; it is printed as one line and the
command exits with code 2. Device-side commands (card, verify) import no torch.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path

import click

from edgekd import __version__
from edgekd.errors import EdgeKDError

__all__ = ["main"]


# Faults of the machine rather than of edgekd: a full disk or quota, a file over the size
# limit, a read-only file system. Writes are atomic (edgekd.files), so one line is enough.
_MACHINE_FAULTS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


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
        except OSError as err:
            if err.errno not in _MACHINE_FAULTS:
                raise
            where = f"{err.filename}: " if err.filename else ""
            _fail(
                f"{where}{err.strerror or os.strerror(err.errno)}; nothing was left half-written "
                f"(free space or use a writable folder, then run the command again)"
            )
        except KeyboardInterrupt:
            _fail("interrupted; run the same command again to resume from the last finished epoch", 130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgekd")
def main() -> None:
    """Distil, debias, export and ship vision models with a fairness card."""


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("runs"),
    show_default=True,
    help="Runs directory; the build goes to OUT/<recipe name>.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a recipe key, e.g. --set distill.temperature=8 (repeatable).",
)
def build(recipe: Path, out: Path, overrides: tuple[str, ...]) -> None:
    """Run the pipeline of RECIPE and write the release bundle."""
    from edgekd.card.gates import describe_gate, warned_gates
    from edgekd.paths import output_dir
    from edgekd.pipeline import build as run_build

    output_dir(out, option="--out")
    result = run_build(recipe, out=out, overrides=overrides, log=lambda m: click.echo(m))
    if result is None:  # a torchrun rank other than 0: rank 0 reports for the job
        return
    click.echo("")
    click.echo(result.summary())
    for gate in warned_gates(result.card) + result.failed_gates:
        click.echo(describe_gate(gate), err=True)
    if result.failed_gates:
        sys.exit(1)


@main.command()
@click.argument("bundle", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--format",
    "formats",
    default="md",
    show_default=True,
    help="Comma-separated: md, json, html (html inlines the bundle's plots).",
)
@click.option("--check", is_flag=True, help="Exit non-zero when a gate fails or a file is wrong.")
def card(bundle: Path, formats: str, check: bool) -> None:
    """Print a bundle's card, or check its gates and checksums."""
    from edgekd.bundle import verify_report
    from edgekd.card.gates import describe_gate, failed_gates, warned_gates
    from edgekd.card.html import bundle_plots, render_html
    from edgekd.card.io import load_card
    from edgekd.card.markdown import render_markdown

    data = load_card(bundle)
    chosen = [f.strip() for f in formats.split(",") if f.strip()]
    allowed = ("md", "json", "html")
    for fmt in chosen:
        if fmt not in allowed:
            raise EdgeKDError(f"--format: unknown format {fmt!r}; choose from: {', '.join(allowed)}")
    plots = bundle_plots(bundle, data) if "html" in chosen and not check else []
    if check:
        files, note = verify_report(bundle)  # the one verify: checksums, and a signature if any
        problems = files + [describe_gate(g) for g in failed_gates(data)]
        warnings = [describe_gate(g) for g in warned_gates(data)]
        for line in warnings + problems:
            click.echo(line, err=True)
        if problems:
            sys.exit(1)
        gates = f"all gates pass but {len(warnings)} that only warn" if warnings else "all gates pass"
        click.echo(f"{bundle}: {gates}, all checksums match" + (f" ({note})" if note else ""))
        return
    for fmt in chosen:
        if fmt == "md":
            click.echo(render_markdown(data))
        elif fmt == "json":
            click.echo(json.dumps(data, indent=2))
        else:
            click.echo(render_html(data, plots))


@main.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option(
    "--key",
    "public_key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Ed25519 public key (PEM or OpenSSH): also check the bundle's signature.",
)
@click.option(
    "--name",
    "expected_name",
    default=None,
    help="The release name you expect (the manifest's, which the signature covers).",
)
@click.option("--version", "expected_version", default=None, help="The release version you expect.")
def verify(
    bundle: Path, public_key: Path | None, expected_name: str | None, expected_version: str | None
) -> None:
    """Check every file of BUNDLE (a directory or its .tar.gz) against its manifest, and with
    --key the manifest against its signature; print the release's name and version, and with
    --name / --version compare them."""
    from edgekd.bundle import verify_report

    problems, note = verify_report(bundle, public_key, name=expected_name, version=expected_version)
    for line in problems:
        click.echo(line, err=True)
    if problems:
        sys.exit(1)
    click.echo(f"{bundle}: every file matches the manifest" + (f"; {note}" if note else ""))


@main.command()
@click.argument("bundle", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--key",
    "private_key",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Ed25519 private key (PEM), e.g. from edgekd keygen.",
)
def sign(bundle: Path, private_key: Path) -> None:
    """Sign BUNDLE's manifest (manifest.sig) and re-write its tarball beside it."""
    from edgekd.bundle.transaction import sign_release

    record, tarball = sign_release(bundle, private_key, log=click.echo)
    click.echo(f"signed: {bundle / 'manifest.sig'} (ed25519, key {record['key_id']})")
    if tarball is not None:
        click.echo(f"tarball: {tarball} re-written with the signature")


@main.command()
@click.argument("key", type=click.Path(path_type=Path))
def keygen(key: Path) -> None:
    """Write a new Ed25519 private key to KEY (mode 0600) and its public key to KEY.pub."""
    from edgekd.bundle.signing import generate_keypair
    from edgekd.paths import output_file

    for path in (key, Path(f"{key}.pub")):
        output_file(path, option="keygen")
    private, public = generate_keypair(key)
    click.echo(f"private key: {private} (keep it off the device)")
    click.echo(f"public key: {public} (give it to edgekd verify --key)")


@main.command()
@click.argument("target", metavar="BUNDLE_OR_MODEL", type=click.Path(path_type=Path))
@click.option(
    "--backend", default="auto", show_default=True, help="auto, onnxruntime, tensorrt, trtexec or torch."
)
@click.option(
    "--providers",
    default=None,
    help="onnxruntime providers in order, e.g. cuda,cpu (default: best of TensorRT, CUDA, CPU).",
)
@click.option(
    "--batch-sizes",
    default=None,
    help="Comma-separated, e.g. 1,8,32 (default: 1,8, or the batch a fixed-batch model takes).",
)
@click.option("--threads", type=int, default=None, help="Intra-op threads (onnxruntime, torch).")
@click.option("--warmup", type=int, default=10, show_default=True, help="Untimed calls before timing.")
@click.option(
    "--iterations",
    type=int,
    default=None,
    help="Timed calls per batch size, split over the repeats (default 200).",
)
@click.option("--duration", type=float, default=None, help="Seconds per batch size, instead of --iterations.")
@click.option(
    "--repeats",
    type=int,
    default=5,
    show_default=True,
    help="Back-to-back timing loops per batch size; the table shows the range of their medians.",
)
@click.option("--tegrastats", is_flag=True, help="Sample Jetson power with tegrastats while timing.")
@click.option(
    "--tegrastats-interval",
    type=int,
    default=100,
    show_default=True,
    help="tegrastats sampling interval in ms.",
)
@click.option(
    "--eval",
    "evaluate",
    is_flag=True,
    help="Also score top-1 and fairness on the bundle's eval_set.npz, through this backend.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the whole result to this JSON file.",
)
@click.option(
    "--update-card",
    "update_card_flag",
    is_flag=True,
    help="Add the result to the bundle's card, re-render card.md, refresh the manifest.",
)
@click.option(
    "--key",
    "private_key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="With --update-card: re-sign the bundle with this Ed25519 private key (without it, "
    "the update removes the signature it invalidates).",
)
@click.option(
    "--from-json",
    "from_json",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Measure nothing: print (and with --update-card merge) a result saved on a device.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress line on stderr (default: when stderr is a terminal).",
)
@click.option(
    "--all",
    "all_artifacts",
    is_flag=True,
    help="Every artifact of the bundle, each through its backend, in one table.",
)
@click.option(
    "--include-trt-form",
    is_flag=True,
    help="With --all: also time model.int8.trt.onnx (the TensorRT form) on an onnxruntime "
    "without TensorRT or CUDA, where it is skipped by default.",
)
@click.option(
    "--trt-cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("~/.cache/edgekd/ort-trt"),
    show_default=True,
    help="Engine cache of onnxruntime's TensorRT provider (one folder per model file).",
)
def bench(
    target: Path,
    backend: str,
    providers: str | None,
    batch_sizes: str | None,
    threads: int | None,
    warmup: int,
    iterations: int | None,
    duration: float | None,
    repeats: int,
    tegrastats: bool,
    tegrastats_interval: int,
    evaluate: bool,
    json_path: Path | None,
    update_card_flag: bool,
    from_json: Path | None,
    progress: bool | None,
    all_artifacts: bool,
    include_trt_form: bool,
    trt_cache: Path,
    private_key: Path | None,
) -> None:
    """Measure latency, throughput and memory (and power, accuracy) of BUNDLE_OR_MODEL here."""
    from edgekd.bench.card_update import BENCH_ALL_SCHEMA, load_result, update_card, update_card_all
    from edgekd.bench.report import describe_result
    from edgekd.bench.runner import run_bench
    from edgekd.bench.target import resolve_target
    from edgekd.card.bench import bench_headers, result_rows
    from edgekd.card.table import format_table
    from edgekd.files import write_json

    if update_card_flag:  # a bundle an interrupted swap left missing comes back first
        from edgekd.bundle.transaction import recover_missing

        recover_missing(target, log=click.echo)
    bundle = resolve_target(target).bundle
    if private_key is not None and not update_card_flag:
        raise EdgeKDError("--key: only used with --update-card (to re-sign the updated bundle)")
    if update_card_flag and bundle is None:
        raise EdgeKDError(
            f"--update-card: {target} is not in a bundle; give the bundle directory or a model file inside it"
        )
    if json_path is not None:
        from edgekd.paths import output_file

        output_file(json_path, option="--json")
    if json_path is not None and bundle is not None and json_path.resolve().is_relative_to(bundle.resolve()):
        raise EdgeKDError(
            f"--json: {json_path} is inside the bundle and would break its manifest; "
            f"write the result outside it"
        )
    if update_card_flag:  # one command per run folder, taken before measuring anything
        from edgekd.bundle.signing import check_before_resign
        from edgekd.bundle.transaction import recover
        from edgekd.lock import run_lock

        click.get_current_context().with_resource(run_lock(bundle.resolve().parent))
        recover(bundle, log=click.echo)  # an update or a signing a kill interrupted
        if private_key is not None:
            check_before_resign(bundle, private_key)
    show_progress = sys.stderr.isatty() if progress is None else progress
    if include_trt_form and not all_artifacts:
        raise EdgeKDError("--include-trt-form: only with --all (a file named on its own is always timed)")
    if all_artifacts or (from_json is not None and load_result(from_json)["schema"] == BENCH_ALL_SCHEMA):
        from edgekd.bench.all_artifacts import all_headers, all_rows, describe_all, run_bench_all

        if backend != "auto":
            raise EdgeKDError(
                f"--all with --backend {backend}: --all runs each artifact through the "
                f"backend that runs it; drop --backend"
            )
        if tegrastats:
            raise EdgeKDError("--all with --tegrastats: sample power per artifact without --all")
        result = (
            load_result(from_json)
            if from_json is not None
            else run_bench_all(
                target,
                batch_sizes=batch_sizes,
                providers=providers,
                threads=threads,
                warmup=warmup,
                iterations=iterations,
                duration=duration,
                repeats=repeats,
                evaluate=evaluate,
                include_trt_form=include_trt_form,
                trt_cache=trt_cache,
                progress=show_progress,
                log=lambda m: click.echo(m, err=True),
            )
        )
        rows = all_rows(result)
        click.echo(format_table(rows, all_headers(rows)))
        for line in describe_all(result):
            click.echo(line)
        if update_card_flag:
            update_card_all(bundle, result["results"], key=private_key, log=click.echo)
            click.echo(
                f"card: {bundle / 'card.json'} updated ({len(result['results'])} artifacts, "
                f"device {result['device']['id']}); manifest refreshed"
            )
        if json_path is not None:
            write_json(json_path, result)
            click.echo(f"result: {json_path}")
        return
    if from_json is not None:
        result = load_result(from_json)
    else:
        result = run_bench(
            target,
            backend=backend,
            providers=providers,
            batch_sizes=batch_sizes,
            threads=threads,
            warmup=warmup,
            iterations=iterations,
            duration=duration,
            repeats=repeats,
            tegrastats=tegrastats,
            tegrastats_interval_ms=tegrastats_interval,
            evaluate=evaluate,
            log=lambda m: click.echo(m, err=True),
            progress=show_progress,
            trt_cache=trt_cache,
        )
    click.echo(format_table(result_rows(result), bench_headers()))
    for line in describe_result(result):
        click.echo(line)
    if update_card_flag:
        update_card(bundle, result, key=private_key, log=click.echo)
        click.echo(
            f"card: {bundle / 'card.json'} updated (device {result['device']['id']}, backend "
            f"{result['backend']}, {result['artifact']['file']}); manifest refreshed"
        )
    if json_path is not None:
        write_json(json_path, result)
        click.echo(f"result: {json_path}")


@main.command()
@click.argument("bundle", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--precision",
    default="fp16",
    show_default=True,
    help="fp16, int8 (from model.int8.trt.onnx, else model.onnx + calibration.cache) or fp32.",
)
@click.option(
    "--dla-core",
    type=int,
    default=None,
    help="Run on this DLA core with GPU fallback (Jetson AGX/NX Orin; fp16 or int8).",
)
@click.option("--workspace-mb", type=int, default=1024, show_default=True, help="Builder workspace.")
@click.option("--min-batch", type=int, default=1, show_default=True, help="Smallest batch of the profile.")
@click.option("--opt-batch", type=int, default=8, show_default=True, help="Batch TensorRT tunes for.")
@click.option("--max-batch", type=int, default=32, show_default=True, help="Largest batch of the profile.")
@click.option(
    "--update-card/--no-update-card",
    "update_card_flag",
    default=True,
    show_default=True,
    help="Add the engine, its manifest entry and card entry to the bundle; or only write it (--out).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="With --no-update-card: the engine file or folder (default: current directory).",
)
@click.option(
    "--check",
    "check_only",
    is_flag=True,
    help="Build nothing: check the files meant for TensorRT against the target's parser "
    "rules (and TensorRT-RTX's parser where installed); exit 1 when one fails.",
)
@click.option(
    "--target",
    default=None,
    metavar="NAME",
    help="With --check: the deployment target to check for (default: the card's).",
)
def engine(
    bundle: Path,
    precision: str,
    dla_core: int | None,
    workspace_mb: int,
    min_batch: int,
    opt_batch: int,
    max_batch: int,
    update_card_flag: bool,
    out: Path | None,
    check_only: bool,
    target: str | None,
) -> None:
    """On the device: build a TensorRT engine from BUNDLE's ONNX, evaluate it, add it to the bundle."""
    from edgekd.bench.engine import build_bundle_engine, check_bundle_for_tensorrt
    from edgekd.card.table import format_table, summary_headers, summary_rows

    if target is not None and not check_only:
        raise EdgeKDError("--target: only with --check (an engine is built for this device's TensorRT)")
    if check_only:
        from edgekd.card.gates import describe_gate

        result = check_bundle_for_tensorrt(bundle, target=target, log=click.echo)
        failed = [g for g in result["gates"] if not g["passed"]]
        for gate in failed:
            click.echo(describe_gate(gate), err=True)
        parser = result["deployment"].get("parser", {})
        click.echo(
            f"{bundle}: "
            + (
                f"{len(failed)} check(s) failed"
                if failed
                else f"every file passes for {result['deployment']['target']['name']}"
            )
            + ("" if parser.get("name") else f" ({parser.get('skipped')})")
        )
        raise SystemExit(1 if failed else 0)

    result = build_bundle_engine(
        bundle,
        precision=precision,
        dla_core=dla_core,
        workspace_mb=workspace_mb,
        min_batch=min_batch,
        opt_batch=opt_batch,
        max_batch=max_batch,
        update_card=update_card_flag,
        out=out,
        log=lambda m: click.echo(m, err=True),
    )
    if result["entry"] is not None:
        click.echo(
            format_table(summary_rows({"models": {result["name"]: result["entry"]}}), summary_headers())
        )
    click.echo(f"engine: {result['engine']}")


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--grid",
    "grid",
    multiple=True,
    required=True,
    metavar="KEY=V1,V2,...",
    help="A recipe key and its values, e.g. --grid debias.lambda=0,0.5,1 (repeatable: "
    "every combination is built).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("runs"),
    show_default=True,
    help="Runs directory; the sweep goes to OUT/<name>/sweep.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a recipe key for every point (repeatable).",
)
@click.option(
    "--jobs",
    type=int,
    default=1,
    show_default=True,
    help="Builds at once, each in its own process with cores // N threads (one GPU each, "
    "round-robin, where GPUs exist).",
)
def sweep(recipe: Path, grid: tuple[str, ...], out: Path, overrides: tuple[str, ...], jobs: int) -> None:
    """One build per grid point of RECIPE, sharing the teacher and the baseline."""
    from edgekd.paths import output_dir
    from edgekd.sweep import format_sweep_table, run_sweep

    output_dir(out, option="--out")
    result = run_sweep(recipe, grid, out=out, overrides=overrides, jobs=jobs, log=lambda m: click.echo(m))
    click.echo("")
    click.echo(format_sweep_table(result.rows, result.keys))
    click.echo("")
    click.echo(f"results: {result.csv_path}")
    for path in result.plots:
        click.echo(f"plot: {path}")
    for row in result.rows:
        click.echo(f"release: {row['tarball']}")


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--space",
    "space",
    multiple=True,
    required=True,
    metavar="KEY=LOW:HIGH[:log]|KEY=A,B,...",
    help="A recipe key and its range or values, e.g. --space distill.alpha=0.1:0.9 or "
    "--space debias.method=none,adversarial (repeatable).",
)
@click.option(
    "--objective",
    "objectives",
    multiple=True,
    metavar="NAME[:max|min]",
    help="What to optimise, read from each trial's card (repeatable; default top1:max and "
    "mean_abs_disparity:min): top1, mean_abs_disparity, dpd, eod, worst_cell_recall, "
    "int8_top1, int8_agreement, int8_worst_cell_recall, size_bytes, int8_size_bytes, "
    "latency_ms.",
)
@click.option(
    "--trials",
    type=int,
    default=20,
    show_default=True,
    help="Trials the study ends with (over every worker; a re-run resumes toward it).",
)
@click.option(
    "--storage",
    default=None,
    metavar="URL",
    help="Optuna storage shared by workers: sqlite:///PATH, postgresql://..., "
    "mysql+pymysql://..., or journal:PATH (default: SQLite in the study's folder).",
)
@click.option(
    "--study",
    "study_name",
    default=None,
    help="The study's name and folder (default: the searched keys joined by '+').",
)
@click.option("--sampler", default="tpe", show_default=True, help="tpe, nsga2 or random.")
@click.option(
    "--jobs",
    type=int,
    default=1,
    show_default=True,
    help="Builds at once, each in its own process with cores // N threads (one GPU each, "
    "round-robin, where GPUs exist).",
)
@click.option("--export-best", is_flag=True, help="Write a recipe for each point on the front.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("runs"),
    show_default=True,
    help="Runs directory; the study goes to OUT/<name>/tune/<study>.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a recipe key for every trial (repeatable).",
)
def tune(
    recipe: Path,
    space: tuple[str, ...],
    objectives: tuple[str, ...],
    trials: int,
    storage: str | None,
    study_name: str | None,
    sampler: str,
    jobs: int,
    export_best: bool,
    out: Path,
    overrides: tuple[str, ...],
) -> None:
    """Search RECIPE's keys for the front of accuracy, fairness and size (Optuna)."""
    from edgekd.paths import output_dir
    from edgekd.tune import format_tune_table, run_tune

    output_dir(out, option="--out")
    result = run_tune(
        recipe,
        space,
        objectives,
        trials=trials,
        out=out,
        overrides=overrides,
        storage=storage,
        study_name=study_name,
        sampler=sampler,
        jobs=jobs,
        export_best=export_best,
        log=lambda m: click.echo(m),
    )
    click.echo("")
    click.echo(format_tune_table(result.rows, result.keys, result.front))
    click.echo("")
    click.echo(
        f"front: {len(result.front)} of {len(result.rows)} trials (trials "
        + ", ".join(str(result.rows[i]["trial"]) for i in result.front)
        + ")"
    )
    click.echo(f"results: {result.csv_path}")
    for path in result.plots:
        click.echo(f"plot: {path}")
    for path in result.exported:
        click.echo(f"recipe: {path}")
