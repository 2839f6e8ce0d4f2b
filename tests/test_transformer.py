"""Transformer1d (Galerkin linear attention) through the whole flow: model, QONNX export, QGraph
types of activation × activation MatMul, exact golden, qpde's hls4ml extension layer (unit-tested
on its own at edge values) and bit-exact hls4ml C-sim, refusals, training."""

import contextlib
import io

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.infer_shapes import InferShapes

from qpde import golden, ops
from qpde.config import ARCHS, HLSConfig, SweepConfig, TrainConfig, Variant, config_from_dict
from qpde.errors import ConfigError, GraphError
from qpde.export import export_model
from qpde.backends.hls4ml import extensions, layer_list
from qpde.models.transformer import Transformer1d, TransformerConfig, attention_scale
from qpde.ops import SHAPE_OPS
from qpde.qgraph import FixedType, QGraph, QuantParams
from qpde.quant import parse_scenario
from tests.conftest import (
    assert_csim_exact,
    assert_golden_equals_brevitas_and_qonnx,
    calibrated,
    edge_inputs,
    exported_per_scenario,
)

TINY = TransformerConfig(dim=4, layers=1, mlp=8)
N = 16
OPS = {"MatMul", "Add", "Mul", "Relu", "Quant"}


def calibrated_transformer(scenario: str, seed: int = 0, cfg: TransformerConfig = TINY) -> Transformer1d:
    torch.manual_seed(seed)
    return calibrated(Transformer1d(N, cfg, parse_scenario(scenario)), N)


@pytest.fixture(scope="module")
def tf_qonnx(tmp_path_factory):
    return exported_per_scenario(tmp_path_factory.mktemp("tf_qonnx"), calibrated_transformer, N)


# ---- model -----------------------------------------------------------------------------------
@pytest.mark.parametrize("scenario", ["fp32", "w4a4"])
def test_transformer_maps_fields_to_fields(scenario):
    model = Transformer1d(N, TransformerConfig(dim=4, layers=2, mlp=8), parse_scenario(scenario))
    assert model(torch.randn(3, N)).shape == (3, N)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 1 + 2 * 5 + 1  # lift, (Q, K, V, MLP×2) per layer, projection


def test_float_transformer_is_galerkin_attention():
    """fp32 is the plain float model: y = h + Q (Kᵀ V) / N, then the MLP with residual."""
    torch.manual_seed(0)
    model = Transformer1d(N, TINY, parse_scenario("fp32")).eval()
    block = model.blocks[0]
    h = torch.randn(2, N, TINY.dim)
    q, k, v = block.q(h), block.k(h), block.v(h)
    att = h + q @ (k.transpose(1, 2) @ v) / N
    expected = att + block.mlp2(torch.relu(block.mlp1(att)))
    torch.testing.assert_close(block(h), expected)
    assert attention_scale(16) == 1 / 16 and attention_scale(24) == 1 / 32 and attention_scale(1) == 1.0


def test_transformer_shape_is_validated():
    with pytest.raises(ValueError, match="dim"):
        Transformer1d(N, TransformerConfig(dim=0), parse_scenario("fp32"))


# ---- export, QGraph, golden ------------------------------------------------------------------
def test_exported_graph_has_two_activation_matmuls(tf_qonnx):
    _, path = tf_qonnx("w4a8")
    graph = QGraph(path)
    ops = {n.op_type for n in graph.nodes}
    assert OPS <= ops <= OPS | set(SHAPE_OPS)
    aa = [n for n in graph.nodes if n.op_type == "MatMul" and n.input[1] not in graph.consts]
    assert len(aa) == 2
    kv, qkv = aa
    # Kᵀ V: [1, d, N] @ [1, N, d], the transpose exported as Transpose; Q (KᵀV): [1, N, d] @ [1, d, d]
    assert graph.model.find_producer(kv.input[0]).op_type == "Transpose"
    assert graph.matmul_aa_contraction(kv) == N and graph.matmul_aa_contraction(qkv) == TINY.dim
    for node in aa:
        a, b = graph.types[node.input[0]], graph.types[node.input[1]]
        k = graph.matmul_aa_contraction(node)
        corners = [a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi]
        assert graph.types[node.output[0]] == FixedType(k * min(corners), k * max(corners), a.exp + b.exp)
    mul = graph.single_consumer(kv.output[0])
    assert mul.op_type == "Mul" and graph.mul_shift(mul) == -4  # 1/N = 2^-4
    assert graph.types[mul.output[0]].exp == graph.types[kv.output[0]].exp - 4


