"""Benchmark of the default run: time per stage, and C-sim throughput next to float PyTorch.

Usage: .venv/bin/python benchmarks/spine.py [--out DIR]   (runs `qpde run` there if it has no results)
Prints ratios measured in this one run; the machine is shared, so compare ratios, not seconds."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from qpde.config import Variant, load_config
from qpde.backends.hls4ml import build_project
from qpde.pipeline import Sweep, run_sweep
from qpde.qgraph import QGraph
from qpde.backends.hls4ml.csim import csim_outputs
from qpde.train import load_checkpoint


def fields_per_second(fn, x: np.ndarray, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - start)
    return len(x) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    args = parser.parse_args()
    cfg = load_config(None)
    times_file = args.out / "sim" / "stage_times.json"
    if not (args.out / "results.csv").exists():
        start = time.perf_counter()
        run_sweep(cfg, args.out)
        print(f"qpde run (default sweep): {time.perf_counter() - start:.1f} s wall")
    stage_times = json.loads(times_file.read_text())
    total = sum(stage_times.values())
    print("\nstage times of the run that produced the artifacts (s, share):")
    for stage, seconds in stage_times.items():
        print(f"  {stage:10s} {seconds:8.1f}  {seconds / total:6.1%}")

    sweep = Sweep(cfg, args.out)
    resolution = cfg.resolutions[0]
    test, _ = sweep.split(cfg.datasets[0], "test")
    x = test.step_inputs(resolution).astype(np.float64)
    float_model = load_checkpoint(sweep.checkpoint(Variant(cfg.datasets[0], "fno", "fp32", resolution)))
    torch.set_num_threads(1)

    def torch_float(batch):
        with torch.no_grad():
            return float_model(torch.from_numpy(batch.astype(np.float32)))

    torch_rate = fields_per_second(torch_float, x)
    print(f"\nthroughput on {len(x)} test fields (1 thread):")
    print(f"  float PyTorch (batched)      {torch_rate:12.0f} fields/s  1.00x")
    for scenario in [s for s in cfg.scenarios if s != "fp32"]:
        variant = Variant(cfg.datasets[0], "fno", scenario, resolution)
        graph = QGraph(sweep.qonnx(variant))
        project = build_project(graph, args.out / "hls" / variant.id, cfg.hls)
        rate = fields_per_second(lambda batch: csim_outputs(graph, project, batch), x)
        print(f"  hls4ml C-sim {scenario:6s}         {rate:12.0f} fields/s  {rate / torch_rate:.3g}x")


if __name__ == "__main__":
    main()
