"""Folded streaming accelerators: utilization, area × time, accuracy-matched speed-up, FINN's estimate.

Runs (or reads) a sweep with the folded backend and prints, from that one run:
(a) datapath utilization per folded design = ideal cycles (dense MACs / Σ PE·SIMD) / measured II
    (Verilator) — goal ≥ 0.8;
(b) area × time: xc7 LUTs × II of the folded designs vs da4ml's fully parallel design (II 1) of the
    same variant, where both were built;
(c) accuracy-matched speed-up: placed fields/s (ECP5 Fmax / measured II) over the finite-volume
    solver on this CPU (1 thread, batched) at the coarsest grid whose one-step nRMSE is at most the
    model's (same test fields, same reference grid, same metric);
(d) folded xc7 LUTs over FINN's analytic LUT estimate for the same QONNX model at the same target
    fields/s and clock, where FINN converted it ([finn] target_fps must be one of [folded] target_fps
    and [hls] clock_period_ns, FINN's clock, must match [folded] clock_mhz); each row lists the FINN
    layers without a resource model (0 in FINN's total: the ratio is then against an underestimate).

Usage: .venv/bin/python benchmarks/folded.py [--config hardware-folded] [--out DIR] [--backends rtl,folded,finn]
(the embedded `hardware-folded` config builds the hardware FNO with the rtl, folded and finn backends;
the default run's results work too: --config quick --out <its folder>). The sweep is run (or resumed
from its cache) first; ratios from this one run.
Paper-scale models (no data set or training needed), one design at a time with resume:
benchmarks/folded_scale.py.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from qpde.config import Variant, load_config, with_overrides
from qpde.pipeline import Sweep, run_sweep


def design_utilization(design_file: Path) -> dict:
    """Dense MACs of the design's matrix–vector units, their Σ PE·SIMD and the measured II."""
    from qpde.backends.folded import build_dataflow
    from qpde.qgraph import QGraph

    design = json.loads(design_file.read_text())
    df = build_dataflow(QGraph(design["qonnx_path"]))
    macs = sum(u.params["rows"] * u.params["K"] * u.params["C"] for u in df.units if u.kind == "mvau")
    pe_simd = sum(p["pe"] * p["simd"] for p in design["folding"].values() if "pe" in p)
    ideal = macs / pe_simd
    return {"design": design_file.parent.name, "macs": macs, "pe_simd": pe_simd, "ideal_cycles": ideal,
            "ii": design["ii_measured"], "utilization": ideal / design["ii_measured"]}


