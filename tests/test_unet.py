"""UNet1d through the whole flow: model, QONNX export, QGraph types, exact golden, bit-exact hls4ml
C-sim (Conv1D, MaxPooling1D, UpSampling1D, Concatenate), refusals, training."""

from fractions import Fraction

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.infer_shapes import InferShapes

from qpde import golden, ops
from qpde.config import ARCHS, SweepConfig, TrainConfig, Variant
from qpde.errors import ConfigError, GraphError
from qpde.export import export_model
from qpde.backends.hls4ml import layer_list
from qpde.models.unet import UNet1d, UNetConfig
from qpde.ops import SHAPE_OPS
from qpde.qgraph import FixedType, QGraph
from qpde.quant import parse_scenario
from tests.conftest import (
    assert_csim_exact,
    assert_golden_equals_brevitas_and_qonnx,
    calibrated,
    edge_inputs,
    exported_per_scenario,
)

TINY = UNetConfig(depth=2, features=4, kernel=3)
N = 16


def calibrated_unet(scenario: str, seed: int = 0) -> UNet1d:
    """A tiny UNet whose activation scales are calibrated."""
    torch.manual_seed(seed)
    return calibrated(UNet1d(N, TINY, parse_scenario(scenario)), N)


@pytest.fixture(scope="module")
def unet_qonnx(tmp_path_factory):
    return exported_per_scenario(tmp_path_factory.mktemp("unet_qonnx"), calibrated_unet, N)


# ---- model -----------------------------------------------------------------------------------
@pytest.mark.parametrize("scenario", ["fp32", "w4a4"])
def test_unet_maps_fields_to_fields(scenario):
    model = UNet1d(N, TINY, parse_scenario(scenario))
    assert model(torch.randn(3, N)).shape == (3, N)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv1d)]
    # 2 per block × (depth + bottleneck) + (up conv + 2) per level + 1×1 head
    assert len(convs) == 2 * 3 + 3 * 2 + 1
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def test_unet_shape_is_validated():
    with pytest.raises(ValueError, match="divisible"):
        UNet1d(12, UNetConfig(depth=3), parse_scenario("fp32"))
    with pytest.raises(ValueError, match="odd"):
        UNet1d(16, UNetConfig(kernel=4), parse_scenario("fp32"))


def test_float_unet_export_is_refused(tmp_path):
    with pytest.raises(GraphError, match="float"):
        export_model(UNet1d(N, TINY, parse_scenario("fp32")), N, tmp_path / "f.onnx")


# ---- export, QGraph, golden ------------------------------------------------------------------
def test_exported_graph_ops_and_types(unet_qonnx):
    _, path = unet_qonnx("w4a8")
    graph = QGraph(path)
    ops = {n.op_type for n in graph.nodes}
    assert {"Conv", "MaxPool", "Resize", "Concat", "Relu", "Quant", "Add"} <= ops
    assert ops <= {"Conv", "MaxPool", "Resize", "Concat", "Relu", "Quant", "Add"} | set(SHAPE_OPS)
    quants = [n for n in graph.nodes if n.op_type == "Quant"]
    assert {graph.quant_params(n, constant=False).bits for n in quants} == {8}
    assert {graph.const_bits[n.input[1]] for n in graph.nodes if n.op_type == "Conv"} == {4}
    for node in graph.nodes:
        out, ins = graph.types[node.output[0]], [graph.types[i] for i in node.input if i in graph.types]
        if node.op_type in ("MaxPool", "Resize"):
            assert out == ins[0]
        elif node.op_type == "Concat":  # exact union at the finer LSB
            exp = min(t.exp for t in ins)
            assert out.exp == exp and out.lo == min(t.lo << (t.exp - exp) for t in ins)
            assert out.hi == max(t.hi << (t.exp - exp) for t in ins)


