"""`qpde data DATASET --out FILE.h5`: generate a PDEBench-layout dataset file.

The main CLI registers `data_command` (wrapped in its error handler) as the `data` command."""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from qpde.data import DATASETS, generate, parameters
from qpde.errors import DataError

log = logging.getLogger(__name__)

# Saved grid when --resolution is not given: the quick configuration's sizes (cells per side).
DEFAULT_RESOLUTION = {"burgers": 128, "diffusion-sorption": 128, "darcy": 64, "navier-stokes": 64}


def parse_params(dataset: str, items: list[str]) -> dict[str, object]:
    """["nu=0.001", "n_times=21"] → {"nu": 0.001, "n_times": 21}; values are Python literals."""
    allowed = parameters(dataset)
    params: dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in allowed:
            raise DataError(
                f"{dataset}: bad --param {item!r}; use KEY=VALUE with KEY one of {', '.join(allowed)}"
            )
        try:
            params[key] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError) as exc:
            raise DataError(f"{dataset}: --param {key} needs a number or True/False, got {text!r}") from exc
    return params


def data_command(
    dataset: Annotated[str, typer.Argument(help=f"One of: {', '.join(DATASETS)}.")],
    out: Annotated[Path, typer.Option("--out", help="HDF5 file to write (PDEBench layout).")],
    samples: Annotated[
        int, typer.Option("--samples", min=1, help="Trajectories (Darcy: coefficient/solution pairs).")
    ] = 64,
    resolution: Annotated[
        int | None,
        typer.Option(
            "--resolution",
            min=2,
            help="Saved grid points per axis "
            "(default: burgers, diffusion-sorption 128; darcy, navier-stokes 64).",
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Random seed of the initial conditions / coefficients.")
    ] = 0,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="Generator parameter KEY=VALUE, repeatable (e.g. -p nu=0.001 -p n_times=21).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")] = False,
) -> None:
    """Generate a dataset with qpde's solvers and write it as a PDEBench HDF5 file.

    Checked before any work: the dataset and parameters, the memory the data needs, and that --out
    does not exist yet (pass --force to overwrite it)."""
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; available: {', '.join(DATASETS)}")
    params = parse_params(dataset, param or [])
    resolution = DEFAULT_RESOLUTION[dataset] if resolution is None else resolution
    if out.exists() and not force:
        raise DataError(f"{out} exists; pass --force to overwrite it")
    if out.is_dir():
        raise DataError(f"{out} is a folder; --out names the HDF5 file to write")
    path = generate(dataset, out, samples=samples, resolution=resolution, seed=seed, **params)
    Console(stderr=True).print(f"wrote {path}: {dataset}, {samples} samples, resolution {resolution}")
