"""Accuracy of every quantized scenario relative to float, from one sweep.

Usage: .venv/bin/python benchmarks/accuracy.py [--config quick|paper-burgers|FILE] [--out DIR]
       [--device auto|cpu|cuda] [--backends]
Runs the sweep (cached: a rerun only prints) and prints, per scenario, the one-step and rollout
nRMSE of the exact golden (what the accelerator computes) and their ratios to the float model's,
and BOPs relative to float. CPU-sized by default (the embedded quick sweep); `--config
paper-burgers` is the paper-config Burgers FNO at r256, meant for a GPU. Accuracy only by default
(no hardware backends); --backends keeps the config's (hls4ml C-sim verdicts too)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from qpde.config import load_config, validate
from qpde.pipeline import run_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="quick")
    parser.add_argument("--out", type=Path, default=None, help="default: bench-accuracy-<config>")
    parser.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    parser.add_argument("--backends", action="store_true", help="also run the config's hardware backends")
    parser.add_argument("--executor", default="local", choices=["serial", "local"])
    args = parser.parse_args()
    cfg = load_config(args.config)
    if not args.backends:
        cfg = dataclasses.replace(cfg, backends=())
    if args.device:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, device=args.device))
    validate(cfg, "benchmarks/accuracy.py")
    out = args.out or Path(f"bench-accuracy-{Path(args.config).stem}")
    start = time.perf_counter()
    run_sweep(cfg, out, executor=args.executor)
    wall = time.perf_counter() - start
    print(f"{cfg.name}: {len(cfg.variants())} variants, sweep {wall:.0f} s wall (0 s = all cached) in {out}")
    print(f"[quant] rounding = {cfg.quant.rounding}, state_bits = {cfg.quant.state_bits}")
    groups: dict = {}
    for variant in cfg.variants():
        metrics = json.loads((out / "models" / variant.id / "metrics.json").read_text())
        groups.setdefault((variant.dataset, variant.arch, variant.resolution), {})[variant.scenario] = metrics
    for (dataset, arch, resolution), by_scenario in groups.items():
        ref = by_scenario.get("fp32")
        print(f"\n{dataset} {arch} r{resolution}")
        print(f"| scenario | one-step nRMSE | ratio | rollout nRMSE | ratio | BOPs | BOPs ratio |")
        print("|---|---|---|---|---|---|---|")
        for scenario, m in by_scenario.items():
            def ratio(key, fmt=".2f"):
                if ref is None or m.get(key) is None or not ref.get(key):
                    return ""
                return format(m[key] / ref[key], fmt)
            rollout = m.get("rollout_nrmse")
            print(f"| {scenario} | {m['nrmse']:.4g} | {ratio('nrmse')} | "
                  f"{'' if rollout is None else f'{rollout:.4g}'} | {ratio('rollout_nrmse')} | "
                  f"{m['bops']:.3g} | {ratio('bops', '.3g')} |")


if __name__ == "__main__":
    main()
