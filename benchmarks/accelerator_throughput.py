"""Accelerator fields/s (Fmax / II from nextpnr-ecp5) vs the numerical solver and float PyTorch on this CPU.

One "solved field" is one step of the task: the field at one saved time → the next saved time.
- accelerator: the RTL rows of results.csv (fully parallel, II = 1 cycle, so fields/s = Fmax); this is
  the core's rate after place and route, not measured on a board, and excludes host I/O;
- solver: qpde's Burgers finite-volume solver advancing test fields by one saved-time interval on the
  grid it generates data with (batched, all test fields at once, 1 thread);
- float PyTorch: the float FNO of the same sweep at the same model resolution (batched and one field
  per call, 1 thread).

Usage: .venv/bin/python benchmarks/accelerator_throughput.py [--config hardware] [--out DIR]
(runs the sweep there first if it has no results.csv). Prints ratios measured in this one run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from qpde.config import Variant, load_config
from qpde.data.burgers import DEFAULT_CELLS, solve
from qpde.pipeline import Sweep, run_sweep
from qpde.train import load_checkpoint


def best_seconds(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="hardware", help="sweep TOML or embedded name (needs rtl in backends)")
    parser.add_argument("--out", type=Path, default=Path("bench-out/hardware"))
    args = parser.parse_args()
    cfg = load_config(args.config)
    if not (args.out / "results.csv").exists():
        run_sweep(cfg, args.out)
    df = pd.read_csv(args.out / "results.csv")
    placed = df[(df["backend"] == "rtl") & df["fields_per_s"].notna()]
    if placed.empty:
        raise SystemExit(f"no placed RTL design in {args.out / 'results.csv'}: run with backends rtl and "
                         "a model small enough for [rtl] pnr_max_lut")
    torch.set_num_threads(1)
    dataset, resolution = cfg.datasets[0], cfg.resolutions[0]
    sweep = Sweep(cfg, args.out)
    test, _ = sweep.split(dataset, "test")
    x = test.step_inputs(resolution).astype(np.float32)

    data_cfg = cfg.data_for(dataset)
    n_times = data_cfg.params.get("n_times", 201)
    interval = np.array([0.0, 2.0 / (n_times - 1)])
    cells = max(data_cfg.resolution, data_cfg.params.get("cells", DEFAULT_CELLS))
    rng = np.random.default_rng(0)
    u0 = rng.standard_normal((len(x), cells)) * 0.5  # the solver's cost does not depend on the values much
    solver_rate = len(x) / best_seconds(lambda: solve(u0, interval, data_cfg.params.get("nu", 0.01), progress=False))

    model = load_checkpoint(sweep.checkpoint(Variant(dataset, "fno", "fp32", resolution)))
    with torch.no_grad():
        batch = torch.from_numpy(x)
        torch_rate = len(x) / best_seconds(lambda: model(batch))
        single = [torch.from_numpy(row[None]) for row in x]
        torch_single_rate = len(x) / best_seconds(lambda: [model(row) for row in single])

    print(f"Burgers, {len(x)} test fields; model resolution {resolution}, solver on {cells} cells, 1 thread")
    print(f"  numerical solver (FV, batched)     {solver_rate:14.0f} fields/s")
    print(f"  float PyTorch FNO (batched)        {torch_rate:14.0f} fields/s")
    print(f"  float PyTorch FNO (one per call)   {torch_single_rate:14.0f} fields/s")
    for _, row in placed.iterrows():
        rate = float(row["fields_per_s"])
        print(f"  RTL {row['variant']:24s}   {rate:14.0f} fields/s  (Fmax {row['fmax_mhz']} MHz, II 1; "
              f"{rate / solver_rate:,.0f}x solver, {rate / torch_rate:,.0f}x PyTorch batched, "
              f"{rate / torch_single_rate:,.0f}x PyTorch one per call)")


if __name__ == "__main__":
    main()
