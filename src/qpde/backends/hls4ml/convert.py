"""Map a checked QGraph onto hls4ml layers with exact precisions, and build the hls4ml project.

qpde builds hls4ml's layer list itself (the same list hls4ml's own ONNX frontend produces) so that
precisions come from QGraph's exact interval analysis:
- a layer's inputs/outputs are the Quant node types (ap_fixed<b, b+exp, AP_TRN, AP_SAT>: floor and
  saturate exactly as QONNX's FLOOR Quant); a Quant that is the only consumer of a layer's output
  is folded into that layer's result type, since hls4ml casts every result to result_t;
- accumulators hold Σ|w|·max|x| + |bias| at the finer of the product and bias LSBs, so no partial
  sum can overflow or round in any summation order;
- intermediate results without a Quant get their exact interval type (they never round or wrap).

Convolutional graphs (Conv, MaxPool, Resize, Concat on QONNX's channels-first [batch, C, W] or
[batch, C, H, W]) map to hls4ml's channels-last streaming layers (Conv1D/Conv2D,
MaxPooling1D/MaxPooling2D, UpSampling1D/UpSampling2D, Concatenate): every [C, W] tensor is held as
[W, C] and every [C, H, W] as [H, W, C] (one stream beat per grid point, raster order), conv kernels
are transposed to hls4ml's [K, C_in, C_out] / [KH, KW, C_in, C_out], and shape ops are only mapped
where the data order is unchanged (C = 1: the model's input and output, e.g. UNet2d's [1, r²] ↔
[1, 1, r, r]). hls4ml inserts the ZeroPadding1D/2D of 'same' convs itself (zero is in every type)
and Clone layers for tensors with several consumers.

Activation × activation MatMul ([1, M, K] @ [1, K, P], linear attention) has no exact native
io_stream layer in hls4ml 1.3; it maps to qpde's extension layer `QpdeMatMulAA` (qpde.backends.hls4ml.extensions),
folding a following power-of-two Mul (binary-point move) and Quant (result_t).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qpde.config import HLSConfig
from qpde.errors import GraphError, ToolError
from qpde.backends.hls4ml import extensions
from qpde.backends.hls4ml.folding import LayerFolding, choose_folding, hls_layer_config, save_folding
from qpde.ops import OPS, SHAPE_OPS, SPATIAL_AXES, SPATIAL_OPS, attr
from qpde.qgraph import FixedType, QGraph

log = logging.getLogger(__name__)
PROJECT_NAME = "myproject"


def _name(tensor_or_node: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", tensor_or_node)


def _quant_type(graph: QGraph, node) -> str:
    """The ap_fixed type of a FLOOR Quant: AP_TRN, and AP_SAT, or AP_SAT_SYM for a narrow signed range
    (QONNX's narrow [-(2^(b-1) - 1), 2^(b-1) - 1]; AP_SAT would let -2^(b-1) through)."""
    p = graph.quant_params(node, constant=False)
    return p.type.ap_type("AP_TRN", "AP_SAT_SYM" if p.signed and p.narrow else "AP_SAT")


def _values_type(values: np.ndarray) -> FixedType:
    """Smallest exact type of constant values (integers · 2^exp), as QGraph.const_type."""
    from qpde.qgraph import _common_exponent

    exp = _common_exponent(values)
    ints = np.round(values / 2.0**exp)
    return FixedType(int(ints.min(initial=0)), int(ints.max(initial=0)), exp)


def _accum_type(graph: QGraph, matmul, x: FixedType, bias: np.ndarray | None) -> FixedType:
    w = graph.consts[matmul.input[1]]
    w_type = graph.const_type(matmul.input[1])
    bound = int(np.abs(np.round(w / 2.0**w_type.exp)).sum(axis=0).max()) * x.max_abs
    exp = x.exp + w_type.exp
    if bias is not None:
        b_type = _values_type(bias)
        new_exp = min(exp, b_type.exp)
        bound = (bound << (exp - new_exp)) + (b_type.max_abs << (b_type.exp - new_exp))
        exp = new_exp
    return FixedType(-bound, bound, exp)


@dataclass
class _Fold:
    """A run of QONNX nodes that becomes one hls4ml layer."""

    nodes: list
    output: str
    result: str


def _fold_quant(graph: QGraph, nodes: list, tensor: str, exact: FixedType) -> _Fold:
    """Absorb a following Quant when it is the only consumer of `tensor`."""
    nxt = graph.single_consumer(tensor)
    if nxt is not None and nxt.op_type == "Quant":
        return _Fold(nodes + [nxt], nxt.output[0], _quant_type(graph, nxt))
    return _Fold(nodes, tensor, exact.ap_type())


def _hls_shape(graph: QGraph, tensor: str, spatial: bool) -> list[int]:
    """A tensor's shape as hls4ml holds it (no batch axis): in spatial graphs [C, W] becomes [W, C]
    and [C, H, W] becomes [H, W, C]."""
    shape = [int(s) for s in graph.model.get_tensor_shape(tensor)[1:]]
    return shape[1:] + shape[:1] if spatial and len(shape) in (2, 3) else shape


def _same_order(graph: QGraph, node) -> bool:
    """True when a shape op keeps the data order under the channels-last relabelling (C = 1)."""
    shapes = [graph.model.get_tensor_shape(t)[1:] for t in (node.input[0], node.output[0])]
    return all(len(s) < 2 or s[0] == 1 for s in shapes)


def layer_list(graph: QGraph) -> tuple[list[dict], dict[str, dict], str, str]:
    """hls4ml layer dicts, per-layer precision config, input layer name, output layer name."""
    spatial = any(n.op_type in SPATIAL_OPS for n in graph.nodes)
    first_quant = next((n for n in graph.nodes if n.op_type == "Quant"), None)
    if first_quant is None:
        raise GraphError("model has no input quantizer")
    in_tensor = first_quant.output[0]
    in_name = _name(in_tensor)
    in_shape = _hls_shape(graph, in_tensor, spatial)
    # Layers are named after the tensor they produce: hls4ml keys result variables by layer name.
    layers = [{"class_name": "InputLayer", "name": in_name, "input_shape": list(in_shape), "outputs": [in_name]}]
    precision = {in_name: {"result": _quant_type(graph, first_quant)}}
    producer = {in_tensor: in_name}
    ctx = LayerContext(graph, producer, spatial)
    done = set()
    started = False
    for node in graph.nodes:
        if node is first_quant:
            started = True
            continue
        if not started or id(node) in done:
            if not started and node.op_type not in SHAPE_OPS:
                raise GraphError(f"node {node.name} ({node.op_type}) comes before the input quantizer")
            continue
        x = node.input[0]
        if x not in producer:
            raise GraphError(f"node {node.name}: input {x} is not produced by a mapped layer")
        x_type = graph.types[x]
        layer = {"inputs": [producer[x]]}
        if spatial and ((node.op_type == "MatMul" and len(graph.model.get_tensor_shape(x)) >= 3)
                        or (node.op_type in SHAPE_OPS and not _same_order(graph, node))):
            raise GraphError(f"node {node.name} ({node.op_type}) acts on a channels-first tensor with several "
                             "channels; only convolutional layers map it to hls4ml's channels-last layout")
        handler = OPS[node.op_type].handler("hls4ml") if node.op_type in OPS else None
        if handler is None:
            raise GraphError(f"node {node.name} ({node.op_type}) has no hls4ml mapping")
        fold, fields, prec = handler(ctx, node, x, x_type)
        layer.update(fields)
        done.update(id(n) for n in fold.nodes)
        layer["name"] = _name(fold.output)
        layer["outputs"] = [layer["name"]]
        producer[fold.output] = layer["name"]
        precision[layer["name"]] = prec
        layers.append(layer)
    if graph.output_name not in producer:
        raise GraphError("graph output is not produced by a mapped layer")
    return layers, precision, in_name, producer[graph.output_name]


# ---- per-op layer handlers (qpde.ops names them) -------------------------------------------------
@dataclass
class LayerContext:
    """What a layer handler needs besides its node: the graph, the hls4ml layer producing each
    tensor mapped so far, and whether the graph is convolutional (channels-last layout)."""

    graph: QGraph
    producer: dict[str, str]
    spatial: bool

    def source(self, node, tensor: str) -> str:
        if tensor not in self.producer:
            raise GraphError(f"node {node.name}: input {tensor} is not produced by a mapped layer")
        return self.producer[tensor]


LayerMapping = tuple[_Fold, dict, dict]  # the nodes folded into the layer, its attributes, its precisions


def layer_matmul(ctx: LayerContext, node, x: str, x_type: FixedType) -> LayerMapping:
    """MatMul by a constant 2-D weight → Dense (with the constant Adds that follow as its bias);
    MatMul of two activations → qpde's QpdeMatMulAA extension layer."""
    graph = ctx.graph
    if node.input[1] not in graph.consts:
        return _matmul_aa_layer(graph, node, ctx.producer)
    weight = graph.consts[node.input[1]]
    if weight.ndim != 2:
        raise GraphError(f"node {node.name}: weight of rank {weight.ndim}; only 2-D weights map to Dense")
    nodes, tensor, bias = [node], node.output[0], None
    nxt = graph.single_consumer(tensor)
    # Constant Adds that follow (a bias, then maybe the half LSB of a round-half-up Quant,
    # qpde.passes) fold into one bias: their float64 sum is exact (QGraph bounds it < 2^53).
    while nxt is not None and nxt.op_type == "Add" and graph.add_const(nxt) is not None:
        term = np.broadcast_to(graph.consts[graph.add_const(nxt)].reshape(-1), (weight.shape[1],))
        bias = term if bias is None else bias + term
        nodes, tensor = nodes + [nxt], nxt.output[0]
        nxt = graph.single_consumer(tensor)
    fold = _fold_quant(graph, nodes, tensor, graph.types[tensor])
    bias_data = np.array(bias, dtype=np.float64) if bias is not None else np.zeros(weight.shape[1])
    if bias_data.size != weight.shape[1]:
        raise GraphError(f"node {node.name}: bias of size {bias_data.size} for {weight.shape[1]} outputs")
    layer = dict(class_name="Dense", n_in=weight.shape[0], n_out=weight.shape[1], weight_data=weight,
                 qpde_node=node.name, bias_data=bias_data, use_bias=True)
    w_type = graph.const_type(node.input[1])
    b_type = _values_type(bias_data) if bias is not None else FixedType(0, 0, w_type.exp)
    prec = {
        "weight": w_type.ap_type(),
        "bias": b_type.ap_type(),
        "accum": _accum_type(graph, node, x_type, bias_data if bias is not None else None).ap_type(),
        "result": fold.result,
    }
    return fold, layer, prec


def layer_add(ctx: LayerContext, node, x: str, x_type: FixedType) -> LayerMapping:
    """Activation + activation → Merge(add); activation + constant with no MatMul before it →
    BatchNormalization with scale 1."""
    graph = ctx.graph
    fold = _fold_quant(graph, [node], node.output[0], graph.types[node.output[0]])
    if graph.add_const(node) is None:
        return fold, dict(class_name="Merge", op="add", inputs=[ctx.source(node, x), ctx.source(node, node.input[1])]), \
            {"result": fold.result}
    # A constant add with no MatMul before it (the half LSB of a round-half-up Quant after an
    # Add of two activations, qpde.passes): hls4ml's BatchNormalization with scale 1. Its
    # product x·1 and the sum with the bias are full-precision ap_fixed operations, and the
    # result is cast once to result_t (exact: the sum's type, or the folded Quant's TRN/SAT).
    const = graph.consts[graph.add_const(node)]
    shape = _hls_shape(graph, x, ctx.spatial)
    channels = int(shape[-1]) if shape else 1
    if const.size != 1 and (ctx.spatial or const.shape[-1] != const.size or const.size != channels):
        raise GraphError(f"node {node.name}: constant Add of shape {const.shape} is not a per-channel "
                         "bias; only scalar or per-channel constants map to hls4ml")
    bias_data = np.broadcast_to(const.reshape(-1), (channels,)).astype(np.float64)
    layer = dict(class_name="BatchNormalization", n_in=int(np.prod(shape)), n_filt=channels,
                 scale_data=np.ones(channels), bias_data=bias_data, use_gamma=True, use_beta=True)
    prec = {"scale": FixedType(1, 1, 0).ap_type(), "bias": _values_type(bias_data).ap_type(), "result": fold.result}
    return fold, layer, prec


def layer_relu(ctx: LayerContext, node, x: str, x_type: FixedType) -> LayerMapping:
    graph = ctx.graph
    fold = _fold_quant(graph, [node], node.output[0], graph.types[node.output[0]])
    n_in = int(np.prod(graph.model.get_tensor_shape(x)[1:]))
    return fold, dict(class_name="Activation", activation="relu", n_in=n_in), {"result": fold.result}


def layer_quant(ctx: LayerContext, node, x: str, x_type: FixedType) -> LayerMapping:
    graph = ctx.graph
    fold = _Fold([node], node.output[0], _quant_type(graph, node))
    n_in = int(np.prod(graph.model.get_tensor_shape(x)[1:]))
    return fold, dict(class_name="Activation", activation="linear", n_in=n_in), {"result": fold.result}


def layer_conv(ctx: LayerContext, node, x: str, x_type: FixedType) -> LayerMapping:
    graph = ctx.graph
    bias = graph.conv_bias(node)
    fold = _fold_quant(graph, [node], node.output[0], graph.types[node.output[0]])
    w_type = graph.const_type(node.input[1])
    b_type = graph.const_type(bias) if bias else FixedType(0, 0, w_type.exp)
    prec = {
        "weight": w_type.ap_type(),
        "bias": b_type.ap_type(),
        "accum": graph.conv_accum_type(node, x_type).ap_type(),
        "result": fold.result,
    }
    return fold, _conv_layer(graph, node, x), prec


def layer_maxpool(ctx: LayerContext, node, x: str, x_type: FixedType) -> LayerMapping:
    graph = ctx.graph
    fold = _fold_quant(graph, [node], node.output[0], graph.types[node.output[0]])
    return fold, _maxpool_layer(graph, node, x), {"accum": x_type.ap_type(), "result": fold.result}


def layer_resize(ctx: LayerContext, node, x: str, x_type: FixedType) -> LayerMapping:
    fold = _Fold([node], node.output[0], x_type.ap_type())
    return fold, _upsampling_layer(ctx.graph, node, x), {"result": fold.result}


def layer_concat(ctx: LayerContext, node, x: str, x_type: FixedType) -> LayerMapping:
    graph = ctx.graph
    rank = len(graph.model.get_tensor_shape(x))
    if len(node.input) != 2 or rank not in SPATIAL_AXES:
        raise GraphError(f"node {node.name}: only Concat of two [batch, C, W] or [batch, C, H, W] tensors "
                         "maps to hls4ml")
    if int(attr(node, "axis")) % rank != 1:
        raise GraphError(f"node {node.name}: only Concat along channels maps to hls4ml")
    other = ctx.source(node, node.input[1])
    fold = _fold_quant(graph, [node], node.output[0], graph.types[node.output[0]])
    # channels are the last hls4ml axis: concatenate2d for [W, C], concatenate3d for [H, W, C]
    layer = dict(class_name="Concatenate", op=f"concatenate{rank - 1}d", axis=-1, inputs=[ctx.producer[x], other])
    return fold, layer, {"result": fold.result}


def layer_transpose(ctx: LayerContext, node, x: str, x_type: FixedType) -> LayerMapping:
    fold = _Fold([node], node.output[0], x_type.ap_type())
    perm = [p - 1 for p in list(attr(node, "perm"))[1:]]
    return fold, dict(class_name="Transpose", perm=perm), {"result": fold.result}


def layer_reshape(ctx: LayerContext, node, x: str, x_type: FixedType) -> LayerMapping:
    """Reshape, Squeeze, Unsqueeze, Flatten, Identity → one Reshape (hls4ml's shape, no batch axis)
    to the shape after the whole run of such ops that follows: hls4ml's io_stream optimizer drops a
    Reshape that follows another one without repacking the stream, so [6] → [2, 3] → [6] as two
    layers fed 3-wide beats to a layer reading 6-wide ones (found by tests/ops)."""
    nodes, tensor = [node], node.output[0]
    nxt = ctx.graph.single_consumer(tensor)
    while nxt is not None and nxt.op_type in SHAPE_OPS and nxt.op_type != "Transpose" and \
            not (ctx.spatial and not _same_order(ctx.graph, nxt)):
        nodes, tensor = nodes + [nxt], nxt.output[0]
        nxt = ctx.graph.single_consumer(tensor)
    fold = _Fold(nodes, tensor, x_type.ap_type())
    target = _hls_shape(ctx.graph, tensor, ctx.spatial)
    user = ctx.graph.single_consumer(tensor)
    dense_next = user is not None and user.op_type == "MatMul" and user.input[1] in ctx.graph.consts
    inner = tensor != ctx.graph.output_name  # hls4ml repacks a Reshape that is the model output itself
    if len(target) == 1 and _hls_shape(ctx.graph, x, ctx.spatial)[-1:] != target and not dense_next and inner:
        # hls4ml turns an inner Reshape to 1-D into an in-place flatten that only Dense reads correctly
        # (it gathers the narrower beats itself); an elementwise layer after it would read misaligned
        # beats. A [1, n] target makes hls4ml repack the stream instead (found by tests/ops).
        target = [1] + target
    return fold, dict(class_name="Reshape", target_shape=target), {"result": fold.result}



def _conv_layer(graph: QGraph, node, x: str) -> dict:
    """Conv1D / Conv2D attributes (channels-last, stride 1), kernel in hls4ml's layout, bias."""
    weight = graph.consts[node.input[1]]  # [C_out, C_in, *K]
    bias = graph.conv_bias(node)
    c_out, c_in, *kernel = weight.shape
    size = [int(v) for v in graph.model.get_tensor_shape(x)[2:]]
    pads = graph.axis_pads(node)
    out = [n + begin + end - k + 1 for n, (begin, end), k in zip(size, pads, kernel)]
    layer = {"data_format": "channels_last", "n_chan": c_in, "n_filt": c_out, "use_bias": True,
             "weight_data": np.ascontiguousarray(np.moveaxis(weight, (0, 1), (-1, -2))),  # [*K, C_in, C_out]
             "bias_data": graph.consts[bias].reshape(-1) if bias else np.zeros(c_out)}
    if len(kernel) == 1:
        return layer | {"class_name": "Conv1D", "in_width": size[0], "out_width": out[0], "filt_width": kernel[0],
                        "stride_width": 1, "pad_left": pads[0][0], "pad_right": pads[0][1]}
    (top, bottom), (left, right) = pads
    return layer | {"class_name": "Conv2D", "in_height": size[0], "in_width": size[1], "out_height": out[0],
                    "out_width": out[1], "filt_height": kernel[0], "filt_width": kernel[1], "stride_height": 1,
                    "stride_width": 1, "pad_top": top, "pad_bottom": bottom, "pad_left": left, "pad_right": right}


def _maxpool_layer(graph: QGraph, node, x: str) -> dict:
    """MaxPooling1D / MaxPooling2D attributes (channels-last, stride = pool size, no padding)."""
    kernel = [int(k) for k in attr(node, "kernel_shape")]
    c, *size = (int(v) for v in graph.model.get_tensor_shape(x)[1:])
    for name, n, k in zip(SPATIAL_AXES[len(size) + 2], size, kernel):
        if n % k:  # hls4ml's streaming pooling has no ONNX floor mode (dropping a ragged tail)
            raise GraphError(f"node {node.name}: {name} {n} is not a multiple of the pool size {k}")
    layer = {"data_format": "channels_last", "n_filt": c, "pad_left": 0, "pad_right": 0}
    if len(size) == 1:
        return layer | {"class_name": "MaxPooling1D", "n_in": size[0], "n_out": size[0] // kernel[0],
                        "pool_width": kernel[0], "stride_width": kernel[0]}
    return layer | {"class_name": "MaxPooling2D", "in_height": size[0], "in_width": size[1],
                    "out_height": size[0] // kernel[0], "out_width": size[1] // kernel[1],
                    "pool_height": kernel[0], "pool_width": kernel[1], "stride_height": kernel[0],
                    "stride_width": kernel[1], "pad_top": 0, "pad_bottom": 0}


def _upsampling_layer(graph: QGraph, node, x: str) -> dict:
    """UpSampling1D / UpSampling2D attributes (nearest, an integer repeat per axis; channels-last)."""
    factors = graph.resize_factors(node)
    c, *size = (int(v) for v in graph.model.get_tensor_shape(x)[1:])
    layer = {"data_format": "channels_last", "algorithm": "nearest", "n_chan": c}
    if len(size) == 1:  # hls4ml's 1-D resize is its 2-D one with a height of 1
        return layer | {"class_name": "UpSampling1D", "in_height": 1, "out_height": 1, "in_width": size[0],
                        "out_width": size[0] * factors[0]}
    return layer | {"class_name": "UpSampling2D", "in_height": size[0], "out_height": size[0] * factors[0],
                    "in_width": size[1], "out_width": size[1] * factors[1]}


def _matmul_aa_layer(graph: QGraph, node, producer: dict) -> tuple[_Fold, dict, dict]:
    """Activation × activation MatMul [1, M, K] @ [1, K, P] → qpde's QpdeMatMulAA extension layer,
    folding a following Mul by 2^k (binary-point move) and then a Quant (result_t)."""
    a, b = node.input[0], node.input[1]
    if b not in producer:
        raise GraphError(f"node {node.name}: input {b} is not produced by a mapped layer")
    accum = graph.matmul_aa_accum_type(node, graph.types[a], graph.types[b])
    nodes, tensor, shift = [node], node.output[0], 0
    nxt = graph.single_consumer(tensor)
    if nxt is not None and nxt.op_type == "Mul":
        shift = graph.mul_shift(nxt)
        nodes, tensor = nodes + [nxt], nxt.output[0]
    fold = _fold_quant(graph, nodes, tensor, graph.types[tensor])
    (m, k), (_, p) = (graph.model.get_tensor_shape(t)[1:] for t in (a, b))
    layer = {"class_name": extensions.CLASS_NAME, "inputs": [producer[a], producer[b]],
             "n_rows": int(m), "n_contract": int(k), "n_cols": int(p), "shift": int(shift)}
    prec = {
        "accum": accum.ap_type(),
        "scaled": FixedType(accum.lo, accum.hi, accum.exp + shift).ap_type(),
        "result": fold.result,
    }
    return fold, layer, prec


def _folded_budget(graph: QGraph, layers: list[dict], target_fps: float, clock_mhz: float) -> dict[str, int]:
    """Multipliers per Dense layer for the cycles per row the folded RTL backend's optimizer gives the
    same MatMul at target_fps and the project's clock, so both backends are built at one throughput.
    hls4ml iterates the dense matrix while the folded MVAU skips all-zero weight tiles, so a layer
    gets PE·SIMD scaled by its dense tiles over the folded MVAU's cycles per row (PE·SIMD when dense)."""
    from qpde.backends.folded import build_dataflow, optimize
    from qpde.backends.folded.fold import mvau_row_cycles
    from qpde.backends.folded.modemajor import mode_major_params

    df = build_dataflow(graph)
    folding = optimize(df, target_fps=target_fps, clock_mhz=clock_mhz)
    budget = {}
    for layer in layers:
        name = layer.get("qpde_node", "")
        par = folding.layers.get(name, {})
        if "pe" not in par:
            continue
        params = df.unit(name).params
        if name in folding.mode_major:  # the folded MVAU runs on the permuted weights: fewer tiles
            params = mode_major_params(params)
        dense_tiles = (params["K"] // par["simd"]) * (params["C"] // par["pe"])
        budget[layer["name"]] = -(-par["pe"] * par["simd"] * dense_tiles // mvau_row_cycles(params, par["simd"],
                                                                                            par["pe"]))
    return budget


@dataclass
class HLSProject:
    """A written hls4ml project and its compiled C-simulation library."""

    path: Path
    hls_model: object  # hls4ml ModelGraph
    folding: dict[str, LayerFolding] = field(default_factory=dict)  # per-layer Strategy/ReuseFactor

    def predict(self, x_quantized: np.ndarray) -> np.ndarray:
        """C-simulate on already-quantized inputs [n, *input_shape]; float64 keeps every bit."""
        x = np.ascontiguousarray(x_quantized, dtype=np.float64)
        with contextlib.redirect_stdout(io.StringIO()):
            y = self.hls_model.predict(x)
        return np.asarray(y, dtype=np.float64).reshape(x.shape[0], -1)


def build_project(graph: QGraph, out_dir: Path, cfg: HLSConfig, *, compile: bool = True) -> HLSProject:
    """Write the hls4ml project to out_dir and (by default) compile its C simulation with g++."""
    import hls4ml
    from hls4ml.model import ModelGraph
    from hls4ml.utils.config import create_config

    if shutil.which("g++") is None and compile:
        raise ToolError("g++ not found: hls4ml's C simulation needs a C++ compiler (apt-get install g++)")
    layers, precision, in_name, out_name = layer_list(graph)
    budget = _folded_budget(graph, layers, cfg.target_fps, 1000.0 / cfg.clock_period_ns) if cfg.target_fps else None
    for layer in layers:
        layer.pop("qpde_node", None)
    folding = choose_folding(layers, cfg.strategy, cfg.reuse_factor, cfg.max_unroll, budget)
    extensions.register(cfg.backend)  # qpde's extension layers (activation × activation MatMul)
    layer_config = hls_layer_config(folding)
    config = create_config(
        output_dir=str(out_dir), project_name=PROJECT_NAME, backend=cfg.backend, part=cfg.part,
        clock_period=cfg.clock_period_ns, io_type="io_stream",
    )
    config["HLSConfig"] = {
        "Model": {"Precision": "ap_fixed<16,6>", "ReuseFactor": 1, "Strategy": "Latency"},
        "LayerName": {name: {"Precision": p, **layer_config.get(name, {})} for name, p in precision.items()},
    }
    with contextlib.redirect_stdout(io.StringIO()):
        hls_model = ModelGraph.from_layer_list(config, layers, inputs=[in_name], outputs=[out_name])
        hls_model.write()
        save_folding(folding, out_dir)
        if compile:
            try:
                hls_model.compile()
            except Exception as exc:  # hls4ml raises plain Exception with the compiler's message
                raise ToolError(f"hls4ml C-simulation build failed in {out_dir}: {exc}") from exc
    log.info("hls4ml %s project written to %s", hls4ml.__version__, out_dir)
    return HLSProject(Path(out_dir), hls_model, folding)
