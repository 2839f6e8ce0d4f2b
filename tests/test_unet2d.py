"""UNet2d through the whole flow: model on raster-order fields, QONNX export, QGraph types on
[B, C, H, W], exact golden, bit-exact hls4ml C-sim (Conv2D, MaxPooling2D, UpSampling2D,
Concatenate), da4ml trace of hand-built 2-D ops, precise refusals of unsupported 2-D variants."""

from fractions import Fraction

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.infer_shapes import InferShapes

from qpde import golden, ops
from qpde.config import HLSConfig
from qpde.errors import GraphError
from qpde.export import export_model
from qpde.backends.hls4ml import build_project, layer_list
from qpde.models.unet import UNet2d, UNetConfig
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

TINY = UNetConfig(depth=2, features=2, kernel=3)
R = 8  # r×r grid: the model's input and output are r² = 64 values in raster order
N = R * R
UNET_OPS = {"Conv", "MaxPool", "Resize", "Concat", "Relu", "Quant", "Add"}


def calibrated_unet2d(scenario: str, seed: int = 0) -> UNet2d:
    """A tiny UNet2d whose activation scales are calibrated."""
    torch.manual_seed(seed)
    return calibrated(UNet2d(R, TINY, parse_scenario(scenario)), N)


@pytest.fixture(scope="module")
def unet2d_qonnx(tmp_path_factory):
    return exported_per_scenario(tmp_path_factory.mktemp("unet2d_qonnx"), calibrated_unet2d, N)


# ---- model -----------------------------------------------------------------------------------
@pytest.mark.parametrize("scenario", ["fp32", "w4a4"])
def test_unet2d_maps_fields_to_fields(scenario):
    model = UNet2d(R, TINY, parse_scenario(scenario))
    assert (model.arch, model.ndim, model.points, model.resolution) == ("unet", 2, N, R)
    assert model.config == TINY and model.spec.name == scenario
    assert model(torch.randn(3, N)).shape == (3, N)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    # 2 per block × (depth + bottleneck) + (up conv + 2) per level + 1×1 head
    assert len(convs) == 2 * 3 + 3 * 2 + 1
    assert all(m.kernel_size in ((3, 3), (1, 1)) for m in convs)
    assert not any(isinstance(m, (torch.nn.Conv1d, torch.nn.modules.batchnorm._BatchNorm)) for m in model.modules())


def test_unet2d_is_local_on_the_raster_grid():
    """[B, r²] is read as the row-major [X, Y] field: a point source at (x, y) changes only outputs
    within the receptive field around (x, y) in 2-D (rows x ± 12, not raster indices ± 12)."""
    r, x0, y0, reach = 32, 16, 16, 12  # depth 1, kernel 3: every path reaches at most 11 points per axis
    torch.manual_seed(0)
    model = UNet2d(r, UNetConfig(depth=1, features=2, kernel=3), parse_scenario("fp32")).eval()
    source = torch.zeros(2, r * r)
    source[1, x0 * r + y0] = 1.0
    with torch.no_grad():
        out = model(source)
    changed = (out[1] != out[0]).reshape(r, r).numpy()
    rows, cols = np.nonzero(changed)
    assert changed[x0 + 1, y0] and changed[x0, y0 + 1]  # neighbours along X (r raster steps away) and Y
    assert np.abs(rows - x0).max() <= reach and np.abs(cols - y0).max() <= reach


def test_unet2d_shape_is_validated():
    with pytest.raises(ValueError, match="divisible"):
        UNet2d(12, UNetConfig(depth=3), parse_scenario("fp32"))
    with pytest.raises(ValueError, match="odd"):
        UNet2d(16, UNetConfig(kernel=4), parse_scenario("fp32"))


def test_float_unet2d_export_is_refused(tmp_path):
    with pytest.raises(GraphError, match="float"):
        export_model(UNet2d(R, TINY, parse_scenario("fp32")), N, tmp_path / "f.onnx")


