"""The folded designs in Verilator: every unit under random valid gaps and ready stalls, bit-exact
with qpde.golden (the numpy reference), and the measured II equal to the cycle model's.

II tolerance: none in the steady state. Every unit moves one beat per cycle (MVAU: one (fold, word)
step per cycle, rows overlapped by the double buffer; transposes: ping-pong banks) and the FIFOs
cover the fork lags, so after the pipeline fills, fields leave exactly every predicted_ii cycles;
the measurement averages the second half of the fields, so we allow 1% for its end phase only.

Each test builds one Verilator model (~20–40 s on 2 shared cores): all are marked slow.
"""

from __future__ import annotations

import pytest

from qpde import golden
from qpde.backends.folded import build_folded, folded_verdict, lint
from qpde.backends.verdict import Verdict
from qpde.qgraph import QGraph
from tests.conftest import edge_inputs
from tests.folded.conftest import random_inputs
from tests.folded.test_compile import FOLDED

pytestmark = pytest.mark.slow


def check(graph: QGraph, design, x, *, seed: int = 0) -> Verdict:
    verdict = folded_verdict(graph, design, x, seed=seed)
    assert verdict.samples == len(x) and verdict.exact, verdict
    assert abs(verdict.details["ii_cycles"] - design.predicted_ii) <= 0.01 * design.predicted_ii, verdict
    assert lint(design).count("%Warning") == 0, lint(design)
    return verdict


@pytest.mark.parametrize("folding", [{}, {"mm1": {"pe": 3, "simd": 2}, "mm2": {"pe": 4, "simd": 3}},
                                     {"mm1": {"pe": 6, "simd": 4}, "mm2": {"pe": 2}}])
def test_mvau_bias_relu_narrow_saturation(folded_graphs, tmp_path, folding):
    """mlp: MVAU + finer bias + ReLU + unsigned Quant, then MVAU + narrow signed Quant (saturates)."""
    graph = QGraph(folded_graphs["mlp"])
    design = build_folded(graph, tmp_path, folding)
    x = random_inputs(graph)
    check(graph, design, x, seed=len(folding))
    y = golden.run(graph, x) / 2.0**design.output_type.exp
    assert y.min() == -7 and y.max() == 7  # narrow range reached on both sides


@pytest.mark.parametrize("folding", [{}, {"mm": {"pe": 2, "simd": 2}}, {"mm": {"pe": 8, "simd": 2}}])
def test_mvau_skips_zero_tiles(folded_graphs, tmp_path, folding):
    """Zero-tile skipping under stalls: a block-structured weight with an all-zero fold (its outputs
    are the bias, requantized) and an all-zero row word; at PE 8 × SIMD 2 the row's 6 input beats
    outnumber the 5 stored tiles, so the input sets the II (cycle model: max of the two)."""
    graph = QGraph(folded_graphs["sparse"])
    design = build_folded(graph, tmp_path, folding)
    assert design.tiles["mm"]["stored"] < design.tiles["mm"]["dense"]
    assert (tmp_path / "src" / "memfiles" / "mm_i.mem").is_file()
    check(graph, design, random_inputs(graph), seed=3)


def test_transpose_and_requant(folded_graphs, tmp_path):
    graph = QGraph(folded_graphs["transpose"])
    check(graph, build_folded(graph, tmp_path), random_inputs(graph), seed=3)


@pytest.mark.parametrize("rows,cols,lanes,out_lanes", [(6, 4, 2, 2), (4, 8, 4, 4), (6, 9, 3, 1), (8, 8, 8, 8),
                                                       (12, 8, 4, 2)])
def test_multi_lane_transpose(tmp_path, rows, cols, lanes, out_lanes):
    """Skewed banks: an L-wide row beat in and an L-wide column beat out per cycle, square and
    rectangular, L a power of two or not, with and without a width converter after it."""
    from tests.folded.conftest import transpose_qonnx

    graph = QGraph(transpose_qonnx(tmp_path / "t.onnx", rows, cols))
    design = build_folded(graph, tmp_path / "d", {"transpose": {"lanes": lanes}, "q_out": {"lanes": out_lanes}})
    assert design.input_lanes == lanes and design.predicted_ii == rows * cols // min(lanes, out_lanes)
    check(graph, design, random_inputs(graph), seed=rows + lanes)