def solver_match(cfg, sweep: Sweep, dataset: str, target_nrmse: float, grids=(8, 16, 32, 64, 128, 256)) -> dict:
    """The coarsest finite-volume grid whose one-step nRMSE on the test split is ≤ target, and its
    fields/s on this CPU (best of 3, one thread, all test fields in one batch)."""
    from qpde.data.burgers import solve
    from qpde.task import evaluate

    data_cfg = cfg.data_for(dataset)
    dt = 2.0 / (data_cfg.params.get("n_times", 201) - 1)
    nu = data_cfg.params.get("nu", 0.01)
    test, _ = sweep.split(dataset, "test")
    for grid in grids:
        if grid > data_cfg.resolution:
            break

        def step(x):
            return solve(np.asarray(x, np.float64), np.array([0.0, dt]), nu, progress=False)[:, 1]

        nrmse = evaluate(step, test, grid)["nrmse"]
        if nrmse <= target_nrmse:
            x = test.step_inputs(grid).astype(np.float64)
            best = min(_timed(lambda: step(x)) for _ in range(3))
            return {"grid": grid, "nrmse": nrmse, "fields_per_s": len(x) / best}
    return {"grid": None, "nrmse": None, "fields_per_s": None}


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def finn_comparison(cfg, out: Path, variants: dict[str, str]) -> list[dict]:
    """(d) per variant (→ its FINN row's note in results.csv): the folded design built for [finn] target_fps against FINN's estimate for the
    same QONNX model and target. FINN assumes [hls] clock_period_ns, the folded optimizer [folded]
    clock_mhz: different clocks give different cycle budgets for the same fields/s, so they must agree.
    FINN's total leaves out the layers it has no resource model for (they report 0): each row lists
    them, since the ratio is then against an underestimate."""
    if not len(variants):
        return []
    finn_mhz = 1000.0 / cfg.hls.clock_period_ns
    if abs(finn_mhz - cfg.folded.clock_mhz) > 1e-6 * cfg.folded.clock_mhz:
        raise SystemExit(f"(d) needs one clock: FINN assumes {finn_mhz:g} MHz ([hls] clock_period_ns "
                         f"{cfg.hls.clock_period_ns:g}), the folded optimizer {cfg.folded.clock_mhz:g} MHz "
                         f"([folded] clock_mhz); set clock_period_ns = {1000.0 / cfg.folded.clock_mhz:g}")
    if not any(abs(t - cfg.finn.target_fps) <= 1e-6 * t for t in cfg.folded.target_fps):
        raise SystemExit(f"(d) needs [finn] target_fps {cfg.finn.target_fps:,} among [folded] target_fps "
                         f"{list(cfg.folded.target_fps)}")
    rows = []
    for variant in sorted(variants):
        bits = out / "bitstreams" / variant
        finn_file = bits / "finn.json"  # absent when the FINN step failed (not installed, crashed)
        finn = json.loads(finn_file.read_text()) if finn_file.is_file() else {"note": variants[variant]}
        row = {"variant": variant, "target_fps": cfg.finn.target_fps, "clock_mhz": cfg.folded.clock_mhz,
               "finn_lut": finn.get("lut"), "finn_bram": finn.get("bram"), "finn_dsp": finn.get("dsp"), "finn_ii": finn.get("ii_cycles"),
               "finn_estimate": finn.get("estimate"), "finn_note": finn.get("note", ""),
               "finn_no_model": [p["layer"] for p in finn.get("per_layer", [])
                                 if not any(p.get(k) for k in ("lut", "bram", "uram", "dsp"))],
               "finn_float32": [p["layer"] for p in finn.get("per_layer", []) if p.get("float32")]}
        folded_file = bits / "folded.json"
        designs = json.loads(folded_file.read_text())["designs"] if folded_file.is_file() else []
        same = [d for d in designs if d.get("target_fps") is not None
                and abs(d["target_fps"] - cfg.finn.target_fps) <= 1e-6 * cfg.finn.target_fps]
        design = same[0] if same else None
        row.update(folded_lut=design and design.get("lut"), folded_bram=design and design.get("bram"), folded_dsp=design and design.get("dsp"),
                   folded_ii=design and design.get("ii_cycles"), folded_design=design and design.get("design"),
                   folded_note=design.get("note", "") if design else "no folded design at this target")
        row["ratio"] = (row["folded_lut"] / row["finn_lut"]
                        if row["folded_lut"] is not None and row["finn_lut"] else None)
        rows.append(row)
    return rows