@pytest.mark.parametrize("scenario", ["w4a4", "w8a16"])
def test_golden_values_lie_in_their_types(tf_qonnx, scenario):
    """Soundness of the interval analysis: every value of every tensor is an integer · 2^exp in [lo, hi]."""
    _, path = tf_qonnx(scenario)
    graph = QGraph(path)
    env = golden.run(graph, edge_inputs(graph), keep=True)
    for name, t in graph.types.items():
        if t is None:
            continue
        ints = env[name] / 2.0**t.exp
        assert np.array_equal(ints, np.round(ints)), name
        assert t.lo <= ints.min() and ints.max() <= t.hi, name


@pytest.mark.parametrize("scenario", ["w4a4", "w4a8", "w8a8"])
def test_golden_equals_brevitas_and_qonnx_where_float32_is_exact(tf_qonnx, scenario):
    assert_golden_equals_brevitas_and_qonnx(*tf_qonnx(scenario), stride=11)


def test_golden_matmul_aa_is_exact_with_wide_integers():
    """Products and sums of po2-scaled integers up to 2^52 LSBs come out exact (vs Python ints)."""
    rng = np.random.default_rng(0)
    a_int = rng.integers(-(2**23), 2**23, size=(2, 5, 16))
    b_int = rng.integers(-(2**23), 2**23, size=(2, 16, 3))
    a_int[0, 0, :] = -(2**23)  # a row and a column at the extreme: the largest possible sum
    b_int[0, :, 0] = -(2**23)
    out = ops.matmul_aa(a_int * 2.0**-20, b_int * 2.0**-9)
    for n, i, j in np.ndindex(2, 5, 3):
        exact = sum(int(a_int[n, i, k]) * int(b_int[n, k, j]) for k in range(16))
        assert out[n, i, j] == exact * 2.0**-29
    assert out[0, 0, 0] == 16 * 2**46 * 2.0**-29 and np.abs(out).max() * 2.0**29 > 2**48


def test_w8a32_attention_is_refused_for_float64_exactness(tmp_path):
    """32-bit × 32-bit products summed over N tokens exceed 53 bits: refused naming the MatMul."""
    with pytest.raises(GraphError, match=r"MatMul.*accumulator needs \d+ bits"):
        export_model(calibrated_transformer("w8a32"), N, tmp_path / "w8a32.onnx")


# ---- hand-built graphs: refusals -------------------------------------------------------------
def _quant(name, inp, out, exp=-1, bits=3):
    inits = [
        numpy_helper.from_array(np.array(2.0**exp, dtype=np.float32), f"{name}_s"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), f"{name}_z"),
        numpy_helper.from_array(np.array(float(bits), dtype=np.float32), f"{name}_b"),
    ]
    node = helper.make_node("Quant", [inp, f"{name}_s", f"{name}_z", f"{name}_b"], [out], name=name,
                            domain="qonnx.custom_op.general", rounding_mode="FLOOR", signed=1, narrow=0)
    return node, inits


def _graph(tmp_path, nodes, inits, in_shape, out_shape):
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))], initializer=inits,
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "m.onnx"
    ModelWrapper(model).transform(InferShapes()).save(str(path))
    return QGraph(path)


def test_activation_matmul_graph_types_and_golden(tmp_path):
    """xq [1,4,2] (ints −4..3 · 2^-1) @ xqᵀ [1,2,4] → [1,4,4], then · 2^-2."""
    q, inits = _quant("q0", "x", "xq")
    tr = helper.make_node("Transpose", ["xq"], ["xt"], name="t0", perm=[0, 2, 1])
    mm = helper.make_node("MatMul", ["xq", "xt"], ["s"], name="gram")
    mul = helper.make_node("Mul", ["s", "quarter"], ["y"], name="scale")
    inits.append(numpy_helper.from_array(np.array(0.25, dtype=np.float32), "quarter"))
    graph = _graph(tmp_path, [q, tr, mm, mul], inits, (1, 4, 2), (1, 4, 4))
    assert graph.types["s"] == FixedType(2 * -12, 2 * 16, -2) and graph.types["y"] == FixedType(-24, 32, -4)
    x = np.random.default_rng(0).normal(0, 2, size=(5, 4, 2))
    xq = QuantParams(-1, 3, True, False, "FLOOR").apply(x)
    np.testing.assert_array_equal(golden.run(graph, x), xq @ xq.transpose(0, 2, 1) / 4)


