"""Activation × activation MatMul in the folded backend (issue 13): Galerkin attention's KᵀV
(``outer``: a sum of outer products as the K and V streams pass) and Q·(KᵀV) (``mvau_stream``: KV
loaded from its stream once per field), the Q and residual branches' FIFOs that cover the field KV
takes, and the tiny Transformer1d/2d through them.

Fast: the integer model and the elaborated graph equal the golden (np.array_equal) on the tiny
exported Transformer1d (w4a8) and on a hand-built graph with unsigned operands and a Relu;
the Q branch's FIFO holds a whole field. Slow (Verilator, ~30 s a build): bit-exact under random
valid gaps and ready stalls, measured II equal to the cycle model's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from onnx import helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.infer_shapes import InferShapes

from qpde import golden
from qpde.backends.folded import build_dataflow, build_folded, optimize, validate
from qpde.backends.folded import model as int_model
from qpde.backends.folded.compile import elaborate, fifo_gaps, join_waits
from qpde.backends.folded.fold import cycle_model
from qpde.errors import ConfigError
from qpde.models.transformer import Transformer2d
from qpde.qgraph import QGraph
from qpde.quant import parse_scenario
from tests.conftest import calibrated, edge_inputs, exported_per_scenario
from tests.folded.conftest import _save, random_inputs
from tests.folded.test_rtl import check
from tests.rtl.conftest import _quant
from tests.test_transformer import N, TINY, calibrated_transformer

R2D = 6  # Transformer2d grid: 36 tokens, attention scale 2^-6 (not 1/N); round-half-up export


@pytest.fixture(scope="module")
def tf_qonnx(tmp_path_factory):
    return exported_per_scenario(tmp_path_factory.mktemp("folded_tf"), calibrated_transformer, N)


@pytest.fixture(scope="module")
def tf2d_qonnx(tmp_path_factory):
    def make(scenario):  # round-half-up: exported as FLOOR + half an LSB after each activation MatMul
        torch.manual_seed(0)
        spec = parse_scenario(scenario).with_options(rounding="round")
        return calibrated(Transformer2d(R2D, TINY, spec), R2D * R2D)

    return exported_per_scenario(tmp_path_factory.mktemp("folded_tf2d"), make, R2D * R2D)


def gram_qonnx(path: Path, m: int = 3, k: int = 4) -> Path:
    """x[1, m·k] → Quant(2^-2, 5 bits) → Reshape [1, m, k] = A; B = Relu → Quant(2^-1, 4 bits unsigned) of
    A; Aᵀ·B [k, k] (an ``outer``) → Quant(2^-3, 6 bits) = G; A·G [m, k] (an ``mvau_stream`` whose left
    operand is signed and right one a Quant of an outer) → Mul 2^-1 → Add 3·2^-6 (the accumulators' start,
at their LSB) → Relu → Quant(2^-2, 5 bits unsigned)."""
    nodes, inits = [], []

    def quant(name, src, dst, exp, bits, signed=True):
        node, ini = _quant(name, src, dst, exp, bits, signed=signed)
        nodes.append(node)
        inits.extend(ini)

    quant("q_in", "x", "xq", -2, 5)
    inits.append(numpy_helper.from_array(np.array([1, m, k], np.int64), "shape"))
    nodes.append(helper.make_node("Reshape", ["xq", "shape"], ["a"], name="reshape"))
    nodes.append(helper.make_node("Relu", ["a"], ["ar"], name="relu_b"))
    quant("q_b", "ar", "b", -1, 4, signed=False)
    nodes.append(helper.make_node("Transpose", ["a"], ["at"], name="at", perm=[0, 2, 1]))
    nodes.append(helper.make_node("MatMul", ["at", "b"], ["g"], name="gram"))
    quant("q_g", "g", "gq", -3, 6)
    nodes.append(helper.make_node("MatMul", ["a", "gq"], ["y0"], name="apply"))
    inits.append(numpy_helper.from_array(np.array(0.5, np.float32), "half"))
    nodes.append(helper.make_node("Mul", ["y0", "half"], ["y1"], name="half"))
    inits.append(numpy_helper.from_array(np.array(3 * 2.0**-6, np.float32), "bump"))
    nodes.append(helper.make_node("Add", ["y1", "bump"], ["y1b"], name="bump"))
    nodes.append(helper.make_node("Relu", ["y1b"], ["y2"], name="relu_out"))
    quant("q_out", "y2", "y", -2, 5, signed=False)
    path = _save(path, nodes, inits, [1, m * k], [1, m, k])
    ModelWrapper(str(path)).transform(InferShapes()).save(str(path))  # shapes for the MatMul checks
    return path


def test_transformer_integer_model_equals_golden(tf_qonnx):
    """w4a8 (one export: the fast suite stays fast); w4a4 runs in the Transformer2d Verilator test."""
    graph = QGraph(tf_qonnx("w4a8")[1])
    df = build_dataflow(graph)
    kinds = [u.kind for u in df.units]
    assert kinds.count("outer") == 1 and kinds.count("mvau_stream") == 1 and "transpose" not in kinds
    outer = next(u for u in df.units if u.kind == "outer")
    assert (outer.params["M"], outer.params["K"], outer.params["P"]) == (TINY.dim, N, TINY.dim)
    assert any(n.startswith("Mul") for n in outer.nodes)  # the 2^-4 attention scale is in its requant
    x = edge_inputs(graph)
    want = golden.run(graph, x)
    assert len(np.unique(want)) >= 8
    assert np.array_equal(int_model.run_values(graph, df, x), want)
    assert np.array_equal(int_model.run_values(graph, elaborate(df, optimize(df).layers), x), want)


def test_gram_graph_integer_model_equals_golden(tmp_path):
    graph = QGraph(gram_qonnx(tmp_path / "gram.onnx"))
    df = build_dataflow(graph)
    assert [u.kind for u in df.units] == ["map", "outer", "mvau_stream"]
    assert df.units[2].params["offset"] == 3 and "bump" in df.units[2].nodes
    x = random_inputs(graph)
    want = golden.run(graph, x)
    assert len(np.unique(want)) >= 4
    assert np.array_equal(int_model.run_values(graph, df, x), want)


def test_q_and_residual_branches_buffer_the_field_kv_takes(tf_qonnx):
    """Q reaches mvau_stream directly, KV only after outer absorbed all N tokens: the Q branch's and the
    residual's (waiting for Q·KV) FIFOs hold more than a field; V waits one K row at outer (a small
    FIFO), K none. (branch_lags, the rule without ports, gave Q none: Q and K meet at mvau_stream.)"""
    graph = QGraph(tf_qonnx("w4a8")[1])
    df = build_dataflow(graph)
    h = next(u for u in df.units if u.kind == "outer").inputs  # K and V, both MVAUs of h
    h_stream = df.producer(h[0]).inputs[0]
    consumers = df.consumers(h_stream)
    names = [u.name for u in consumers]
    q_mvau = df.producer(next(u for u in df.units if u.kind == "mvau_stream").inputs[0]).name
    k_mvau, v_mvau = (df.producer(s).name for s in h)
    waits = dict(zip(names, join_waits(df, h_stream, consumers)))
    residual = next(u.name for u in consumers if u.kind == "add")
    assert waits[k_mvau] == 0 and waits[v_mvau] == 1 / N  # one K row of the N at outer
    assert 1 < waits[q_mvau] < waits[residual] < 2
    phys = elaborate(df, {})
    depths = [u.params["depth"] for u in phys.units if u.kind == "fifo" and u.inputs[0].startswith(h_stream)]
    assert len(depths) == 3 and sorted(depths)[-2] > 2 * df.streams[h_stream].numel
    mvs = next(u for u in phys.units if u.kind == "mvau_stream")
    assert cycle_model(phys)[mvs.name] == N * TINY.dim


def test_attention_lanes_are_validated(tf_qonnx, tmp_path):
    """lanes must divide what a beat of each port holds: outer's tokens (M) and rows of B and Y (P),
    mvau_stream's rows of A (K) and of B and Y (P); a ConfigError names the layer and the valid lanes."""
    df = build_dataflow(QGraph(tf_qonnx("w4a8")[1]))
    outer = next(u for u in df.units if u.kind == "outer")
    mvs = next(u for u in df.units if u.kind == "mvau_stream")
    with pytest.raises(ConfigError, match=f"layer '{outer.name}' \\(outer 4×16×4\\): lanes 3 .*valid lanes: \\[1, 2, 4\\]"):
        validate(df, {outer.name: {"lanes": 3}})
    with pytest.raises(ConfigError, match=f"layer '{mvs.name}' \\(mvau_stream 16×4×4\\): lanes 8 .*K and P"):
        validate(df, {mvs.name: {"lanes": 8}})
    with pytest.raises(ConfigError, match=f"layer '{outer.name}' \\(outer\\): unknown folding keys \\['pe'\\]"):
        validate(df, {outer.name: {"pe": 2}})
    gram = build_dataflow(QGraph(gram_qonnx(tmp_path / "gram.onnx")))  # outer 4×3×4, mvau_stream 3×4×4
    with pytest.raises(ConfigError, match="layer 'apply' \\(mvau_stream 3×4×4\\): lanes 3 .*valid lanes: \\[1, 2, 4\\]"):
        validate(gram, {"apply": {"lanes": 3}})  # 3 divides its M (rows) but not K: a beat would straddle rows


