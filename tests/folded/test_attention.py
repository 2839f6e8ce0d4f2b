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
from qpde.backends.folded.compile import elaborate, join_waits
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


def test_attention_units_are_not_foldable_yet(tf_qonnx):
    df = build_dataflow(QGraph(tf_qonnx("w4a8")[1]))
    outer = next(u for u in df.units if u.kind == "outer")
    with pytest.raises(ConfigError, match=f"layer '{outer.name}' \\(outer\\): unknown folding keys.*not foldable"):
        validate(df, {outer.name: {"pe": 2}})
    folding = optimize(df)
    assert folding.ii_cycles == N * TINY.dim and "cannot be folded further" in folding.note


@pytest.mark.slow
def test_gram_graph_in_verilator(tmp_path):
    graph = QGraph(gram_qonnx(tmp_path / "gram.onnx"))
    design = build_folded(graph, tmp_path / "build")
    check(graph, design, random_inputs(graph))


@pytest.mark.slow
@pytest.mark.parametrize("optimized", [False, True])
def test_tiny_transformer_in_verilator(tf_qonnx, tmp_path, optimized):
    graph = QGraph(tf_qonnx("w4a8")[1])
    folding = optimize(build_dataflow(graph)).layers if optimized else {}
    design = build_folded(graph, tmp_path / "build", folding)
    assert design.predicted_ii == (N * TINY.dim if optimized else N * TINY.dim * TINY.mlp)
    check(graph, design, random_inputs(graph))


@pytest.mark.slow
def test_tiny_transformer2d_in_verilator(tf2d_qonnx, tmp_path):
    graph = QGraph(tf2d_qonnx("w4a4")[1])
    df = build_dataflow(graph)
    assert all(u.params["offset"] > 0 for u in df.units if u.kind in ("outer", "mvau_stream"))
    design = build_folded(graph, tmp_path / "build", optimize(df).layers)
    assert design.predicted_ii == R2D * R2D * TINY.dim  # the attention units: a code per cycle
    check(graph, design, random_inputs(graph))