def test_tiny_fno_with_multi_lane_transposes(fno_l1_qonnx, tmp_path):
    """The optimizer below the old one-element-per-cycle floor (64): transposes at 4 lanes, II 16."""
    from qpde.backends.folded import build_dataflow, optimize

    graph = QGraph(fno_l1_qonnx("w4a4"))
    folding = optimize(build_dataflow(graph), target_ii=16)
    assert folding.target_met and folding.layers["Transpose_0"] == {"lanes": 4}
    design = build_folded(graph, tmp_path, folding.layers)
    check(graph, design, edge_inputs(graph), seed=13)
    assert design.ii_cycles == design.predicted_ii == 16


@pytest.mark.parametrize("folding", [{}, {"mm": {"pe": 2, "simd": 4}, "add": {"lanes": 2}}])
def test_fork_fifo_add_with_different_exponents(folded_graphs, tmp_path, folding):
    graph = QGraph(folded_graphs["residual"])
    check(graph, build_folded(graph, tmp_path, folding), random_inputs(graph), seed=5)


@pytest.mark.parametrize("scenario,folding", [("w4a4", {}), ("w4a4", FOLDED), ("w8a8", FOLDED)])
def test_tiny_fno_end_to_end(fno_l1_qonnx, tmp_path, scenario, folding):
    graph = QGraph(fno_l1_qonnx(scenario))
    design = build_folded(graph, tmp_path, folding)
    x = edge_inputs(graph)
    verdict = check(graph, design, x, seed=7)
    assert design.ii_cycles == design.predicted_ii == (480 if not folding else 64)  # zero tiles skipped
    assert 0 < verdict.details["latency_cycles"] < 4 * design.predicted_ii + 1000


def test_round_half_up_fno_in_verilator(fno_round_qonnx, tmp_path):
    """The default export (round half up: a constant OFFSET in the residual add) is bit-exact too."""
    graph = QGraph(fno_round_qonnx("w4a4"))
    design = build_folded(graph, tmp_path, {"MatMul_4": {"pe": 4, "simd": 4}, "Add_8": {"lanes": 2}})
    check(graph, design, edge_inputs(graph), seed=11)


def test_tiny_fno2d_with_block_diagonal_dft(fno2d_qonnx, tmp_path):
    graph = QGraph(fno2d_qonnx("w4a4"))
    from qpde.backends.folded import build_dataflow, optimize

    folding = optimize(build_dataflow(graph), target_ii=512)
    assert folding.target_met
    design = build_folded(graph, tmp_path, folding.layers)
    check(graph, design, edge_inputs(graph)[:40], seed=11)


def test_a_one_lsb_weight_fault_fails_the_flow(fno_l1_qonnx, tmp_path, monkeypatch):
    """Fault injection: one weight of a built design off by one LSB (its ROM image edited after
    generation) must make Verilator disagree with the golden, and run_folded raise MismatchError
    before any synthesis (the sweep then exits 1 naming the variant)."""
    from qpde.backends.folded import flow
    from qpde.config import FoldedConfig
    from qpde.errors import MismatchError

    def faulty_build(graph, out_dir, folding):
        design = build_folded(graph, out_dir, folding)
        rom = out_dir / "src" / "memfiles" / "MatMul_0_w.mem"
        words = rom.read_text().split()
        words[0] = f"{int(words[0], 16) ^ 1:0{len(words[0])}x}"  # lane 0's weight code ± 1
        rom.write_text("\n".join(words) + "\n")
        return design

    monkeypatch.setattr(flow, "build_folded", faulty_build)
    monkeypatch.setattr(flow, "synth_folded", lambda *a, **k: pytest.fail("a design that differs was synthesized"))
    graph = QGraph(fno_l1_qonnx("w4a4"))
    with pytest.raises(MismatchError, match="Verilator differs from the golden"):
        flow.run_folded(graph, tmp_path, edge_inputs(graph), FoldedConfig(target_fps=(1e6,), pnr=False))
