"""Command line: `qpde run/data/train/export/step/steps/csim/report/search`. Library functions do the work
(the flow's steps are qpde.flow.STEPS); errors become
one line on stderr and one exit code of `qpde.errors.EXIT_CODES`: 0 ok, 1 a simulation differs from
the golden, 2 bad input, 3 tool or internal failure."""

from __future__ import annotations

import logging
import sys
import time
from functools import wraps
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

from qpde.data.cli import data_command
from qpde.errors import (
    EXIT_FAILURE, EXIT_MEANINGS, ConfigError, DataError, MismatchError, QpdeError, SweepFailed,
    exit_code,
)

EXIT_HELP = "Exit codes: " + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_MEANINGS.items()) + "."
app = typer.Typer(add_completion=False, no_args_is_help=True, epilog=EXIT_HELP,
                  help="Neural PDE solvers → verified FPGA accelerators.")
console = Console(stderr=True)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)], force=True,
    )


def cli_errors(func):
    """Turn errors into one line on stderr and an exit code (qpde.errors.EXIT_CODES): a typed error
    says what is wrong; anything else is an internal error (exit 3) whose traceback --verbose shows."""

    @wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except SweepFailed as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(exc.code) from None
        except MismatchError as exc:
            typer.echo(f"mismatch: {exc}", err=True)  # plain echo: one line, no markup, no wrapping
            raise typer.Exit(exit_code(exc)) from None
        except (QpdeError, FileNotFoundError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exit_code(exc)) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - a bug or a library failure: one line, exit 3
            logging.getLogger(__name__).info("internal error", exc_info=True)  # shown with --verbose
            typer.echo(f"internal error: {type(exc).__name__}: {exc} (rerun with --verbose for the traceback)",
                       err=True)
            raise typer.Exit(EXIT_FAILURE) from None

    return wrapper


Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log each stage.")]
OutDir = Annotated[Path, typer.Option("--out", help="Root folder for models/, hls/, sim/, bitstreams/, reports.")]


@app.command(epilog=EXIT_HELP)
@cli_errors
def run(
    config: Annotated[Path | None, typer.Argument(
        help="Sweep TOML, or an embedded sweep by name (quick, quick-2d, hardware, paper); default: quick (small Burgers FNO).")] = None,
    out: OutDir = Path("."),
    datasets: Annotated[str | None, typer.Option(help="Comma list overriding the config's datasets.")] = None,
    archs: Annotated[str | None, typer.Option(help="Comma list overriding the config's architectures.")] = None,
    scenarios: Annotated[str | None, typer.Option(help="Comma list, e.g. fp32,w4a8,w8a8.")] = None,
    resolutions: Annotated[str | None, typer.Option(help="Comma list of model resolutions, e.g. 64,32.")] = None,
    backends: Annotated[str | None, typer.Option(
        help="Comma list of hardware backends: hls4ml, rtl (fully parallel), folded (streaming, PE×SIMD), finn.")] = None,
    executor: Annotated[str, typer.Option(help="serial, local (process pool) or ray.")] = "local",
    workers: Annotated[int | None, typer.Option(min=1, help="Processes for --executor local (default: cores).")] = None,
    ray_address: Annotated[str | None, typer.Option(help="Existing Ray cluster, e.g. ray://host:10001.")] = None,
    wait: Annotated[bool, typer.Option(
        "--wait", help="If another qpde process holds --out, wait for it instead of refusing.")] = False,
    device: Annotated[str | None, typer.Option(
        help="Training device: auto (CUDA when available), cpu or cuda; overrides the config's train.device.")] = None,
    start: Annotated[str | None, typer.Option(
        "--from", help="Rerun this step and every step downstream of it, ignoring their caches (`qpde steps`).")] = None,
    stop: Annotated[str | None, typer.Option(
        "--to", help="Stop after this step (flow order: `qpde steps`); the report covers what exists.")] = None,
    verbose: Verbose = False,
) -> None:
    """Whole flow: data → float training → QAT → QONNX → hls4ml → C-sim verdicts → report.

    Every variant runs even when another fails; a failed variant gets a row saying why, and the run
    then exits non-zero with a summary (1 if any simulation differs from the golden). Nothing is
    synthesized before its C simulation (or RTL simulation) equals the golden."""
    from qpde.config import load_config, with_overrides
    from qpde.flow import Plan
    from qpde.pipeline import Problem, locked, run_sweep, sweep_exit_code
    from qpde.progress import SweepProgress

    _setup_logging(verbose)
    plan = Plan(start=start, stop=stop)
    cfg = with_overrides(
        load_config(config), datasets=datasets, archs=archs, scenarios=scenarios, resolutions=resolutions,
        backends=backends,
    )
    if device is not None:
        import dataclasses

        from qpde.config import validate

        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, device=device))
        validate(cfg, "--device")
    start = time.perf_counter()
    problems: list[Problem] = []
    with locked(out, wait=wait), SweepProgress(console, cfg.variants(), cfg.backends) as progress:
        csv = run_sweep(cfg, out, executor=executor, workers=workers, ray_address=ray_address,
                        on_variant=progress.announce, problems=problems, plan=plan)
    _print_summary(csv)
    console.print(f"done in {time.perf_counter() - start:.0f} s: {csv}, {csv.parent / 'report.md'}, "
                  f"{csv.parent / 'pareto.png'}")
    for p in problems:
        if not p.fails_sweep:
            console.print(f"refused: {p.variant} ({p.stage}): {p.reason}", markup=False, highlight=False)
    code = sweep_exit_code(problems)
    if code:
        failing = [p for p in problems if p.fails_sweep]
        lines = [f"{len({p.variant for p in failing})} of {len(cfg.variants())} variants failed:"]
        lines += [f"  {p.variant} [{p.stage}] {p.status}: {p.reason}" for p in failing]
        raise SweepFailed("\n".join(lines), code)


