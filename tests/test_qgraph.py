"""QGraph: checks with node names, exact types, Quant semantics at ties."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from qpde.errors import GraphError
from qpde.qgraph import FixedType, QGraph, QuantParams


def _quant(name, inp, out, exp=-2, bits=4, signed=1, rounding="FLOOR"):
    inits = [
        numpy_helper.from_array(np.array(2.0**exp, dtype=np.float32), f"{name}_s"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), f"{name}_z"),
        numpy_helper.from_array(np.array(float(bits), dtype=np.float32), f"{name}_b"),
    ]
    node = helper.make_node("Quant", [inp, f"{name}_s", f"{name}_z", f"{name}_b"], [out], name=name,
                            domain="qonnx.custom_op.general", rounding_mode=rounding, signed=signed, narrow=0)
    return node, inits


def _model(nodes, inits, out_shape=(1, 4)):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))], initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _save(tmp_path, model):
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    return path


def test_fixed_type_widths():
    assert FixedType(-8, 7, -2).width == 4 and FixedType(-8, 7, -2).int_bits == 2
    assert FixedType(0, 15, -4).width == 4 and not FixedType(0, 15, -4).signed
    assert FixedType(-9, 7, 0).width == 5
    assert FixedType(-8, 7, -3).ap_type("AP_TRN", "AP_SAT") == "ap_fixed<4,1,AP_TRN,AP_SAT>"


def test_floor_quant_at_ties_and_saturation():
    q = QuantParams(exp=-2, bits=4, signed=True, narrow=False, rounding="FLOOR")
    x = np.array([0.125, -0.125, 0.25, -0.25, 0.2499999, 1.75, 1.8, 100.0, -2.0, -2.01, -100.0])
    np.testing.assert_array_equal(q.apply(x), [0.0, -0.25, 0.25, -0.25, 0.0, 1.75, 1.75, 1.75, -2.0, -2.0, -2.0])
    r = QuantParams(exp=0, bits=8, signed=True, narrow=True, rounding="ROUND")
    np.testing.assert_array_equal(r.apply(np.array([0.5, 1.5, 2.5, -0.5, -200.0])), [0, 2, 2, -0, -127])


def test_matmul_of_two_activations_is_refused_with_node_name(tmp_path):
    q, inits = _quant("q0", "x", "xq")
    mm = helper.make_node("MatMul", ["xq", "xq"], ["y"], name="attention_scores")
    with pytest.raises(GraphError, match="attention_scores.*two activations"):
        QGraph(_save(tmp_path, _model([q, mm], inits)))


def test_einsum_is_refused_with_node_name(tmp_path):
    q, inits = _quant("q0", "x", "xq")
    ein = helper.make_node("Einsum", ["xq", "xq"], ["y"], name="mix_modes", equation="bi,bi->bi")
    with pytest.raises(GraphError, match="mix_modes.*Einsum"):
        QGraph(_save(tmp_path, _model([q, ein], inits)))


def test_round_activation_and_non_power_of_two_scale_are_refused(tmp_path):
    q, inits = _quant("q0", "x", "y", rounding="ROUND")
    with pytest.raises(GraphError, match="q0.*FLOOR"):
        QGraph(_save(tmp_path, _model([q], inits)))
    q, inits = _quant("q1", "x", "y")
    inits[0] = numpy_helper.from_array(np.array(0.3, dtype=np.float32), "q1_s")
    with pytest.raises(GraphError, match="q1.*power of two"):
        QGraph(_save(tmp_path, _model([q], inits)))


def test_unquantized_input_is_refused(tmp_path):
    relu = helper.make_node("Relu", ["x"], ["y"], name="r0")
    with pytest.raises(GraphError, match="r0.*not quantized"):
        QGraph(_save(tmp_path, _model([relu], [])))


def test_malformed_and_missing_files(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf at all")
    with pytest.raises(GraphError, match="bad.onnx"):
        QGraph(bad)
    with pytest.raises(GraphError, match="not found"):
        QGraph(tmp_path / "missing.onnx")


def test_accumulator_beyond_float64_is_refused(tmp_path):
    q, inits = _quant("q0", "x", "xq", exp=0, bits=40)
    w = numpy_helper.from_array(np.full((4, 4), 2.0**20 - 1, dtype=np.float32), "w")
    mm = helper.make_node("MatMul", ["xq", "w"], ["y"], name="wide")
    with pytest.raises(GraphError, match="wide.*53"):
        QGraph(_save(tmp_path, _model([q, mm], inits + [w])))


def test_interval_analysis_of_matmul_add_relu(tmp_path):
    q, inits = _quant("q0", "x", "xq", exp=-1, bits=3)  # values {-4..3}/2
    w = numpy_helper.from_array(np.array([[1, -2, 0, 0]] * 4, dtype=np.float32).T.copy(), "w")  # col j: x0 - 2 x1
    mm = helper.make_node("MatMul", ["xq", "w"], ["h"], name="mm")
    relu = helper.make_node("Relu", ["h"], ["y"], name="relu")
    graph = QGraph(_save(tmp_path, _model([q, mm, relu], inits + [w])))
    # x0 - 2 x1 over x ∈ [-4, 3]: [-4 - 6, 3 + 8] = [-10, 11] in units of 2^-1
    assert graph.types["h"] == FixedType(-10, 11, -1)
    assert graph.types["y"] == FixedType(0, 11, -1)