@pytest.mark.parametrize("op, second, match", [
    ("Mul", "xq", "elementwise_mul.*Mul of two activations"),
    ("Mul", "third", "elementwise_mul.*not a multiplication by a positive scalar power of two"),
    ("MatMul", "xq", "elementwise_mul.*two activations.*batched"),
    ("Softmax", None, "elementwise_mul.*Softmax.*not supported"),
    ("Div", "third", "elementwise_mul.*Div.*not supported"),
])
def test_unsupported_ops_are_refused_with_node_name(tmp_path, op, second, match):
    q, inits = _quant("q0", "x", "xq")
    inits.append(numpy_helper.from_array(np.array(1 / 3, dtype=np.float32), "third"))
    node = helper.make_node(op, ["xq"] + ([second] if second else []), ["y"], name="elementwise_mul")
    with pytest.raises(GraphError, match=match):
        _graph(tmp_path, [q, node], inits, (1, 4, 3), (1, 4, 3))


# ---- the hls4ml extension layer on its own ---------------------------------------------------
def _ap(t: FixedType, sat: bool = False) -> str:
    return t.ap_type("AP_TRN", "AP_SAT") if sat else t.ap_type()


def _matmul_aa_project(tmp_path, a_t: FixedType, b_t: FixedType, m, k, p, shift, res: QuantParams | None):
    """A two-input hls4ml io_stream model holding only QpdeMatMulAA, with qpde's exact precisions."""
    from hls4ml.model import ModelGraph
    from hls4ml.utils.config import create_config

    cfg = HLSConfig()
    extensions.register(cfg.backend)
    bound = k * a_t.max_abs * b_t.max_abs
    accum = FixedType(-bound, bound, a_t.exp + b_t.exp)
    layers = [
        {"class_name": "InputLayer", "name": "a", "input_shape": [m, k], "outputs": ["a"]},
        {"class_name": "InputLayer", "name": "b", "input_shape": [k, p], "outputs": ["b"]},
        {"class_name": extensions.CLASS_NAME, "name": "mm", "inputs": ["a", "b"], "outputs": ["mm"],
         "n_rows": m, "n_contract": k, "n_cols": p, "shift": shift},
    ]
    result = res.type.ap_type("AP_TRN", "AP_SAT") if res else FixedType(-bound, bound, accum.exp + shift).ap_type()
    precision = {"a": {"result": _ap(a_t, True)}, "b": {"result": _ap(b_t, True)},
                 "mm": {"accum": accum.ap_type(), "scaled": FixedType(-bound, bound, accum.exp + shift).ap_type(),
                        "result": result}}
    config = create_config(output_dir=str(tmp_path), project_name="mmaa", backend=cfg.backend, part=cfg.part,
                           clock_period=cfg.clock_period_ns, io_type="io_stream")
    config["HLSConfig"] = {"Model": {"Precision": "ap_fixed<16,6>", "ReuseFactor": 1, "Strategy": "Latency"},
                           "LayerName": {n: {"Precision": pr} for n, pr in precision.items()}}
    with contextlib.redirect_stdout(io.StringIO()):
        model = ModelGraph.from_layer_list(config, layers, inputs=["a", "b"], outputs=["mm"])
        model.compile()
    return model


def _edge_ints(rng, t: FixedType, shape, n):
    """Integers of type t: all-min, all-max, alternating extremes, zeros, random."""
    rows = [np.full(shape, t.lo), np.full(shape, t.hi), np.full(shape, t.lo), np.zeros(shape, int)]
    rows += [np.where(rng.random(shape) < 0.5, t.lo, t.hi) for _ in range(4)]
    rows += [rng.integers(t.lo, t.hi + 1, size=shape) for _ in range(n - len(rows))]
    return np.stack(rows)


@pytest.mark.parametrize("signed_b, shift, res", [
    (True, 0, None),  # exact result type, no requantization
    (True, -4, QuantParams(exp=-4, bits=6, signed=True, narrow=False, rounding="FLOOR")),  # 2^-4, floor ties, clip
    (False, -3, QuantParams(exp=-2, bits=4, signed=True, narrow=False, rounding="FLOOR")),
])
def test_matmul_aa_extension_layer_is_bit_exact_at_edges(tmp_path, signed_b, shift, res):
    rng = np.random.default_rng(1)
    m, k, p = 3, 16, 4
    a_t = FixedType(-8, 7, -2)
    b_t = FixedType(-128, 127, -5) if signed_b else FixedType(0, 255, -5)
    a_int = _edge_ints(rng, a_t, (m, k), 24)
    b_int = _edge_ints(rng, b_t, (k, p), 24)
    b_int[2] = b_t.lo if signed_b else b_t.hi  # with a = all-min: the accumulator's extreme value
    if res is not None:  # sample 3: single products exactly half an output LSB above a level (±)
        a_int[3, :, 0] = [1, -1, 3]
        b_int[3, 0, :] = 2 ** (res.exp - a_t.exp - b_t.exp - shift - 1)
    a, b = a_int * 2.0**a_t.exp, b_int * 2.0**b_t.exp
    expected = ops.matmul_aa(a, b) * 2.0**shift
    if res is not None:
        expected = res.apply(expected)
        steps = expected / res.scale
        assert {res.qmin, res.qmax} <= set(steps.ravel())  # saturation hit both ways
        # exact ties: pre-quantization values exactly half an output LSB above a level
        pre = ops.matmul_aa(a, b) * 2.0**shift / res.scale
        assert np.any(pre - np.floor(pre) == 0.5)
    model = _matmul_aa_project(tmp_path, a_t, b_t, m, k, p, shift, res)
    with contextlib.redirect_stdout(io.StringIO()):
        actual = np.asarray(model.predict([np.ascontiguousarray(a), np.ascontiguousarray(b)]), dtype=np.float64)
    assert np.array_equal(actual.reshape(expected.shape), expected)
    if res is None:
        assert np.abs(expected).max() == k * 8 * 128 * 2.0**(a_t.exp + b_t.exp)  # the full accumulator range


