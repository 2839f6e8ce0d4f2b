"""Yosys synthesis of a folded design (xc7 or ECP5) with memory inference left to Yosys. Place and
route: `qpde.backends.rtl.synth.pnr_ecp5(design, …, stream_top=True)` (the stream top itself, no wrapper).

qpde.backends.rtl.synth.synth_xilinx accepts a FoldedDesign too, but for designs with ROM images it runs
`memory_map` first (da4ml's combinational tables need it), which turns every weight ROM, FIFO and
transpose bank into flip-flops. The folded units read memories synchronously, so here Yosys maps
them to block RAM, LUT RAM or flip-flops by size, as a vendor tool would.
"""

from __future__ import annotations

import json
from pathlib import Path

from qpde.backends.rtl.synth import (YOSYS_TIMEOUT_S, _base_result, _short_version, _stage_sources, ecp5_stat_luts,
                                     parse_stat_json, tool_version, xilinx_counts, yosys_tool)
from qpde.backends.tools import run_tool


def synth_folded(design, out_dir: Path, *, target: str = "xc7", timeout_s: float = YOSYS_TIMEOUT_S) -> dict:
    """`synth_xilinx -flatten -family xc7` or `synth_ecp5` of the design's top; returns the joined-table
    keys of qpde.backends.rtl.synth (lut, ff, carry, dsp, bram, …; for ECP5 lut = LUT4 incl. 2 per CCU2C carry)."""
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
              synth, "tee -q -o stat.json stat -json", "tee -q -o stat.txt stat"]
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

