"""synth_ecp5's netlists of folded designs, simulated with Yosys' ECP5 cell models plus qpde's DP16KD and
MULT18X18D models (qpde.backends.folded.ecp5_model) in Verilator, equal the golden bit for bit; one
flipped INITVAL bit is caught, and the flow then does not place the design. Slow (Yosys, Verilator)."""

from __future__ import annotations

import re

import pytest

from qpde.backends.folded import build_folded, folded_verdict
from qpde.backends.folded.synth import NETLIST, netlist_verdict, synth_folded
from qpde.qgraph import QGraph
from tests.conftest import edge_inputs
from tests.folded.conftest import random_inputs
from tests.folded.test_compile import FOLDED
from tests.rtl.conftest import mlp_qonnx

pytestmark = pytest.mark.slow


def flip_first_initval_bit(netlist: str) -> str:
    """The netlist with the lowest set bit of the first nonzero DP16KD INITVAL cleared: a bit of a
    stored word (unused bits are 0), so a weight of the ROM changes."""
    for match in re.finditer(r"\.(INITVAL_[0-9A-F]{2})\(320'h([0-9a-fA-F]+)\)", netlist):
        value = int(match.group(2), 16)
        if value:
            flipped = f".{match.group(1)}(320'h{value & (value - 1):080x})"
            return netlist[:match.start()] + flipped + netlist[match.end():]
    raise AssertionError("no DP16KD with initial contents in the netlist")


@pytest.fixture(scope="module")
def rom_mlp(tmp_path_factory):
    """An MLP whose 64×64 weight ROMs (4,096 words at PE = SIMD = 1) fill DP16KDs in synth_ecp5."""
    return QGraph(mlp_qonnx(tmp_path_factory.mktemp("rom_mlp") / "mlp.onnx", n=64, hidden=64))


def test_ecp5_netlist_of_tiny_fno_equals_golden(fno_l1_qonnx, tmp_path):
    """w8a8 at FOLDED: 218 MULT18X18D (one per product) and a FIFO in a DP16KD (18 bits wide)."""
    graph = QGraph(fno_l1_qonnx("w8a8"))
    design = build_folded(graph, tmp_path, FOLDED)
    x = edge_inputs(graph)
    assert folded_verdict(graph, design, x).exact
    counts = synth_folded(design, tmp_path / "ecp5", target="ecp5")
    assert counts["dsp"] == 218 and counts["bram"] == 1, counts["cells"]
    post = netlist_verdict(graph, design, tmp_path / "ecp5", x, target="ecp5")
    assert post.details["agrees"] and post.samples == 8 and post.details["latency_cycles"] == design.latency_cycles, post
    assert post.details["models"][-1].endswith("ecp5_sim.v")


def test_ecp5_rom_netlist_equals_golden_and_a_flipped_initval_bit_is_caught(rom_mlp, tmp_path):
    x = random_inputs(rom_mlp, n=8)
    design = build_folded(rom_mlp, tmp_path, {})
    assert folded_verdict(rom_mlp, design, x).exact
    counts = synth_folded(design, tmp_path / "ecp5", target="ecp5")
    assert counts["bram"] >= 2, counts["cells"]  # both weight ROMs in EBR
    post = netlist_verdict(rom_mlp, design, tmp_path / "ecp5", x, target="ecp5")
    assert post.details["agrees"] and post.samples == 8 and post.mismatching_samples == 0, post
    path = tmp_path / "ecp5" / NETLIST.format(target="ecp5")
    path.write_text(flip_first_initval_bit(path.read_text()))
    post = netlist_verdict(rom_mlp, design, tmp_path / "ecp5", x, target="ecp5")
    assert post.details["agrees"] is False and post.mismatching_samples > 0, post


def test_the_flow_does_not_place_an_ecp5_netlist_that_differs(rom_mlp, tmp_path, monkeypatch):
    """Fault injection between synth_ecp5 and nextpnr: the flow's check must refuse the netlist, so
    the row has no Fmax, no ECP5 figures and says why; nextpnr is never run."""
    from qpde.backends.folded import flow
    from qpde.backends.rtl import synth as rtl_synth
    from qpde.config import FoldedConfig

    real = flow._ecp5_check

    def corrupting(graph, design, x, row):
        check = real(graph, design, x, row)

        def corrupted(pnr_dir):
            path = pnr_dir / NETLIST.format(target="ecp5")
            path.write_text(flip_first_initval_bit(path.read_text()))
            return check(pnr_dir)

        return corrupted

    run_tool = rtl_synth.run_tool

    def no_nextpnr(cmd, *args, **kwargs):
        assert "nextpnr" not in str(cmd[0]), "nextpnr must not run for a netlist that differs from the golden"
        return run_tool(cmd, *args, **kwargs)

    monkeypatch.setattr(flow, "_ecp5_check", corrupting)
    monkeypatch.setattr(rtl_synth, "run_tool", no_nextpnr)
    (row,) = flow.run_folded(rom_mlp, tmp_path, random_inputs(rom_mlp, n=8), FoldedConfig(target_fps=(1e3,)))
    assert row["rtlsim_mismatches"] == 0 and row["postsynth_mismatches"] == 0  # the design and its xc7 netlist
    assert row["ecp5_postsynth_mismatches"] > 0 and row.get("fmax_mhz") is None and row.get("ecp5_lut") is None
    assert "not placed: synth_ecp5's netlist differs from the golden" in row["note"], row["note"]
