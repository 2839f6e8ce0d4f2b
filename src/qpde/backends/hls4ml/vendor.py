"""AMD/Xilinx vendor flow for an hls4ml project written by qpde.backends.hls4ml.build_project: C synthesis (Vitis HLS or
Vivado HLS), optional C/RTL co-simulation and Vivado synthesis, run through hls4ml's own build_prj.tcl; parsers
of the reports those tools write.

- vendor_tools: which tools are on PATH. Detection only looks at PATH; versions are asked for on demand.
- parse_csynth_xml / parse_vivado_utilization / parse_cosim_report: one report file → dict. A truncated,
  malformed or incomplete report raises ToolError naming the file, what is missing and what to re-run.
- run_vendor_build: runs the tools in the project directory (log: vendor_build.log) and returns one row with
  the joined table's keys (as qpde.backends.rtl.synth does) plus the parsed `csynth` and `cosim` reports. Without the tools
  on PATH it returns that row with every figure None and a note saying how to run them: never a guessed number.

hls4ml's vivado_synth.tcl runs `synth_design -top myproject -part $part` (not out of context: the top-level
ports become IOBs), `opt_design` and `report_utilization -file vivado_synth.rpt`, and no timing analysis; so
fmax_mhz is always the HLS tool's estimate (1000 / EstimatedClockPeriod of csynth), even after Vivado.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from qpde.backends.tools import run_tool, tail
from qpde.errors import ConfigError, ToolError

VENDOR_TIMEOUT_S = 4 * 3600  # csynth of a large hls4ml design alone can take hours
VERSION_TIMEOUT_S = 120  # `vivado -version` loads the whole tool: seconds, not milliseconds
HLS_TOOLS = ("vitis-run", "vitis_hls", "vivado_hls")  # detection order: Vitis >= 2024.1 unified CLI first
LOG_NAME = "vendor_build.log"
ROW_KEYS = ("tool", "tool_version", "target", "lut", "ff", "dsp", "bram", "carry", "latency_cycles", "ii_cycles",
            "fmax_mhz", "fields_per_s", "estimate", "bitstream", "note")
UNDEFINED = {"undef", "?", "-", ""}  # csynth writes "undef" when a loop trip count is unknown


# ---- tools --------------------------------------------------------------------------------------------------------
@dataclass
class VendorTools:
    """Vendor tools found on PATH: `hls` maps each HLS command found to its path, in HLS_TOOLS order."""

    hls: dict[str, str]
    vivado: str | None
    _versions: dict[str, str | None] = field(default_factory=dict, repr=False)

    @property
    def hls_name(self) -> str | None:
        return next(iter(self.hls), None)

    def hls_for(self, backend: str) -> tuple[str, str] | None:
        """(name, path) of the HLS tool for an hls4ml backend: a Vitis project needs Vitis HLS (vitis-run or
        vitis_hls); a Vivado project prefers Vivado HLS, which hls4ml's Vivado backend targets."""
        order = ("vivado_hls", "vitis_hls", "vitis-run") if backend == "vivado" else ("vitis-run", "vitis_hls")
        name = next((n for n in order if n in self.hls), None)
        return (name, self.hls[name]) if name else None

    def version(self, name: str) -> str | None:
        """Release of a found tool (e.g. '2023.2') from its -version banner; runs the tool once, then cached."""
        if name not in self._versions:
            path = self.vivado if name == "vivado" else self.hls.get(name)
            self._versions[name] = _tool_release(path) if path else None
        return self._versions[name]


def vendor_tools() -> VendorTools | None:
    """The vendor tools on PATH, or None when neither an HLS tool nor Vivado is there."""
    hls = {name: path for name in HLS_TOOLS if (path := shutil.which(name))}
    vivado = shutil.which("vivado")
    return VendorTools(hls, vivado) if hls or vivado else None


_RELEASE = re.compile(r"\bv?(20\d\d\.\d)(?:\.\d+)?\b")


