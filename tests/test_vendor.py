"""Vendor flow (Vitis HLS / Vivado HLS / Vivado): report parsers on real-format fixtures, broken reports, the
"not run" row without tools, and run_vendor_build end to end with fake tools that write the fixtures."""

from __future__ import annotations

import importlib.util
import re
import stat
from pathlib import Path

import pytest

from qpde.errors import ToolError
from qpde.backends.hls4ml.vendor import (
    ROW_KEYS,
    parse_cosim_report,
    parse_csynth_xml,
    parse_vivado_utilization,
    run_vendor_build,
    vendor_tools,
)

FIXTURES = Path(__file__).parent / "fixtures" / "vendor"
VITIS = FIXTURES / "vitis_2023.2_xcvu13p"  # Vitis HLS 2023.2 + Vivado 2023.2, UltraScale+ (qpde's default part)
VIVADO = FIXTURES / "vivado_2020.1_xc7z020"  # Vivado HLS 2020.1 + Vivado 2020.1, 7-series
HLS4ML_TEMPLATES = Path(importlib.util.find_spec("hls4ml").submodule_search_locations[0]) / "templates"
FIGURES = ("lut", "ff", "dsp", "bram", "carry", "latency_cycles", "ii_cycles", "fmax_mhz", "fields_per_s")


# ---- parsers ------------------------------------------------------------------------------------------------------
def test_csynth_vitis_hls_2023():
    r = parse_csynth_xml(VITIS / "myproject_csynth.xml")
    assert (r["tool_version"], r["part"], r["top"]) == ("2023.2", "xcvu13p-flga2577-2-e", "myproject")
    assert (r["clock_target_ns"], r["clock_estimated_ns"], r["fmax_mhz"]) == (5.0, 3.65, 273.97)
    assert (r["latency_cycles"], r["latency_best_cycles"], r["ii_cycles"], r["ii_min_cycles"]) == (131, 127, 112, 112)
    assert (r["lut"], r["ff"], r["dsp"], r["bram"], r["uram"]) == (21377, 9512, 24, 6, 0)
    assert r["available"] == {"lut": 1728000, "ff": 3456000, "dsp": 12288, "bram": 5376, "uram": 1280}
    assert r["estimate"] is True and r["note"] is None


def test_csynth_vivado_hls_2020_dsp48e():
    r = parse_csynth_xml(VIVADO / "myproject_csynth.xml")
    assert (r["tool_version"], r["part"], r["clock_estimated_ns"], r["fmax_mhz"]) == ("2020.1", "xc7z020-clg400-1",
                                                                                   4.367, 228.99)
    assert (r["latency_cycles"], r["latency_best_cycles"], r["ii_cycles"]) == (142, 142, 118)
    assert (r["lut"], r["ff"], r["dsp"], r["bram"], r["uram"]) == (19876, 11204, 18, 4, 0)  # <DSP48E> → dsp
    assert r["available"]["dsp"] == 220


def test_utilization_ultrascale_plus():
    r = parse_vivado_utilization(VITIS / "vivado_synth.rpt")
    assert (r["tool_version"], r["part"], r["design_state"]) == ("2023.2", "xcvu13p-flga2577-2-e", "Optimized")
    # CARRY8 from the CLB Logic table; Block RAM Tile 3 (2 RAMB36 + 2 RAMB18) = 6 blocks of 18 Kb.
    assert (r["lut"], r["ff"], r["carry"], r["dsp"], r["bram"], r["bram_tiles"], r["uram"]) == (
        11842, 7953, 1086, 24, 6, 3, 0)
    assert r["available"] == {"lut": 1728000, "ff": 3456000, "dsp": 12288, "bram_tiles": 2688, "uram": 1280}
    assert r["estimate"] is False


def test_utilization_7series():
    r = parse_vivado_utilization(VIVADO / "vivado_synth.rpt")
    assert (r["tool_version"], r["part"]) == ("2020.1", "7z020clg400-1")
    # Slice Logic has no carry row on 7-series: CARRY4 comes from the Primitives table.
    assert (r["lut"], r["ff"], r["carry"], r["dsp"], r["bram"], r["bram_tiles"], r["uram"]) == (
        12931, 10866, 1203, 18, 4, 2, None)
    assert r["available"]["lut"] == 53200 and r["available"]["bram_tiles"] == 140


