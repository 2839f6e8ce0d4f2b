"""Paper-scale folded designs, built and measured one by one (docs/folded.md, "Measured").

    .venv/bin/python benchmarks/folded_scale.py --model paper --scenario w4a4 --target-ii 20000 2560 \
        --fields 24 --out bench-out/folded-scale [--no-pnr]

Models (calibrated on random inputs, not trained: the hardware figures do not depend on the weights'
values; round-half-up activations and a 16-bit state as paper-burgers.toml):
- paper: Burgers FNO1d r256, width 20, 12 modes, 4 Fourier layers, projection 128 (paper-burgers.toml);
- fno2d64: FNO2d on a 64×64 grid (Darcy-like), quick-2d.toml's FNO: width 4, 4 modes per axis, 2 layers,
  projection 8 (at 8 modes the dense spectral mix alone is 1920×1920 weights per layer).
Per target II: the optimizer's folding → build → Verilator on `--fields` inputs (edge
and random inputs, qpde.backends.rtl.default_check_inputs) with 30 % gaps/stalls and without, bit-exact with the golden (MismatchError
otherwise) → Yosys xc7 counts, reported only when Yosys' netlist, simulated with its cell models on
--postsynth-fields inputs, equals the golden too (as qpde.backends.folded.flow) → synth_ecp5 +
nextpnr-ecp5 (LFE5U-85F) unless --no-pnr. Each row also has the MVAUs' weight tiles (dense and stored:
zero tiles are skipped) and the weight ROMs' EBR need on ECP5 (ecp5_weight_ebr; 18-kbit DP16KD
blocks, each ROM at its best aspect ratio; a floor of Yosys' mapping, which also puts buffers there).
One JSON row per design in OUT/<model>_<scenario>_ii<II>/row.json, with the wall time of every step;
a design already verified there is not built again (a later run with synthesis resumes from it).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

MODELS = {
    "paper": ("FNO1d", 256, dict(width=20, modes=12, layers=4, proj=128)),
    "fno2d64": ("FNO2d", 64, dict(width=4, modes=4, layers=2, proj=8)),  # quick-2d.toml's FNO
}


def export(model: str, scenario: str, out: Path) -> Path:
    import torch

    from qpde.export import export_model
    from qpde.models import fno
    from qpde.quant import parse_scenario

    path = out / "models" / f"{model}_{scenario}.onnx"
    if path.exists():
        return path
    cls, res, shape = MODELS[model]
    n = res if cls == "FNO1d" else res * res
    torch.manual_seed(0)
    spec = parse_scenario(scenario).with_options(rounding="round", state_bits=16)
    net = getattr(fno, cls)(res, fno.FNOConfig(**shape), spec)
    net.train()
    with torch.no_grad():  # Brevitas collects activation statistics in training mode
        for _ in range(32):
            net(torch.randn(8, n))
    return export_model(net.eval(), n, path)


EBR_SHAPES = [(16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)]  # ECP5 DP16KD (depth, width)
EBR_BITS = 18 * 1024


def rom_ebr(words: int, bits: int) -> int:
    """18-kbit ECP5 blocks for a words × bits ROM at its best aspect ratio."""
    return min(-(-words // d) * -(-bits // w) for d, w in EBR_SHAPES)


def weight_figures(tiles: dict[str, dict[str, int]]) -> dict:
    """Weight bits of the MVAUs' ROMs, dense and stored (zero tiles skipped), and their EBR need."""
    return {"weight_bits_dense": sum(t["dense"] * t["tile_bits"] for t in tiles.values()),
            "weight_bits_stored": sum(t["stored"] * t["tile_bits"] for t in tiles.values()),
            "ecp5_weight_ebr_dense": sum(rom_ebr(t["dense"], t["tile_bits"]) for t in tiles.values()),
            "ecp5_weight_ebr": sum(rom_ebr(t["stored"], t["tile_bits"]) for t in tiles.values())}


# row keys of Yosys' counts per target (ECP5: LUT4 incl. 2 per CCU2C carry, EBR = DP16KD, MULT18X18D)
SYNTH_KEYS = {"xc7": {k: k for k in ("lut", "ff", "carry", "dsp", "bram", "lutram")},
              "ecp5": {"lut": "ecp5_synth_lut4", "ff": "ecp5_synth_ff", "bram": "ecp5_synth_ebr",
                       "dsp": "ecp5_synth_mult"}}