def print_finn_row(row: dict) -> None:
    head = f"  {row['variant']:26s} at {row['target_fps']:,.0f} fields/s, {row['clock_mhz']:g} MHz:"
    if row["ratio"] is None:
        why = (f"FINN: {row['finn_note']}" if not row["finn_lut"]
               else f"folded: {row['folded_note']}")
        print(f"{head} no ratio ({why})")
        return
    print(f"{head} folded {row['folded_lut']:>7,} LUT (DSP {row['folded_dsp']}, BRAM {row['folded_bram']}, II {row['folded_ii']} measured), "
          f"FINN {row['finn_lut']:>7,.0f} LUT (DSP {row['finn_dsp']}, BRAM {row['finn_bram']}, II {row['finn_ii']} estimated): "
          f"ratio {row['ratio']:.2f}")
    if row["finn_no_model"]:
        print(f"    FINN has no resource model for {len(row['finn_no_model'])} layers (0 in its total, so the "
              f"ratio is against an underestimate): {', '.join(row['finn_no_model'])}")
    if row["finn_float32"]:
        print(f"    FINN keeps {len(row['finn_float32'])} layers in float32 (scale/bias ops it could not absorb): "
              f"{', '.join(row['finn_float32'])}")


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="hardware-folded")
    parser.add_argument("--out", type=Path, default=Path("bench-out/folded"))
    parser.add_argument("--backends", help="comma list overriding the config's (e.g. folded,finn)")
    args = parser.parse_args()
    cfg = with_overrides(load_config(args.config), backends=args.backends)
    run_sweep(cfg, args.out, executor="local")  # every step is cached: a rerun redoes only what changed
    torch.set_num_threads(1)
    df = pd.read_csv(args.out / "results.csv")
    folded = df[df["backend"] == "folded"]
    if folded.empty:
        raise SystemExit(f"no folded designs in {args.out / 'results.csv'}: run with --backends folded")
    sweep = Sweep(cfg, args.out)

    print("(a) datapath utilization = ideal cycles (dense MACs / ΣPE·SIMD) / measured II   [goal ≥ 0.8]")
    for variant in sorted(folded["variant"].unique()):
        for design_file in sorted((args.out / "bitstreams" / variant / "folded").glob("*/folded_design.json")):
            u = design_utilization(design_file)
            print(f"  {variant:26s} {u['design']:8s} MACs {u['macs']:>9,}  ΣPE·SIMD {u['pe_simd']:>5}  ideal "
                  f"{u['ideal_cycles']:>9,.0f}  II {u['ii']:>9,.0f}  utilization {u['utilization']:.2f}")

    print("(b) area × time: xc7 LUTs × II (cycles per field), folded vs da4ml fully parallel (II 1)")
    rtl = df[(df["backend"] == "rtl") & df["lut"].notna() & ~df["estimate"].astype(str).str.lower().eq("true")]
    for _, parallel in rtl.iterrows():
        for _, row in folded[folded["variant"] == parallel["variant"]].dropna(subset=["lut"]).iterrows():
            ratio = row["lut"] * row["ii_cycles"] / (parallel["lut"] * parallel["ii_cycles"])
            print(f"  {row['variant']:26s} folded {row['lut']:>7,.0f} LUT × II {row['ii_cycles']:>6,.0f} vs "
                  f"parallel {parallel['lut']:>7,.0f} × {parallel['ii_cycles']:.0f}: ratio {ratio:,.1f} "
                  f"(folded uses {row['lut'] / parallel['lut']:.2f}× the LUTs)")
    if rtl.empty:
        print("  no fully parallel design built in this sweep (add rtl to backends)")

    print("(c) accuracy-matched speed-up: placed fields/s over the FV solver at the coarsest grid as accurate")
    placed = folded.dropna(subset=["fields_per_s", "nrmse"])
    for dataset in sorted(placed["dataset"].unique()):
        if dataset != "burgers":
            print(f"  {dataset}: no solver timing here (Burgers only)")
            continue
        for _, row in placed[placed["dataset"] == dataset].iterrows():
            match = solver_match(cfg, sweep, dataset, row["nrmse"])
            if match["grid"] is None:
                print(f"  {row['variant']}: no solver grid up to the data grid reaches nRMSE {row['nrmse']:.3g}")
                continue
            print(f"  {row['variant']:26s} II {row['ii_cycles']:>6,.0f} at {row['fmax_mhz']:.1f} MHz: "
                  f"{row['fields_per_s']:>12,.0f} fields/s (nRMSE {row['nrmse']:.3g}); FV on {match['grid']} cells "
                  f"(nRMSE {match['nrmse']:.3g}) {match['fields_per_s']:>10,.0f} fields/s: "
                  f"{row['fields_per_s'] / match['fields_per_s']:,.1f}×")
    if placed.empty:
        print("  no placed folded design (ECP5 P&R) in this sweep")

    print("(d) folded xc7 LUTs / FINN's analytic LUT estimate at the same target fields/s and clock   [goal ≤ 1.0]")
    finn_rows = df[df["backend"] == "finn"]
    if finn_rows.empty:
        print("  no FINN row in this sweep: add finn to --backends with [finn] target_fps equal to a [folded] "
              "target (install: scripts/install_finn.sh)")
    for row in finn_comparison(cfg, args.out, dict(zip(finn_rows["variant"], finn_rows["note"].fillna("")))):
        print_finn_row(row)
    variant = Variant.parse(folded["variant"].iloc[0])
    print(f"(sweep {args.out}, {variant.dataset} {variant.arch} r{variant.resolution})")


if __name__ == "__main__":
    main()