def _tool_release(path: str) -> str | None:
    """'2023.2' from e.g. 'vivado v2023.2 (64-bit)' or '****** Vitis HLS - High-Level Synthesis ... v2023.2'."""
    for flag in ("-version", "--version"):
        try:
            out = subprocess.run([path, flag], capture_output=True, text=True, timeout=VERSION_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError):
            continue
        match = _RELEASE.search(out.stdout + "\n" + out.stderr)
        if match:
            return match.group(1)
    return None


# ---- csynth.xml ---------------------------------------------------------------------------------------------------
def _xml_text(root: ET.Element, path: str, file: Path, hint: str) -> str:
    node = root.find(path)
    if node is None or node.text is None:
        element = "/".join(f"<{p}>" for p in path.split("/"))
        raise ToolError(f"{file}: no {element} in the report (incomplete or not a csynth report); {hint}")
    return node.text.strip()


def _cycles(text: str) -> int | None:
    return None if text.lower() in UNDEFINED else int(text)


def parse_csynth_xml(path: Path) -> dict:
    """Top-level figures of Vivado HLS / Vitis HLS `<top>_csynth.xml` (hls4ml reads the same elements).

    Latencies are clock cycles (worst case and best case); ii_cycles is Interval-max; bram counts 18 Kb blocks
    (BRAM_18K); dsp is <DSP> (Vitis HLS) or <DSP48E> (Vivado HLS). Cycle counts are None where the tool wrote
    "undef" (unknown trip counts), with a note. fmax_mhz = 1000 / EstimatedClockPeriod: an HLS estimate."""
    path = Path(path)
    hint = "re-run C synthesis (vitis_hls -f build_prj.tcl with synth=1 in the project directory)"
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError as exc:
        raise ToolError(f"csynth report {path} not found; {hint}") from exc
    except ET.ParseError as exc:
        raise ToolError(f"{path}: not a complete csynth XML report ({exc}): truncated or corrupt; {hint}") from exc
    if root.tag != "profile":
        raise ToolError(f"{path}: root element <{root.tag}>, not <profile>: not a csynth report; {hint}")
    # Direct children only: Vitis repeats PerformanceEstimates per sub-module under <ModuleInformation>.
    est = float(_xml_text(root, "PerformanceEstimates/SummaryOfTimingAnalysis/EstimatedClockPeriod", path, hint))
    latency = "PerformanceEstimates/SummaryOfOverallLatency/"
    result = {
        "tool_version": (root.findtext("ReportVersion/Version") or "").strip() or None,
        "part": _xml_text(root, "UserAssignments/Part", path, hint),
        "top": (root.findtext("UserAssignments/TopModelName") or "").strip() or None,
        "clock_target_ns": float(_xml_text(root, "UserAssignments/TargetClockPeriod", path, hint)),
        "clock_estimated_ns": est,
        "latency_cycles": _cycles(_xml_text(root, latency + "Worst-caseLatency", path, hint)),
        "latency_best_cycles": _cycles(_xml_text(root, latency + "Best-caseLatency", path, hint)),
        "ii_cycles": _cycles(_xml_text(root, latency + "Interval-max", path, hint)),
        "ii_min_cycles": _cycles(_xml_text(root, latency + "Interval-min", path, hint)),
    }
    area, available = {}, {}
    for key, tags in (("bram", ("BRAM_18K",)), ("dsp", ("DSP", "DSP48E")), ("ff", ("FF",)), ("lut", ("LUT",)),
                      ("uram", ("URAM",))):
        tag = next((t for t in tags if root.find(f"AreaEstimates/Resources/{t}") is not None), None)
        if tag is None and key != "uram":  # Vivado HLS before 2018 writes no URAM
            raise ToolError(f"{path}: no <AreaEstimates>/<Resources>/<{'> or <'.join(tags)}> in the report "
                            f"(incomplete or not a csynth report); {hint}")
        area[key] = int(_xml_text(root, f"AreaEstimates/Resources/{tag}", path, hint)) if tag else None
        text = (root.findtext(f"AreaEstimates/AvailableResources/{tag}") or "").strip() if tag else ""
        available[key] = int(text) if text.isdigit() else None
    result.update(area, available=available)
    result["fmax_mhz"] = round(1000.0 / est, 2) if est > 0 else None
    result["estimate"] = True
    undefined = [k for k in ("latency_cycles", "latency_best_cycles", "ii_cycles") if result[k] is None]
    result["note"] = (f"csynth: {', '.join(undefined)} undefined (a loop with an unknown trip count); "
                      "run C/RTL co-simulation for measured figures") if undefined else None
    return result


