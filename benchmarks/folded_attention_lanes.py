"""The tiny Transformer1d's folded designs at each lanes of its attention units (docs/folded.md,
"Lanes of the attention units"): II predicted and measured, xc7 counts, the netlist's verdict.

    PYTHONPATH=src .venv/bin/python benchmarks/folded_attention_lanes.py --target-ii 64 32 0 --out bench-out/attn

Model: dim 4, 1 layer, MLP 8, N 16 tokens, w4a8 (tests/test_transformer.py's TINY), calibrated on
random inputs, not trained (the hardware figures do not depend on the weights' values). Per target
II (0: no target, as fast as the optimizer goes): optimize → build_folded → folded_verdict (48
random + edge fields, 30 % gaps/stalls and none) → synth_folded xc7 → netlist_verdict (8 fields).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from qpde.backends.folded import build_dataflow, build_folded, folded_verdict, optimize
from qpde.backends.folded.synth import netlist_verdict, synth_folded
from qpde.backends.rtl import default_check_inputs
from qpde.export import export_model
from qpde.models.transformer import Transformer1d, TransformerConfig
from qpde.qgraph import QGraph
from qpde.quant import parse_scenario

N = 16


def tiny_transformer(out: Path, scenario: str) -> Path:
    torch.manual_seed(0)
    model = Transformer1d(N, TransformerConfig(dim=4, layers=1, mlp=8), parse_scenario(scenario))
    model.train()
    with torch.no_grad():  # calibrate the activation scales
        for _ in range(32):
            model(torch.randn(8, N))
    return export_model(model.eval(), N, out / f"transformer-{scenario}.qonnx.onnx")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target-ii", type=int, nargs="+", default=[64, 32, 0])
    ap.add_argument("--scenario", default="w4a8")
    ap.add_argument("--out", type=Path, default=Path("bench-out/attention-lanes"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    graph = QGraph(tiny_transformer(args.out, args.scenario))
    df = build_dataflow(graph)
    x = np.asarray(default_check_inputs(graph, 48))
    for target in args.target_ii:
        t0 = time.perf_counter()
        folding = optimize(df, target_ii=target or None)
        out = args.out / f"ii{folding.ii_cycles}"
        design = build_folded(graph, out, folding.layers)
        verdict = folded_verdict(graph, design, x)
        xc7 = synth_folded(design, out / "xc7")
        post = netlist_verdict(graph, design, out / "xc7", x)
        lanes = {u.name: folding.layers[u.name]["lanes"] for u in df.units if u.kind in ("outer", "mvau_stream")}
        row = {"target_ii": target or None, "attention_lanes": lanes, "folding": folding.layers,
               "sum_pe_simd": sum(v["pe"] * v["simd"] for v in folding.layers.values() if "pe" in v),
               "ii_predicted": design.predicted_ii, "ii_measured": design.ii_measured,
               "latency_cycles": design.latency_cycles, "exact": verdict.exact, "fields": verdict.samples,
               "xc7": {k: xc7.get(k) for k in ("lut", "ff", "carry", "dsp", "bram")},
               "netlist_equal": None if post is None else post.exact,
               "fields_per_s_100mhz": 100e6 / design.predicted_ii, "seconds": round(time.perf_counter() - t0, 1)}
        (out / "row.json").write_text(json.dumps(row, indent=2))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