def _print_summary(csv: Path) -> None:
    import pandas as pd
    from rich.table import Table

    df = pd.read_csv(csv)
    table = Table(title=f"results ({csv})")
    for col in ("variant", "backend", "BOPs", "nRMSE", "C-sim mismatches", "LUT"):
        table.add_column(col, no_wrap=col == "variant")

    def cell(value, fmt="{}"):
        return "" if pd.isna(value) else fmt.format(value)

    for _, row in df.iterrows():
        csim = "" if pd.isna(row["csim_samples"]) else f"{int(row['csim_mismatches'])} / {int(row['csim_samples'])}"
        table.add_row(row["variant"], row["backend"], cell(row["bops"], "{:.3g}"), cell(row["nrmse"], "{:.4f}"),
                      csim, cell(row["lut"], "{:.0f}"))
    Console(width=max(100, Console().width)).print(table)


def load_inputs(path: Path, graph) -> np.ndarray:
    """Raw model inputs from a .npy file, checked before any build: real numbers (a complex array is
    refused, not truncated), finite, and [n, *input] (or one input without its batch axis)."""
    import numpy as np

    if not path.is_file():
        raise DataError(f"inputs file not found: {path}")
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy array of numbers ({exc})") from exc
    if not isinstance(x, np.ndarray):
        raise DataError(f"{path}: expected one .npy array, found {type(x).__name__}")
    if np.iscomplexobj(x):
        raise DataError(f"{path}: complex inputs ({x.dtype}) are refused: the model takes real fields")
    if x.dtype.kind not in "fiu":
        raise DataError(f"{path}: inputs must be real numbers, found dtype {x.dtype}")
    expected = tuple(int(d) for d in graph.input_shape[1:])
    if x.shape == expected:
        x = x[None]
    if x.ndim < 1 or x.shape[1:] != expected or x.shape[0] == 0:
        raise DataError(f"{path}: inputs have shape {x.shape}; the model takes [n, {', '.join(map(str, expected))}] "
                        f"(n ≥ 1 fields of {int(np.prod(expected))} values)")
    finite = np.isfinite(x).reshape(len(x), -1).all(axis=1)
    if not finite.all():
        raise DataError(f"{path}: input {int(np.flatnonzero(~finite)[0])} holds NaN or Inf "
                        f"({int((~finite).sum())} of {len(x)} inputs are not finite)")
    return x.astype(np.float64)


