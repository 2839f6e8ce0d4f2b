"""The op registry: everything qpde knows about each ONNX op it accepts, in one table (`OPS`).

Each `Op` declares
- `check(graph, node)`: admission beyond "the op is known" (raises GraphError naming the node);
- `type_rule(graph, node, ins) -> FixedType`: the exact output type from the input types (interval
  analysis; QGraph uses it to prove float64 evaluation exact and to set hls4ml precisions);
- `golden(graph, node, args, batch) -> ndarray`: exact float64 execution (qpde.golden);
- `hls4ml`, `rtl`, `folded`: where the backends map it ("module:function", imported on first use), or None
  when that backend cannot implement it (the backend then refuses the node by name).

Adding an op: one `Op(...)` below (plus its backend handlers where they live: an hls4ml layer in
qpde.backends.hls4ml.convert, a da4ml trace in qpde.backends.rtl.trace), and one tiny graph in
tests/ops/. `kind` groups ops for the passes that treat a whole family alike: "shape" ops move
data without computing (they may precede the input Quant and are constant-folded), "spatial" ops
act on channels-first [B, C, W] / [B, C, H, W] tensors (hls4ml then uses channels-last layers).

This module imports no other qpde module (QGraph, the golden and every backend import it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from onnx import helper

from qpde.errors import GraphError
from qpde.registry import Registry, resolve

SPATIAL_AXES = {3: ("width",), 4: ("height", "width")}  # tensor rank → names of its spatial axes
BACKENDS_WITH_HANDLERS = ("hls4ml", "rtl", "folded")


def attr(node, name, default=None):
    """An ONNX attribute's value (strings decoded), or `default`."""
    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


@dataclass(frozen=True)
class Op:
    name: str
    kind: str  # "quant" | "compute" | "spatial" | "shape"
    type_rule: Callable  # (graph, node, ins: list[FixedType]) -> FixedType
    golden: Callable  # (graph, node, args: list[ndarray], batch: int | None) -> ndarray
    check: Callable | None = None  # (graph, node) -> None, GraphError when not admitted
    hls4ml: str | None = None  # "module:function" of the hls4ml layer handler
    rtl: str | None = None  # "module:function" of the da4ml trace handler
    folded: str | None = None  # "module:function" of the folded stream-unit handler

    def handler(self, backend: str) -> Callable | None:
        """The backend's handler function, or None when that backend has no mapping for the op."""
        if backend not in BACKENDS_WITH_HANDLERS:
            raise ValueError(f"no per-op handlers for backend {backend!r}; known: {BACKENDS_WITH_HANDLERS}")
        ref = getattr(self, backend)
        return resolve(ref) if ref else None


def _dynamic(graph, node) -> list[str]:
    return [n for n in node.input if n and n not in graph.consts]


# ---- Quant --------------------------------------------------------------------------------------
def _quant_check(graph, node):
    graph.quant_params(node, constant=False)


def _quant_type(graph, node, ins):
    return graph.quant_params(node, constant=False).type


def _quant_golden(graph, node, args, batch):
    return graph.quant_params(node, constant=False).apply(args[0])


# ---- MatMul -------------------------------------------------------------------------------------
def _matmul_check(graph, node):
    if len(_dynamic(graph, node)) == 2:
        graph.check_matmul_aa(node)
    elif node.input[0] in graph.consts:
        raise GraphError(f"{graph._where(node)}: constant on the left of MatMul; transpose the graph")


def _matmul_type(graph, node, ins):
    return graph.matmul_aa_type(node, ins[0], ins[1]) if len(ins) == 2 else graph.matmul_type(node, ins[0])


def _matmul_golden(graph, node, args, batch):
    return matmul_aa(args[0], args[1]) if len(_dynamic(graph, node)) == 2 else args[0] @ args[1]