# ---- export, QGraph, golden ------------------------------------------------------------------
def test_exported_graph_ops_and_types(unet2d_qonnx):
    _, path = unet2d_qonnx("w4a8")
    graph = QGraph(path)
    assert graph.input_shape == (1, N) and graph.output_shape == (1, N)
    ops = {n.op_type for n in graph.nodes}
    assert UNET_OPS <= ops <= UNET_OPS | set(SHAPE_OPS)
    # the field enters and leaves through Reshapes between [1, r²] and [1, 1, r, r]
    reshapes = [n for n in graph.nodes if n.op_type == "Reshape"]
    assert [graph.model.get_tensor_shape(n.output[0]) for n in reshapes] == [[1, 1, R, R], [1, N]]
    quants = [n for n in graph.nodes if n.op_type == "Quant"]
    assert {graph.quant_params(n, constant=False).bits for n in quants} == {8}
    convs = [n for n in graph.nodes if n.op_type == "Conv"]
    assert {graph.const_bits[n.input[1]] for n in convs} == {4}
    assert {graph.consts[n.input[1]].shape[2:] for n in convs} == {(3, 3), (1, 1)}
    assert {graph.conv_pads(n) for n in convs} == {(1, 1, 1, 1), (0, 0, 0, 0)}
    assert {graph.resize_factors(n) for n in graph.nodes if n.op_type == "Resize"} == {(2, 2)}
    for node in graph.nodes:
        out, ins = graph.types[node.output[0]], [graph.types[i] for i in node.input if i in graph.types]
        if node.op_type in ("MaxPool", "Resize"):
            assert out == ins[0]
        elif node.op_type == "Concat":  # exact union at the finer LSB
            exp = min(t.exp for t in ins)
            assert out.exp == exp and out.lo == min(t.lo << (t.exp - exp) for t in ins)
            assert out.hi == max(t.hi << (t.exp - exp) for t in ins)


@pytest.mark.parametrize("scenario", ["w4a4", "w8a32"])
def test_golden_values_lie_in_their_types(unet2d_qonnx, scenario):
    """Soundness of the interval analysis: every value of every tensor is an integer · 2^exp in [lo, hi]."""
    _, path = unet2d_qonnx(scenario)
    graph = QGraph(path)
    env = golden.run(graph, edge_inputs(graph), keep=True)
    for name, t in graph.types.items():
        if t is None:
            continue
        ints = env[name] / 2.0**t.exp
        assert np.array_equal(ints, np.round(ints)), name
        assert t.lo <= ints.min() and ints.max() <= t.hi, name


@pytest.mark.parametrize("scenario", ["w4a4", "w4a8", "w8a8"])
def test_golden_equals_brevitas_and_qonnx_where_float32_is_exact(unet2d_qonnx, scenario):
    """Every accumulator of these scenarios fits float32's 24-bit mantissa at this fan-in, so
    Brevitas (float32), QONNX's executor (onnxruntime float32) and the golden must agree exactly."""
    assert_golden_equals_brevitas_and_qonnx(*unet2d_qonnx(scenario), stride=11)


