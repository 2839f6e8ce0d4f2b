"""Command line: `qpde run/data/csim/report`. Library functions do the work; errors become one
line on stderr and a non-zero exit code (1: simulation mismatch, 2: any other error)."""

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
from qpde.errors import ConfigError, MismatchError, QpdeError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Neural PDE solvers → verified FPGA accelerators.")
console = Console(stderr=True)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)], force=True,
    )


def cli_errors(func):
    """Turn qpde's typed errors into one line and an exit code."""

    @wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except MismatchError as exc:
            typer.echo(f"mismatch: {exc}", err=True)  # plain echo: one line, no markup, no wrapping
            raise typer.Exit(1) from None
        except (QpdeError, FileNotFoundError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper


Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log each stage.")]
OutDir = Annotated[Path, typer.Option("--out", help="Root folder for models/, hls/, sim/, bitstreams/, reports.")]


@app.command()
@cli_errors
def run(
    config: Annotated[Path | None, typer.Argument(
        help="Sweep TOML, or an embedded sweep by name (quick, quick-2d, hardware, paper); default: quick (small Burgers FNO).")] = None,
    out: OutDir = Path("."),
    datasets: Annotated[str | None, typer.Option(help="Comma list overriding the config's datasets.")] = None,
    archs: Annotated[str | None, typer.Option(help="Comma list overriding the config's architectures.")] = None,
    scenarios: Annotated[str | None, typer.Option(help="Comma list, e.g. fp32,w4a8,w8a8.")] = None,
    resolutions: Annotated[str | None, typer.Option(help="Comma list of model resolutions, e.g. 64,32.")] = None,
    backends: Annotated[str | None, typer.Option(help="Comma list of hardware backends: hls4ml, rtl, finn.")] = None,
    executor: Annotated[str, typer.Option(help="serial, local (process pool) or ray.")] = "local",
    workers: Annotated[int | None, typer.Option(help="Processes for --executor local (default: cores).")] = None,
    ray_address: Annotated[str | None, typer.Option(help="Existing Ray cluster, e.g. ray://host:10001.")] = None,
    device: Annotated[str | None, typer.Option(
        help="Training device: auto (CUDA when available), cpu or cuda; overrides the config's train.device.")] = None,
    verbose: Verbose = False,
) -> None:
    """Whole flow: data → float training → QAT → QONNX → hls4ml → C-sim verdicts → report."""
    from qpde.config import load_config, with_overrides
    from qpde.pipeline import run_sweep

    _setup_logging(verbose)
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

    def announce(variant, stage):
        console.print(f"[bold]{variant.id}[/bold]: {stage}")

    csv = run_sweep(cfg, out, executor=executor, workers=workers, ray_address=ray_address, on_variant=announce)
    _print_summary(csv)
    console.print(f"done in {time.perf_counter() - start:.0f} s: {csv}, {csv.parent / 'report.md'}, "
                  f"{csv.parent / 'pareto.png'}")


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


@app.command()
@cli_errors
def csim(
    target: Annotated[str, typer.Argument(help="Variant id (e.g. burgers-fno-w4a8-r64) or a .qonnx.onnx file.")],
    inputs: Annotated[Path | None, typer.Option(help="Raw float model inputs [n, N] (.npy).")] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write C-sim outputs here (.npy).")] = None,
    root: Annotated[Path, typer.Option(help="Root folder of the sweep's artifacts.")] = Path("."),
    config: Annotated[Path | None, typer.Option(help="Sweep TOML the variant came from (for its test set).")] = None,
    verbose: Verbose = False,
) -> None:
    """C-simulate a variant: given inputs → outputs; no inputs → the whole test-set verdict.
    Every output is compared with the exact golden; exit code 1 on any mismatch."""
    import numpy as np

    from qpde import golden
    from qpde.config import HLSConfig, Variant, load_config
    from qpde.hls import build_project
    from qpde.pipeline import Layout
    from qpde.qgraph import QGraph
    from qpde.sim import compare, csim_outputs

    _setup_logging(verbose)
    layout = Layout(root)
    cfg = load_config(config)
    if target.endswith(".onnx"):
        onnx_path, variant = Path(target), None
        hls_dir = root / "hls" / Path(target).name.removesuffix(".onnx").removesuffix(".qonnx")
    else:
        variant = Variant.parse(target)
        onnx_path = layout.models(variant) / f"{variant.id}.qonnx.onnx"
        if not onnx_path.is_file():
            raise QpdeError(f"{onnx_path} not found: run `qpde run` for {variant.id} first (or pass --root)")
        hls_dir = layout.hls(variant)
    graph = QGraph(onnx_path)
    if inputs is not None:
        if not inputs.is_file():
            raise QpdeError(f"inputs file not found: {inputs}")
        x = np.load(inputs)
    elif variant is not None:
        from qpde.pipeline import Sweep

        test, _ = Sweep(cfg, root).split(variant.dataset, "test")
        x = test.step_inputs(variant.resolution)
    else:
        raise ConfigError("a .onnx file has no test set: pass --inputs X.npy (raw model inputs)")
    project = build_project(graph, hls_dir, cfg.hls if variant else HLSConfig())
    outputs = csim_outputs(graph, project, x)
    if out_file is not None:
        np.save(out_file, outputs)
    verdict = compare("hls4ml-csim", golden.run(graph, x), outputs)
    if variant is not None and inputs is None:
        verdict.save(layout.sim(variant) / "csim_verdict.json")
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
    out: OutDir = Path("."),
    verbose: Verbose = False,
) -> None:
    """Cheapest quantized variant meeting an nRMSE target, training as few variants as possible."""
    from qpde.config import load_config
    from qpde.search import search as run_search

    _setup_logging(verbose)
    result = run_search(load_config(config), out, dataset, arch, target_nrmse, metric)
    for c in result.candidates:
        nrmse = "" if c.nrmse is None else f"nRMSE {c.nrmse:.4f}"
        cost = "" if c.cost is None or metric == "bops" else f"  {metric} {c.cost:g} ({c.cost_source})"
        console.print(f"  {c.variant:28s} {c.bops:12.4g} BOPs  {c.status:25s} {nrmse}{cost}")
    console.print(f"trained {result.trained_variants} of the grid's {result.grid_variants} models")
    if result.best is None:
        raise QpdeError(f"no variant meets nRMSE <= {target_nrmse}; see {out}/search-{dataset}-{arch}.json")
    console.print(f"best: {result.best} (C-sim {result.csim['samples']} samples, "
                  f"{result.csim['mismatching_samples']} mismatching the golden)")


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
