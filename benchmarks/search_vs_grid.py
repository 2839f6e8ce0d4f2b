"""How many models the accuracy-target search trains, next to the full grid, to find the same point.

Usage: .venv/bin/python benchmarks/search_vs_grid.py [CONFIG] [--out DIR] [--target X]
Default: the quick Burgers sweep at resolutions 32 and 64, all five scenarios; the target is the
median nRMSE of the grid's quantized variants. Prints counts and their ratio from this one run."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import pandas as pd

from qpde.config import load_config
from qpde.pipeline import run_sweep
from qpde.search import search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config", nargs="?", type=Path)
    parser.add_argument("--out", type=Path, default=Path("bench-search"))
    parser.add_argument("--target", type=float)
    args = parser.parse_args()
    cfg = load_config(args.config)
    if args.config is None:
        cfg = dataclasses.replace(cfg, resolutions=(32, 64), backends=("hls4ml",))
    start = time.perf_counter()
    grid = pd.read_csv(run_sweep(cfg, args.out / "grid", executor="local"))
    grid_seconds = time.perf_counter() - start
    quantized = grid[grid["backend"] == "hls4ml"].sort_values("bops")
    target = args.target if args.target is not None else float(quantized["nrmse"].median())
    feasible = quantized[quantized["nrmse"] <= target]
    expected = feasible.iloc[0]["variant"] if not feasible.empty else None
    start = time.perf_counter()
    result = search(cfg, args.out / "search", cfg.datasets[0], cfg.archs[0], target)
    search_seconds = time.perf_counter() - start
    print(f"target nRMSE <= {target:.4f}")
    print(f"full grid: {result.grid_variants} models trained, cheapest feasible = {expected} ({grid_seconds:.0f} s)")
    print(f"search:    {result.trained_variants} models trained, found = {result.best} ({search_seconds:.0f} s)")
    print(f"same point: {result.best == expected}; models trained, search / grid = "
          f"{result.trained_variants / result.grid_variants:.2f}")
    for c in result.candidates:
        print(f"  {c.variant:26s} {c.bops:10.3g} BOPs  {c.status}")


if __name__ == "__main__":
    main()