# ---- the whole model in hls4ml ---------------------------------------------------------------
def test_transformer_layers_use_the_extension_with_explicit_precisions(tf_qonnx):
    _, path = tf_qonnx("w4a8")
    graph = QGraph(path)
    layers, precision, _, _ = layer_list(graph)
    aa = [lay for lay in layers if lay["class_name"] == extensions.CLASS_NAME]
    assert [(lay["n_rows"], lay["n_contract"], lay["n_cols"], lay["shift"]) for lay in aa] == [
        (TINY.dim, N, TINY.dim, -4), (N, TINY.dim, TINY.dim, 0)]
    assert all("auto" not in p for prec in precision.values() for p in prec.values())
    for lay in aa:  # the Quant after each product is folded into result_t (floor + saturate)
        assert precision[lay["name"]]["result"].endswith("AP_TRN,AP_SAT>")
    assert not any(lay["class_name"] == "Activation" and lay.get("activation") == "linear" for lay in layers)


@pytest.mark.parametrize("scenario", [
    "w4a4", "w8a8",
    pytest.param("w4a8", marks=pytest.mark.slow), pytest.param("w8a16", marks=pytest.mark.slow),
])
def test_transformer_csim_is_bit_exact(tf_qonnx, tmp_path, scenario):
    _, path = tf_qonnx(scenario)
    graph = QGraph(path)
    x = edge_inputs(graph)
    assert_csim_exact(graph, tmp_path / scenario, x)


# ---- registration and training ---------------------------------------------------------------
def test_transformer_trains_one_epoch_through_train_py(tmp_path):
    from qpde.train import build_model, load_checkpoint, shape_of, train_variant

    assert "transformer" in ARCHS
    cfg = config_from_dict({"archs": ["transformer"], "transformer": {"dim": 4, "mlp": 8}})
    shape = shape_of("transformer", cfg)
    assert shape == {"dim": 4, "layers": 1, "mlp": 8, "residual": True}
    assert shape_of("transformer", SweepConfig()) == {"dim": 8, "layers": 1, "mlp": 16, "residual": True}
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, N)).astype(np.float32)
    pairs = (x, np.roll(x, 1, axis=1))
    train_cfg = TrainConfig(epochs=1, qat_epochs=1, batch_size=8)
    fp = train_variant(Variant("burgers", "transformer", "fp32", N), shape, train_cfg, pairs, pairs,
                       tmp_path / "fp.pt")
    q = train_variant(Variant("burgers", "transformer", "w4a4", N), shape, train_cfg, pairs, pairs,
                      tmp_path / "q.pt", fp)
    model = load_checkpoint(q)
    assert isinstance(model, Transformer1d) and model.spec.name == "w4a4"
    assert model(torch.from_numpy(x[:2])).shape == (2, N)
    with pytest.raises(ConfigError, match="transformer at resolution"):
        build_model("transformer", N, {"dim": 0}, "fp32")
    with pytest.raises(ConfigError, match=r"\[transformer\]"):
        config_from_dict({"transformer": {"heads": 2}})


def test_cost_counts_both_attention_products_at_activation_bits():
    """KᵀV and Q·KV are 2·N·d² MACs of two a-bit activations (found: cost.py counted only Linears)."""
    from qpde.cost import layer_costs
    from qpde.models.transformer import Transformer1d, TransformerConfig

    cfg = TransformerConfig(dim=4, layers=2, mlp=8)
    costs = layer_costs(Transformer1d(16, cfg, parse_scenario("w4a8")), parse_scenario("w4a8"))
    products = [c for c in costs if c.name.endswith("activation_products")]
    assert [c.macs for c in products] == [2 * 16 * 4 * 4] * 2
    assert all(c.bops == c.macs * 8 * 8 and c.params == 0 for c in products)
