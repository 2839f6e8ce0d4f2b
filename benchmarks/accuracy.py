"""Accuracy of every quantized scenario relative to float, from one sweep.

Usage: .venv/bin/python benchmarks/accuracy.py [--config quick|paper-burgers|FILE] [--out DIR]
       [--device auto|cpu|cuda] [--backends] [--independent N]
Runs the sweep (cached: a rerun only prints) and prints, per scenario, the one-step and rollout
nRMSE of the exact golden (what the accelerator computes) and their ratios to the float model's,
and BOPs relative to float. CPU-sized by default (the embedded quick sweep); `--config
paper-burgers` is the paper-config Burgers FNO at r256, meant for a GPU. Accuracy only by default
(no hardware backends); --backends keeps the config's (hls4ml C-sim verdicts too).
--independent N also scores every variant (exact golden; float: PyTorch) on N trajectories the
sweep never saw, generated with the dataset's data seed + 1: the quick sweep's test split is only 6
trajectories (120 one-step fields), so its ratios move with the few fields it holds (README)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from qpde.config import fingerprint, load_config, validate
from qpde.layout import Layout
from qpde.pipeline import run_sweep


def independent_set(cfg, dataset: str, samples: int, out: Path):
    """`samples` trajectories of `dataset` from the sweep's generator settings at data seed + 1
    (cached in `out`), as one TaskData."""
    from qpde.data import generate, open_dataset
    from qpde.task import STEADY, TaskData

    data_cfg = cfg.data_for(dataset)
    seed = data_cfg.seed + 1
    path = out / f"independent-{dataset}-{samples}-{fingerprint(data_cfg, samples, seed)}.h5"
    if not path.exists():
        generate(dataset, path, samples=samples, resolution=data_cfg.resolution, seed=seed,
                 **data_cfg.params, progress=False)
    with open_dataset(path) as handle:
        indices = np.arange(handle.n_samples)
        if handle.kind in STEADY:
            a, u = handle.darcy_pairs(indices)
            return TaskData(np.stack([a, u], axis=1), handle.grid, handle.periodic, rollout=False)
        return TaskData(handle.fields(indices), handle.grid, handle.periodic)


def independent_metrics(variant, layout: Layout, data) -> dict:
    """One-step and rollout nRMSE of a variant on `data`: the exact golden for quantized variants
    (what the accelerator computes), float PyTorch for float ones, as in the sweep's metrics."""
    import torch

    from qpde.task import evaluate

    onnx = layout.qonnx(variant)
    if onnx.exists():
        from qpde import golden
        from qpde.qgraph import QGraph

        graph = QGraph(onnx)
        predict = lambda x: golden.run(graph, x)  # noqa: E731
    else:
        from qpde.train import load_checkpoint

        model = load_checkpoint(layout.checkpoint(variant))

        def predict(x):
            with torch.no_grad():
                return model(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy().astype(np.float64)
    return evaluate(predict, data, variant.resolution)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="quick")
    parser.add_argument("--out", type=Path, default=None, help="default: bench-accuracy-<config>")
    parser.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    parser.add_argument("--backends", action="store_true", help="also run the config's hardware backends")
    parser.add_argument("--executor", default="local", choices=["serial", "local"])
    parser.add_argument("--independent", type=int, default=0, metavar="N",
                        help="also score every variant on N unseen trajectories (data seed + 1)")
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
    layout = Layout(out)
    groups: dict = {}
    for variant in cfg.variants():
        metrics = json.loads(layout.metrics(variant).read_text())
        groups.setdefault((variant.dataset, variant.arch, variant.resolution), {})[variant.scenario] = metrics
    if args.independent:
        extra = {name: independent_set(cfg, name, args.independent, out) for name in cfg.datasets}
        extra_groups: dict = {}
        for variant in cfg.variants():
            extra_groups.setdefault((variant.dataset, variant.arch, variant.resolution), {})[variant.scenario] = \
                {**groups[(variant.dataset, variant.arch, variant.resolution)][variant.scenario],
                 **independent_metrics(variant, layout, extra[variant.dataset])}
        groups.update({(*key, f"{args.independent} unseen trajectories"): value for key, value in extra_groups.items()})
    for key, by_scenario in groups.items():
        dataset, arch, resolution = key[:3]
        ref = by_scenario.get("fp32")
        split = key[3] if len(key) > 3 else "test split"
        print(f"\n{dataset} {arch} r{resolution}, {split}")
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
