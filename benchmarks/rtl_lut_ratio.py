"""LUTs of da4ml's multiplierless constant-matrix layers vs plain `*`-multiplier RTL of the same layers.

Every MatMul of the model is synthesized twice by the same Yosys `synth_xilinx -flatten` run
(7-series): as da4ml writes it (adder graph), and as plain Verilog `y_j = Σ_i w_ij * x_i` with the same
input/output bit widths. Each distinct layer is synthesized once and multiplied by its replica
count (a per-point layer is instantiated once per grid point in the fully parallel design).
Ratio = da4ml LUTs / plain LUTs (goal ≤ 0.5). With -nodsp both are pure LUT logic; without it
Yosys may put plain multipliers in DSP48s (reported too).

With --pnr the whole accelerator is also placed and routed on ECP5 and its throughput printed
(fields/s = Fmax / II).

Usage: .venv/bin/python benchmarks/rtl_lut_ratio.py [--scenario w4a4] [--onnx MODEL.onnx]
       [--resolution 16 --width 4 --modes 4 --layers 1 --proj 8] [--dsp] [--pnr] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def tiny_fno_qonnx(out: Path, scenario: str, n: int, width: int, modes: int, layers: int, proj: int) -> Path:
    """A calibrated (not trained) tiny FNO: enough for hardware cost, which ignores accuracy."""
    from qpde.export import export_model
    from qpde.models.fno import FNO1d, FNOConfig
    from qpde.quant import parse_scenario

    torch.manual_seed(0)
    model = FNO1d(n, FNOConfig(width=width, modes=modes, layers=layers, proj=proj), parse_scenario(scenario))
    model.train()
    with torch.no_grad():
        for _ in range(35):  # Brevitas calibrates activation scales over the first 30 steps
            model(torch.randn(8, n))
    model.eval()
    return export_model(model, n, out / f"fno_{scenario}_n{n}_w{width}_m{modes}_l{layers}_p{proj}.onnx")


def main() -> None:
    from qpde.qgraph import QGraph
    from qpde.backends.rtl.plain import matmul_layers, write_da4ml, write_plain
    from qpde.backends.rtl.synth import synth_xilinx

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", type=Path, help="a qpde QONNX export (default: a tiny calibrated FNO)")
    parser.add_argument("--scenario", default="w4a4")
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--width", type=int, default=4)
    parser.add_argument("--modes", type=int, default=4)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--proj", type=int, default=8)
    parser.add_argument("--dsp", action="store_true", help="also synthesize the plain RTL with DSP48 inference")
    parser.add_argument("--pnr", action="store_true", help="also build, place and route the whole accelerator")
    parser.add_argument("--latency-cutoff", type=float, default=None)
    parser.add_argument("--out", type=Path, default=Path("bench-out/rtl_lut_ratio"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    onnx_path = args.onnx or tiny_fno_qonnx(args.out, args.scenario, args.resolution, args.width, args.modes,
                                            args.layers, args.proj)
    graph = QGraph(onnx_path)
    rows = []
    seen: dict[tuple, dict] = {}
    print(f"model: {onnx_path}")
    print(f"{'layer':10s} {'shape':>8s} {'in':>4s} {'copies':>6s} {'da4ml LUT':>10s} {'plain LUT':>10s} "
          f"{'ratio':>6s}" + ("  plain LUT+DSP (dsp)" if args.dsp else ""))
    for layer in matmul_layers(graph):
        key = (layer.weights.tobytes(), layer.weights.shape, layer.in_type)
        if key not in seen:
            base = args.out / "layers" / layer.name
            da = write_da4ml(layer, base / "da4ml", f"{layer.name}_da4ml")
            pl = write_plain(layer, base / "plain", f"{layer.name}_plain")
            r_da = synth_xilinx(da, base / "da4ml" / "synth", nodsp=True)
            r_pl = synth_xilinx(pl, base / "plain" / "synth", nodsp=True)
            entry = {"da4ml": r_da["lut"], "plain": r_pl["lut"], "da4ml_estimate": da.meta["estimate_lut"],
                     "yosys_s": r_da["seconds"] + r_pl["seconds"]}
            if args.dsp:
                r_dsp = synth_xilinx(pl, base / "plain" / "synth_dsp", nodsp=False)
                entry.update(plain_dsp_lut=r_dsp["lut"], plain_dsp=r_dsp["dsp"])
            seen[key] = entry
        entry = seen[key]
        shape = "x".join(map(str, layer.weights.shape))
        ratio = entry["da4ml"] / max(entry["plain"], 1)
        extra = f"  {entry['plain_dsp_lut']} ({entry['plain_dsp']})" if args.dsp else ""
        print(f"{layer.name:10s} {shape:>8s} {layer.in_type.width:>4d} {layer.copies:>6d} {entry['da4ml']:>10d} "
              f"{entry['plain']:>10d} {ratio:>6.2f}{extra}")
        rows.append({"layer": layer.name, "shape": shape, "in_bits": layer.in_type.width, "copies": layer.copies,
                     **entry})
    total_da = sum(r["da4ml"] * r["copies"] for r in rows)
    total_pl = sum(r["plain"] * r["copies"] for r in rows)
    summary = {"model": str(onnx_path), "scenario": args.scenario, "target": "xilinx-xc7 (-nodsp)",
               "da4ml_lut": total_da, "plain_lut": total_pl, "ratio": total_da / max(total_pl, 1), "layers": rows}
    print(f"all constant-matrix layers (× copies): da4ml {total_da} LUT, plain {total_pl} LUT, "
          f"ratio {summary['ratio']:.2f} (goal ≤ 0.5)")

    if args.pnr:
        from qpde.backends.rtl import DEFAULT_LATENCY_CUTOFF, build_rtl
        from qpde.backends.rtl.synth import pnr_ecp5

        start = time.perf_counter()
        design = build_rtl(onnx_path, args.out / "accelerator",
                           latency_cutoff=args.latency_cutoff or DEFAULT_LATENCY_CUTOFF)
        result = pnr_ecp5(design, args.out / "accelerator" / "pnr_ecp5")
        summary["pnr"] = result
        if result.get("fmax_mhz"):
            print(f"accelerator on {result['target']}: {result['lut']} LUT, {result['ff']} FF, "
                  f"Fmax {result['fmax_mhz']:.1f} MHz, II {design.ii_cycles}, latency {design.latency_cycles} cycles "
                  f"→ {result['fields_per_s']:.3g} fields/s ({time.perf_counter() - start:.0f} s)")
        else:
            print(f"accelerator: {result.get('note')}")
    (args.out / "rtl_lut_ratio.json").write_text(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