@app.command(epilog=EXIT_HELP)
@cli_errors
def csim(
    target: Annotated[str, typer.Argument(help="Variant id (e.g. burgers-fno-w4a8-r64) or a .qonnx.onnx file.")],
    inputs: Annotated[Path | None, typer.Option(help="Raw float model inputs [n, N] (.npy).")] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write C-sim outputs here (.npy).")] = None,
    root: Annotated[Path, typer.Option(help="Root folder of the sweep's artifacts.")] = Path("."),
    config: Annotated[Path | None, typer.Option(help="Sweep TOML the variant came from (for its test set).")] = None,
    project: Annotated[Path | None, typer.Option(
        help="Keep the hls4ml project in this folder (default: a temporary folder, removed afterwards).")] = None,
    verbose: Verbose = False,
) -> None:
    """C-simulate a variant: given inputs → outputs; no inputs → the whole test-set verdict.
    Every output is compared with the exact golden; exit code 1 on any mismatch. The project is
    built in a scratch folder: the sweep's own artifacts (hls/, sim/ verdicts) are never changed."""
    import shutil
    import tempfile

    import numpy as np

    from qpde import golden
    from qpde.config import HLSConfig, Variant, load_config
    from qpde.backends.hls4ml import build_project
    from qpde.flow import Flow
    from qpde.layout import Layout
    from qpde.qgraph import QGraph
    from qpde.backends.hls4ml.csim import csim_outputs
    from qpde.backends.verdict import compare

    _setup_logging(verbose)
    layout = Layout(root)
    cfg = load_config(config)
    if target.endswith(".onnx"):
        onnx_path, variant = Path(target), None
        if not onnx_path.is_file():
            raise DataError(f"QONNX file not found: {onnx_path}")
    else:
        variant = Variant.parse(target)
        onnx_path = layout.qonnx(variant)
        if not onnx_path.is_file():
            raise DataError(f"{onnx_path} not found: run `qpde run` for {variant.id} first (or pass --root)")
    graph = QGraph(onnx_path)
    if inputs is not None:
        x = load_inputs(inputs, graph)
    elif variant is not None:
        test, _ = Flow(cfg, root).split(variant.dataset, "test")
        x = test.step_inputs(variant.resolution)
    else:
        raise ConfigError("a .onnx file has no test set: pass --inputs X.npy (raw model inputs)")
    scratch = Path(tempfile.mkdtemp(prefix="qpde-csim-")) if project is None else project
    try:
        built = build_project(graph, scratch, cfg.hls if variant else HLSConfig())
        outputs = csim_outputs(graph, built, x)
    finally:
        if project is None:
            shutil.rmtree(scratch, ignore_errors=True)
    if out_file is not None:
        np.save(out_file, outputs)
    verdict = compare("hls4ml-csim", golden.run(graph, x), outputs)
    console.print(f"{verdict.samples} samples, {verdict.mismatching_samples} mismatching the golden")
    if not verdict.exact:
        raise MismatchError(f"{verdict.mismatching_samples} of {verdict.samples} samples differ "
                            f"(first at index {verdict.first_mismatch_index})")


@app.command()
@cli_errors
def search(
    dataset: Annotated[str, typer.Option(help="Dataset, e.g. burgers.")],
    arch: Annotated[str, typer.Option(help="Architecture, e.g. fno.")],
    target_nrmse: Annotated[float, typer.Option(help="Largest acceptable one-step nRMSE (test set).")],
    config: Annotated[Path | None, typer.Argument(help="Sweep TOML whose scenarios × resolutions are searched.")] = None,
    metric: Annotated[str, typer.Option(
        help="Cost to minimise: bops (exact count), lut (Yosys LUTs of the RTL), latency (RTL pipeline cycles).")] = "bops",
    part: Annotated[str | None, typer.Option(
        help="FPGA part the design must fit, e.g. LFE5U-85F, xc7a200t, xcvu13p: the cost is then the cheapest "
             "folded design that fits it (Yosys counts; nextpnr placement on ECP5).")] = None,
    fps: Annotated[float | None, typer.Option(
        help="Fields/s the folded design must reach (default: the config's [folded] target_fps).")] = None,
    out: OutDir = Path("."),
    verbose: Verbose = False,
) -> None:
    """Cheapest quantized variant meeting an nRMSE target, training as few variants as possible."""
    from qpde.config import load_config
    from qpde.search import search as run_search

    from qpde.pipeline import locked

    _setup_logging(verbose)
    cfg = load_config(config)
    with locked(out):
        result = run_search(cfg, out, dataset, arch, target_nrmse, metric, part=part, fps=fps)
    for c in result.candidates:
        nrmse = "" if c.nrmse is None else f"nRMSE {c.nrmse:.4f}"
        cost = "" if c.cost is None or metric == "bops" else f"  {metric} {c.cost:g} ({c.cost_source})"
        console.print(f"  {c.variant:28s} {c.bops:12.4g} BOPs  {c.status:25s} {nrmse}{cost}")
    console.print(f"trained {result.trained_variants} of the grid's {result.grid_variants} models")
    if result.best is None:
        fits = f" with a folded design that fits {result.part}" if result.part else ""
        raise ConfigError(f"no variant meets nRMSE <= {target_nrmse}{fits}; see {out}/search-{dataset}-{arch}.json")
    design = f", folded design {result.best_design} fits {result.part or 'the target'}" if result.best_design else ""
    console.print(f"best: {result.best}{design} (C-sim {result.csim['samples']} samples, "
                  f"{result.csim['mismatching_samples']} mismatching the golden)")