@pytest.mark.parametrize("scenario", ["w4a4", "w8a32"])
def test_golden_values_lie_in_their_types(unet_qonnx, scenario):
    """Soundness of the interval analysis: every value of every tensor is an integer · 2^exp in [lo, hi]."""
    _, path = unet_qonnx(scenario)
    graph = QGraph(path)
    env = golden.run(graph, edge_inputs(graph), keep=True)
    for name, t in graph.types.items():
        if t is None:
            continue
        ints = env[name] / 2.0**t.exp
        assert np.array_equal(ints, np.round(ints)), name
        assert t.lo <= ints.min() and ints.max() <= t.hi, name


@pytest.mark.parametrize("scenario", ["w4a4", "w4a8", "w8a8"])
def test_golden_equals_brevitas_and_qonnx_where_float32_is_exact(unet_qonnx, scenario):
    """Every accumulator of these scenarios fits float32's 24-bit mantissa at this fan-in, so
    Brevitas (float32), QONNX's executor (onnxruntime float32) and the golden must agree exactly."""
    assert_golden_equals_brevitas_and_qonnx(*unet_qonnx(scenario), stride=11)


def _rational_run(graph, x_row):
    """Independent exact executor on Python Fractions, with the UNet ops written out as loops."""
    frac = np.vectorize(Fraction, otypes=[object])
    env = {graph.input_name: frac(x_row[None, :])}
    consts = {k: frac(v) for k, v in graph.consts.items()}
    for node in graph.nodes:
        args = [env[n] if n in env else consts[n] for n in node.input if n]
        op = node.op_type
        if op == "Quant":
            p = graph.quant_params(node, constant=False)
            scale = Fraction(2) ** p.exp
            out = np.vectorize(lambda v: min(max((v / scale).__floor__(), p.qmin), p.qmax) * scale,
                               otypes=[object])(args[0])
        elif op == "Conv":
            x, w = args[0][0], args[1]
            left, right = graph.conv_pads(node)
            c_out, c_in, k = w.shape
            zeros = [np.full((c_in, pad), Fraction(0)) for pad in (left, right)]
            xp = np.concatenate([zeros[0], x, zeros[1]], axis=1)
            width = xp.shape[1] - k + 1
            out = np.empty((1, c_out, width), dtype=object)
            for o in range(c_out):
                for j in range(width):
                    acc = args[2][o] if len(args) > 2 else Fraction(0)
                    for c in range(c_in):
                        for t in range(k):
                            acc += w[o, c, t] * xp[c, j + t]
                    out[0, o, j] = acc
        elif op == "MaxPool":
            x = args[0]
            out = np.empty(x.shape[:2] + (x.shape[2] // 2,), dtype=object)
            for idx in np.ndindex(out.shape):
                out[idx] = max(x[idx[0], idx[1], 2 * idx[2]], x[idx[0], idx[1], 2 * idx[2] + 1])
        elif op == "Resize":
            out = args[0][:, :, [j // 2 for j in range(2 * args[0].shape[2])]]
        elif op == "Concat":
            out = np.concatenate(args, axis=1)
        elif op == "Add":
            out = args[0] + args[1]
        elif op == "Relu":
            out = np.vectorize(lambda v: max(v, Fraction(0)), otypes=[object])(args[0])
        else:
            assert op in SHAPE_OPS
            out = graph._shape_op(node, args[0], batch=1)
        env[node.output[0]] = out
    return env[graph.output_name]


def test_golden_is_exact_by_construction_w8a32(unet_qonnx):
    """w8a32 accumulators exceed float32 (Brevitas rounds); the golden equals exact rationals."""
    _, path = unet_qonnx("w8a32")
    graph = QGraph(path)
    assert max(t.max_abs.bit_length() for t in graph.types.values() if t) > 24
    x = edge_inputs(graph, n_random=2)[[0, 5, 32, 33, 34]]
    expected = golden.run(graph, x)
    for i, row in enumerate(x):
        exact = np.array([float(v) for v in _rational_run(graph, row).ravel()])
        assert np.array_equal(exact, expected[i].ravel())


def test_golden_conv_is_exact_with_wide_integers():
    """Products and sums of po2-scaled integers up to 2^52 LSBs come out exact (vs Python ints)."""
    rng = np.random.default_rng(0)
    w_int = rng.integers(-(2**15), 2**15, size=(3, 4, 3))
    x_int = rng.integers(-(2**31), 2**31, size=(2, 4, 8))
    b_int = rng.integers(-(2**40), 2**40, size=3)
    out = ops.conv(x_int * 2.0**-31, w_int * 2.0**-7, b_int * 2.0**-38, (1, 1))
    xp = np.pad(x_int.astype(object), ((0, 0), (0, 0), (1, 1)))
    for n, o, j in np.ndindex(2, 3, 8):
        exact = int(b_int[o]) + sum(int(w_int[o, c, t]) * xp[n, c, j + t] for c in range(4) for t in range(3))
        assert out[n, o, j] == exact * 2.0**-38  # exact is < 2^53 here, so the float is exact too
    assert np.abs(out).max() * 2.0**38 > 2**47  # the test really exercises wide sums


# ---- hand-built graphs: interval analysis and refusals -----------------------------------------
def _quant(name, inp, out, exp=-1, bits=3):
    inits = [
        numpy_helper.from_array(np.array(2.0**exp, dtype=np.float32), f"{name}_s"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), f"{name}_z"),
        numpy_helper.from_array(np.array(float(bits), dtype=np.float32), f"{name}_b"),
    ]
    node = helper.make_node("Quant", [inp, f"{name}_s", f"{name}_z", f"{name}_b"], [out], name=name,
                            domain="qonnx.custom_op.general", rounding_mode="FLOOR", signed=1, narrow=0)
    return node, inits


def _graph(tmp_path, nodes, inits, in_shape=(1, 1, 8), out_shape=(1, 2, 8)):
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))], initializer=inits,
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    # qonnx infers shapes through the custom Quant op (exported graphs are cleaned the same way)
    path = tmp_path / "m.onnx"
    ModelWrapper(model).transform(InferShapes()).save(str(path))
    return QGraph(path)


