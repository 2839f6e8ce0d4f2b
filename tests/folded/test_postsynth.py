"""Yosys' mapped netlists of folded designs, simulated with Yosys' own cell models in Verilator
(qpde.backends.folded.synth.netlist_verdict), equal the golden bit for bit; a netlist with one fault
is caught and its counts are withheld. Each test synthesizes and builds a netlist model: slow."""

from __future__ import annotations

import re


import pytest

from qpde.backends.folded import build_folded, folded_verdict
from qpde.backends.folded.synth import NETLIST, netlist_verdict, synth_folded
from qpde.qgraph import QGraph
from tests.conftest import edge_inputs
from tests.folded.conftest import random_inputs
from tests.folded.test_compile import FOLDED

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("scenario", ["w4a4", "w8a8"])
def test_xc7_netlist_of_tiny_fno_equals_golden(fno_l1_qonnx, tmp_path, scenario):
    """w8a8 is the regression: Yosys 0.23 pruned most of its datapath (a product register with a
    redundant sign bit folded into the DSP48's PREG), 8 DSP48s for 218 8-bit products."""
    graph = QGraph(fno_l1_qonnx(scenario))
    design = build_folded(graph, tmp_path, FOLDED)
    x = edge_inputs(graph)
    assert folded_verdict(graph, design, x).exact
    counts = synth_folded(design, tmp_path / "xc7")
    post = netlist_verdict(graph, design, tmp_path / "xc7", x)
    assert post.details["agrees"] and post.samples == 8 and post.details["latency_cycles"] == design.latency_cycles, post
    if scenario == "w8a8":
        # one DSP48 per 8-bit product (Σ PE·SIMD of FOLDED), and its 144×16 FIFO is a RAMB18E1 (the
        # behavioural model of qpde.backends.folded.bram_model, Yosys' own has none)
        assert counts["dsp"] == sum(p.get("pe", 1) * p.get("simd", 1) for k, p in FOLDED.items() if "MatMul" in k)
        assert counts["cells"].get("RAMB18E1") == 1 and post.details["models"][-1].endswith("bram_sim.v"), (counts, post)


def test_a_netlist_with_one_flipped_lut_bit_is_caught_and_its_counts_withheld(folded_graphs, tmp_path, monkeypatch):
    """Fault injection after synthesis: the INIT of one LUT of Yosys' netlist flipped. The
    netlist simulation must disagree and run_folded report no LUT/FF/DSP/BRAM figures for it."""
    from qpde.backends.folded import flow
    from qpde.config import FoldedConfig

    def faulty_synth(design, out_dir, target="xc7"):
        result = synth_folded(design, out_dir, target=target)
        path = out_dir / NETLIST.format(target=target)
        path.write_text(invert_first_lut(path.read_text()))
        return result

    graph = QGraph(folded_graphs["mlp"])
    monkeypatch.setattr(flow, "synth_folded", faulty_synth)
    (row,) = flow.run_folded(graph, tmp_path, random_inputs(graph), FoldedConfig(target_fps=(1e9,), pnr=False))
    assert row["rtlsim_mismatches"] == 0 and row["postsynth_mismatches"] > 0, row
    assert row["lut"] is None and row["dsp"] is None and "withheld" in row["note"]


def invert_first_lut(netlist: str) -> str:
    """The netlist with the first LUT's INIT inverted (its output negated for every input)."""
    lut = re.search(r"(LUT([1-6]) #\(\s*\.INIT\()(\d+)'([hd])([0-9a-fA-F]+)\)", netlist)
    width, value = int(lut.group(3)), int(lut.group(5), 16 if lut.group(4) == "h" else 10)
    inverted = f"{lut.group(1)}{width}'h{value ^ ((1 << width) - 1):0{(width + 3) // 4}x})"
    return netlist[:lut.start()] + inverted + netlist[lut.end():]