def matmul_aa(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Activation × activation a [..., M, K] @ b [..., K, P], exactly.

    An explicit sum over the contraction index of elementwise products, each added in float64. It
    is exact because both operands are integers times powers of two (outputs of Quant nodes): a
    product is an integer of at most max|a_int|·max|b_int| LSBs of 2^(exp_a + exp_b), and every
    partial sum is a multiple of that LSB bounded by K·max|a_int|·max|b_int| < 2^53 (QGraph refuses
    the node otherwise), so neither a product nor an addition rounds, in any order."""
    out = np.zeros(a.shape[:-1] + b.shape[-1:])
    for k in range(a.shape[-1]):
        out += a[..., :, k, None] * b[..., None, k, :]
    return out


# ---- Add, Mul, Relu -----------------------------------------------------------------------------
def _add_type(graph, node, ins):
    return graph.add_type(node, ins)


def _mul_type(graph, node, ins):
    return dataclasses.replace(ins[0], exp=ins[0].exp + graph.mul_shift(node))


# ---- spatial ops (channels-first [B, C, W] / [B, C, H, W]) --------------------------------------
def _spatial_input(graph, node) -> int:
    """Checks common to Conv, MaxPool and Resize; returns the number of spatial axes."""
    where = graph._where(node)
    if len(node.output) != 1:
        raise GraphError(f"{where}: only one output is supported (no MaxPool indices)")
    shape = graph.model.get_tensor_shape(node.input[0])
    if shape is None:
        raise GraphError(f"{where}: input shape unknown; run shape inference (qonnx cleanup) first")
    if len(shape) not in SPATIAL_AXES:
        raise GraphError(f"{where}: only 1-D [batch, channels, width] and 2-D [batch, channels, height, width] "
                         f"tensors are supported, got rank {len(shape)}")
    if node.input[0] in graph.consts:
        raise GraphError(f"{where}: constant data input")
    return len(shape) - 2


def _conv_check(graph, node):
    """Stride 1, no groups/dilation, explicit non-negative pads, constant weight and bias."""
    n_axes = _spatial_input(graph, node)
    rank, where = n_axes + 2, graph._where(node)
    if len(node.input) < 2 or any(n not in graph.consts for n in node.input[1:] if n):
        raise GraphError(f"{where}: Conv weight and bias must be constants (quantized weights)")
    weight = graph.consts[node.input[1]]
    if weight.ndim != rank:
        raise GraphError(f"{where}: weight of rank {weight.ndim} for a rank-{rank} input; only 1-D and 2-D "
                         "convolutions with [C_out, C_in, *kernel] weights are supported")
    kernel = list(attr(node, "kernel_shape", weight.shape[2:]))
    if kernel != list(weight.shape[2:]):
        raise GraphError(f"{where}: kernel_shape {kernel} does not match the weight's {list(weight.shape[2:])}")
    if attr(node, "group", 1) != 1:
        raise GraphError(f"{where}: grouped/depthwise convolution is not supported")
    strides = list(attr(node, "strides", [1] * n_axes))
    dilations = list(attr(node, "dilations", [1] * n_axes))
    if any(v != 1 for v in strides + dilations):
        raise GraphError(f"{where}: only stride 1 and dilation 1 are supported, got strides {strides} and "
                         f"dilations {dilations}; downsample with a MaxPool instead")
    if attr(node, "auto_pad", "NOTSET") != "NOTSET":
        raise GraphError(f"{where}: auto_pad is not supported; export explicit pads")
    if any(p < 0 for p in graph.conv_pads(node)):
        raise GraphError(f"{where}: negative pads are not supported")
    if len(node.input) > 2 and node.input[2] and graph.consts[node.input[2]].size != weight.shape[0]:
        raise GraphError(f"{where}: bias size does not match {weight.shape[0]} output channels")


def _conv_type(graph, node, ins):
    return graph.conv_type(node, ins[0])


def _conv_golden(graph, node, args, batch):
    return conv(args[0], args[1], args[2] if len(args) > 2 else None, graph.conv_pads(node))


def conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, pads: tuple[int, ...]) -> np.ndarray:
    """ONNX Conv (stride 1, no groups/dilation) on x [B, C_in, *S] with w [C_out, C_in, *K] and ONNX
    pads (the begin of every spatial axis, then the ends: (left, right) in 1-D, (top, left, bottom,
    right) in 2-D), exactly.

    Written as an explicit sum over input channels and taps of elementwise products, each added in
    float64. It is exact because every operand is an integer times a power of two (QGraph checked
    the scales): a product w·x is an integer of at most |w_int|·|x_int| < 2^53 LSBs times
    2^(w_exp + x_exp), so float64 holds it exactly; every partial sum, with or without the bias, is
    a multiple of the finest LSB bounded by Σ|w_int|·max|x_int| + |b_int| < 2^53 (QGraph refuses
    the node otherwise), so no addition rounds in any order. Zero padding adds exact zeros."""
    n_axes = x.ndim - 2
    c_out, c_in, *kernel = w.shape
    padded = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[i + n_axes]) for i in range(n_axes)])
    out_shape = [n - k + 1 for n, k in zip(padded.shape[2:], kernel)]
    out = np.zeros((x.shape[0], c_out, *out_shape))
    per_channel = (1, c_out) + (1,) * n_axes
    if b is not None:
        out += b.reshape(per_channel)
    for c in range(c_in):
        for tap in np.ndindex(*kernel):
            window = padded[(slice(None), c, *(slice(t, t + n) for t, n in zip(tap, out_shape)))]
            out += w[(slice(None), c, *tap)].reshape(per_channel) * window[:, None]
    return out


def _maxpool_check(graph, node):
    """Non-overlapping (stride = kernel), unpadded, no ceil mode, no dilation."""
    n_axes = _spatial_input(graph, node)
    where = graph._where(node)
    kernel = list(attr(node, "kernel_shape", []))
    strides = list(attr(node, "strides", [1] * len(kernel)))
    if len(kernel) != n_axes or strides != kernel:
        raise GraphError(f"{where}: only non-overlapping max pooling (stride = kernel along every spatial "
                         f"axis) is supported, got kernel {kernel} and strides {strides}")
    dilated = any(v != 1 for v in attr(node, "dilations", [1] * n_axes))
    if any(attr(node, "pads", [0] * 2 * n_axes)) or attr(node, "ceil_mode", 0) or dilated or \
            attr(node, "auto_pad", "NOTSET") != "NOTSET":
        raise GraphError(f"{where}: padded, ceil-mode or dilated max pooling is not supported")


def _maxpool_golden(graph, node, args, batch):
    return maxpool(args[0], [int(k) for k in attr(node, "kernel_shape")])


def maxpool(x: np.ndarray, kernel: list[int]) -> np.ndarray:
    """Non-overlapping max pooling over the last len(kernel) axes (ONNX floor mode: a ragged tail is
    dropped). One axis at a time: the max of a window is the max of its per-axis maxima."""
    for axis, k in enumerate(kernel, start=x.ndim - len(kernel)):
        n_out = x.shape[axis] // k
        x = np.take(x, np.arange(n_out * k), axis=axis)
        x = x.reshape(*x.shape[:axis], n_out, k, *x.shape[axis + 1 :]).max(axis=axis + 1)
    return x


def _resize_check(graph, node):
    """Nearest, an integer repeat along every spatial axis (QGraph.resize_factors checks ONNX's mapping)."""
    _spatial_input(graph, node)
    graph.resize_factors(node)


def _resize_golden(graph, node, args, batch):
    out = args[0]
    for axis, factor in enumerate(graph.resize_factors(node), start=2):
        out = np.repeat(out, factor, axis=axis)
    return out


def _concat_check(graph, node):
    if len(node.output) != 1:
        raise GraphError(f"{graph._where(node)}: only one output is supported")
    if any(name in graph.consts for name in node.input):
        raise GraphError(f"{graph._where(node)}: Concat with a constant input is not supported")


def _concat_type(graph, node, ins):
    exp = min(t.exp for t in ins)
    bounds = [t.align(exp) for t in ins]
    return type(ins[0])(min(b[0] for b in bounds), max(b[1] for b in bounds), exp)


# ---- shape ops: pure data movement --------------------------------------------------------------
def _same_type(graph, node, ins):
    return ins[0]  # selects, repeats or moves values: the input's type


def _axes(graph, node) -> list[int]:
    if len(node.input) > 1 and node.input[1]:
        return [int(a) for a in graph.consts[node.input[1]]]
    return list(attr(node, "axes"))


def _reshape(graph, node, args, batch):
    shape = [int(s) for s in graph.consts[node.input[1]]]
    if batch is not None and shape and shape[0] == 1:
        shape[0] = batch  # graphs are exported with batch 1; run any batch
    return args[0].reshape(shape)


def _flatten(graph, node, args, batch):
    axis = attr(node, "axis", 1)
    return args[0].reshape(int(np.prod(args[0].shape[:axis], dtype=int)), -1)


OPS: Registry = Registry("op")
register = OPS.register


_HLS = "qpde.backends.hls4ml.convert"
_RTL = "qpde.backends.rtl.trace"
_FOLD = "qpde.backends.folded.graph"

register(Op("Quant", "quant", _quant_type, _quant_golden, _quant_check, f"{_HLS}:layer_quant", f"{_RTL}:trace_quant",
            folded=f"{_FOLD}:fold_map"))
register(Op("MatMul", "compute", _matmul_type, _matmul_golden, _matmul_check, f"{_HLS}:layer_matmul",
            f"{_RTL}:trace_matmul", folded=f"{_FOLD}:fold_matmul"))
register(Op("Add", "compute", _add_type, lambda g, n, a, b: a[0] + a[1], None, f"{_HLS}:layer_add", f"{_RTL}:trace_add",
            folded=f"{_FOLD}:fold_add"))
register(Op("Mul", "compute", _mul_type, lambda g, n, a, b: a[0] * a[1], lambda g, n: g.mul_shift(n),
            None, f"{_RTL}:trace_mul"))  # hls4ml: folded into the MatMul (activation × activation) before it
register(Op("Relu", "compute", lambda g, n, ins: ins[0].relu(), lambda g, n, a, b: np.maximum(a[0], 0.0), None,
            f"{_HLS}:layer_relu", f"{_RTL}:trace_relu", folded=f"{_FOLD}:fold_map"))
register(Op("Conv", "spatial", _conv_type, _conv_golden, _conv_check, f"{_HLS}:layer_conv", f"{_RTL}:trace_conv",
            folded=f"{_FOLD}:fold_spatial"))
register(Op("MaxPool", "spatial", _same_type, _maxpool_golden, _maxpool_check, f"{_HLS}:layer_maxpool",
            f"{_RTL}:trace_maxpool", folded=f"{_FOLD}:fold_spatial"))
register(Op("Resize", "spatial", _same_type, _resize_golden, _resize_check, f"{_HLS}:layer_resize",
            f"{_RTL}:trace_resize", folded=f"{_FOLD}:fold_spatial"))
register(Op("Concat", "spatial", _concat_type, lambda g, n, a, b: np.concatenate(a, axis=int(attr(n, "axis"))),
            _concat_check, f"{_HLS}:layer_concat", f"{_RTL}:trace_concat", folded=f"{_FOLD}:fold_spatial"))
register(Op("Reshape", "shape", _same_type, _reshape, None, f"{_HLS}:layer_reshape", f"{_RTL}:trace_shape",
            folded=f"{_FOLD}:fold_shape"))
register(Op("Transpose", "shape", _same_type, lambda g, n, a, b: np.transpose(a[0], attr(n, "perm")), None,
            f"{_HLS}:layer_transpose", f"{_RTL}:trace_shape", folded=f"{_FOLD}:fold_transpose"))
register(Op("Squeeze", "shape", _same_type, lambda g, n, a, b: np.squeeze(a[0], axis=tuple(_axes(g, n))), None,
            f"{_HLS}:layer_reshape", f"{_RTL}:trace_shape", folded=f"{_FOLD}:fold_shape"))
register(Op("Unsqueeze", "shape", _same_type, lambda g, n, a, b: np.expand_dims(a[0], axis=tuple(_axes(g, n))),
            None, f"{_HLS}:layer_reshape", f"{_RTL}:trace_shape", folded=f"{_FOLD}:fold_shape"))
register(Op("Flatten", "shape", _same_type, _flatten, None, f"{_HLS}:layer_reshape", f"{_RTL}:trace_shape",
            folded=f"{_FOLD}:fold_shape"))
register(Op("Identity", "shape", _same_type, lambda g, n, a, b: a[0], None, f"{_HLS}:layer_reshape",
            f"{_RTL}:trace_shape", folded=f"{_FOLD}:fold_shape"))

SHAPE_OPS = tuple(name for name, op in OPS.items() if op.kind == "shape")
SPATIAL_OPS = tuple(name for name, op in OPS.items() if op.kind == "spatial")

