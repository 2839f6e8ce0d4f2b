"""MVAUs only vs the per-layer cmvm choice (docs/folded.md, "cmvm"): one folded design each from the
same QONNX at the same throughput target, each proven bit-exact in Verilator (random stalls and
none; II measured), then Yosys xc7 counts and, with --postsynth, the netlist checked against the golden.

    python benchmarks/folded_cmvm.py MODEL.qonnx.onnx --out DIR [--target-fps 1e5] [--clock-mhz 100]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("qonnx", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--target-fps", type=float, default=1e5)
    ap.add_argument("--clock-mhz", type=float, default=100.0)
    ap.add_argument("--fields", type=int, default=24, help="fields simulated in Verilator (edge and random)")
    ap.add_argument("--postsynth", action="store_true", help="simulate Yosys' xc7 netlist too")
    ap.add_argument("--modes", default="off,auto", help="which designs: off (MVAUs only), auto (per-layer cmvm)")
    args = ap.parse_args()

    from qpde.backends.folded import build_dataflow, build_folded, folded_verdict, optimize
    from qpde.backends.folded.fold import kernel_estimates
    from qpde.backends.folded.synth import netlist_verdict, synth_folded
    from qpde.backends.rtl import default_check_inputs
    from qpde.qgraph import QGraph

    graph = QGraph(args.qonnx)
    df = build_dataflow(graph)
    x = default_check_inputs(graph, n_random=args.fields)[-args.fields:]
    report = {"qonnx": str(args.qonnx), "target_fps": args.target_fps, "clock_mhz": args.clock_mhz, "fields": len(x)}
    report["estimates"] = kernel_estimates(df, optimize(df, target_fps=args.target_fps, clock_mhz=args.clock_mhz).layers)
    for mode in args.modes.split(","):
        start = time.perf_counter()
        folding = optimize(df, target_fps=args.target_fps, clock_mhz=args.clock_mhz, cmvm=mode)
        row = {"optimize_s": round(time.perf_counter() - start, 2), "ii_model": folding.ii_cycles,
               "kernels": folding.kernels}
        folder = args.out / f"cmvm_{mode}"
        design = build_folded(graph, folder, folding.layers)
        verdict = folded_verdict(graph, design, x)
        row.update(exact=verdict.exact, mismatching=verdict.mismatching_samples, samples=verdict.samples,
                   ii_measured=verdict.details["ii_cycles"], latency=verdict.details["latency_cycles"])
        if verdict.exact:
            synth = synth_folded(design, folder / "xc7")
            row["xc7"] = {k: synth.get(k) for k in ("lut", "ff", "carry", "dsp", "bram", "lutram", "seconds")}
            if args.postsynth:
                post = netlist_verdict(graph, design, folder / "xc7", x)
                row["netlist"] = {"samples": post.samples, "mismatching": post.mismatching_samples,
                                  "agrees": post.details.get("agrees"), "seconds": post.details.get("seconds")}
        report[mode] = row
        (args.out / "cmvm_report.json").write_text(json.dumps(report, indent=2, default=str))
        print(json.dumps({mode: row}), flush=True)
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