def test_cosim_report():
    assert parse_cosim_report(VITIS / "myproject_cosim.rpt") == {
        "rtl": "Verilog", "status": "Pass", "passed": True, "latency_min": 129, "latency_avg": 130,
        "latency_max": 131, "interval_min": 112, "interval_avg": 112, "interval_max": 112, "total_cycles": 1141}


def test_csynth_undefined_latency(tmp_path):
    """Vitis writes "undef" when a trip count is unknown (e.g. a while loop): None and a note, never a number."""
    text = (VITIS / "myproject_csynth.xml").read_text()
    text = re.sub(r"<(Best-caseLatency|Worst-caseLatency|Interval-min|Interval-max)>\d+<", r"<\1>undef<", text)
    path = tmp_path / "myproject_csynth.xml"
    path.write_text(text)
    r = parse_csynth_xml(path)
    assert (r["latency_cycles"], r["latency_best_cycles"], r["ii_cycles"]) == (None, None, None)
    assert "undefined" in r["note"] and r["lut"] == 21377


def _broken_csynth(kind: str, path: Path) -> str:
    text = (VITIS / "myproject_csynth.xml").read_text()
    if kind == "truncated":
        path.write_text(text[: len(text) // 2])
        return "truncated"
    if kind == "no_area":
        path.write_text(re.sub(r"<AreaEstimates>.*</AreaEstimates>", "", text, flags=re.S))
        return "AreaEstimates"
    if kind == "no_latency":
        path.write_text(re.sub(r"<Worst-caseLatency>.*?</Worst-caseLatency>", "", text))
        return "Worst-caseLatency"
    return "not found"  # missing file


@pytest.mark.parametrize("kind", ["truncated", "no_area", "no_latency", "missing"])
def test_csynth_broken_reports(tmp_path, kind):
    path = tmp_path / "myproject_csynth.xml"
    expected = _broken_csynth(kind, path)
    with pytest.raises(ToolError, match=expected) as err:
        parse_csynth_xml(path)
    assert str(path) in str(err.value) and "re-run" in str(err.value)


@pytest.mark.parametrize("cut, expected", [
    ("| Design State", "Utilization Design Information"),  # header only
    ("| CLB Registers", "CLB Registers"),  # cut inside the CLB Logic table
    ("2. BLOCKRAM\n---", "BLOCKRAM"),  # cut after the first table
])
def test_utilization_truncated(tmp_path, cut, expected):
    text = (VITIS / "vivado_synth.rpt").read_text()
    path = tmp_path / "vivado_synth.rpt"
    path.write_text(text[: text.index(cut)])
    with pytest.raises(ToolError, match=expected) as err:
        parse_vivado_utilization(path)
    assert str(path) in str(err.value) and "re-run" in str(err.value)


# ---- run_vendor_build ---------------------------------------------------------------------------------------------
def _project(root: Path, backend: str = "vitis", part: str = "xcvu13p-flga2577-2-e") -> Path:
    """A project directory as hls4ml 1.x writes it, with hls4ml's own build scripts (firmware left empty)."""
    root.mkdir(parents=True)
    (root / "project.tcl").write_text(
        'variable project_name\nset project_name "myproject"\nvariable backend\n'
        f'set backend "{backend}"\nvariable part\nset part "{part}"\nvariable clock_period\nset clock_period 5.0\n'
        "variable clock_uncertainty\nset clock_uncertainty 27%\nvariable version\nset version \"1.0.0\"\n")
    flavour = "vitis" if backend == "vitis" else "vivado"
    (root / "build_prj.tcl").write_text((HLS4ML_TEMPLATES / flavour / "build_prj.tcl").read_text())
    (root / "vivado_synth.tcl").write_text((HLS4ML_TEMPLATES / "vivado" / "vivado_synth.tcl").read_text())
    if backend == "vitis":
        (root / "build_opt.tcl").write_text((HLS4ML_TEMPLATES / "vitis" / "build_opt.tcl").read_text())
    (root / "firmware").mkdir()
    (root / "tb_data").mkdir()
    return root


def _script(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\nPATH=\"$PATH:/usr/bin:/bin\"\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _fake_hls(bindir: Path, name: str, fixtures: Path, version: str) -> None:
    """Fake HLS tool: reads the options as build_prj.tcl does (build_opt.tcl or argv) and copies the fixture
    reports to where the tool writes them for the project named in project.tcl; runs vivado as build_prj.tcl does."""
    _script(bindir / name, f"""\
case "$1" in -version|--version) echo "****** HLS - High-Level Synthesis v{version} (64-bit)"; exit 0;; esac
echo "$@" > fake_hls_argv.txt
opts=" $*"
if grep -q build_opt.tcl build_prj.tcl; then opts=" $(tr -s ' \\n' '  ' < build_opt.tcl)"; fi
has() {{ case "$opts" in *" $1 1"*|*" $1=1"*) return 0;; esac; return 1; }}
name=$(sed -n 's/^set project_name "\\(.*\\)"/\\1/p' project.tcl)
sol="$name"_prj/solution1
echo "INFO: [HLS 200-10] Running '{name}' on project $name"
if has synth; then
  mkdir -p "$sol/syn/report" "$sol/syn/verilog"
  cp "{fixtures}/myproject_csynth.xml" "$sol/syn/report/$name"_csynth.xml
fi
if has cosim; then mkdir -p "$sol/sim/report"; cp "{fixtures}/myproject_cosim.rpt" "$sol/sim/report/$name"_cosim.rpt; fi
if has vsynth; then
  [ -d "$sol/syn/verilog" ] || {{ echo "ERROR: Cannot find generated Verilog files."; exit 1; }}
  vivado -mode batch -source vivado_synth.tcl || exit 1
fi
exit 0
""")


def _fake_vivado(bindir: Path, fixtures: Path, version: str) -> None:
    _script(bindir / "vivado", f"""\
case "$1" in -version) echo "vivado v{version} (64-bit)"; exit 0;; esac
[ "$4" = vivado_synth.tcl ] || exit 2
cp "{fixtures}/vivado_synth.rpt" vivado_synth.rpt
""")


@pytest.fixture
def bindir(tmp_path, monkeypatch):
    """An empty directory that is the whole PATH: no real vendor tool can be found."""
    path = tmp_path / "bin"
    path.mkdir()
    monkeypatch.setenv("PATH", str(path))
    return path


def test_no_tools_gives_not_run_row(tmp_path, bindir):
    project = _project(tmp_path / "prj")
    assert vendor_tools() is None
    row = run_vendor_build(project)
    assert set(row) == set(ROW_KEYS) | {"csynth", "cosim"}
    assert all(row[k] is None for k in FIGURES + ("tool_version", "estimate", "bitstream", "csynth", "cosim"))
    assert row["tool"] == "vitis_hls" and row["target"] == "xcvu13p-flga2577-2-e"
    assert row["note"] == (f"not run: vitis_hls/vivado not on PATH (the HLS project is written at {project}; "
                           "run `vitis_hls -f build_prj.tcl` there)")
    # The printed command then runs what was asked (C synthesis + Vivado), not hls4ml's default csim + cosim.
    opts = dict(re.findall(r"^\s+(\w+)\s+(\d)$", (project / "build_opt.tcl").read_text(), re.M))
    assert opts == {"reset": "0", "csim": "0", "synth": "1", "cosim": "0", "validation": "0", "export": "0",
                    "vsynth": "1", "fifo_opt": "0"}
    assert not (project / "vendor_build.log").exists()
    # hls4ml's Vivado build_prj.tcl takes the options as arguments instead.
    row = run_vendor_build(_project(tmp_path / "vivado_prj", "vivado", "xc7z020clg400-1"))
    assert row["tool"] == "vivado_hls" and row["target"] == "xc7z020clg400-1"
    assert row["note"].endswith('run `vivado_hls -f build_prj.tcl "reset=0 csim=0 synth=1 cosim=0 validation=0 '
                                'export=0 vsynth=1 fifo_opt=0"` there)')


def test_vendor_tools_detection(bindir):
    _fake_hls(bindir, "vitis_hls", VITIS, "2023.2")
    _fake_vivado(bindir, VITIS, "2023.2")
    tools = vendor_tools()
    assert tools.hls_name == "vitis_hls" and tools.hls == {"vitis_hls": str(bindir / "vitis_hls")}
    assert tools.vivado == str(bindir / "vivado")
    assert (tools.version("vitis_hls"), tools.version("vivado")) == ("2023.2", "2023.2")
    assert tools.hls_for("vivado") == ("vitis_hls", str(bindir / "vitis_hls")) and tools.version("vivado_hls") is None


@pytest.mark.parametrize("backend, hls, fixtures, expected", [
    ("vitis", "vitis_hls", VITIS, {
        "tool": "vivado", "tool_version": "vivado 2023.2; vitis_hls 2023.2", "target": "xcvu13p-flga2577-2-e",
        "lut": 11842, "ff": 7953, "dsp": 24, "bram": 6, "carry": 1086, "latency_cycles": 131, "ii_cycles": 112,
        "fmax_mhz": 273.97, "estimate": False, "bitstream": None}),
    ("vivado", "vivado_hls", VIVADO, {
        "tool": "vivado", "tool_version": "vivado 2020.1; vivado_hls 2020.1", "target": "xc7z020-clg400-1",
        "lut": 12931, "ff": 10866, "dsp": 18, "bram": 4, "carry": 1203, "latency_cycles": 142, "ii_cycles": 118,
        "fmax_mhz": 228.99, "estimate": False, "bitstream": None}),
])
def test_end_to_end_with_fake_tools(tmp_path, bindir, backend, hls, fixtures, expected):
    version = "2023.2" if backend == "vitis" else "2020.1"
    _fake_hls(bindir, hls, fixtures, version)
    _fake_vivado(bindir, fixtures, version)
    part = "xcvu13p-flga2577-2-e" if backend == "vitis" else "xc7z020clg400-1"
    project = _project(tmp_path / "prj", backend, part)
    cosim = backend == "vitis"
    row = run_vendor_build(project, cosim=cosim, timeout_s=60)
    assert set(row) == set(ROW_KEYS) | {"csynth", "cosim"}
    assert {k: row[k] for k in expected} == expected
    assert row["fields_per_s"] == pytest.approx(expected["fmax_mhz"] * 1e6 / expected["ii_cycles"])
    assert row["csynth"] == parse_csynth_xml(fixtures / "myproject_csynth.xml")
    assert "resources: Vivado synthesis" in row["note"] and str(project / "vendor_build.log") in row["note"]
    log = (project / "vendor_build.log").read_text()
    assert log.startswith(f"$ cd {project} && {bindir / hls} -f build_prj.tcl")
    argv = (project / "fake_hls_argv.txt").read_text().strip()
    if backend == "vitis":  # options through build_opt.tcl, as hls4ml's VitisBackend.build writes them
        assert argv == "-f build_prj.tcl"
        assert row["cosim"]["passed"] is True and row["cosim"]["latency_max"] == 131
        assert re.search(r"^\s+csim\s+0$", (project / "build_opt.tcl").read_text(), re.M)
    else:  # options on the command line, as hls4ml's VivadoBackend.build passes them
        assert argv == "-f build_prj.tcl reset=0 csim=0 synth=1 cosim=0 validation=0 export=0 vsynth=1 fifo_opt=0"
        assert row["cosim"] is None


def test_without_vivado_row_is_csynth_estimate(tmp_path, bindir):
    _fake_hls(bindir, "vitis_hls", VITIS, "2023.2")
    row = run_vendor_build(_project(tmp_path / "prj"), timeout_s=60)
    expected = {"tool": "vitis_hls", "tool_version": "2023.2", "lut": 21377, "ff": 9512, "dsp": 24, "bram": 6,
                "carry": None, "latency_cycles": 131, "ii_cycles": 112, "fmax_mhz": 273.97, "estimate": True}
    assert {k: row[k] for k in expected} == expected
    assert "vivado not on PATH" in row["note"] and not (tmp_path / "prj" / "vivado_synth.rpt").exists()


def test_failing_tool_names_its_log(tmp_path, bindir):
    _script(bindir / "vitis_hls", "echo 'INFO: [HLS 200-10] Running vitis_hls'\n"
                                  "echo \"ERROR: [HLS 207-812] 'nnet_dense.h' file not found\"\nexit 1\n")
    project = _project(tmp_path / "prj")
    with pytest.raises(ToolError, match="exit 1") as err:
        run_vendor_build(project, timeout_s=60)
    message = str(err.value)
    assert str(project / "vendor_build.log") in message and "HLS 207-812" in message


def test_tool_that_writes_no_report(tmp_path, bindir):
    _script(bindir / "vitis_hls", "exit 0\n")
    project = _project(tmp_path / "prj")
    with pytest.raises(ToolError, match="myproject_csynth.xml was not written"):
        run_vendor_build(project, vsynth=False, timeout_s=60)


def test_timeout_stops_the_tool(tmp_path, bindir):
    _script(bindir / "vitis_hls", "echo 'INFO: [HLS 200-1510] Running: csynth_design'\nsleep 30\n")
    project = _project(tmp_path / "prj")
    with pytest.raises(ToolError, match="timed out after 1 s") as err:
        run_vendor_build(project, vsynth=False, timeout_s=1)
    assert str(project / "vendor_build.log") in str(err.value) and "csynth_design" in str(err.value)