# ---- vivado_synth.rpt (report_utilization) ------------------------------------------------------------------------
_HEADER = re.compile(r"^\|\s*([A-Za-z][A-Za-z ]*?)\s*:\s*(.*?)\s*$")
_SECTION = re.compile(r"^(\d+(?:\.\d+)*)\.?\s+(\S.*?)\s*$")
_LOGIC = ("CLB Logic", "Slice Logic")  # UltraScale(+) / 7-series names of section 1
_MEMORY = ("BLOCKRAM", "Memory")
_ARITH = ("ARITHMETIC", "DSP")


def _number(cell: str) -> float | int | None:
    cell = cell.replace(",", "").strip()
    if not cell:
        return None
    value = float(cell.lstrip("<"))
    return int(value) if value == int(value) and "." not in cell else value


def _sections(text: str) -> dict[str, dict[str, list[str]]]:
    """Tables of a report_utilization text: section title → site/ref name → cells after the name. A section
    heading is a numbered line underlined with dashes (the table of contents has the titles, not underlined)."""
    lines = text.splitlines()
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for i, line in enumerate(lines):
        heading = _SECTION.match(line)
        if heading and i + 1 < len(lines) and re.fullmatch(r"-{3,}", lines[i + 1].strip()):
            current = sections.setdefault(heading.group(2), {})
            continue
        if current is not None and line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            name = cells[0].rstrip("*").strip()
            if name and name not in ("Site Type", "Ref Name") and name not in current:
                current[name] = cells[1:]
    return sections