def build_one(graph, folding, folder: Path, fields: int, pnr: bool, synth_timeout_s: float,
              pnr_timeout_s: float, synth: bool = True, postsynth_fields: int = 8,
              synth_targets: tuple[str, ...] = ("xc7",)) -> dict:
    from qpde.backends.folded import build_folded, folded_verdict
    from qpde.backends.folded.flow import folding_label
    from qpde.backends.folded.synth import netlist_verdict, synth_folded
    from qpde.errors import MismatchError
    from qpde.backends.rtl import default_check_inputs

    from qpde.backends.folded.sim import load_folded

    done = folder / "row.json"
    x = default_check_inputs(graph, n_random=fields, seed=0)[:fields]
    if done.exists() and json.loads(done.read_text()).get("mismatches") == 0:  # verified earlier: resume
        row, design = json.loads(done.read_text()), load_folded(folder)
        times = row["times_s"]
    else:
        times = {}
        t = time.perf_counter()
        design = build_folded(graph, folder, folding.layers)
        times["build"] = time.perf_counter() - t
        t = time.perf_counter()
        verdict = folded_verdict(graph, design, x)
        times["verilator"] = time.perf_counter() - t  # build + two runs
        row = {"folding": folding_label(folding), "predicted_ii": design.predicted_ii,
               "measured_ii": verdict.details["ii_cycles"], "latency": verdict.details["latency_cycles"],
               "fields": verdict.samples, "mismatches": verdict.mismatching_samples, "units": design.units,
               "times_s": times, "verilator_build_s": design.times_s.get("verilator_build"),
               "tiles": design.tiles, **weight_figures(design.tiles)}
        done.write_text(json.dumps(row, indent=2))
        verdict.save(folder / "verdict.json")
        if not verdict.exact:
            raise MismatchError(f"{folder.name}: {verdict.mismatching_samples}/{verdict.samples} fields differ")
    if not synth:
        return row
    trusted = True
    for target in synth_targets:  # one Yosys run and its netlist simulation per target, row saved after each
        t = time.perf_counter()
        counts = synth_folded(design, folder / f"synth_{target}", target=target, timeout_s=synth_timeout_s)
        times[f"yosys_{target}"] = time.perf_counter() - t
        t = time.perf_counter()
        post = netlist_verdict(graph, design, folder / f"synth_{target}", x, target=target, fields=postsynth_fields)
        times[f"postsynth_{target}"] = time.perf_counter() - t
        row[f"postsynth_{target}"] = {"fields": post.samples, "agrees": post.details["agrees"],
                                      "unmodelled_cells": post.details.get("unmodelled_cells")}
        trusted = trusted and bool(post.details["agrees"])
        if post.details["agrees"]:  # counts of a netlist not shown equal to the golden are not reported
            keys = SYNTH_KEYS[target]
            row.update({keys[k]: counts.get(k) for k in keys})
        (folder / "row.json").write_text(json.dumps(row, indent=2))
    if pnr and trusted:
        from qpde.backends.rtl.synth import pnr_ecp5

        t = time.perf_counter()
        placed = pnr_ecp5(design, folder / "pnr_ecp5", freq_mhz=100, stream_top=True, timeout_s=pnr_timeout_s,
                          synth_timeout_s=synth_timeout_s)
        times["ecp5"] = time.perf_counter() - t
        row.update(ecp5_lut=placed.get("lut"), ecp5_ebr=placed.get("bram"), ecp5_mult=placed.get("dsp"),
                   fmax_mhz=placed.get("fmax_mhz"), ecp5_note=placed.get("note"), dsp_note=placed.get("dsp_note"))
        if placed.get("fmax_mhz"):
            row["fields_per_s"] = placed["fmax_mhz"] * 1e6 / row["measured_ii"]
    (folder / "row.json").write_text(json.dumps(row, indent=2))
    return row


def main() -> None:
    from qpde.backends.folded import build_dataflow, optimize
    from qpde.qgraph import QGraph

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="paper")
    parser.add_argument("--scenario", default="w4a4")
    parser.add_argument("--target-ii", type=int, nargs="+", default=[20000, 2560])
    parser.add_argument("--fields", type=int, default=24, help="inputs simulated per design (edge + random)")
    parser.add_argument("--out", type=Path, default=Path("bench-out/folded-scale"))
    parser.add_argument("--no-pnr", dest="pnr", action="store_false")
    parser.add_argument("--no-synth", dest="synth", action="store_false", help="build and verify only")
    parser.add_argument("--postsynth-fields", type=int, default=8,
                        help="inputs simulated on Yosys' netlist (as the flow; with 2 the II measurement is NaN)")
    parser.add_argument("--synth-targets", nargs="+", choices=sorted(SYNTH_KEYS), default=["xc7"],
                        help="Yosys targets, in this order (ecp5: EBR count of synth_ecp5 without placing)")
    parser.add_argument("--synth-timeout", type=float, default=3600)
    parser.add_argument("--pnr-timeout", type=float, default=1800)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    graph = QGraph(export(args.model, args.scenario, args.out))
    df = build_dataflow(graph)
    for target in args.target_ii:
        folding = optimize(df, target_ii=target)
        folder = args.out / f"{args.model}_{args.scenario}_ii{folding.ii_cycles}"
        logging.info("%s: %s", folder.name, folding.note or "target met")
        row = build_one(graph, folding, folder, args.fields, args.pnr, args.synth_timeout, args.pnr_timeout,
                        args.synth, args.postsynth_fields, tuple(args.synth_targets))
        logging.info("%s: %s", folder.name, json.dumps(row))


if __name__ == "__main__":
    main()
