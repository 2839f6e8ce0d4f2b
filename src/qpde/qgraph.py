"""A checked, analysed view of a QONNX graph: the one place that knows which ops qpde accepts.

Every consumer (golden executor, hls4ml builder, RTL tracer) walks `QGraph.nodes`, the dynamic
(activation-carrying) nodes in topological order, and reads constants (quantized weights, already
evaluated exactly) from `QGraph.consts`. Every dynamic tensor carries a `FixedType`: integers in
[lo, hi] times 2^exp, derived by interval analysis from the Quant nodes. Those types are exact
(no value outside them can occur) and set hls4ml precisions; they also prove that float64
evaluation is exact (every accumulator below 2^53 LSBs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from onnx import helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper

from qpde.errors import GraphError

FLOAT64_MANTISSA_BITS = 53
SHAPE_OPS = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity")
# Ops on channels-first [batch, channels, width] or [batch, channels, height, width] tensors
# (convolutional models such as UNet1d and UNet2d).
SPATIAL_OPS = ("Conv", "MaxPool", "Resize", "Concat")
SPATIAL_AXES = {3: ("width",), 4: ("height", "width")}  # tensor rank → names of its spatial axes
DYNAMIC_OPS = ("Quant", "MatMul", "Add", "Mul", "Relu") + SPATIAL_OPS + SHAPE_OPS


@dataclass(frozen=True)
class FixedType:
    """Values integer · 2^exp with integer in [lo, hi]."""

    lo: int
    hi: int
    exp: int

    @property
    def signed(self) -> bool:
        return self.lo < 0

    @property
    def width(self) -> int:
        magnitude = max(self.hi, -self.lo - 1 if self.lo < 0 else 0, 1)
        return magnitude.bit_length() + (1 if self.signed else 0)

    @property
    def int_bits(self) -> int:
        """ap_fixed's I: bits left of the binary point, sign included."""
        return self.width + self.exp

    @property
    def max_abs(self) -> int:
        return max(abs(self.lo), abs(self.hi))

    def ap_type(self, quantization: str = "AP_TRN", overflow: str = "AP_WRAP") -> str:
        kind = "ap_fixed" if self.signed else "ap_ufixed"
        return f"{kind}<{self.width},{self.int_bits},{quantization},{overflow}>"

    def relu(self) -> FixedType:
        return FixedType(max(self.lo, 0), max(self.hi, 0), self.exp)

    def align(self, exp: int) -> tuple[int, int]:
        shift = self.exp - exp
        if shift < 0:
            raise ValueError("cannot align to a coarser exponent")
        return self.lo << shift, self.hi << shift


