"""Export and the golden: exact against Brevitas where float32 is exact, and exact by construction
(checked against an independent rational-arithmetic executor)."""

from fractions import Fraction

import numpy as np
import pytest
import torch

from qpde import golden
from qpde.ops import SHAPE_OPS
from qpde.qgraph import QGraph
from tests.conftest import assert_golden_equals_brevitas_and_qonnx, edge_inputs


def _brevitas(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x.astype(np.float32))).numpy().astype(np.float64)


@pytest.mark.parametrize("scenario", ["w4a4", "w4a8", "w8a8"])
def test_golden_equals_brevitas_and_qonnx_where_float32_is_exact(tiny_qonnx, scenario):
    """Every accumulator of these scenarios fits float32's 24-bit mantissa at this fan-in, so
    Brevitas (float32), QONNX's executor (onnxruntime float32) and the golden must agree exactly."""
    assert_golden_equals_brevitas_and_qonnx(*tiny_qonnx(scenario), stride=7)


def test_golden_vs_brevitas_w8a32_within_float32_bound(tiny_qonnx):
    """w8a32 accumulators exceed float32's mantissa: Brevitas rounds, the golden does not. The
    stated bound: outputs differ by at most 2^-14 of the output range (measured ~1e-7 here)."""
    model, path = tiny_qonnx("w8a32")
    graph = QGraph(path)
    x = edge_inputs(graph)
    expected, approx = golden.run(graph, x), _brevitas(model, x)
    out_range = np.abs(expected).max() + 1e-30
    assert np.abs(expected - approx).max() <= out_range * 2.0**-14


def _rational_run(graph, x_row):
    """Independent exact executor on Python Fractions (no floating point after conversion)."""
    env = {graph.input_name: np.vectorize(Fraction, otypes=[object])(x_row[None, :])}
    consts = {k: np.vectorize(Fraction, otypes=[object])(v) for k, v in graph.consts.items()}
    for node in graph.nodes:
        args = [env[n] if n in env else consts[n] for n in node.input if n]
        if node.op_type == "Quant":
            p = graph.quant_params(node, constant=False)
            scale = Fraction(2) ** p.exp
            out = np.vectorize(lambda v: min(max((v / scale).__floor__(), p.qmin), p.qmax) * scale, otypes=[object])(args[0])
        elif node.op_type == "MatMul":
            out = np.dot(args[0], args[1])
        elif node.op_type == "Add":
            out = args[0] + args[1]
        elif node.op_type == "Relu":
            out = np.vectorize(lambda v: max(v, Fraction(0)), otypes=[object])(args[0])
        else:
            assert node.op_type in SHAPE_OPS
            out = graph._shape_op(node, args[0], batch=1)
        env[node.output[0]] = out
    return env[graph.output_name]


@pytest.mark.parametrize("scenario", ["w4a4", "w8a32"])
def test_golden_is_exact_by_construction(tiny_qonnx, scenario):
    _, path = tiny_qonnx(scenario)
    graph = QGraph(path)
    x = edge_inputs(graph, n_random=4)[::6]
    expected = golden.run(graph, x)
    for i, row in enumerate(x):
        exact = np.array([float(v) for v in _rational_run(graph, row).ravel()])
        assert np.array_equal(exact, expected[i].ravel())


def test_exported_graph_has_floor_activations_and_po2_scales(tiny_qonnx):
    _, path = tiny_qonnx("w4a8")
    graph = QGraph(path)  # would raise on ROUND activations or non-power-of-two scales
    quants = [n for n in graph.nodes if n.op_type == "Quant"]
    bits = {graph.quant_params(n, constant=False).bits for n in quants}
    assert bits == {8}
    assert set(graph.const_bits[n] for n in graph.const_bits if graph.consts[n].ndim == 2) == {4}


def test_float_model_export_is_refused(tmp_path):
    from qpde.errors import GraphError
    from qpde.export import export_model
    from qpde.models.fno import FNO1d, FNOConfig
    from qpde.quant import parse_scenario

    with pytest.raises(GraphError, match="float"):
        export_model(FNO1d(16, FNOConfig(4, 4, 1, 8), parse_scenario("fp32")), 16, tmp_path / "f.onnx")
