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


def folding_label(folding: Folding, clock_mhz: float | None = None) -> str:
    """What results.csv says of a folding: the cycle model's II, the multiplier count, the bottleneck
    (and the clock it was folded for, when refolded at a placed Fmax)."""
    pe_simd = sum(p["pe"] * p["simd"] for p in folding.layers.values() if "pe" in p and p.get("kind") != "cmvm")
    at = f" folded at {clock_mhz:g} MHz" if clock_mhz is not None else ""
    cmvm = f", cmvm {', '.join(sorted(folding.kernels))}" if folding.kernels else ""
    mm = f", mode-major {' '.join(folding.mode_major)}" if folding.mode_major else ""
    return f"II {folding.ii_cycles} (model){at}, ΣPE·SIMD {pe_simd}, bottleneck {folding.bottleneck}{cmvm}{mm}"


def _key(folding: Folding) -> tuple:
    return tuple(sorted((k, tuple(sorted(v.items()))) for k, v in folding.layers.items()))


def foldings(graph: QGraph, cfg: FoldedConfig) -> list[tuple[float, Folding]]:
    """(target, folding) per target fields/s, without repeats (two targets can give one folding)."""
    df = build_dataflow(graph)
    chosen, seen = [], set()
    for target in sorted(cfg.target_fps):
        folding = optimize(df, target_fps=target, clock_mhz=cfg.clock_mhz, max_pe_simd=cfg.max_pe_simd, cmvm=cfg.cmvm)
        key = _key(folding)
        if key not in seen:
            seen.add(key)
            chosen.append((target, folding))
    return chosen


WITHHELD = ("lut", "ff", "dsp", "bram", "uram", "carry", "lutram", "inv")  # Yosys counts of an unproven netlist
MAX_REFOLDS = 2  # a refolded design can place slower again; beyond this the last one stays, its shortfall noted


def refold_clock(row: dict, fold_clock_mhz: float, cfg: FoldedConfig) -> float | None:
    """The clock to fold again at, or None: with [folded] refold, a placed design whose Fmax is below
    the clock it was folded for and whose placed fields/s miss its target is refolded at that Fmax
    (rounded down to 0.1 MHz, so the new fold's promise holds at the measured Fmax)."""
    fmax, fps = row.get("fmax_mhz"), row.get("fields_per_s")
    if not cfg.refold or not fmax or fps is None or fmax >= fold_clock_mhz or fps >= row["target_fps"]:
        return None
    return int(fmax * 10) / 10


def run_folded(graph: QGraph, out_dir: Path, x: np.ndarray, cfg: FoldedConfig) -> list[dict]:
    """One joined-table row per distinct folding (see the module doc); with [folded] refold, a design
    that places too slow for its target is replaced by one folded at its placed Fmax (`refold_clock`)."""
    rows, df = [], build_dataflow(graph)
    for target, folding in foldings(graph, cfg):
        clock = cfg.clock_mhz
        row = _design_row(graph, folding, target, clock, Path(out_dir), x, cfg)
        tried = {_key(folding)}
        for _ in range(MAX_REFOLDS):
            new_clock = refold_clock(row, clock, cfg)
            if new_clock is None:
                break
            refolded = optimize(df, target_fps=target, clock_mhz=new_clock, max_pe_simd=cfg.max_pe_simd, cmvm=cfg.cmvm)
            before = (f"refolded at the placed {row['fmax_mhz']:g} MHz: {row['design']} (II {row['ii_cycles']}) "
                      f"placed at {row['fields_per_s']:,.0f} fields/s < target {target:,.0f}")
            if _key(refolded) in tried:  # the optimizer cannot go faster (bottleneck or budget)
                row["note"] += f"; not {before.split(':')[0]}: the optimizer gives the same folding ({refolded.note})"
                break
            tried.add(_key(refolded))
            log.info("folded %s: %s", row["design"], before)
            new_row = _design_row(graph, refolded, target, new_clock, Path(out_dir), x, cfg)
            if new_row.get("fmax_mhz") is None:  # not placed (too large, or its netlist unproven): keep the placed one
                row["note"] += (f"; {before.split(':')[0]} gave {new_row['design']}, not placed "
                                f"({new_row['note'].rsplit('; ', 1)[-1]}): kept")
                break
            new_row.update(refolded_from=row["design"], refolded_from_fields_per_s=row["fields_per_s"],
                           refolded_from_fmax_mhz=row["fmax_mhz"])
            new_row["note"] = f"{before}; {new_row['note']}"
            row, clock = new_row, new_clock
        rows.append(row)
        log.info("folded %s: %s LUTs, II %s cycles", row["design"], row.get("lut"), row["ii_cycles"])
    return rows