@dataclass(frozen=True)
class QuantParams:
    """A Quant node with power-of-two scale and zero point 0."""

    exp: int  # scale = 2^exp
    bits: int
    signed: bool
    narrow: bool
    rounding: str

    @property
    def scale(self) -> float:
        return 2.0**self.exp

    @property
    def qmin(self) -> int:
        if not self.signed:
            return 0
        return -(2 ** (self.bits - 1)) + (1 if self.narrow else 0)

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - (1 if self.signed else 0)) - 1

    @property
    def type(self) -> FixedType:
        return FixedType(self.qmin, self.qmax, self.exp)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Exact in float64: division by 2^exp, FLOOR/ROUND and clipping introduce no error."""
        y = np.asarray(x, dtype=np.float64) / self.scale
        y = np.floor(y) if self.rounding == "FLOOR" else np.round(y)  # np.round: half to even, as QONNX
        return np.clip(y, self.qmin, self.qmax) * self.scale


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


class QGraph:
    """Load, check and analyse a QONNX model (path or ModelWrapper)."""

    def __init__(self, source: Path | str | ModelWrapper):
        self.path = None if isinstance(source, ModelWrapper) else Path(source)
        self.model = source if isinstance(source, ModelWrapper) else _load(Path(source))
        graph = self.model.graph
        if len(graph.input) != 1 or len(graph.output) != 1:
            raise GraphError(f"{self._where()}: expected one input and one output, found "
                             f"{len(graph.input)} and {len(graph.output)}")
        self.input_name = graph.input[0].name
        self.output_name = graph.output[0].name
        self.input_shape = tuple(self.model.get_tensor_shape(self.input_name))
        self.output_shape = tuple(self.model.get_tensor_shape(self.output_name))
        self.consts: dict[str, np.ndarray] = {
            init.name: numpy_helper.to_array(init).astype(np.float64) for init in graph.initializer
        }
        self.const_bits: dict[str, int] = {}  # bit width of each quantized constant
        self.nodes: list = []
        for node in graph.node:
            if all(name in self.consts for name in node.input if name):
                self._fold(node)
            else:
                self._check(node)
                self.nodes.append(node)
        self.consumers: dict[str, list] = {}
        for node in self.nodes:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.types = self._analyse()

    # ---- loading and checks -------------------------------------------------------------
    def _where(self, node=None) -> str:
        base = str(self.path) if self.path else "model"
        return f"{base}: node {node.name!r} ({node.op_type})" if node is not None else base

    def _fold(self, node) -> None:
        """Evaluate a node whose inputs are all constant (weight quantizers, transposes)."""
        if node.op_type == "Quant" and self.consts[node.input[1]].size > 1:
            self.consts[node.output[0]], self.const_bits[node.output[0]] = self._fold_per_channel(node)
        elif node.op_type == "Quant":
            params = self.quant_params(node, constant=True)
            self.consts[node.output[0]] = params.apply(self.consts[node.input[0]])
            self.const_bits[node.output[0]] = params.bits
        elif node.op_type in SHAPE_OPS:
            self.consts[node.output[0]] = self._shape_op(node, self.consts[node.input[0]], batch=None)
            if node.input[0] in self.const_bits:
                self.const_bits[node.output[0]] = self.const_bits[node.input[0]]
        else:
            raise GraphError(f"{self._where(node)}: constant op not supported; fold it before export")

    def _fold_per_channel(self, node) -> tuple[np.ndarray, int]:
        """A constant (weight) Quant with one power-of-two scale per output channel: evaluated
        exactly like a per-tensor one, channel by channel. The folded weights are integers times
        powers of two like any other constant; consumers type them with their common exponent
        (`const_type`), so every backend stays exact (hls4ml's weight type is that much wider)."""
        scale, zeropt, bits = (self.consts[n] for n in node.input[1:])
        exps = np.log2(scale, where=scale > 0, out=np.full(scale.shape, np.nan))
        if not np.all(np.isfinite(exps) & (exps == np.round(exps))):
            raise GraphError(f"{self._where(node)}: per-channel scales {scale.ravel()[:4]} are not all powers of two")
        if np.any(zeropt != 0) or bits.size != 1 or not float(bits.ravel()[0]).is_integer():
            raise GraphError(f"{self._where(node)}: per-channel Quant needs zero point 0 and one integer bit width")
        n_bits = int(bits.ravel()[0])
        signed, narrow = bool(_attr(node, "signed", 1)), bool(_attr(node, "narrow", 0))
        rounding = _attr(node, "rounding_mode", "ROUND")
        if rounding not in ("FLOOR", "ROUND") or not 2 <= n_bits <= 48:
            raise GraphError(f"{self._where(node)}: rounding {rounding} / bit width {n_bits} not supported")
        params = QuantParams(0, n_bits, signed, narrow, rounding)
        x = self.consts[node.input[0]] / scale  # division by powers of two: exact
        y = np.floor(x) if rounding == "FLOOR" else np.round(x)
        return np.clip(y, params.qmin, params.qmax) * scale, n_bits

    def _check(self, node) -> None:
        if node.op_type not in DYNAMIC_OPS:
            hint = " (hls4ml's ONNX frontend cannot implement it exactly)" if node.op_type == "Einsum" else ""
            raise GraphError(
                f"{self._where(node)}: op not supported{hint}; qpde maps only {', '.join(DYNAMIC_OPS)}"
            )
        if node.op_type == "MatMul":
            dynamic = [name for name in node.input if name not in self.consts]
            if len(dynamic) == 2:
                self._check_matmul_aa(node)
            elif node.input[0] in self.consts:
                raise GraphError(f"{self._where(node)}: constant on the left of MatMul; transpose the graph")
        if node.op_type == "Mul":
            self.mul_shift(node)
        if node.op_type == "Quant":
            self.quant_params(node, constant=False)
        if node.op_type in SPATIAL_OPS:
            self._check_spatial(node)

    def _check_matmul_aa(self, node) -> None:
        """MatMul of two activations (e.g. Kᵀ·V and Q·(KᵀV) of linear attention): batched
        [1, M, K] @ [1, K, P] only (no broadcasting), mapped to qpde's hls4ml extension layer."""
        shapes = [self.model.get_tensor_shape(name) for name in node.input]
        if any(s is None for s in shapes):
            raise GraphError(f"{self._where(node)}: MatMul of two activations with unknown input shapes; "
                             "only batched [1, M, K] @ [1, K, P] is supported (run shape inference first)")
        a, b = (list(s) for s in shapes)
        if len(a) != 3 or len(b) != 3 or a[0] != 1 or b[0] != 1 or a[2] != b[1]:
            raise GraphError(
                f"{self._where(node)}: MatMul of two activations is supported only as batched "
                f"[1, M, K] @ [1, K, P], got {a} @ {b}"
            )

    def mul_shift(self, node) -> int:
        """k of a Mul by the constant scalar 2^k (moves the binary point: exact); refuses others."""
        const = [name for name in node.input if name in self.consts]
        if len(const) != 1:
            raise GraphError(f"{self._where(node)}: Mul of two activations is not supported; only a "
                             "multiplication by a constant power of two")
        value = self.consts[const[0]]
        exp = math.log2(abs(float(value.ravel()[0]))) if value.size == 1 and value.ravel()[0] > 0 else 0.5
        if value.size != 1 or not float(exp).is_integer():
            raise GraphError(f"{self._where(node)}: Mul by {value.ravel()[:4]} is not a multiplication "
                             "by a positive scalar power of two (not exact in fixed point)")
        return int(exp)

    def _check_spatial(self, node) -> None:
        """On 1-D [B, C, W] or 2-D [B, C, H, W] tensors: Conv (stride 1, no groups/dilation, explicit
        pads), MaxPool (non-overlapping, unpadded), Resize (nearest, an integer repeat along every
        spatial axis), Concat (of activations)."""
        op, where = node.op_type, self._where(node)
        if len(node.output) != 1:
            raise GraphError(f"{where}: only one output is supported (no MaxPool indices)")
        if op == "Concat":
            if any(name in self.consts for name in node.input):
                raise GraphError(f"{where}: Concat with a constant input is not supported")
            return
        shape = self.model.get_tensor_shape(node.input[0])
        if shape is None:
            raise GraphError(f"{where}: input shape unknown; run shape inference (qonnx cleanup) first")
        rank = len(shape)
        if rank not in SPATIAL_AXES:
            raise GraphError(f"{where}: only 1-D [batch, channels, width] and 2-D [batch, channels, height, width] "
                             f"tensors are supported, got rank {rank}")
        n_axes = rank - 2
        if node.input[0] in self.consts:
            raise GraphError(f"{where}: constant data input")
        if op == "Conv":
            if len(node.input) < 2 or any(n not in self.consts for n in node.input[1:] if n):
                raise GraphError(f"{where}: Conv weight and bias must be constants (quantized weights)")
            weight = self.consts[node.input[1]]
            if weight.ndim != rank:
                raise GraphError(f"{where}: weight of rank {weight.ndim} for a rank-{rank} input; only 1-D and 2-D "
                                 "convolutions with [C_out, C_in, *kernel] weights are supported")
            kernel = list(_attr(node, "kernel_shape", weight.shape[2:]))
            if kernel != list(weight.shape[2:]):
                raise GraphError(f"{where}: kernel_shape {kernel} does not match the weight's {list(weight.shape[2:])}")
            if _attr(node, "group", 1) != 1:
                raise GraphError(f"{where}: grouped/depthwise convolution is not supported")
            strides = list(_attr(node, "strides", [1] * n_axes))
            dilations = list(_attr(node, "dilations", [1] * n_axes))
            if any(v != 1 for v in strides + dilations):
                raise GraphError(f"{where}: only stride 1 and dilation 1 are supported, got strides {strides} and "
                                 f"dilations {dilations}; downsample with a MaxPool instead")
            if _attr(node, "auto_pad", "NOTSET") != "NOTSET":
                raise GraphError(f"{where}: auto_pad is not supported; export explicit pads")
            if any(p < 0 for p in self.conv_pads(node)):
                raise GraphError(f"{where}: negative pads are not supported")
            if len(node.input) > 2 and node.input[2] and self.consts[node.input[2]].size != weight.shape[0]:
                raise GraphError(f"{where}: bias size does not match {weight.shape[0]} output channels")
        elif op == "MaxPool":
            kernel = list(_attr(node, "kernel_shape", []))
            strides = list(_attr(node, "strides", [1] * len(kernel)))
            if len(kernel) != n_axes or strides != kernel:
                raise GraphError(f"{where}: only non-overlapping max pooling (stride = kernel along every spatial "
                                 f"axis) is supported, got kernel {kernel} and strides {strides}")
            dilated = any(v != 1 for v in _attr(node, "dilations", [1] * n_axes))
            if any(_attr(node, "pads", [0] * 2 * n_axes)) or _attr(node, "ceil_mode", 0) or dilated or \
                    _attr(node, "auto_pad", "NOTSET") != "NOTSET":
                raise GraphError(f"{where}: padded, ceil-mode or dilated max pooling is not supported")
        elif op == "Resize":
            self.resize_factors(node)

    def conv_pads(self, node) -> tuple[int, ...]:
        """A Conv's zero padding in ONNX order: (left, right) in 1-D, (top, left, bottom, right) in 2-D."""
        n_axes = self.consts[node.input[1]].ndim - 2
        pads = list(_attr(node, "pads", [0] * 2 * n_axes))
        if len(pads) != 2 * n_axes:
            raise GraphError(f"{self._where(node)}: expected {2 * n_axes} pads (begin of every spatial axis, then "
                             f"end), got {pads}")
        return tuple(int(p) for p in pads)

    def axis_pads(self, node) -> list[tuple[int, int]]:
        """(begin, end) zero padding of a Conv per spatial axis: [(left, right)] or [(top, bottom), (left, right)]."""
        pads = self.conv_pads(node)
        n_axes = len(pads) // 2
        return [(pads[i], pads[i + n_axes]) for i in range(n_axes)]

    def resize_factors(self, node) -> tuple[int, ...]:
        """Integer upsampling factor per spatial axis of a nearest Resize that repeats every sample
        along that axis f times: (width,) in 1-D, (height, width) in 2-D.

        Checked against ONNX's coordinate mapping for the node's own coordinate_transformation_mode
        and nearest_mode, so any exported variant that is a plain repeat is accepted, others refused."""
        where = self._where(node)
        if _attr(node, "mode", "nearest") != "nearest":
            raise GraphError(f"{where}: Resize mode {_attr(node, 'mode')!r}; only 'nearest' is exact")
        if _attr(node, "axes") is not None:
            raise GraphError(f"{where}: Resize with axes is not supported")
        names = list(node.input) + [""] * (4 - len(node.input))
        if any(n and n not in self.consts for n in names[1:]):
            raise GraphError(f"{where}: Resize roi/scales/sizes must be constants")
        in_shape = list(self.model.get_tensor_shape(names[0]) or [])
        if names[2] and self.consts[names[2]].size:
            scales = [float(v) for v in self.consts[names[2]]]
            out_shape = [int(math.floor(s * d)) for s, d in zip(scales, in_shape)]
        elif names[3]:
            out_shape = [int(v) for v in self.consts[names[3]]]
            scales = [o / i for o, i in zip(out_shape, in_shape)]
        else:
            raise GraphError(f"{where}: Resize needs scales or sizes")
        if len(out_shape) != len(in_shape) or len(in_shape) not in SPATIAL_AXES or out_shape[:2] != in_shape[:2]:
            raise GraphError(f"{where}: only resizing the spatial axes of [batch, channels, width] or "
                             f"[batch, channels, height, width] is supported, got {in_shape} → {out_shape}")
        factors = []
        for axis, name in enumerate(SPATIAL_AXES[len(in_shape)], start=2):
            n_in, n_out = in_shape[axis], out_shape[axis]
            factor = n_out // n_in
            if factor < 1 or n_out != factor * n_in:
                raise GraphError(f"{where}: {name} {n_in} → {n_out} is not an integer upsampling")
            index = _nearest_index(node, n_in, n_out, scales[axis])
            if not np.array_equal(index, np.arange(n_out) // factor):
                raise GraphError(
                    f"{where}: this nearest Resize (coordinate_transformation_mode "
                    f"{_attr(node, 'coordinate_transformation_mode', 'half_pixel')!r}, nearest_mode "
                    f"{_attr(node, 'nearest_mode', 'round_prefer_floor')!r}) is not a plain ×{factor} repeat "
                    f"along the {name}")
            factors.append(factor)
        return tuple(factors)

    def quant_params(self, node, *, constant: bool) -> QuantParams:
        names = list(node.input)
        if len(names) != 4 or any(n not in self.consts for n in names[1:]):
            raise GraphError(f"{self._where(node)}: scale, zero point and bit width must be constants")
        scale, zeropt, bits = (self.consts[n] for n in names[1:])
        if scale.size != 1 or zeropt.size != 1 or bits.size != 1:
            raise GraphError(f"{self._where(node)}: only per-tensor quantization is supported")
        scale, zeropt, bits = float(scale.ravel()[0]), float(zeropt.ravel()[0]), float(bits.ravel()[0])
        exp = math.log2(scale) if scale > 0 else float("nan")
        if not float(exp).is_integer():
            raise GraphError(f"{self._where(node)}: scale {scale} is not a power of two")
        if zeropt != 0:
            raise GraphError(f"{self._where(node)}: zero point {zeropt} is not 0")
        if not bits.is_integer() or not 2 <= bits <= 48:
            raise GraphError(f"{self._where(node)}: bit width {bits} not an integer in 2..48")
        rounding = _attr(node, "rounding_mode", "ROUND")
        if not constant and rounding != "FLOOR":
            raise GraphError(
                f"{self._where(node)}: activation rounding {rounding}; only FLOOR is reproduced exactly "
                "by every backend (use qpde.quant.ActQuant)"
            )
        if rounding not in ("FLOOR", "ROUND"):
            raise GraphError(f"{self._where(node)}: rounding mode {rounding} not supported")
        return QuantParams(int(exp), int(bits), bool(_attr(node, "signed", 1)), bool(_attr(node, "narrow", 0)),
                           rounding)

    # ---- interval analysis --------------------------------------------------------------
    def _analyse(self) -> dict[str, FixedType]:
        types: dict[str, FixedType | None] = {self.input_name: None}
        for node in self.nodes:
            ins = [types.get(name) for name in node.input if name and name not in self.consts]
            if node.op_type == "Quant":
                out = self.quant_params(node, constant=False).type
            elif any(t is None for t in ins):
                if node.op_type not in SHAPE_OPS:
                    raise GraphError(f"{self._where(node)}: input is not quantized; put a Quant node first")
                out = None
            elif node.op_type in SHAPE_OPS:
                out = ins[0]
            elif node.op_type == "Relu":
                out = ins[0].relu()
            elif node.op_type == "MatMul" and len(ins) == 2:
                out = self._matmul_aa_type(node, ins[0], ins[1])
            elif node.op_type == "MatMul":
                out = self._matmul_type(node, ins[0])
            elif node.op_type == "Mul":
                out = FixedType(ins[0].lo, ins[0].hi, ins[0].exp + self.mul_shift(node))
            elif node.op_type == "Add":
                out = self._add_type(node, ins)
            elif node.op_type == "Conv":
                out = self._conv_type(node, ins[0])
            elif node.op_type in ("MaxPool", "Resize"):
                out = ins[0]  # selects or repeats values: same type
            elif node.op_type == "Concat":
                exp = min(t.exp for t in ins)
                bounds = [t.align(exp) for t in ins]
                out = FixedType(min(b[0] for b in bounds), max(b[1] for b in bounds), exp)
            types[node.output[0]] = out
        if types.get(self.output_name) is None:
            raise GraphError(f"{self._where()}: output is not quantized")
        return types

    def const_type(self, name: str) -> FixedType:
        """Smallest exact type of a constant tensor (its values are integers · 2^exp)."""
        values = self.consts[name]
        exp = _common_exponent(values)
        ints = np.round(values / 2.0**exp)
        return FixedType(int(ints.min(initial=0)), int(ints.max(initial=0)), exp)

    def _matmul_type(self, node, x: FixedType) -> FixedType:
        w_name = node.input[1]
        w_type = self.const_type(w_name)
        w_int = np.round(self.consts[w_name] / 2.0**w_type.exp).astype(object)
        w_int = w_int.reshape(-1, w_int.shape[-1]) if w_int.ndim >= 2 else w_int.reshape(-1, 1)
        # Bounds per output column over every partial sum: Σ|w|·max|x| bounds any summation order.
        pos = np.where(w_int > 0, w_int, 0).sum(axis=0)
        neg = np.where(w_int < 0, w_int, 0).sum(axis=0)
        hi = max(int(p * x.hi + n * x.lo) for p, n in zip(pos, neg))
        lo = min(int(p * x.lo + n * x.hi) for p, n in zip(pos, neg))
        bound = int(np.abs(w_int).sum(axis=0).max()) * x.max_abs
        self._require_exact(node, bound)
        return FixedType(lo, hi, x.exp + w_type.exp)

    def matmul_aa_contraction(self, node) -> int:
        return int(self.model.get_tensor_shape(node.input[0])[-1])

    def matmul_aa_accum_type(self, node, a: FixedType, b: FixedType) -> FixedType:
        """Symmetric type holding every partial sum of an activation × activation MatMul in any
        order: K · max|a| · max|b| at LSB 2^(exp_a + exp_b)."""
        bound = self.matmul_aa_contraction(node) * a.max_abs * b.max_abs
        return FixedType(-bound, bound, a.exp + b.exp)

    def _matmul_aa_type(self, node, a: FixedType, b: FixedType) -> FixedType:
        """Each product a·b lies between the extreme corner products; a sum of K of them lies
        between K times those (exact interval of a K-term dot product of independent ranges)."""
        corners = [a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi]
        k = self.matmul_aa_contraction(node)
        self._require_exact(node, self.matmul_aa_accum_type(node, a, b).max_abs)
        return FixedType(k * min(corners), k * max(corners), a.exp + b.exp)

    def conv_bias(self, node) -> str | None:
        return node.input[2] if len(node.input) > 2 and node.input[2] else None

    def conv_accum_type(self, node, x: FixedType) -> FixedType:
        """Symmetric type holding every partial sum of a Conv in any order: per output channel
        Σ|w|·max|x| + |bias|, at the finer LSB of products and bias."""
        w_type = self.const_type(node.input[1])
        w_int = np.abs(np.round(self.consts[node.input[1]] / 2.0**w_type.exp)).astype(object)
        exp = x.exp + w_type.exp
        sums = [int(v) * x.max_abs for v in w_int.reshape(w_int.shape[0], -1).sum(axis=1)]
        bias = self.conv_bias(node)
        if bias is None:
            bound = max(sums)
        else:
            b_type = self.const_type(bias)
            new_exp = min(exp, b_type.exp)
            b_int = np.abs(np.round(self.consts[bias].reshape(-1) / 2.0**b_type.exp)).astype(object)
            bound = max((s << (exp - new_exp)) + (int(b) << (b_type.exp - new_exp))
                        for s, b in zip(sums, b_int))
            exp = new_exp
        return FixedType(-bound, bound, exp)

    def _conv_type(self, node, x: FixedType) -> FixedType:
        w_type = self.const_type(node.input[1])
        w_int = np.round(self.consts[node.input[1]] / 2.0**w_type.exp).astype(object)
        w_int = w_int.reshape(w_int.shape[0], -1)  # [C_out, C_in·K]
        # Zero padding feeds zeros: widen the input interval to contain 0 when there is padding.
        lo_x, hi_x = (min(x.lo, 0), max(x.hi, 0)) if any(self.conv_pads(node)) else (x.lo, x.hi)
        pos = np.where(w_int > 0, w_int, 0).sum(axis=1)
        neg = np.where(w_int < 0, w_int, 0).sum(axis=1)
        exp = x.exp + w_type.exp
        hi = [int(p * hi_x + n * lo_x) for p, n in zip(pos, neg)]
        lo = [int(p * lo_x + n * hi_x) for p, n in zip(pos, neg)]
        bias = self.conv_bias(node)
        if bias is not None:
            b_type = self.const_type(bias)
            new_exp = min(exp, b_type.exp)
            b_int = [int(b) << (b_type.exp - new_exp)
                     for b in np.round(self.consts[bias].reshape(-1) / 2.0**b_type.exp).astype(object)]
            hi = [(h << (exp - new_exp)) + b for h, b in zip(hi, b_int)]
            lo = [(v << (exp - new_exp)) + b for v, b in zip(lo, b_int)]
            exp = new_exp
        self._require_exact(node, self.conv_accum_type(node, x).max_abs)
        return FixedType(min(lo), max(hi), exp)

    def _add_type(self, node, ins: list[FixedType]) -> FixedType:
        if len(ins) == 1:  # activation + constant (a bias)
            const = next(n for n in node.input if n in self.consts)
            ins = [ins[0], self.const_type(const)]
        exp = min(t.exp for t in ins)
        bounds = [t.align(exp) for t in ins]
        out = FixedType(sum(b[0] for b in bounds), sum(b[1] for b in bounds), exp)
        self._require_exact(node, out.max_abs)
        return out

    def _require_exact(self, node, bound: int) -> None:
        if bound >= 2**FLOAT64_MANTISSA_BITS:
            raise GraphError(
                f"{self._where(node)}: accumulator needs {bound.bit_length()} bits, more than float64's "
                f"{FLOAT64_MANTISSA_BITS}; the golden cannot be exact (reduce bit widths or fan-in)"
            )

    # ---- numerical helpers shared by executors --------------------------------------------
    def _shape_op(self, node, x: np.ndarray, batch: int | None) -> np.ndarray:
        op = node.op_type
        if op == "Identity":
            return x
        if op == "Transpose":
            return np.transpose(x, _attr(node, "perm"))
        if op == "Flatten":
            axis = _attr(node, "axis", 1)
            return x.reshape(int(np.prod(x.shape[:axis], dtype=int)), -1)
        axes = self._axes(node)
        if op == "Squeeze":
            return np.squeeze(x, axis=tuple(axes))
        if op == "Unsqueeze":
            return np.expand_dims(x, axis=tuple(axes))
        shape = [int(s) for s in self.consts[node.input[1]]]
        if batch is not None and shape and shape[0] == 1:
            shape[0] = batch  # graphs are exported with batch 1; run any batch
        return x.reshape(shape)

    def _axes(self, node) -> list[int]:
        if len(node.input) > 1 and node.input[1]:
            return [int(a) for a in self.consts[node.input[1]]]
        return list(_attr(node, "axes"))

    def _attr_perm(self, node) -> list[int]:
        return list(_attr(node, "perm"))

    def add_const(self, node) -> str | None:
        return next((n for n in node.input if n in self.consts), None)

    def single_consumer(self, tensor: str):
        users = self.consumers.get(tensor, [])
        return users[0] if len(users) == 1 and tensor != self.output_name else None


def _nearest_index(node, n_in: int, n_out: int, scale: float) -> np.ndarray:
    """Source index of every output sample along one axis of a nearest Resize, as ONNX defines it."""
    mode = _attr(node, "coordinate_transformation_mode", "half_pixel")
    rounding = _attr(node, "nearest_mode", "round_prefer_floor")
    i = np.arange(n_out, dtype=np.float64)
    if mode == "asymmetric":
        x = i / scale
    elif mode == "half_pixel":
        x = (i + 0.5) / scale - 0.5
    elif mode == "pytorch_half_pixel":
        x = (i + 0.5) / scale - 0.5 if n_out > 1 else np.zeros_like(i)
    elif mode == "align_corners":
        x = i * (n_in - 1) / (n_out - 1) if n_out > 1 else np.zeros_like(i)
    elif mode == "tf_half_pixel_for_nn":
        x = (i + 0.5) / scale
    else:
        raise GraphError(f"node {node.name!r} (Resize): coordinate_transformation_mode {mode!r} not supported")
    if rounding == "floor":
        index = np.floor(x)
    elif rounding == "ceil":
        index = np.ceil(x)
    elif rounding == "round_prefer_floor":
        index = np.where(x - np.floor(x) == 0.5, np.floor(x), np.round(x))
    elif rounding == "round_prefer_ceil":
        index = np.where(x - np.floor(x) == 0.5, np.ceil(x), np.round(x))
    else:
        raise GraphError(f"node {node.name!r} (Resize): nearest_mode {rounding!r} not supported")
    return np.clip(index, 0, n_in - 1).astype(int)


def _common_exponent(values: np.ndarray) -> int:
    """Largest k such that every value is an integer multiple of 2^k (0 for an all-zero tensor)."""
    nonzero = np.abs(values[values != 0])
    if nonzero.size == 0:
        return 0
    _, exps = np.frexp(nonzero)  # value = m · 2^e, 0.5 ≤ m < 1; lowest set bit fixes k
    k = int(exps.max())
    while k > -1100 and not np.all(np.mod(nonzero, 2.0**k) == 0):
        k -= 1
    return k


def _load(path: Path) -> ModelWrapper:
    """Every file goes through the one cleaning step (qpde's exports are marked clean: no work)."""
    from qpde.ingest import load_model

    return load_model(path)