@pytest.mark.parametrize("lanes", [1, 2, 4])
def test_attention_cycle_model_at_lanes(tf_qonnx, tmp_path, lanes):
    """max(M·K, K·P, M·P) / L: the tiny Transformer's units N·dim/L; the gram graph's outer (M 4, K 3
    tokens, P 4) is bound by its 16 outputs, its mvau_stream (3 rows of K 4, P 4) by B's 16 codes."""
    df = build_dataflow(QGraph(tf_qonnx("w4a8")[1]))
    names = [u.name for u in df.units if u.kind in ("outer", "mvau_stream")]
    cycles = cycle_model(elaborate(df, {n: {"lanes": lanes} for n in names}))
    assert [cycles[n] for n in names] == [N * TINY.dim // lanes] * 2
    gram = build_dataflow(QGraph(gram_qonnx(tmp_path / "gram.onnx")))
    cycles = cycle_model(elaborate(gram, {"gram": {"lanes": lanes}, "apply": {"lanes": lanes}}))
    assert (cycles["gram"], cycles["apply"]) == (16 // lanes, 16 // lanes)


@pytest.mark.parametrize("target,lanes,ii", [(64, 1, 64), (32, 2, 32), (16, 4, 16), (None, 4, N)])
def test_optimizer_grows_attention_lanes(tf_qonnx, target, lanes, ii):
    """When the attention units are the bottleneck the optimizer raises their lanes like an MVAU's
    PE/SIMD, the smallest that meets the target; without a target it stops at the input stream
    (one element per cycle, N per field), with both units at 4 lanes (= dim, their largest)."""
    df = build_dataflow(QGraph(tf_qonnx("w4a8")[1]))
    folding = optimize(df, target_ii=target)
    aa = [u.name for u in df.units if u.kind in ("outer", "mvau_stream")]
    assert [folding.layers[n] for n in aa] == [{"lanes": lanes}] * 2
    assert folding.ii_cycles == ii and folding.target_met in (None, True)
    if target is None:
        assert folding.bottleneck == "input" and "cannot be folded further" in folding.note


def test_k_branch_buffered_once_v_is(tf_qonnx):
    """At 4 lanes outer takes one beat per token: V's FIFO (outer reads B a row after A) puts V's rows
    behind K's, and K, unbuffered, filled outer's two A banks and stalled the fork (II 17.6 measured
    for 16). fifo_gaps' second pass gives K a FIFO; at 1 lane (II 512) the allowance is below a row."""
    graph = QGraph(tf_qonnx("w4a8")[1])
    df = build_dataflow(graph)
    k_mvau = df.producer(next(u for u in df.units if u.kind == "outer").inputs[0]).name
    for folding, buffered in (({}, False), (optimize(df, target_ii=16).layers, True)):
        phys = elaborate(df, folding)
        feed = phys.producer(phys.unit(k_mvau).inputs[0])
        assert (feed.kind == "fifo") == buffered, (folding, feed)
    h = df.producer(df.unit(k_mvau).inputs[0]).outputs[0]
    consumers = df.consumers(h)
    first = join_waits(df, h, consumers, 0.5)  # the first pass alone (pipe 8/16): K waits for nothing
    assert first[[u.name for u in consumers].index(k_mvau)] == 0
    assert fifo_gaps(df, h, consumers, 0.5)[[u.name for u in consumers].index(k_mvau)] > 0


@pytest.mark.slow
@pytest.mark.parametrize("outer_lanes,mvs_lanes", [(1, 1), (2, 2), (4, 4), (4, 2), (1, 4)])
def test_gram_graph_in_verilator(tmp_path, outer_lanes, mvs_lanes):
    """Each unit at 1, 2 and 4 lanes (4: a token or row per beat), equal and mixed (width converters
    between them), under random gaps and stalls; the Relu map feeding outer's B runs at outer's lanes."""
    graph = QGraph(gram_qonnx(tmp_path / "gram.onnx"))
    folding = {"relu_b": {"lanes": outer_lanes}, "gram": {"lanes": outer_lanes}, "apply": {"lanes": mvs_lanes}}
    design = build_folded(graph, tmp_path / "build", folding)
    assert design.predicted_ii == max(12 // outer_lanes, 16 // min(outer_lanes, mvs_lanes))
    check(graph, design, random_inputs(graph), seed=outer_lanes + mvs_lanes)


@pytest.mark.slow
@pytest.mark.parametrize("target", [None, 64, 32, 16])
def test_tiny_transformer_in_verilator(tf_qonnx, tmp_path, target):
    """Folding {} (the MLP's first MVAU: N·mlp cycles), then optimize at 1, 2 and 4 lanes of the
    attention units: measured II = predicted (16 was 17.6 before fifo_gaps' second pass)."""
    graph = QGraph(tf_qonnx("w4a8")[1])
    folding = optimize(build_dataflow(graph), target_ii=target).layers if target else {}
    design = build_folded(graph, tmp_path / "build", folding)
    assert design.predicted_ii == (target or N * TINY.dim * TINY.mlp)
    check(graph, design, random_inputs(graph))


@pytest.mark.slow
def test_tiny_transformer2d_in_verilator(tf2d_qonnx, tmp_path):
    graph = QGraph(tf2d_qonnx("w4a4")[1])
    df = build_dataflow(graph)
    assert all(u.params["offset"] > 0 for u in df.units if u.kind in ("outer", "mvau_stream"))
    design = build_folded(graph, tmp_path / "build", optimize(df).layers)
    assert design.predicted_ii == R2D * R2D  # the input stream: the attention units at 4 lanes
    check(graph, design, random_inputs(graph))