def _design_row(graph: QGraph, folding: Folding, target: float, clock_mhz: float, out_dir: Path, x: np.ndarray,
                cfg: FoldedConfig) -> dict:
    """Build one folding, prove it exact in Verilator, synthesize, check the netlist, place."""
    from qpde.backends.rtl.synth import pnr_ecp5

    # a refolded design gets its own folder: another target's folding can have the same II
    folder = out_dir / (f"ii{folding.ii_cycles}" if clock_mhz == cfg.clock_mhz else
                        f"ii{folding.ii_cycles}_at{clock_mhz:g}mhz")
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
        folding=folding_label(folding, clock_mhz if clock_mhz != cfg.clock_mhz else None),
        rtlsim_samples=verdict.samples,
        rtlsim_mismatches=verdict.mismatching_samples, latency_cycles=verdict.details["latency_cycles"],
        ii_cycles=verdict.details["ii_cycles"] and round(verdict.details["ii_cycles"]), design=folder.name,
        target_fps=target, fold_clock_mhz=clock_mhz,
        postsynth_samples=post.samples, postsynth_mismatches=post.mismatching_samples,
        postsynth_seconds=post.details["seconds"],
        note=f"target {target:,.0f} fields/s at {clock_mhz:g} MHz {met}; latency and II measured in "
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
            _place(graph, design, folder, cfg, row, x, clock_mhz, pnr_ecp5)
    else:
        row.update({k: None for k in WITHHELD})
        row["note"] += (f", simulated with Yosys' cell models, differs from the golden on "
                        f"{post.mismatching_samples}/{post.samples} fields (latency "
                        f"{post.details['latency_cycles']} vs {post.details['rtl_latency_cycles']} cycles in RTL), so its counts "
                        f"are of another circuit: withheld, not placed ({synth_dir / 'postsynth'})")
        log.warning("folded %s: Yosys' netlist differs from the golden; counts withheld", folder.name)
    return row


def _ecp5_check(graph: QGraph, design, x: np.ndarray, row: dict):
    """nextpnr's gate: synth_ecp5's netlist (the one to be placed) in Verilator with the ECP5 cell
    models against the golden, as the xc7 netlist; a reason not to place it, or None."""

    def check(pnr_dir: Path) -> str | None:
        post = netlist_verdict(graph, design, pnr_dir, x, target="ecp5")
        row.update(ecp5_postsynth_samples=post.samples, ecp5_postsynth_mismatches=post.mismatching_samples,
                   ecp5_postsynth_seconds=post.details["seconds"])
        if post.details["agrees"]:
            row["note"] += f"; synth_ecp5's netlist simulated on {post.samples} fields, equals the golden"
            return None
        if post.details["agrees"] is None:
            log.warning("folded %s: synth_ecp5's netlist could not be simulated; not placed", design.name)
            return (f"not placed: synth_ecp5's netlist not simulated (no simulation model of "
                    f"{', '.join(post.details['unsupported'] or post.details['unmodelled_cells'])}), so it is unproven")
        log.warning("folded %s: synth_ecp5's netlist differs from the golden; not placed", design.name)
        return (f"not placed: synth_ecp5's netlist differs from the golden on {post.mismatching_samples}/"
                f"{post.samples} fields (latency {post.details['latency_cycles']} vs "
                f"{post.details['rtl_latency_cycles']} cycles in RTL; {pnr_dir / 'postsynth'})")

    return check


def _place(graph: QGraph, design, folder: Path, cfg: FoldedConfig, row: dict, x: np.ndarray, clock_mhz: float,
           pnr_ecp5) -> None:
    """ECP5 synthesis, netlist check, place and route and bitstream, for designs within [folded]
    pnr_max_lut; nextpnr's target clock is the one the design was folded for."""
    if row["lut"] > cfg.pnr_max_lut:
        row["note"] += (f"; P&R not run: {row['lut']} xc7 LUTs > [folded] pnr_max_lut {cfg.pnr_max_lut} (raise it "
                        "to place and route)")
        return
    placed = pnr_ecp5(design, folder / "pnr_ecp5", device=cfg.ecp5_device, package=cfg.ecp5_package,
                      freq_mhz=clock_mhz, stream_top=True, check=_ecp5_check(graph, design, x, row))
    row["ecp5_synth_lut4"] = placed.get("synth_lut4")
    for note in (placed.get("dsp_note"), placed["note"]):
        if note:
            row["note"] += f"; {note}"
    if placed["fmax_mhz"] is None:  # did not fit, or its netlist is not the design: the xc7 counts stay, no Fmax
        return
    row.update(
        tool=f"{row['tool']} + nextpnr-ecp5", tool_version=placed["tool_version"],
        target=f"{row['target']} (LUT/FF/CARRY/DSP/BRAM); {placed['target']} (Fmax, bitstream)",
        fmax_mhz=placed["fmax_mhz"], fields_per_s=placed["fields_per_s"], bitstream=placed["bitstream"],
        ecp5_lut=placed["lut"], ecp5_ff=placed["ff"], ecp5_bram=placed["bram"], ecp5_dsp=placed["dsp"],
    )