def _const(name, values):
    return numpy_helper.from_array(np.asarray(values, dtype=np.float32), name)


def test_conv_interval_analysis(tmp_path):
    q, inits = _quant("q0", "x", "xq")  # integers -4..3 at 2^-1
    w = _const("w", [[[1, -2, 0]], [[1, 1, 1]]])  # [C_out=2, C_in=1, K=3], integers at 2^0
    b = _const("b", [0.5, -0.25])  # integers [2, -1] at 2^-2
    conv = helper.make_node("Conv", ["xq", "w", "b"], ["y"], name="c0", pads=[1, 1], kernel_shape=[3])
    graph = _graph(tmp_path, [q, conv], inits + [w, b])
    # channel 0: x0 − 2·x1 ∈ [−10, 11]·2^-1 → [−20, 22]·2^-2 + 2; channel 1: Σ3 x ∈ [−12, 9]·2^-1 → ·2 − 1
    assert graph.types["y"] == FixedType(-25, 24, -2)
    x = np.random.default_rng(0).normal(0, 2, size=(4, 1, 8))
    y = golden.run(graph, x)
    assert y.shape == (4, 2, 8)
    assert graph.conv_accum_type(conv, graph.types["xq"]) == FixedType(-26, 26, -2)  # Σ|w|·4 ·2 + |b|


@pytest.mark.parametrize("op, attrs, match", [
    ("ConvTranspose", {"kernel_shape": [2], "strides": [2]}, "up_op.*ConvTranspose.*not supported"),
    ("AveragePool", {"kernel_shape": [2], "strides": [2]}, "up_op.*AveragePool.*not supported"),
    ("MaxPool", {"kernel_shape": [3], "strides": [1]}, "up_op.*non-overlapping"),
    ("Conv", {"kernel_shape": [3], "group": 2, "pads": [1, 1]}, "up_op.*grouped"),
    ("Conv", {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}, "up_op.*stride"),
])
def test_unsupported_spatial_ops_are_refused_with_node_name(tmp_path, op, attrs, match):
    q, inits = _quant("q0", "x", "xq")
    inputs = ["xq"]
    if op in ("Conv", "ConvTranspose"):
        inits.append(_const("w", np.ones((2, 1, 3))))
        inputs.append("w")
    node = helper.make_node(op, inputs, ["y"], name="up_op", **attrs)
    with pytest.raises(GraphError, match=match):
        _graph(tmp_path, [q, node], inits, in_shape=(1, 2, 8) if attrs.get("group") else (1, 1, 8))