def parse_vivado_utilization(path: Path) -> dict:
    """Design totals of Vivado's `report_utilization` text, as hls4ml's vivado_synth.tcl writes vivado_synth.rpt.

    lut: 'CLB LUTs' (UltraScale+) / 'Slice LUTs' (7-series); ff: 'CLB Registers' / 'Slice Registers' (flip-flops
    plus latches, which HLS designs do not use); carry: CARRY8 from the CLB table, else CARRY4/CARRY8 cells in
    Primitives (0 when that table lists none); dsp: 'DSPs'; uram: 'URAM' (None on parts without it).
    bram counts 18 Kb blocks, as csynth's BRAM_18K and FINN do: 2 × 'Block RAM Tile' (a tile is one RAMB36 or
    two RAMB18; Vivado counts a lone RAMB18 as 0.5), i.e. RAMB18 + 2·RAMB36; bram_tiles is Vivado's 36 Kb figure."""
    path = Path(path)
    hint = "re-run Vivado synthesis (vivado -mode batch -source vivado_synth.tcl in the project directory)"
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError as exc:
        raise ToolError(f"Vivado utilization report {path} not found; {hint}") from exc
    header = {}
    for line in text.splitlines()[:20]:
        match = _HEADER.match(line)
        if match:
            header.setdefault(match.group(1), match.group(2))
    if "Utilization Design Information" not in text:
        raise ToolError(f"{path}: not a report_utilization report (no 'Utilization Design Information'); {hint}")
    sections = _sections(text)

    def table(names: tuple[str, ...]) -> dict[str, list[str]]:
        found = next((sections[n] for n in names if n in sections), None)
        if not found:
            raise ToolError(f"{path}: no '{' / '.join(names)}' table (the report is truncated); {hint}")
        return found

    def used(rows: dict[str, list[str]], names: tuple[str, ...], section: str):
        row = next((rows[n] for n in names if n in rows), None)
        if row is None or not row or _number(row[0]) is None:
            raise ToolError(f"{path}: no '{' / '.join(names)}' row in the {section} table (the report is truncated "
                            f"or not from report_utilization); {hint}")
        return _number(row[0])

    def available(rows: dict[str, list[str]], names: tuple[str, ...]):
        row = next((rows[n] for n in names if n in rows), None)
        return _number(row[-2]) if row and len(row) >= 3 else None  # ... | Available | Util% |

    # Table by table, so the first thing missing from a truncated report is the one named.
    logic = table(_LOGIC)
    lut = used(logic, ("CLB LUTs", "Slice LUTs"), "logic")
    ff = used(logic, ("CLB Registers", "Slice Registers"), "logic")
    memory = table(_MEMORY)
    tiles = used(memory, ("Block RAM Tile",), "memory")
    arith = table(_ARITH)
    dsp = used(arith, ("DSPs",), "arithmetic")
    carry = next((_number(logic[n][0]) for n in ("CARRY8", "CARRY4") if n in logic), None)
    if carry is None and "Primitives" in sections:
        prims = sections["Primitives"]
        carry = sum(_number(prims[n][0]) for n in ("CARRY8", "CARRY4") if n in prims)
    match = re.search(r"Vivado v\.?(\d{4}\.\d+(?:\.\d+)?)", header.get("Tool Version", ""))
    bram_18k = 2 * tiles
    return {
        "tool_version": match.group(1) if match else None,
        "part": header.get("Device"),
        "design_state": header.get("Design State"),
        "lut": lut, "ff": ff, "carry": carry, "dsp": dsp,
        "bram": int(bram_18k) if bram_18k == int(bram_18k) else bram_18k,
        "bram_tiles": tiles,
        "uram": _number(memory["URAM"][0]) if "URAM" in memory else None,
        "available": {
            "lut": available(logic, ("CLB LUTs", "Slice LUTs")),
            "ff": available(logic, ("CLB Registers", "Slice Registers")),
            "dsp": available(arith, ("DSPs",)), "bram_tiles": available(memory, ("Block RAM Tile",)),
            "uram": available(memory, ("URAM",)),
        },
        "estimate": False,
    }


# ---- cosim report --------------------------------------------------------------------------------------------------
def parse_cosim_report(path: Path) -> dict:
    """Verdict and cycle counts of `<top>_cosim.rpt` (C/RTL co-simulation): the RTL row (Verilog or VHDL) that
    ran. latency_*/interval_* are measured cycles (None where the tool wrote NA)."""
    path = Path(path)
    hint = "re-run C/RTL co-simulation (cosim=1)"
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError as exc:
        raise ToolError(f"co-simulation report {path} not found; {hint}") from exc
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 8 and cells[0] in ("Verilog", "VHDL") and cells[1] != "NA":
            values = [_cycles(c) if c != "NA" else None for c in cells[2:8]]
            return {
                "rtl": cells[0], "status": cells[1], "passed": cells[1].lower() == "pass",
                "latency_min": values[0], "latency_avg": values[1], "latency_max": values[2],
                "interval_min": values[3], "interval_avg": values[4], "interval_max": values[5],
                "total_cycles": _cycles(cells[8]) if len(cells) > 8 and cells[8] != "NA" else None,
            }
    raise ToolError(f"{path}: no Verilog or VHDL result row (the report is truncated or co-simulation did not run); "
                    f"{hint}")


# ---- running the tools ---------------------------------------------------------------------------------------------
def read_project_tcl(project_dir: Path) -> dict[str, str]:
    """`set name value` pairs of hls4ml's project.tcl (project_name, backend, part, clock_period, ...)."""
    text = (Path(project_dir) / "project.tcl").read_text()
    return {m.group(1): m.group(2) for m in re.finditer(r'^\s*set\s+(\w+)\s+"?([^"\n]*?)"?\s*$', text, re.M)}


