"""Per op of the registry (qpde.ops): one tiny QONNX graph each (tests/ops/graphs.py).

- golden == an independent exact rational executor, and every value lies in its exact type;
- hls4ml C-sim == golden, RTL (da4ml trace, then Verilator) == golden and the folded backend (its
  integer model, then Verilator with stalls) == golden, np.array_equal, for every graph whose ops the
  backend maps; a graph with an op it does not map is refused naming the node.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.infer_shapes import InferShapes

from qpde import golden, ops
from qpde.errors import GraphError
from qpde.qgraph import QGraph
from tests.ops.graphs import Case, cases, edge_inputs, reference

CASES = {c.name: c for c in cases()}


def load(case: Case, folder) -> QGraph:
    """The case through qpde's ingestion (cleanup); a graph whose op under test cleanup removed
    (e.g. Identity) is loaded as written instead, shapes inferred."""
    graph = QGraph(case.save(folder))
    if set(case.ops) <= {n.op_type for n in graph.nodes}:
        return graph
    return QGraph(ModelWrapper(case.model()).transform(InferShapes()))


def supported(case: Case, backend: str) -> bool:
    """hls4ml has no layer of its own for a Mul: it maps one only folded into the MatMul before it."""
    return backend not in case.unmapped


def test_every_registered_op_has_a_graph_and_its_functions():
    covered = {op for c in CASES.values() for op in c.ops}
    assert set(ops.OPS) <= covered, f"ops without a graph in tests/ops/graphs.py: {set(ops.OPS) - covered}"
    for op in ops.OPS.values():
        assert callable(op.type_rule) and callable(op.golden)
        for backend in ops.BACKENDS_WITH_HANDLERS:
            handler = op.handler(backend)  # imports the backend module: a broken reference fails here
            assert handler is None or callable(handler)
    assert set(ops.SHAPE_OPS) | set(ops.SPATIAL_OPS) < set(ops.OPS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_equals_rational_reference_and_types_hold(name, tmp_path):
    case = CASES[name]
    graph = load(case, tmp_path)
    x = edge_inputs(case)
    env = golden.run(graph, x, keep=True)
    want = reference(case, x)
    got = env[graph.output_name]
    assert got.shape == want.shape
    assert all(Fraction(float(g)) == w for g, w in zip(got.ravel(), want.ravel()))  # exact, no tolerance
    for tensor, t in graph.types.items():  # the exact type rule: every value is an integer in [lo, hi] · 2^exp
        if t is None or tensor not in env:
            continue
        ints = env[tensor] / 2.0**t.exp
        assert np.array_equal(ints, np.round(ints)) and ints.min() >= t.lo and ints.max() <= t.hi, tensor
    assert len(np.unique(got)) >= 4  # the graph does something


def test_unknown_op_is_refused_naming_the_node(tmp_path):
    case = Case("einsum", ("Einsum",), (1, 4))
    case.quant("x", "xq", -2, 4)
    case.node("Einsum", ["xq"], "y", equation="ij->ij")
    with pytest.raises(GraphError, match="einsum_y.*op not supported"):
        QGraph(case.save(tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if supported(c, "hls4ml")))
def test_hls4ml_csim_equals_golden(name, tmp_path):
    from qpde.backends.hls4ml import build_project
    from qpde.backends.hls4ml.csim import csim_outputs
    from qpde.config import HLSConfig

    case = CASES[name]
    graph = load(case, tmp_path)
    x = edge_inputs(case)
    project = build_project(graph, tmp_path / "hls", HLSConfig())
    assert np.array_equal(csim_outputs(graph, project, x), golden.run(graph, x))


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if not supported(c, "hls4ml")))
def test_hls4ml_refuses_what_it_does_not_map(name, tmp_path):
    from qpde.backends.hls4ml import layer_list

    op = CASES[name].unmapped["hls4ml"]
    assert ops.OPS[op].handler("hls4ml") is None
    with pytest.raises(GraphError, match=f"\\({op}\\) has no hls4ml mapping"):
        layer_list(load(CASES[name], tmp_path))


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if supported(c, "rtl")))
def test_rtl_trace_equals_golden(name, tmp_path):
    """da4ml's bit-exact interpreter of the traced logic (seconds; Verilator below)."""
    from qpde.backends.rtl.trace import predict, trace_graph

    case = CASES[name]
    graph = load(case, tmp_path)
    x = edge_inputs(case)
    assert np.array_equal(predict(graph, trace_graph(graph), x), golden.run(graph, x))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if supported(c, "rtl")))
def test_rtl_verilator_equals_golden(name, tmp_path):
    from qpde.backends.rtl import build_rtl, rtl_simulate

    case = CASES[name]
    path = case.save(tmp_path)
    graph = QGraph(path)
    x = edge_inputs(case)
    design = build_rtl(path, tmp_path / "rtl", latency_cutoff=2)
    assert np.array_equal(rtl_simulate(design, x, graph=graph), golden.run(graph, x))


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if supported(c, "folded")))
def test_folded_integer_model_equals_golden(name, tmp_path):
    """The folded dataflow's integer model (what the stream units compute, Verilator below)."""
    from qpde.backends.folded import build_dataflow
    from qpde.backends.folded import model as int_model

    case = CASES[name]
    graph = load(case, tmp_path)
    x = edge_inputs(case)
    assert np.array_equal(int_model.run_values(graph, build_dataflow(graph), x), golden.run(graph, x))


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if not supported(c, "folded")))
def test_folded_refuses_what_it_does_not_map(name, tmp_path):
    from qpde.backends.folded import build_dataflow

    op = CASES[name].unmapped["folded"]
    with pytest.raises(GraphError, match=f"\\({op}\\): the folded backend does not map"):
        build_dataflow(load(CASES[name], tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if supported(c, "folded")))
def test_folded_verilator_equals_golden(name, tmp_path):
    from qpde.backends.folded import build_folded, folded_verdict

    case = CASES[name]
    graph = load(case, tmp_path)
    verdict = folded_verdict(graph, build_folded(graph, tmp_path / "folded"), edge_inputs(case))
    assert verdict.exact and verdict.samples == len(edge_inputs(case)), verdict
