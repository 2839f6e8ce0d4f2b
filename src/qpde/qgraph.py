"""A checked, analysed view of a QONNX graph: every op is admitted and typed by its entry in the op
registry (qpde.ops), which also holds its golden execution and backend mappings.

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
from onnx import numpy_helper
from qonnx.core.modelwrapper import ModelWrapper

from qpde.errors import GraphError
from qpde.ops import OPS, SHAPE_OPS, SPATIAL_AXES, attr

FLOAT64_MANTISSA_BITS = 53


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
        signed, narrow = bool(attr(node, "signed", 1)), bool(attr(node, "narrow", 0))
        rounding = attr(node, "rounding_mode", "ROUND")
        if rounding not in ("FLOOR", "ROUND") or not 2 <= n_bits <= 48:
            raise GraphError(f"{self._where(node)}: rounding {rounding} / bit width {n_bits} not supported")
        params = QuantParams(0, n_bits, signed, narrow, rounding)
        x = self.consts[node.input[0]] / scale  # division by powers of two: exact
        y = np.floor(x) if rounding == "FLOOR" else np.round(x)
        return np.clip(y, params.qmin, params.qmax) * scale, n_bits

    def _check(self, node) -> None:
        """Admission: a registered op (qpde.ops) whose own check accepts the node."""
        op = OPS.get(node.op_type)
        if op is None:
            hint = " (hls4ml's ONNX frontend cannot implement it exactly)" if node.op_type == "Einsum" else ""
            raise GraphError(f"{self._where(node)}: op not supported{hint}; qpde maps only {', '.join(OPS)}")
        if op.check is not None:
            op.check(self, node)

    def check_matmul_aa(self, node) -> None:
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

    def conv_pads(self, node) -> tuple[int, ...]:
        """A Conv's zero padding in ONNX order: (left, right) in 1-D, (top, left, bottom, right) in 2-D."""
        n_axes = self.consts[node.input[1]].ndim - 2
        pads = list(attr(node, "pads", [0] * 2 * n_axes))
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
        if attr(node, "mode", "nearest") != "nearest":
            raise GraphError(f"{where}: Resize mode {attr(node, 'mode')!r}; only 'nearest' is exact")
        if attr(node, "axes") is not None:
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
                    f"{attr(node, 'coordinate_transformation_mode', 'half_pixel')!r}, nearest_mode "
                    f"{attr(node, 'nearest_mode', 'round_prefer_floor')!r}) is not a plain ×{factor} repeat "
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
        rounding = attr(node, "rounding_mode", "ROUND")
        if not constant and rounding != "FLOOR":
            raise GraphError(
                f"{self._where(node)}: activation rounding {rounding}; only FLOOR is reproduced exactly "
                "by every backend (use qpde.quant.ActQuant)"
            )
        if rounding not in ("FLOOR", "ROUND"):
            raise GraphError(f"{self._where(node)}: rounding mode {rounding} not supported")
        return QuantParams(int(exp), int(bits), bool(attr(node, "signed", 1)), bool(attr(node, "narrow", 0)),
                           rounding)

    # ---- interval analysis --------------------------------------------------------------
    def _analyse(self) -> dict[str, FixedType]:
        types: dict[str, FixedType | None] = {self.input_name: None}
        for node in self.nodes:
            ins = [types.get(name) for name in node.input if name and name not in self.consts]
            op = OPS[node.op_type]
            if op.kind == "quant" or all(t is not None for t in ins):
                out = op.type_rule(self, node, ins)
            elif op.kind == "shape":
                out = None  # shape ops before the input Quant carry unquantized values
            else:
                raise GraphError(f"{self._where(node)}: input is not quantized; put a Quant node first")
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

    def matmul_type(self, node, x: FixedType) -> FixedType:
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

    def matmul_aa_type(self, node, a: FixedType, b: FixedType) -> FixedType:
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

    def conv_type(self, node, x: FixedType) -> FixedType:
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

    def add_type(self, node, ins: list[FixedType]) -> FixedType:
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
        """A shape op (Reshape, Transpose, …) applied to x: on values (golden, constant folding; a
        Reshape's batch 1 becomes `batch`) or on traced arrays (batch None)."""
        return OPS[node.op_type].golden(self, node, [x], batch)

    def add_const(self, node) -> str | None:
        return next((n for n in node.input if n in self.consts), None)

    def single_consumer(self, tensor: str):
        users = self.consumers.get(tensor, [])
        return users[0] if len(users) == 1 and tensor != self.output_name else None


def _nearest_index(node, n_in: int, n_out: int, scale: float) -> np.ndarray:
    """Source index of every output sample along one axis of a nearest Resize, as ONNX defines it."""
    mode = attr(node, "coordinate_transformation_mode", "half_pixel")
    rounding = attr(node, "nearest_mode", "round_prefer_floor")
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