def _options(csynth: bool, cosim: bool, vsynth: bool) -> dict[str, int]:
    return {"reset": 0, "csim": 0, "synth": int(csynth), "cosim": int(cosim), "validation": 0, "export": 0,
            "vsynth": int(vsynth), "fifo_opt": 0}


def _write_build_opt(project_dir: Path, opts: dict[str, int]) -> bool:
    """hls4ml's Vitis build_prj.tcl sources build_opt.tcl (hls4ml's VitisBackend.build writes it the same way);
    its Vivado build_prj.tcl reads the options from argv instead. True when the project uses build_opt.tcl."""
    if "build_opt.tcl" not in (project_dir / "build_prj.tcl").read_text():
        return False
    body = "".join(f"    {k:<10} {v}\n" for k, v in opts.items())
    (project_dir / "build_opt.tcl").write_text("array set opt {\n" + body + "}\n")
    return True


def _hls_command(name: str, path: str, project_dir: Path, opts: dict[str, int], uses_build_opt: bool) -> list[str]:
    argv = " ".join(f"{k}={v}" for k, v in opts.items())
    if name != "vitis-run":
        return [path, "-f", "build_prj.tcl"] + ([] if uses_build_opt else [argv])
    script = "build_prj.tcl"
    if not uses_build_opt:  # vitis-run --tcl documents no script arguments (UG1702): set argv in a wrapper
        script = "qpde_build_prj.tcl"
        (project_dir / script).write_text(f"set ::argv {{{argv}}}\nset ::argc {len(opts)}\nsource build_prj.tcl\n")
    return [path, "--mode", "hls", "--tcl", script]


def _fresh(path: Path, since: float) -> bool:
    return path.is_file() and path.stat().st_mtime >= since - 2.0  # mtime granularity of some filesystems


def _row(tool: str | None, target: str | None) -> dict:
    row: dict = dict.fromkeys(ROW_KEYS)
    row.update(tool=tool, target=target, csynth=None, cosim=None)
    return row


