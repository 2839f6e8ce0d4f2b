"""The folded backend's flow for one variant: fold → build → prove exact → synthesize → place.

For every target throughput of `[folded] target_fps` the optimizer picks a folding; designs are
built once per distinct folding. Each is run in Verilator on the whole test set (random stalls,
then none: latency and II measured) and must equal the golden bit for bit before anything is
synthesized; a mismatch raises MismatchError, so the variant fails and no figure of it is reported.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from qpde.backends.folded.fold import Folding, optimize
from qpde.backends.folded.graph import build_dataflow
from qpde.backends.folded.sim import build_folded, folded_verdict
from qpde.backends.folded.synth import synth_folded
from qpde.config import FoldedConfig
from qpde.errors import MismatchError
from qpde.qgraph import QGraph

log = logging.getLogger(__name__)


def folding_label(folding: Folding) -> str:
    """What results.csv says of a folding: the cycle model's II, the multiplier count, the bottleneck."""
    pe_simd = sum(p["pe"] * p["simd"] for p in folding.layers.values() if "pe" in p)
    return f"II {folding.ii_cycles} (model), ΣPE·SIMD {pe_simd}, bottleneck {folding.bottleneck}"


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


# Bits each Xilinx storage cell can hold at most (generous: a RAM64M holds 4×64, a RAM256X1S 256).
XILINX_CELL_BITS = {"RAMB36E1": 36 * 1024, "RAMB18E1": 18 * 1024, "RAM16X1D": 16, "RAM32X1D": 32, "RAM64X1D": 64,
                    "RAM128X1D": 128, "RAM32M": 4 * 32, "RAM64M": 4 * 64, "RAM32X1S": 32, "RAM64X1S": 64,
                    "RAM128X1S": 128, "RAM256X1S": 256, "SRL16E": 16, "SRLC32E": 32}


def buffered_bits(graph: QGraph, design) -> int:
    """Bits the design must store to work: both banks of every transpose and every FIFO slot (ROMs
    excluded: constants may become logic). A lower bound for any correct netlist."""
    from qpde.backends.folded.compile import elaborate

    phys = elaborate(build_dataflow(graph), design.folding)
    bits = 0
    for unit in phys.units:
        stream = phys.streams[unit.inputs[0]]
        width = stream.lanes * stream.type.width
        if unit.kind == "transpose":
            bits += 2 * unit.params["R"] * unit.params["C"] * stream.type.width
        elif unit.kind == "fifo":
            bits += unit.params["depth"] * width
    return bits


def netlist_bits(cells: dict[str, int]) -> int:
    """Upper bound of the bits a Yosys xc7 netlist can store: flip-flops, LUT RAMs, block RAMs."""
    flops = sum(n for cell, n in cells.items() if cell.startswith("FD"))
    return flops + sum(XILINX_CELL_BITS.get(cell, 0) * n for cell, n in cells.items())


def run_folded(graph: QGraph, out_dir: Path, x: np.ndarray, cfg: FoldedConfig) -> list[dict]:
    """One joined-table row per distinct folding (see the module doc)."""
    from qpde.backends.rtl.synth import pnr_ecp5

    rows = []
    for target, folding in foldings(graph, cfg):
        folder = Path(out_dir) / f"ii{folding.ii_cycles}"
        design = build_folded(graph, folder, folding.layers)
        verdict = folded_verdict(graph, design, x)
        if verdict["mismatching_samples"]:
            raise MismatchError(
                f"folded design {folder.name}: Verilator differs from the golden on {verdict['mismatching_samples']}/"
                f"{verdict['samples']} samples (first: sample {verdict['first_mismatch']}); not synthesized")
        met = "met" if folding.target_met else f"not met ({folding.note})"
        row = synth_folded(design, folder / f"synth_{cfg.xilinx_family}", target=cfg.xilinx_family)
        needed, held = buffered_bits(graph, design), netlist_bits(row["cells"])
        row = {k: v for k, v in row.items() if k not in ("cells", "tool_version_full")}
        dropped = held < needed  # Yosys removed logic the simulated design needs: counts of another circuit
        row.update(
            folding=folding_label(folding), rtlsim_samples=verdict["samples"],
            rtlsim_mismatches=verdict["mismatching_samples"], latency_cycles=verdict["latency_cycles"],
            ii_cycles=round(verdict["ii_cycles"]), design=folder.name, target_fps=target,
            note=f"target {target:,.0f} fields/s at {cfg.clock_mhz:g} MHz {met}; latency and II measured in "
                 "Verilator; Yosys counts not yet checked by a post-synthesis simulation (docs/folded.md)",
        )
        if dropped:
            row.update({k: None for k in ("lut", "ff", "dsp", "bram", "carry", "lutram", "inv")})
            row["note"] += (f"; Yosys counts withheld: its {cfg.xilinx_family} netlist can store at most "
                            f"{held:,} bits, the design buffers {needed:,} (transposes, FIFOs), so synthesis "
                            "dropped logic (docs/folded.md); not placed")
        elif cfg.pnr:
            _place(design, folder, cfg, row, pnr_ecp5)
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
