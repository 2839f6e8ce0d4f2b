"""Per architecture: BOPs, C-sim throughput next to float PyTorch, and hls4ml conversion + compile time.

Runs (or reuses) a sweep of the default Burgers data (or a 2D dataset: --dataset darcy at 8×8 on a
16×16 reference grid) with all three architectures, then for every quantized variant builds its
hls4ml project afresh (timed: conversion + g++ compile) and runs C-sim and the float model on the
same test fields, one thread. Ratios are from this one run.

Usage: .venv/bin/python benchmarks/archs.py [--out DIR] [--dataset D] [--scenarios w4a8,w8a8] [--epochs 30]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from qpde.config import DataConfig, Variant, load_config, with_overrides
from qpde.backends.hls4ml import build_project
from qpde.pipeline import Sweep, run_sweep
from qpde.qgraph import QGraph
from qpde.backends.hls4ml.csim import csim_outputs
from qpde.task import SPATIAL_NDIM
from qpde.train import load_checkpoint


TINY_2D_PARAMS = {"navier-stokes": {"n_times": 6, "t_final": 5.0}}


def rate(fn, x: np.ndarray, repeats: int = 3) -> float:
    best = min(_seconds(fn, x) for _ in range(repeats))
    return len(x) / best


def _seconds(fn, x) -> float:
    start = time.perf_counter()
    fn(x)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench-out/archs"))
    parser.add_argument("--dataset", default="burgers", help="burgers, diffusion-sorption, darcy, navier-stokes")
    parser.add_argument("--scenarios", default="w4a8,w8a8")
    parser.add_argument("--epochs", type=int, default=30, help="float epochs (QAT: a third); accuracy is not the point")
    args = parser.parse_args()
    cfg = with_overrides(load_config(None), archs="fno,unet,transformer", scenarios=f"fp32,{args.scenarios}",
                         datasets=args.dataset)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=args.epochs,
                                                             qat_epochs=max(1, args.epochs // 3)))
    if SPATIAL_NDIM[args.dataset] == 2:  # the quick sweep's 1D sizes are r² = 4096 points per field in 2D
        cfg = dataclasses.replace(
            cfg, resolutions=(8,), fno=dataclasses.replace(cfg.fno, modes=3),
            data={args.dataset: DataConfig(samples=20, resolution=16, params=TINY_2D_PARAMS.get(args.dataset, {}))})
    args.out = args.out / args.dataset
    if not (args.out / "results.csv").exists():
        run_sweep(cfg, args.out)
    results = pd.read_csv(args.out / "results.csv")
    torch.set_num_threads(1)
    sweep = Sweep(cfg, args.out)
    resolution, dataset = cfg.resolutions[0], cfg.datasets[0]
    test, _ = sweep.split(dataset, "test")
    x = test.step_inputs(resolution).astype(np.float64)
    print(f"{dataset}, resolution {resolution}, {len(x)} test fields, 1 thread")
    print(f"{'variant':34s} {'BOPs':>10s} {'C-sim f/s':>10s} {'float f/s':>10s} {'ratio':>8s} {'build+compile':>14s}")
    for arch in cfg.archs:
        float_model = load_checkpoint(sweep.checkpoint(Variant(dataset, arch, "fp32", resolution)))

        def torch_float(batch, model=float_model):
            with torch.no_grad():
                return model(torch.from_numpy(batch.astype(np.float32)))

        torch_rate = rate(torch_float, x)
        for scenario in args.scenarios.split(","):
            variant = Variant(dataset, arch, scenario, resolution)
            row = results[(results["variant"] == variant.id) & (results["backend"] == "hls4ml")]
            if row.empty:
                print(f"{variant.id:34s} (no hls4ml row: see results.csv)")
                continue
            graph = QGraph(sweep.qonnx(variant))
            project_dir = args.out / "bench-hls" / variant.id
            shutil.rmtree(project_dir, ignore_errors=True)
            start = time.perf_counter()
            project = build_project(graph, project_dir, cfg.hls)
            build_s = time.perf_counter() - start
            csim_rate = rate(lambda batch: csim_outputs(graph, project, batch), x)
            print(f"{variant.id:34s} {row['bops'].iloc[0]:10.3g} {csim_rate:10.0f} {torch_rate:10.0f} "
                  f"{csim_rate / torch_rate:8.3g} {build_s:12.1f} s")


if __name__ == "__main__":
    main()
