"""The folded backend's flow for one variant: fold → build → prove exact → synthesize → place.

For every target throughput of `[folded] target_fps` the optimizer picks a folding; designs are
built once per distinct folding. Each is run in Verilator on the whole test set (random stalls,
then none: latency and II measured) and must equal the golden bit for bit before anything is
synthesized; a mismatch raises MismatchError, so the variant fails and no figure of it is reported.
Yosys' mapped netlist is then simulated with Yosys' cell models on the first fields (netlist_verdict):
the LUT/FF/DSP/BRAM counts are reported only if it equals the golden too; otherwise the row keeps
the proven RTL figures (exactness, latency, II) and says why its counts are withheld.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from qpde.backends.folded.fold import Folding, optimize
from qpde.backends.folded.graph import build_dataflow
from qpde.backends.folded.sim import build_folded, folded_verdict
from qpde.backends.folded.synth import netlist_verdict, synth_folded
from qpde.config import FoldedConfig
from qpde.errors import MismatchError
from qpde.qgraph import QGraph

log = logging.getLogger(__name__)


def folding_label(folding: Folding) -> str:
    """What results.csv says of a folding: the cycle model's II, the multiplier count, the bottleneck."""
    pe_simd = sum(p["pe"] * p["simd"] for p in folding.layers.values() if "pe" in p)
    mm = f", mode-major {' '.join(folding.mode_major)}" if folding.mode_major else ""
    return f"II {folding.ii_cycles} (model), ΣPE·SIMD {pe_simd}, bottleneck {folding.bottleneck}{mm}"


def foldings(graph: QGraph, cfg: FoldedConfig) -> list[tuple[float, Folding]]:
    """(target, folding) per target fields/s, without repeats (two targets can give one folding)."""
    df = build_dataflow(graph)
    chosen, seen = [], set()
    for target in sorted(cfg.target_fps):
        folding = optimize(df, target_fps=target, clock_mhz=cfg.clock_mhz, max_pe_simd=cfg.max_pe_simd)
        key = tuple(sorted((k, tuple(sorted(v.items()))) for k, v in folding.layers.items()))
        if key not in seen:
            seen.add(key)
            chosen.append((target, folding))
    return chosen


WITHHELD = ("lut", "ff", "dsp", "bram", "uram", "carry", "lutram", "inv")  # Yosys counts of an unproven netlist


def run_folded(graph: QGraph, out_dir: Path, x: np.ndarray, cfg: FoldedConfig) -> list[dict]:
    """One joined-table row per distinct folding (see the module doc)."""
    from qpde.backends.rtl.synth import pnr_ecp5

    rows = []
    for target, folding in foldings(graph, cfg):
        folder = Path(out_dir) / f"ii{folding.ii_cycles}"
        design = build_folded(graph, folder, folding.layers)
        verdict = folded_verdict(graph, design, x)
        verdict.save(folder / "verdict.json")
        if not verdict.exact:
            raise MismatchError(
                f"folded design {folder.name}: Verilator differs from the golden on {verdict.mismatching_samples}/"
                f"{verdict.samples} samples (first: sample {verdict.first_mismatch_index}); not synthesized")
        met = "met" if folding.target_met else f"not met ({folding.note})"
        synth_dir = folder / f"synth_{cfg.xilinx_family}"
        row = synth_folded(design, synth_dir, target=cfg.xilinx_family)
        post = netlist_verdict(graph, design, synth_dir, x, target=cfg.xilinx_family)
        row = {k: v for k, v in row.items() if k not in ("cells", "tool_version_full")}
        row.update(
            folding=folding_label(folding), rtlsim_samples=verdict.samples,
            rtlsim_mismatches=verdict.mismatching_samples, latency_cycles=verdict.details["latency_cycles"],
            ii_cycles=verdict.details["ii_cycles"] and round(verdict.details["ii_cycles"]), design=folder.name,
            target_fps=target,
            postsynth_samples=post.samples, postsynth_mismatches=post.mismatching_samples,
            postsynth_seconds=post.details["seconds"],
            note=f"target {target:,.0f} fields/s at {cfg.clock_mhz:g} MHz {met}; latency and II measured in "
                 f"Verilator; Yosys' {cfg.xilinx_family} netlist",
        )
        if post.details["agrees"] is None:
            # No behavioural model of these cells (a block-RAM configuration bram_model.py does not
            # cover): the netlist cannot be shown to be the design, so its counts are not reported.
            row.update({k: None for k in WITHHELD})
            row["note"] += (f" not simulated: no simulation model of {', '.join(post.details['unmodelled_cells'])}, so its "
                            "counts are unproven: withheld, not placed (docs/folded.md)")
            log.warning("folded %s: Yosys' netlist could not be simulated; counts withheld", folder.name)
        elif post.details["agrees"]:
            row["note"] += f", simulated with Yosys' cell models on {post.samples} fields, equals the golden"
            if cfg.pnr:
                _place(design, folder, cfg, row, pnr_ecp5)
        else:
            row.update({k: None for k in WITHHELD})
            row["note"] += (f", simulated with Yosys' cell models, differs from the golden on "
                            f"{post.mismatching_samples}/{post.samples} fields (latency "
                            f"{post.details['latency_cycles']} vs {post.details['rtl_latency_cycles']} cycles in RTL), so its counts "
                            f"are of another circuit: withheld, not placed ({synth_dir / 'postsynth'})")
            log.warning("folded %s: Yosys' netlist differs from the golden; counts withheld", folder.name)
        rows.append(row)
        log.info("folded %s: %s LUTs, II %s cycles", folder.name, row.get("lut"), row["ii_cycles"])
    return rows


def _place(design, folder: Path, cfg: FoldedConfig, row: dict, pnr_ecp5) -> None:
    """ECP5 synthesis, place and route and bitstream, for designs within [folded] pnr_max_lut."""
    if row["lut"] > cfg.pnr_max_lut:
        row["note"] += (f"; P&R not run: {row['lut']} xc7 LUTs > [folded] pnr_max_lut {cfg.pnr_max_lut} (raise it "
                        "to place and route)")
        return
    placed = pnr_ecp5(design, folder / "pnr_ecp5", device=cfg.ecp5_device, package=cfg.ecp5_package,
                      freq_mhz=cfg.clock_mhz, stream_top=True)
    row["ecp5_synth_lut4"] = placed.get("synth_lut4")
    for note in (placed.get("dsp_note"), placed["note"]):
        if note:
            row["note"] += f"; {note}"
    if placed["fmax_mhz"] is None:  # did not fit: the xc7 counts stay, no Fmax
        return
    row.update(
        tool=f"{row['tool']} + nextpnr-ecp5", tool_version=placed["tool_version"],
        target=f"{row['target']} (LUT/FF/CARRY/DSP/BRAM); {placed['target']} (Fmax, bitstream)",
        fmax_mhz=placed["fmax_mhz"], fields_per_s=placed["fields_per_s"], bitstream=placed["bitstream"],
        ecp5_lut=placed["lut"], ecp5_ff=placed["ff"], ecp5_bram=placed["bram"], ecp5_dsp=placed["dsp"],
    )