def run_vendor_build(project_dir: Path, *, csynth: bool = True, cosim: bool = False, vsynth: bool = True,
                     timeout_s: float = VENDOR_TIMEOUT_S) -> dict:
    """Run hls4ml's build_prj.tcl in project_dir (C synthesis, C/RTL co-simulation, Vivado synthesis as asked;
    never C simulation, which qpde runs itself) and return one joined-table row plus `csynth` and `cosim`.

    lut/ff/dsp/bram/carry come from Vivado synthesis (tool "vivado", estimate False) when it ran, else from
    csynth (tool "vitis_hls"/"vivado_hls", estimate True, carry None). latency_cycles (worst case), ii_cycles
    (Interval-max) and fmax_mhz (HLS estimate) always come from csynth; fields_per_s = fmax_mhz·1e6 / ii_cycles.
    Vivado runs from inside build_prj.tcl (`exec vivado ...`), so it must be on PATH too; without it the row holds
    the csynth estimates and says so. Without an HLS tool the row has every figure None and a note: no exception.
    The steps are chosen as hls4ml's backends do: Vitis projects through a rewritten build_opt.tcl, Vivado ones
    through build_prj.tcl's arguments. Reports older than this run are refused (ToolError), never reused."""
    project_dir = Path(project_dir).resolve()
    if not (csynth or cosim or vsynth):
        raise ConfigError("run_vendor_build: nothing to run (csynth, cosim and vsynth are all off)")
    try:
        project = read_project_tcl(project_dir)
    except OSError:
        project = {}
    backend = project.get("backend", "vitis").lower()
    hls_default = "vivado_hls" if backend == "vivado" else "vitis_hls"
    tools = vendor_tools()
    found = tools.hls_for(backend) if tools else None
    if found is None:
        row = _row(hls_default, project.get("part"))
        opts = _options(csynth, cosim, vsynth)
        argv = " ".join(f"{k}={v}" for k, v in opts.items())
        try:  # make the command below do what was asked here (hls4ml's defaults also run csim and cosim)
            args = "" if _write_build_opt(project_dir, opts) else f' "{argv}"'
        except OSError:
            args = ""
        missing = hls_default if tools and tools.vivado else f"{hls_default}/vivado"
        row["note"] = (f"not run: {missing} not on PATH (the HLS project is written at {project_dir}; "
                       f"run `{hls_default} -f build_prj.tcl{args}` there)")
        return row

    for needed in ("project.tcl", "build_prj.tcl", "vivado_synth.tcl"):
        if not (project_dir / needed).is_file():
            raise ToolError(f"{project_dir} is not an hls4ml project (no {needed}); write it with "
                            "qpde.backends.hls4ml.build_project first")
    name = project.get("project_name", "myproject")
    hls_name, hls_path = found
    notes = []
    run_vsynth = vsynth and tools.vivado is not None
    if vsynth and not run_vsynth:
        notes.append("vivado not on PATH: Vivado synthesis skipped, resources are HLS estimates")
    opts = _options(csynth, cosim, run_vsynth)
    uses_build_opt = _write_build_opt(project_dir, opts)
    cmd = _hls_command(hls_name, hls_path, project_dir, opts, uses_build_opt)
    log_path = project_dir / LOG_NAME
    started = time.time()
    seconds = run_tool(cmd, project_dir, log_path, timeout_s, hls_name)

    solution = project_dir / f"{name}_prj" / "solution1"
    csynth_xml = solution / "syn" / "report" / f"{name}_csynth.xml"
    cosim_rpt = solution / "sim" / "report" / f"{name}_cosim.rpt"
    vsynth_rpt = project_dir / "vivado_synth.rpt"
    for asked, report in ((csynth, csynth_xml), (cosim, cosim_rpt), (run_vsynth, vsynth_rpt)):
        if asked and not _fresh(report, started):
            state = "not updated by this run" if report.is_file() else "not written"
            raise ToolError(f"{hls_name}: exit 0 but {report} was {state}; log: {log_path}\n{tail(log_path)}")
    hls = parse_csynth_xml(csynth_xml)  # needed for latency, II and fmax even when only Vivado ran now
    hls_tool = "vivado_hls" if hls_name == "vivado_hls" else "vitis_hls"
    row = _row(hls_tool, hls["part"])
    row.update(csynth=hls, latency_cycles=hls["latency_cycles"], ii_cycles=hls["ii_cycles"],
               fmax_mhz=hls["fmax_mhz"], bitstream=None)
    row["cosim"] = parse_cosim_report(cosim_rpt) if cosim else None
    if run_vsynth:
        util = parse_vivado_utilization(vsynth_rpt)
        row.update(tool="vivado", tool_version=f"vivado {util['tool_version']}; {hls_tool} {hls['tool_version']}",
                   estimate=False, **{k: util[k] for k in ("lut", "ff", "dsp", "bram", "carry")})
        notes.append(f"resources: Vivado synthesis + opt_design ({util['design_state'] or 'synthesized'}, not "
                     f"placed); latency, II and fmax: {hls_tool} estimates (vivado_synth.tcl runs no timing)")
    else:
        row.update(tool_version=hls["tool_version"], estimate=True, carry=None,
                   **{k: hls[k] for k in ("lut", "ff", "dsp", "bram")})
        notes.append(f"{hls_tool} csynth estimates")
    if row["fmax_mhz"] and row["ii_cycles"]:
        row["fields_per_s"] = row["fmax_mhz"] * 1e6 / row["ii_cycles"]
    if hls["note"]:
        notes.append(hls["note"])
    if row["cosim"] is not None and not row["cosim"]["passed"]:
        notes.append(f"C/RTL co-simulation {row['cosim']['status']} ({cosim_rpt})")
    notes.append(f"{seconds:.0f} s; log {log_path}")
    row["note"] = "; ".join(notes)
    return row