def run_step(name: str, variants: list[str] | None, config: Path | None, out: Path, force: bool, wait: bool) -> None:
    """One step of the flow for the given variants (default: every variant of the sweep it applies to),
    with whatever it needs upstream (from the cache when it can). Prints each artifact's path; every
    variant is tried, then a failure exits like `qpde run` (1 if a simulation differs from the golden)."""
    from qpde.config import Variant, load_config
    from qpde.flow import STEPS, Flow, Plan, check_step, dataset_scope
    from qpde.layout import portable
    from qpde.pipeline import _problem, locked, sweep_exit_code

    step = STEPS[check_step(name)]
    cfg = load_config(config)
    plan = Plan(start=name if force else None, stop=name)
    targets = [Variant.parse(v) for v in variants] if variants else [v for v in cfg.variants() if step.applies(v)]
    if step.per_dataset:
        targets = [dataset_scope(d) for d in dict.fromkeys(v.dataset for v in targets)]
    problems = []
    with locked(out, wait=wait):
        flow = Flow(cfg, out, plan)
        for variant in targets:
            label = variant.dataset if step.per_dataset else variant.id
            try:
                artifact = flow.get(name, variant)
            except (typer.Exit, KeyboardInterrupt):
                raise
            except Exception as exc:  # noqa: BLE001 - said per variant; the others go on
                problems.append(_problem(flow, variant, name, exc))
                continue
            typer.echo(f"{label}: {portable(str(artifact.path), out)}")
    code = sweep_exit_code(problems)
    if code:
        lines = [f"{len(problems)} of {len(targets)} failed:"] + [f"  {p.variant} [{p.stage}] {p.status}: {p.reason}"
                                                                 for p in problems]
        raise SweepFailed("\n".join(lines), code)
    for p in problems:  # refusals
        console.print(f"refused: {p.variant} ({p.stage}): {p.reason}", markup=False, highlight=False)


Variants = Annotated[list[str] | None, typer.Argument(
    help="Variant ids, e.g. burgers-fno-w4a8-r16 (default: every variant of the sweep the step applies to).")]
ConfigOption = Annotated[Path | None, typer.Option(
    "--config", help="Sweep TOML or embedded name (quick, hardware, …); default: quick.")]
Force = Annotated[bool, typer.Option(
    "--force", help="Rebuild the step's artifact even when its cache is valid.")]
Wait = Annotated[bool, typer.Option(
    "--wait", help="If another qpde process holds --out, wait for it instead of refusing.")]


@app.command(epilog=EXIT_HELP)
@cli_errors
def step(
    name: Annotated[str, typer.Argument(help="The step (see `qpde steps`): data, train, export, metrics, csim, …")],
    variants: Variants = None,
    config: ConfigOption = None,
    out: OutDir = Path("."),
    force: Force = False,
    wait: Wait = False,
    verbose: Verbose = False,
) -> None:
    """Run one step of the flow into --out, building what it needs upstream (cached). Prints the
    artifacts' paths. Its gate holds: a C-sim or RTL-sim verdict that differs from the golden exits 1."""
    _setup_logging(verbose)
    run_step(name, variants, config, out, force, wait)


def _step_command(name: str):
    """`qpde NAME` = `qpde step NAME` for the steps users ask for by name."""

    def command(variants: Variants = None, config: ConfigOption = None, out: OutDir = Path("."), force: Force = False,
                wait: Wait = False, verbose: Verbose = False) -> None:
        _setup_logging(verbose)
        run_step(name, variants, config, out, force, wait)

    return cli_errors(command)


app.command("train", epilog=EXIT_HELP, help="Train variants (float; quantized: QAT from the float checkpoint, "
            "trained first if needed): `qpde step train`.")(_step_command("train"))
app.command("export", epilog=EXIT_HELP, help="Export quantized variants to QONNX (training them first if "
            "needed): `qpde step export`.")(_step_command("export"))


@app.command()
def steps() -> None:
    """The flow's steps in order: what each reads, the tools its cache key names, and its artifact."""
    from rich.markup import escape
    from rich.table import Table

    from qpde.flow import describe

    table = Table(title="qpde flow (`qpde run --from/--to STEP`, `qpde step STEP`)")
    rows = describe()
    for col in rows[0]:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*(escape(v) for v in row.values()))
    Console(width=max(120, Console().width)).print(table)


@app.command()
@cli_errors
def report(out: OutDir = Path("."), verbose: Verbose = False) -> None:
    """Write results.csv, report.md and pareto.png from the artifacts under --out."""
    from qpde.report import write_report

    _setup_logging(verbose)
    csv = write_report(out)
    _print_summary(csv)


app.command("data")(cli_errors(data_command))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