def _rational_run(graph, x_row):
    """Independent exact executor on Python Fractions, with the 2-D UNet ops written out as loops."""
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
            top, left, bottom, right = graph.conv_pads(node)
            c_out, c_in, kh, kw = w.shape
            xp = np.full((c_in, x.shape[1] + top + bottom, x.shape[2] + left + right), Fraction(0), dtype=object)
            xp[:, top : top + x.shape[1], left : left + x.shape[2]] = x
            height, width = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
            out = np.empty((1, c_out, height, width), dtype=object)
            for o in range(c_out):
                for i in range(height):
                    for j in range(width):
                        acc = args[2][o] if len(args) > 2 else Fraction(0)
                        for c in range(c_in):
                            for s in range(kh):
                                for t in range(kw):
                                    acc += w[o, c, s, t] * xp[c, i + s, j + t]
                        out[0, o, i, j] = acc
        elif op == "MaxPool":
            x = args[0]
            out = np.empty(x.shape[:2] + (x.shape[2] // 2, x.shape[3] // 2), dtype=object)
            for b, c, i, j in np.ndindex(out.shape):
                out[b, c, i, j] = max(x[b, c, 2 * i + s, 2 * j + t] for s in range(2) for t in range(2))
        elif op == "Resize":
            x = args[0]
            out = x[:, :, [i // 2 for i in range(2 * x.shape[2])]][:, :, :, [j // 2 for j in range(2 * x.shape[3])]]
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


def test_golden_is_exact_by_construction_w8a32(unet2d_qonnx):
    """w8a32 accumulators exceed float32 (Brevitas rounds); the golden equals exact rationals."""
    _, path = unet2d_qonnx("w8a32")
    graph = QGraph(path)
    assert max(t.max_abs.bit_length() for t in graph.types.values() if t) > 24
    x = edge_inputs(graph, n_random=2)[[0, 32, 33, 34]]
    expected = golden.run(graph, x)
    for i, row in enumerate(x):
        exact = np.array([float(v) for v in _rational_run(graph, row).ravel()])
        assert np.array_equal(exact, expected[i].ravel())


def test_golden_conv2d_is_exact_with_wide_integers():
    """Products and sums of po2-scaled integers up to 2^52 LSBs come out exact (vs Python ints),
    with asymmetric pads in ONNX order (top, left, bottom, right)."""
    rng = np.random.default_rng(0)
    w_int = rng.integers(-(2**15), 2**15, size=(3, 2, 2, 3))
    x_int = rng.integers(-(2**31), 2**31, size=(2, 2, 5, 6))
    b_int = rng.integers(-(2**40), 2**40, size=3)
    top, left, bottom, right = 0, 1, 2, 1
    out = ops.conv(x_int * 2.0**-31, w_int * 2.0**-7, b_int * 2.0**-38, (top, left, bottom, right))
    assert out.shape == (2, 3, 5 + top + bottom - 2 + 1, 6 + left + right - 3 + 1)
    xp = np.pad(x_int.astype(object), ((0, 0), (0, 0), (top, bottom), (left, right)))
    for n, o, i, j in np.ndindex(out.shape):
        exact = int(b_int[o]) + sum(int(w_int[o, c, s, t]) * xp[n, c, i + s, j + t]
                                    for c in range(2) for s in range(2) for t in range(3))
        assert out[n, o, i, j] == exact * 2.0**-38  # exact is < 2^53 here, so the float is exact too
    assert np.abs(out).max() * 2.0**38 > 2**47  # the test really exercises wide sums


# ---- hand-built graphs: asymmetric pads, unequal factors, refusals ------------------------------
def _quant(name, inp, out, exp=-1, bits=3, signed=1):
    inits = [
        numpy_helper.from_array(np.array(2.0**exp, dtype=np.float32), f"{name}_s"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), f"{name}_z"),
        numpy_helper.from_array(np.array(float(bits), dtype=np.float32), f"{name}_b"),
    ]
    node = helper.make_node("Quant", [inp, f"{name}_s", f"{name}_z", f"{name}_b"], [out], name=name,
                            domain="qonnx.custom_op.general", rounding_mode="FLOOR", signed=signed, narrow=0)
    return node, inits


def _const(name, values):
    return numpy_helper.from_array(np.asarray(values, dtype=np.float32), name)


def _graph(tmp_path, nodes, inits, in_shape=(1, 1, 8, 8), out_shape=None):
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape) if out_shape else None)],
        initializer=inits,
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    # qonnx infers shapes through the custom Quant op (exported graphs are cleaned the same way)
    path = tmp_path / "m.onnx"
    ModelWrapper(model).transform(InferShapes()).save(str(path))
    return QGraph(path)