def test_non_repeat_resize_is_refused(tmp_path):
    """1-D Resize refusals (2-D convolutions are supported now: tests/test_unet2d.py)."""
    q, inits = _quant("q0", "x", "xq")
    scales = _const("scales", [1, 1, 2])
    linear = helper.make_node("Resize", ["xq", "", "scales"], ["y"], name="lin_up", mode="linear")
    with pytest.raises(GraphError, match="lin_up.*nearest"):
        _graph(tmp_path, [q, linear], inits + [scales], out_shape=(1, 1, 16))
    corners = helper.make_node("Resize", ["xq", "", "scales"], ["y"], name="corner_up", mode="nearest",
                               coordinate_transformation_mode="asymmetric", nearest_mode="ceil")
    with pytest.raises(GraphError, match="corner_up.*not a plain"):
        _graph(tmp_path, [q, corners], inits + [scales], out_shape=(1, 1, 16))
    repeat = helper.make_node("Resize", ["xq", "", "scales"], ["y"], name="ok_up", mode="nearest",
                              coordinate_transformation_mode="half_pixel")  # also a plain repeat at ×2
    graph = _graph(tmp_path, [q, repeat], inits + [scales], out_shape=(1, 1, 16))
    x = (np.arange(8.0).reshape(1, 1, 8) - 4) / 2  # on the quantizer grid (2^-1, -4..3), so unchanged by it
    np.testing.assert_array_equal(golden.run(graph, x), np.repeat(x, 2, axis=-1))


# ---- hls4ml ----------------------------------------------------------------------------------
def _ties_and_edges(graph) -> np.ndarray:
    """conftest's edge inputs (levels, half-LSB ties, saturation, random) plus rows of equal
    neighbours, so max pooling sees exact ties at every level."""
    x = edge_inputs(graph)
    pairs = np.repeat(x[:16, : N // 2], 2, axis=1)
    return np.concatenate([x, pairs])


@pytest.mark.parametrize("scenario", [
    "w4a4", "w8a8", "w8a32",
    pytest.param("w4a8", marks=pytest.mark.slow), pytest.param("w8a16", marks=pytest.mark.slow),
])
def test_unet_csim_is_bit_exact(unet_qonnx, tmp_path, scenario):
    _, path = unet_qonnx(scenario)
    graph = QGraph(path)
    x = _ties_and_edges(graph)
    assert_csim_exact(graph, tmp_path / scenario, x)


def test_unet_layers_are_native_with_explicit_precisions(unet_qonnx):
    _, path = unet_qonnx("w4a8")
    layers, precision, _, _ = layer_list(QGraph(path))
    classes = [lay["class_name"] for lay in layers]
    assert {"Conv1D", "MaxPooling1D", "UpSampling1D", "Concatenate", "Merge"} <= set(classes)
    assert classes.count("Conv1D") == 13
    assert all("auto" not in p for prec in precision.values() for p in prec.values())
    convs = [lay for lay in layers if lay["class_name"] == "Conv1D"]
    widths = [int(precision[lay["name"]]["weight"].split("<")[1].split(",")[0]) for lay in convs]
    assert max(widths) == 4
    assert all(lay["weight_data"].shape == (lay["filt_width"], lay["n_chan"], lay["n_filt"]) for lay in convs)
    assert layers[0]["input_shape"] == [N, 1]  # channels-last: one grid point per stream beat


# ---- registration and training ---------------------------------------------------------------
def test_unet_trains_one_epoch_through_train_py(tmp_path):
    from qpde.train import build_model, load_checkpoint, shape_of, train_variant

    assert "unet" in ARCHS
    cfg = SweepConfig(archs=("unet",))
    shape = shape_of("unet", cfg)
    assert shape == {"depth": 2, "features": 4, "kernel": 3, "residual": True, "batch_norm": False}
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, N)).astype(np.float32)
    pairs = (x, np.roll(x, 1, axis=1))
    train_cfg = TrainConfig(epochs=1, qat_epochs=1, batch_size=8)
    fp = train_variant(Variant("burgers", "unet", "fp32", N), shape, train_cfg, pairs, pairs,
                       tmp_path / "fp.pt")
    q = train_variant(Variant("burgers", "unet", "w4a4", N), shape, train_cfg, pairs, pairs,
                      tmp_path / "q.pt", fp)
    model = load_checkpoint(q)
    assert isinstance(model, UNet1d) and model.spec.name == "w4a4"
    assert model(torch.from_numpy(x[:2])).shape == (2, N)
    with pytest.raises(ConfigError, match="divisible"):
        build_model("unet", 12, {"depth": 3}, "fp32")