def _asymmetric_graph(tmp_path):
    """Quant → Conv 3×3 (pads top 0, left 1, bottom 2, right 1) → Quant → MaxPool 2×2 → nearest
    Resize ×2 along H and ×3 along W: [1, 1, 8, 8] → [1, 2, 8, 12]."""
    rng = np.random.default_rng(0)
    q0, inits = _quant("q0", "x", "xq", exp=-2, bits=4)
    q1, inits1 = _quant("q1", "c", "cq", exp=-3, bits=6)
    w = _const("w", rng.integers(-3, 4, size=(2, 1, 3, 3)) * 0.5)
    b = _const("b", [0.25, -0.125])
    nodes = [
        q0,
        helper.make_node("Conv", ["xq", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[0, 1, 2, 1]),
        q1,
        helper.make_node("MaxPool", ["cq"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Resize", ["p", "", "scales"], ["y"], name="up", mode="nearest",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
    ]
    return _graph(tmp_path, nodes, inits + inits1 + [w, b, _const("scales", [1, 1, 2, 3])])


def test_conv2d_interval_analysis(tmp_path):
    q, inits = _quant("q0", "x", "xq")  # integers -4..3 at 2^-1
    w = _const("w", [[[[1, -2], [0, 1]]], [[[1, 1], [1, 1]]]])  # [C_out=2, C_in=1, 2, 2], integers at 2^0
    b = _const("b", [0.5, -0.25])  # integers [2, -1] at 2^-2
    conv = helper.make_node("Conv", ["xq", "w", "b"], ["y"], name="c0", pads=[0, 0, 1, 1], kernel_shape=[2, 2])
    graph = _graph(tmp_path, [q, conv], inits + [w, b])
    # channel 0: x0 − 2·x1 + x3 ∈ [−14, 14]·2^-1 → ·2 + 2 = [−26, 30]; channel 1: Σ4 x ∈ [−16, 12]·2^-1 → ·2 − 1
    assert graph.types["y"] == FixedType(-33, 30, -2)
    assert graph.conv_accum_type(conv, graph.types["xq"]) == FixedType(-34, 34, -2)  # Σ|w|·4 ·2 + |b|
    assert graph.axis_pads(conv) == [(0, 1), (0, 1)]
    x = np.random.default_rng(0).normal(0, 2, size=(4, 1, 8, 8))
    assert golden.run(graph, x).shape == (4, 2, 8, 8)


def test_asymmetric_pads_and_unequal_factors_match_qonnx(tmp_path):
    """The golden reads ONNX pads and per-axis Resize factors as onnxruntime does (values on the
    float32 grid, small integers: float32 is exact here)."""
    graph = _asymmetric_graph(tmp_path)
    assert graph.resize_factors(next(n for n in graph.nodes if n.op_type == "Resize")) == (2, 3)
    x = np.random.default_rng(1).normal(0, 1.5, size=(6, 1, 8, 8)).astype(np.float32).astype(np.float64)
    expected = golden.run(graph, x)
    assert expected.shape == (6, 2, 8, 12)
    for row, want in zip(x, expected):
        got = execute_onnx(graph.model, {"x": row[None].astype(np.float32)})["y"]
        assert np.array_equal(got[0].astype(np.float64), want)


def test_asymmetric_pads_csim_and_trace_are_exact(tmp_path):
    """hls4ml's Conv2D/ZeroPadding2D (pad_top ≠ pad_bottom), MaxPooling2D and UpSampling2D with
    different factors per axis, and the da4ml trace, equal the golden bit for bit."""
    from qpde.backends.rtl.trace import predict, trace_graph

    graph = _asymmetric_graph(tmp_path)
    x = np.random.default_rng(2).normal(0, 1.5, size=(64, 1, 8, 8))
    want = golden.run(graph, x)
    project = build_project(graph, tmp_path / "hls", HLSConfig())
    # several output channels: hls4ml streams [H, W, C]; the golden is [C, H, W]
    got = project.predict(golden.quantized_input(graph, x)).reshape(len(x), 8, 12, 2).transpose(0, 3, 1, 2)
    assert np.array_equal(got, want)
    assert np.array_equal(predict(graph, trace_graph(graph), x), want)


@pytest.mark.parametrize("op, attrs, w_shape, match", [
    ("Conv", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, (2, 1, 3, 3), "down.*stride 1"),
    ("Conv", {"kernel_shape": [3, 3], "dilations": [2, 2], "pads": [2, 2, 2, 2]}, (2, 1, 3, 3), "down.*dilation"),
    ("Conv", {"kernel_shape": [3, 3], "group": 2, "pads": [1, 1, 1, 1]}, (2, 1, 3, 3), "down.*grouped"),
    ("Conv", {"kernel_shape": [3, 3], "pads": [1, 1]}, (2, 1, 3, 3), r"down.*expected 4 pads"),
    ("Conv", {"kernel_shape": [3], "pads": [1, 1]}, (2, 1, 3), "down.*weight of rank 3 for a rank-4 input"),
    ("MaxPool", {"kernel_shape": [2, 2], "strides": [1, 1]}, None, r"down.*non-overlapping.*strides \[1, 1\]"),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2]}, None, "down.*non-overlapping"),
    ("MaxPool", {"kernel_shape": [2], "strides": [2]}, None, "down.*non-overlapping"),
    ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [1, 1, 1, 1]}, None, "down.*padded"),
    ("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2]}, None, "down.*AveragePool.*not supported"),
])
def test_unsupported_2d_variants_are_refused_with_node_name(tmp_path, op, attrs, w_shape, match):
    q, inits = _quant("q0", "x", "xq")
    inputs = ["xq"]
    if w_shape:
        inits.append(_const("w", np.ones(w_shape)))
        inputs.append("w")
    node = helper.make_node(op, inputs, ["y"], name="down", **attrs)
    with pytest.raises(GraphError, match=match):
        _graph(tmp_path, [q, node], inits, in_shape=(1, 2, 8, 8) if attrs.get("group") else (1, 1, 8, 8))