def test_unet_cost_counts_every_conv_at_every_position():
    """MACs = Σ nonzero conv weights × output positions (found: Conv1d was not counted, BOPs were 0)."""
    from qpde.cost import total_cost

    model = calibrated_unet("w4a8")
    positions = {}
    hooks = [m.register_forward_hook(lambda mod, i, o: positions.__setitem__(mod, o.shape[-1]))
             for m in model.modules() if isinstance(m, torch.nn.Conv1d)]
    with torch.no_grad():
        model(torch.zeros(1, N))
    for h in hooks:
        h.remove()
    expected = sum(int((m.weight != 0).sum()) * width for m, width in positions.items())
    cost = total_cost(model, parse_scenario("w4a8"))
    assert expected > 0 and cost["macs"] == expected and cost["bops"] == expected * 4 * 8
    params = sum(m.weight.numel() + (m.bias.numel() if m.bias is not None else 0) for m in positions)
    assert cost["params"] == params


# ---- batch norm: float training only, folded into the convs before QAT ------------------------
@pytest.mark.parametrize("ndim", [1, 2])
def test_batch_norm_folds_into_the_convs_before_qat(tmp_path, ndim):
    """Folding is a float identity (tolerance: float32 rounding); QAT models and their QONNX have no
    BatchNorm, and QAT starts from the folded float weights."""
    from qpde.train import build_model, load_checkpoint, train_variant

    r = 8
    shape = {"depth": 1, "features": 2, "kernel": 3, "batch_norm": True}
    torch.manual_seed(0)
    float_bn = build_model("unet", r, shape, "fp32", ndim)
    assert sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in float_bn.modules()) == 2 * 2 + 3
    float_bn.train()
    with torch.no_grad():
        for _ in range(5):  # nontrivial running statistics
            float_bn(torch.randn(16, r**ndim))
        for module in float_bn.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.weight.uniform_(0.5, 2.0)
                module.bias.uniform_(0.1, 1)  # no dead ReLU: its 2^-64 scale would widen the next accumulator past QGraph's 53-bit limit
    float_bn.eval()
    plain = build_model("unet", r, {**shape, "batch_norm": False}, "fp32", ndim).eval()
    plain.load_state_dict(UNet1d.fold_batch_norm(float_bn.state_dict()))
    x = torch.randn(4, r**ndim)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), float_bn(x), rtol=1e-5, atol=1e-5)

    variant = Variant("burgers" if ndim == 1 else "darcy", "unet", "fp32", r)
    fp = tmp_path / "fp.pt"
    from qpde.train import save_checkpoint

    save_checkpoint(fp, float_bn, variant, shape, [])
    pairs = (np.random.default_rng(0).normal(size=(8, r**ndim)).astype(np.float32),) * 2
    q = train_variant(Variant(variant.dataset, "unet", "w8a8", r), shape, TrainConfig(qat_epochs=1, batch_size=8),
                      pairs, pairs, tmp_path / "q.pt", fp, ndim=ndim)
    model = load_checkpoint(q)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    path = export_model(model, model.points, tmp_path / "q.onnx")
    assert "BatchNormalization" not in {n.op_type for n in QGraph(path).model.graph.node}