@pytest.mark.parametrize("attrs, scales, match", [
    ({"mode": "linear"}, [1, 1, 2, 2], "up.*'linear'; only 'nearest'"),  # bilinear
    ({"mode": "cubic"}, [1, 1, 2, 2], "up.*only 'nearest'"),
    ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "ceil"}, [1, 1, 2, 2],
     "up.*not a plain ×2 repeat along the height"),
    ({"mode": "nearest", "coordinate_transformation_mode": "half_pixel"}, [1, 1, 1, 1.5],
     "up.*width 8 → 12 is not an integer upsampling"),
    ({"mode": "nearest"}, [1, 2, 2, 2], "up.*only resizing the spatial axes"),
])
def test_unsupported_2d_resizes_are_refused_with_node_name(tmp_path, attrs, scales, match):
    q, inits = _quant("q0", "x", "xq")
    node = helper.make_node("Resize", ["xq", "", "scales"], ["y"], name="up", **attrs)
    with pytest.raises(GraphError, match=match):
        _graph(tmp_path, [q, node], inits + [_const("scales", scales)])


def test_3d_conv_is_refused_with_node_name(tmp_path):
    q, inits = _quant("q0", "x", "xq")
    conv = helper.make_node("Conv", ["xq", "w"], ["y"], name="conv3d", kernel_shape=[3, 3, 3], pads=[1] * 6)
    with pytest.raises(GraphError, match=r"conv3d.*1-D .* and 2-D .* got rank 5"):
        _graph(tmp_path, [q, conv], inits + [_const("w", np.ones((2, 1, 3, 3, 3)))], in_shape=(1, 1, 4, 4, 4))


def test_2d_nearest_resize_variants_that_repeat_are_accepted(tmp_path):
    q, inits = _quant("q0", "x", "xq")
    repeat = helper.make_node("Resize", ["xq", "", "scales"], ["y"], name="ok_up", mode="nearest",
                              coordinate_transformation_mode="half_pixel")  # also a plain repeat at ×2
    graph = _graph(tmp_path, [q, repeat], inits + [_const("scales", [1, 1, 2, 2])])
    x = (np.arange(64.0).reshape(1, 1, 8, 8) % 8 - 4) / 2  # on the quantizer grid (2^-1, -4..3)
    np.testing.assert_array_equal(golden.run(graph, x), np.kron(x, np.ones((2, 2))))


# ---- hls4ml ----------------------------------------------------------------------------------
def _ties_and_edges(graph) -> np.ndarray:
    """conftest's edge inputs (levels, half-LSB ties, saturation, random) plus fields constant on
    every 2×2 block, so max pooling sees exact ties at every level."""
    x = edge_inputs(graph)
    blocks = x[:16, : N // 4].reshape(16, R // 2, R // 2)
    return np.concatenate([x, np.kron(blocks, np.ones((2, 2))).reshape(16, N)])


@pytest.mark.parametrize("scenario", [
    "w4a4", "w8a8", "w8a32",
    pytest.param("w4a8", marks=pytest.mark.slow), pytest.param("w8a16", marks=pytest.mark.slow),
])
def test_unet2d_csim_is_bit_exact(unet2d_qonnx, tmp_path, scenario):
    _, path = unet2d_qonnx(scenario)
    graph = QGraph(path)
    x = _ties_and_edges(graph)
    reference = assert_csim_exact(graph, tmp_path / scenario, x)
    # the convolutional body reaches the output (not only the residual input)
    assert len(np.unique(reference - golden.quantized_input(graph, x).reshape(len(x), N))) >= 3


def test_unet2d_layers_are_native_with_explicit_precisions(unet2d_qonnx):
    _, path = unet2d_qonnx("w4a8")
    layers, precision, _, out_name = layer_list(QGraph(path))
    classes = [lay["class_name"] for lay in layers]
    assert {"Conv2D", "MaxPooling2D", "UpSampling2D", "Concatenate", "Merge"} <= set(classes)
    assert not {"Conv1D", "MaxPooling1D", "UpSampling1D"} & set(classes)
    assert classes.count("Conv2D") == 13 and classes.count("MaxPooling2D") == classes.count("UpSampling2D") == 2
    assert all("auto" not in p for prec in precision.values() for p in prec.values())
    convs = [lay for lay in layers if lay["class_name"] == "Conv2D"]
    widths = [int(precision[lay["name"]]["weight"].split("<")[1].split(",")[0]) for lay in convs]
    assert max(widths) == 4
    assert all(lay["weight_data"].shape == (lay["filt_height"], lay["filt_width"], lay["n_chan"], lay["n_filt"])
               for lay in convs)
    assert {lay["op"] for lay in layers if lay["class_name"] == "Concatenate"} == {"concatenate3d"}
    assert layers[0]["input_shape"] == [R, R, 1]  # channels-last: one grid point per stream beat, raster order
    assert layers[-1]["name"] == out_name and layers[-1]["class_name"] == "Reshape"
    assert layers[-1]["target_shape"] == [N]
