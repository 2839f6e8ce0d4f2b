"""QGraph → logical dataflow graph of folded stream units (no lanes, forks or FIFOs yet).

A stream carries one tensor per field as its flat C-order sequence of integer codes of one
FixedType (value = code · 2^exp). Shape ops that keep C order (Reshape, Squeeze, Unsqueeze,
Flatten, Identity) are wiring: they only change how the next unit splits the sequence into rows.

Fusion (every integer parameter derived from QGraph's exact types and constants):
- MatMul(activation @ constant K×C) [+ Add constant bias] [+ Relu] [+ Quant] → one ``mvau``;
- MatMul(activation @ activation) [+ Mul 2^k] [+ Add uniform constant] [+ Relu] [+ Quant] (linear attention, see ``_matmul_aa``)
  → ``outer`` (Transpose(A) @ B: a sum of outer products over tokens) or ``mvau_stream`` (A @ B with
  B loaded from its stream once per field);
- Add(activation, activation) [+ Add uniform constant] [+ Relu] [+ Quant] → ``add``;
- Transpose swapping two groups of axes → ``transpose`` [R, C] → [C, R];
- a Quant or Relu [+ Quant] that nothing absorbed → ``map``;
- 1-D and 2-D spatial ops on channels-last streams (see ``_spatial``): Conv [+ Relu] [+ Quant] →
  ``swu``/``swu2d`` (a sliding window; none for kernel 1) + ``mvau``; MaxPool 2 → ``pool``/``pool2d``;
  nearest ×2 Resize → ``upsample``/``upsample2d``; Concat on channels → ``concat``.
Anything else is a GraphError naming the node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from qpde.backends.folded.modemajor import find_mode_major
from qpde.errors import GraphError
from qpde.ops import OPS, SHAPE_OPS, attr
from qpde.qgraph import FixedType, QGraph

BACKEND = "folded"
MAX_SHIFTED_BITS = 63  # qpde_requant's input after its left shift, plus its spare bit: 64-bit parameters


@dataclass(frozen=True)
class Requant:
    """FLOOR requantization as the next QONNX Quant: code · 2^(lshift − rshift), clipped to [lo, hi]
    (lo = max(qmin, 0) when a ReLU precedes it)."""

    rshift: int
    lshift: int
    lo: int
    hi: int

    @staticmethod
    def between(in_exp: int, out_exp: int, lo: int, hi: int) -> Requant:
        d = out_exp - in_exp
        return Requant(max(d, 0), max(-d, 0), lo, hi)

    def apply(self, codes: np.ndarray) -> np.ndarray:
        """Exact on int64/object integer arrays (>> floors, as the hardware's arithmetic shift)."""
        return np.clip((codes << self.lshift) >> self.rshift, self.lo, self.hi)


@dataclass
class Stream:
    name: str
    type: FixedType
    numel: int  # elements per field
    lanes: int = 1  # elements per beat (set when a folding is applied)


@dataclass
class Unit:
    name: str  # the layer name: the QGraph node that anchors the unit (MatMul, Add, Transpose, …)
    kind: str  # mvau | outer | mvau_stream | add | map | transpose | swu[2d] | pool[2d] | upsample[2d] | concat | fork | fifo | dwc
    inputs: list[str]
    outputs: list[str]
    params: dict = field(default_factory=dict)
    nodes: list[str] = field(default_factory=list)  # QGraph nodes the unit implements


@dataclass
class Dataflow:
    streams: dict[str, Stream]
    units: list[Unit]  # topological order
    input: str  # stream fed by the accelerator's input (the first Quant's output)
    output: str  # stream that leaves the accelerator

    def unit(self, name: str) -> Unit:
        return next(u for u in self.units if u.name == name)

    def consumers(self, stream: str) -> list[Unit]:
        return [u for u in self.units if stream in u.inputs]

    def producer(self, stream: str) -> Unit | None:
        return next((u for u in self.units if stream in u.outputs), None)


def _where(graph: QGraph, node) -> str:
    return graph._where(node)


def _codes(graph: QGraph, name: str) -> tuple[np.ndarray, FixedType]:
    """Integer codes (object ints, exact) and type of a constant."""
    t = graph.const_type(name)
    values = graph.consts[name] / 2.0**t.exp
    codes = np.round(values)
    if not np.array_equal(codes, values):  # const_type guarantees it; keep the claim checked
        raise GraphError(f"constant {name!r} is not an integer multiple of 2^{t.exp}")
    return codes.astype(np.int64).astype(object), t


def _uniform_offset(graph: QGraph, node) -> float:
    """The value of a constant Add that adds the same number to every element (a per-element
    constant would need a table; none of qpde's exports has one)."""
    values = np.unique(graph.consts[graph.add_const(node)])
    if values.size != 1:
        raise GraphError(f"{_where(graph, node)}: Add of a per-element constant after an activation Add; the "
                         f"{BACKEND} backend adds one constant to every element")
    return float(values[0])


def _exponent(value: float) -> int:
    """The exponent of the least significant bit of a float (0 for 0)."""
    if value == 0.0:
        return 0
    mantissa, exp = np.frexp(abs(value))
    ints = int(mantissa * 2.0**53)
    return int(exp) - 53 + ((ints & -ints).bit_length() - 1)


class _Builder:
    """The state of one build_dataflow walk, shared by the per-op handlers (`fold_*` below, named by
    qpde.ops.OPS): the streams made so far, which stream carries each tensor, the units in
    topological order, and the nodes already fused into a unit."""

    def __init__(self, graph: QGraph, in_name: str):
        self.graph = graph
        self.streams: dict[str, Stream] = {}
        self.alias: dict[str, str] = {}  # tensor → stream carrying it
        self.units: list[Unit] = []
        self.fused: set[str] = set()
        self.layout = _Layout(self.streams, self.units)
        self._inferred = None  # a shape-inferred copy of the model, made on the first tensor without a shape
        self.new_stream(in_name, graph.types[in_name])

    def shape(self, name: str) -> tuple[int, ...]:
        s = self.graph.model.get_tensor_shape(name)
        if s is None:
            if self._inferred is None:
                from qonnx.transformation.infer_shapes import InferShapes

                self._inferred = self.graph.model.transform(InferShapes())
            s = self._inferred.get_tensor_shape(name)
        if s is None:
            raise GraphError(f"{self.graph._where()}: tensor {name!r} has no shape; run shape inference first")
        return tuple(int(d) for d in s)

    def numel(self, name: str) -> int:
        return int(np.prod(self.shape(name)[1:], dtype=np.int64))

    def new_stream(self, tensor: str, t: FixedType) -> str:
        self.streams[tensor] = Stream(tensor, t, self.numel(tensor))
        self.alias[tensor] = tensor
        return tensor

    def src(self, node, tensor: str) -> str:
        if tensor not in self.alias:
            raise GraphError(f"{_where(self.graph, node)}: input {tensor!r} is not a stream of the {BACKEND} backend")
        return self.layout.c_order(self.alias[tensor])  # a channels-last stream is transposed back first

    def tail(self, start_tensor: str, chain: list) -> tuple[str, bool, object]:
        """Follow [Relu] [Quant] single consumers of start_tensor; returns (last tensor, relu, quant)."""
        graph = self.graph
        cur, relu, quant = start_tensor, False, None
        nxt = graph.single_consumer(cur)
        if nxt is not None and nxt.op_type == "Relu":
            relu, cur = True, nxt.output[0]
            chain.append(nxt)
            nxt = graph.single_consumer(cur)
        if nxt is not None and nxt.op_type == "Quant":
            quant, cur = nxt, nxt.output[0]
            chain.append(nxt)
        return cur, relu, quant

    def out_spec(self, node, cur: str, relu: bool, quant, acc_exp: int) -> tuple[FixedType, Requant]:
        out_t = self.graph.types[cur]
        if quant is not None:
            p = self.graph.quant_params(quant, constant=False)
            lo, hi, exp = p.qmin, p.qmax, p.exp
        else:  # no Quant: the exact value at the accumulator's LSB, clipped only by a ReLU
            lo, hi, exp = out_t.lo, out_t.hi, out_t.exp
            if exp != acc_exp:
                raise GraphError(f"{_where(self.graph, node)}: unquantized output at 2^{exp}, accumulator at "
                                 f"2^{acc_exp}")
        return out_t, Requant.between(acc_exp, exp, max(lo, 0) if relu else lo, hi)

    def check_shift(self, node, in_bits: int, rq: Requant) -> None:
        if in_bits + rq.lshift > MAX_SHIFTED_BITS:
            raise GraphError(f"{_where(self.graph, node)}: requantization needs {in_bits + rq.lshift} bits, the "
                             f"{BACKEND} backend supports {MAX_SHIFTED_BITS}")

    def emit(self, unit: Unit, chain: list, cur: str, out_t: FixedType) -> None:
        """Add a unit implementing the nodes of `chain`, whose output stream carries tensor `cur`."""
        unit.nodes = [n.name for n in chain]
        self.fused.update(unit.nodes)
        unit.outputs = [self.new_stream(cur, out_t)]
        self.units.append(unit)


def build_dataflow(graph: QGraph) -> Dataflow:
    """Map a checked QGraph onto logical stream units (see the module docstring): each node after the
    input Quant goes to its op's folded handler in qpde.ops.OPS (a `fold_*` function below)."""
    nodes = list(graph.nodes)
    first_quant = next((i for i, n in enumerate(nodes) if n.op_type == "Quant"), None)
    if first_quant is None:
        raise GraphError(f"{graph._where()}: no input Quant")
    for node in nodes[:first_quant]:
        if node.op_type not in SHAPE_OPS or node.op_type == "Transpose":
            raise GraphError(f"{_where(graph, node)}: only order-keeping shape ops may precede the input "
                             f"Quant in the {BACKEND} backend")
    b = _Builder(graph, nodes[first_quant].output[0])
    for node in nodes[first_quant + 1 :]:
        if node.name in b.fused:
            continue
        handler = OPS[node.op_type].handler(BACKEND) if node.op_type in OPS else None
        if handler is None:
            raise GraphError(f"{_where(graph, node)}: the {BACKEND} backend does not map {node.op_type} "
                             f"(it maps {', '.join(n for n, op in OPS.items() if op.folded)})")
        handler(b, node)
    if graph.output_name not in b.alias:
        raise GraphError(f"{graph._where()}: the output is not produced by a {BACKEND} stream")
    return Dataflow(b.streams, b.units, nodes[first_quant].output[0], b.layout.c_order(b.alias[graph.output_name]))


# ---- per-op handlers (qpde.ops.OPS[op].folded) ---------------------------------------------------
def fold_shape(b: _Builder, node) -> None:
    """An order-keeping shape op is wiring: its output is the input's stream."""
    s = b.src(node, node.input[0])
    if b.numel(node.output[0]) != b.streams[s].numel:
        raise GraphError(f"{_where(b.graph, node)}: changes the element count")
    b.alias[node.output[0]] = s


def fold_transpose(b: _Builder, node) -> None:
    s = b.src(node, node.input[0])
    split = _transpose_split(b.graph, node, b.shape(node.input[0]))
    if split is None:  # only size-1 axes move: C order is kept
        b.alias[node.output[0]] = s
        return
    rows, cols = split
    out = b.new_stream(node.output[0], b.graph.types[node.output[0]])
    b.units.append(Unit(node.name, "transpose", [s], [out], {"R": rows, "C": cols}, [node.name]))


def fold_spatial(b: _Builder, node) -> None:
    _spatial(b.graph, node, b.alias, b.streams, b.units, b.fused, b.layout, b.tail, b.out_spec, b.check_shift,
             b.shape)


def fold_matmul(b: _Builder, node) -> None:
    """MatMul by a constant → mvau; of two activations → outer or mvau_stream (`_matmul_aa`)."""
    graph = b.graph
    chain = [node]
    if node.input[0] in graph.consts:
        raise GraphError(f"{_where(graph, node)}: the {BACKEND} backend does not map a MatMul with a constant "
                         "left operand (it maps activation @ constant and activation @ activation)")
    if node.input[1] in graph.consts:
        unit, cur, out_t = _mvau(graph, node, b.src(node, node.input[0]), b.streams, chain, b.tail, b.out_spec,
                                 b.check_shift, b.shape)
    else:
        unit, cur, out_t = _matmul_aa(graph, node, [b.src(node, n) for n in node.input], b.streams, b.units, chain,
                                      b.tail, b.out_spec, b.check_shift, b.shape)
    b.emit(unit, chain, cur, out_t)


def fold_add(b: _Builder, node) -> None:
    """Add of two activations [+ a uniform constant] [+ Relu] [+ Quant]; a constant Add is a bias,
    fused into the MatMul before it."""
    graph = b.graph
    if any(n in graph.consts for n in node.input):
        raise GraphError(f"{_where(graph, node)}: the {BACKEND} backend does not map an Add of a constant that is "
                         "not fused into a MatMul (a bias) or a sum of activations (a half-LSB offset)")
    a, c = (b.src(node, n) for n in node.input)
    if b.shape(node.input[0]) != b.shape(node.input[1]):
        raise GraphError(f"{_where(graph, node)}: Add of activations with shapes {b.shape(node.input[0])} and "
                         f"{b.shape(node.input[1])}; the {BACKEND} backend needs equal shapes (no broadcast)")
    ta, tb = b.streams[a].type, b.streams[c].type
    exp = min(ta.exp, tb.exp)
    chain, summed, offset = [node], node.output[0], 0.0
    nxt = graph.single_consumer(summed)
    if nxt is not None and nxt.op_type == "Add" and graph.add_const(nxt) is not None:
        # a constant after the sum (half an LSB of a round-half-up Quant): one adder more
        offset = _uniform_offset(graph, nxt)
        exp = min(exp, _exponent(offset))
        summed = nxt.output[0]
        chain.append(nxt)
    ashift, bshift = ta.exp - exp, tb.exp - exp
    offset_code = int(offset / 2.0**exp)  # exact: exp is at or below the offset's LSB
    bound = (ta.max_abs << ashift) + (tb.max_abs << bshift) + abs(offset_code)
    sum_w = max(bound.bit_length() + 1, ta.width + 1, tb.width + 1)
    cur, relu, quant = b.tail(summed, chain)
    out_t, rq = b.out_spec(node, cur, relu, quant, exp)
    b.check_shift(node, sum_w, rq)
    b.emit(Unit(node.name, "add", [a, c], [], {"ashift": ashift, "bshift": bshift, "sum_w": sum_w,
                                               "offset": offset_code, "requant": rq}), chain, cur, out_t)


def fold_map(b: _Builder, node) -> None:
    """A Quant, or a Relu [+ Quant], that no unit before it absorbed: an elementwise requantization."""
    s = b.src(node, node.input[0])
    t_in = b.streams[s].type
    chain = [node]
    if node.op_type == "Relu":
        cur, _, quant = b.tail(node.output[0], chain)
        relu = True
    else:
        cur, relu, quant = node.output[0], False, node
    out_t, rq = b.out_spec(node, cur, relu, quant, t_in.exp)
    b.check_shift(node, t_in.width + 1, rq)
    b.emit(Unit(node.name, "map", [s], [], {"requant": rq}), chain, cur, out_t)


def _mvau(graph, node, s, streams, chain, tail, out_spec, check_shift, shape) -> tuple[Unit, str, FixedType]:
    x_t = streams[s].type
    w, w_t = _codes(graph, node.input[1])
    if w.ndim != 2:
        raise GraphError(f"{_where(graph, node)}: weight of rank {w.ndim}; the {BACKEND} backend needs a K×C matrix")
    k, c = w.shape
    if shape(node.input[0])[-1] != k:
        raise GraphError(f"{_where(graph, node)}: input rows of {shape(node.input[0])[-1]} for a {k}×{c} weight")
    rows = streams[s].numel // k
    kron = _kron_factor(w)
    if kron > 1:  # W = kron(I_n, B): B over n× more rows (a reshape of the stream), never the dense W
        w = w[: k // kron, : c // kron]
        k, c, rows = k // kron, c // kron, rows * kron
    cur = node.output[0]
    bias, b_t = None, None
    nxt = graph.single_consumer(cur)
    if nxt is not None and nxt.op_type == "Add" and graph.add_const(nxt) is not None:
        bias, b_t = _codes(graph, graph.add_const(nxt))
        if bias.size not in (1, c, c * kron) or bias.shape[-1] != bias.size:
            raise GraphError(f"{_where(graph, nxt)}: bias of shape {bias.shape} is not one value per output column")
        bias = np.broadcast_to(bias.reshape(-1), (c * kron,)).copy()
        if not np.array_equal(bias, np.tile(bias[:c], kron)):
            raise GraphError(f"{_where(graph, nxt)}: bias of a block-diagonal weight kron(I_{kron}, B) is not the "
                             "same for every block")
        bias = bias[:c]
        chain.append(nxt)
        cur = nxt.output[0]
    cur, relu, quant = tail(cur, chain)
    acc, out_t = _accumulator(graph, node, x_t, w, w_t, bias, b_t, cur, relu, quant, out_spec, check_shift)
    # a row/column order (transposes around the MVAU) that makes interleaved blocks diagonal, if any;
    # the folding decides whether to use it (modemajor.py)
    acc["mode_major"] = find_mode_major(acc["nonzero"])
    return Unit(node.name, "mvau", [s], [], {"K": k, "C": c, "rows": rows, "kron": kron, **acc}), cur, out_t


def _matmul_aa(graph, node, ins, streams, units, chain, tail, out_spec, check_shift, shape) -> tuple[Unit, str, FixedType]:
    """MatMul of two activations [1, M, K] @ [1, K, P] (QGraph checked the shapes), with a following
    Mul by 2^k (a shift of the accumulator's LSB: folded into the requantization), Add of a uniform
    constant (the accumulators' start value) and Relu/Quant.

    A left operand that is the Transpose of a token-major [K, M] stream read by nothing else (Kᵀ of
    attention) is taken before that transpose: an ``outer`` unit sums the K outer products
    A[t, :]ᵀ B[t, :] as the two streams pass, with no buffer of either. Otherwise ``mvau_stream``:
    B [K, P] is loaded from its stream once per field, then every row of A is multiplied by it."""
    a, b = ins
    _, m, k = shape(node.input[0])
    p = shape(node.input[1])[2]
    kind = "mvau_stream"
    producer = next((u for u in units if a in u.outputs), None)
    # the Transpose node's own unit (a layout transpose has no nodes and may be shared: it stays)
    if producer is not None and producer.kind == "transpose" and producer.nodes \
            and graph.single_consumer(node.input[0]) is node and producer.params == {"R": k, "C": m}:
        units.remove(producer)
        del streams[a]
        a, kind = producer.inputs[0], "outer"
        chain.insert(0, next(n for n in graph.nodes if n.name == producer.name))
    ta, tb = streams[a].type, streams[b].type
    acc_exp = ta.exp + tb.exp
    cur = node.output[0]
    nxt = graph.single_consumer(cur)
    if nxt is not None and nxt.op_type == "Mul":
        acc_exp += graph.mul_shift(nxt)
        chain.append(nxt)
        cur = nxt.output[0]
        nxt = graph.single_consumer(cur)
    offset = 0
    if nxt is not None and nxt.op_type == "Add" and graph.add_const(nxt) is not None:
        # half an LSB of the round-half-up export's Quant: the accumulators start at it
        value = _uniform_offset(graph, nxt)
        if _exponent(value) < acc_exp:
            raise GraphError(f"{_where(graph, nxt)}: constant {value} below the product LSB 2^{acc_exp}; the "
                             f"{BACKEND} backend adds a constant at the accumulator's LSB")
        offset = int(value / 2.0**acc_exp)  # exact: at or above the LSB
        chain.append(nxt)
        cur = nxt.output[0]
    cur, relu, quant = tail(cur, chain)
    out_t, rq = out_spec(node, cur, relu, quant, acc_exp)
    bound = k * max(abs(x * y) for x in (ta.lo, ta.hi) for y in (tb.lo, tb.hi)) + abs(offset)
    acc_w = max(bound.bit_length() + 1, ta.width + tb.width + 3)  # above the HDL's product width
    check_shift(node, acc_w, rq)
    params = {"M": m, "K": k, "P": p, "acc_w": acc_w, "offset": offset, "requant": rq}
    return Unit(node.name, kind, [a, b], [], params), cur, out_t


def _accumulator(graph, node, x_t, w, w_t, bias, b_t, cur, relu, quant, out_spec, check_shift) -> tuple[dict, FixedType]:
    """An MVAU's exact accumulator and requantization: its weights, bias at the accumulator's LSB,
    product shift, width (never overflows) and the fused ReLU/Quant; and the output type.

    A bias finer than the products can be floored to the products' LSB when a FLOOR Quant at or
    above that LSB follows: the products' sum is a multiple of that LSB, so the bias's extra
    fraction never carries across a multiple of the (coarser) output step, nor past a ReLU's 0."""
    prod_exp = x_t.exp + w_t.exp
    acc_exp = prod_exp
    if bias is not None and b_t.exp < prod_exp:
        floorable = quant is not None and graph.quant_params(quant, constant=False).exp >= prod_exp
        if not floorable:
            acc_exp = b_t.exp
    pshift = prod_exp - acc_exp
    if bias is not None:
        d = b_t.exp - acc_exp
        bias = np.array([b << d if d >= 0 else b >> -d for b in bias], dtype=object)
    out_t, rq = out_spec(node, cur, relu, quant, acc_exp)
    col_abs = np.abs(w).sum(axis=0)
    bound = max((int(col_abs[j]) * x_t.max_abs << pshift) + (abs(int(bias[j])) if bias is not None else 0)
                for j in range(w.shape[1]))
    # at least one bit above a product's width: the MVAU sign-extends products with a non-empty replication
    acc_w = max(bound.bit_length() + 1, w_t.width + (0 if w_t.signed else 1) + x_t.width + 2)
    check_shift(node, acc_w, rq)
    return {"weights": w, "nonzero": np.asarray(w != 0, dtype=bool),  # zero tiles are skipped (fold.mvau_tiles)
            "w_width": w_t.width + (0 if w_t.signed else 1), "pshift": pshift, "acc_w": acc_w,
            "bias": bias, "requant": rq}, out_t


def _kron_factor(w: np.ndarray) -> int:
    """Largest n with w == kron(I_n, B) exactly (B = the top-left block), 1 if none."""
    k, c = w.shape
    ints = w.astype(np.int64)
    g = math.gcd(k, c)
    for n in sorted((d for d in range(2, g + 1) if g % d == 0), reverse=True):
        kb, cb = k // n, c // n
        # cheap necessary check first: everything off the diagonal blocks is zero
        off = ints.reshape(n, kb, n, cb).copy()
        diag = off[np.arange(n), :, np.arange(n), :].copy()  # [n, kb, cb]
        off[np.arange(n), :, np.arange(n), :] = 0
        if not off.any() and (diag == diag[0]).all():
            return n
    return 1


def _transpose_split(graph: QGraph, node, in_shape: tuple[int, ...]) -> tuple[int, int] | None:
    """(R, C) of a Transpose that is a 2-D transpose of [R, C] once size-1 axes are dropped; None
    when it keeps C order."""
    from qpde.ops import attr as _attr

    perm = list(_attr(node, "perm") or reversed(range(len(in_shape))))
    keep = [a for a in range(len(in_shape)) if in_shape[a] != 1]
    order = [keep.index(a) for a in perm if a in keep]
    n = len(order)
    if order == sorted(order):
        return None
    for k in range(1, n):
        if order == list(range(k, n)) + list(range(k)):
            return (int(np.prod([in_shape[a] for a in keep[:k]])), int(np.prod([in_shape[a] for a in keep[k:]])))
    raise GraphError(f"{_where(graph, node)}: perm {perm} on {list(in_shape)} is not a transpose of two axis groups; "
                     f"the {BACKEND} backend does not map it")


# ---- spatial ops (UNet1d, UNet2d) on channels-last streams -----------------------------------------
# A [1, C, L] or [1, C, H, W] tensor is carried channels-last: point by point (raster order in 2-D),
# each point's C codes in channel order (the flat C order of its [L, C] / [H, W, C] transpose). With C = 1 or L = 1 that is its C order, so no unit is
# needed between the two conventions (the UNet's input and output have one channel); otherwise a
# ``transpose`` unit converts where a channels-last stream meets a C-order consumer (MatMul, shape
# ops, Add, Quant/Relu, the output) or a C-order stream meets a spatial op.


class _Layout:
    """Which streams are channels-last (with C > 1 and L > 1, where the orders differ), and the
    transposes between the two orders (each made once)."""

    def __init__(self, streams: dict[str, Stream], units: list[Unit]):
        self.streams, self.units = streams, units
        self.channels_last: dict[str, tuple[int, int]] = {}  # stream → (L, C)
        self.made: dict[str, str] = {}  # stream → its copy in the other order

    def _transpose(self, s: str, rows: int, cols: int, tag: str) -> str:
        if s not in self.made:
            out = f"{s}_{tag}"
            self.streams[out] = Stream(out, self.streams[s].type, self.streams[s].numel)
            self.units.append(Unit(f"Transpose_{tag}_{s}", "transpose", [s], [out], {"R": rows, "C": cols}))
            self.made[s] = out
            self.made.setdefault(out, s)  # converting the copy back is the original
        return self.made[s]

    def c_order(self, s: str) -> str:
        if s not in self.channels_last:
            return s
        pts, ch = self.channels_last[s]
        return self._transpose(s, pts, ch, "c_order")

    def points(self, s: str, ch: int, pts: int) -> str:
        """Stream s (a [C, L] tensor in C order, or channels-last already) as channels-last."""
        if s in self.channels_last or ch == 1 or pts == 1:
            return s
        out = self._transpose(s, ch, pts, "channels_last")
        self.channels_last[out] = (pts, ch)
        return out

    def mark(self, s: str, ch: int, pts: int) -> str:
        if ch > 1 and pts > 1:
            self.channels_last[s] = (pts, ch)
        return s


def _spatial(graph, node, alias, streams, units, fused, layout, tail, out_spec, check_shift, shape) -> None:
    """Map one 1-D or 2-D Conv / MaxPool / Resize / Concat (QGraph has checked their attributes). A 2-D
    [1, C, H, W] tensor is carried channels-last in raster order: H·W points of C channels."""
    where, op = _where(graph, node), node.op_type
    x_shape = shape(node.input[0])
    if len(x_shape) not in (3, 4):
        raise GraphError(f"{where}: {op} on a rank-{len(x_shape)} tensor; the {BACKEND} backend maps 1-D "
                         "[batch, channels, width] and 2-D [batch, channels, height, width] spatial ops")
    grid = x_shape[2:]  # (L,) or (H, W)

    def source(tensor: str) -> tuple[str, int, int]:
        if tensor not in alias:
            raise GraphError(f"{where}: input {tensor!r} is not a stream of the {BACKEND} backend")
        _, ch, *sp = shape(tensor)
        pts = int(np.prod(sp))
        return layout.points(alias[tensor], ch, pts), ch, pts

    def emit(unit: Unit, cur: str, out_t: FixedType, chain: list) -> None:
        unit.nodes = [n.name for n in chain]
        fused.update(unit.nodes)
        streams[cur] = Stream(cur, out_t, int(np.prod(shape(cur)[1:])))
        alias[cur] = cur
        _, ch, *sp = shape(cur)
        unit.outputs = [layout.mark(cur, ch, int(np.prod(sp)))]
        units.append(unit)

    s, ch, pts = source(node.input[0])
    t = streams[s].type
    if op == "MaxPool":
        if any(n % 2 for n in grid) or _ints_attr(node, "kernel_shape") != [2] * len(grid):
            raise GraphError(f"{where}: the {BACKEND} backend maps max pooling by 2 along every axis of even "
                             f"sizes, got kernel {_ints_attr(node, 'kernel_shape')} on {list(grid)}")
        emit(Unit(node.name, *_kind_params("pool", [s], ch, grid)), node.output[0], t, [node])
    elif op == "Resize":
        factors = graph.resize_factors(node)
        if factors != (2,) * len(grid):
            raise GraphError(f"{where}: the {BACKEND} backend maps nearest ×2 upsampling, got ×{factors}")
        emit(Unit(node.name, *_kind_params("upsample", [s], ch, grid)), node.output[0], t, [node])
    elif op == "Concat":
        if len(node.input) != 2 or _int_attr(node, "axis") not in (1, 1 - len(x_shape)):
            raise GraphError(f"{where}: the {BACKEND} backend maps a Concat of two tensors on the channel axis")
        b, ch_b, pts_b = source(node.input[1])
        out_t = graph.types[node.output[0]]
        ta, tb = t, streams[b].type
        if pts_b != pts or min(ta.exp, tb.exp) < out_t.exp:
            raise GraphError(f"{where}: Concat of widths {pts}, {pts_b} into {out_t}")
        emit(Unit(node.name, "concat", [s, b], [], {"L": pts, "CA": ch, "CB": ch_b, "ashift": ta.exp - out_t.exp,
                                                   "bshift": tb.exp - out_t.exp}), node.output[0], out_t, [node])
    elif op == "Conv":
        _conv(graph, node, s, ch, grid, streams, units, tail, out_spec, check_shift, emit)


def _kind_params(kind: str, inputs: list[str], ch: int, grid: tuple[int, ...]) -> tuple[str, list, list, dict]:
    """Unit kind, inputs, outputs and params of a pool/upsample on a 1-D (L) or 2-D (H, W) grid."""
    if len(grid) == 1:
        return kind, inputs, [], {"C": ch, "L": grid[0]}
    return f"{kind}2d", inputs, [], {"C": ch, "H": grid[0], "W": grid[1], "L": grid[0] * grid[1]}


def _ints_attr(node, name: str) -> list[int]:
    return [int(v) for v in (attr(node, name) or [])]


def _int_attr(node, name: str) -> int | None:
    v = attr(node, name)
    return None if v is None else int(v)


def _conv(graph, node, s, ch, grid, streams, units, tail, out_spec, check_shift, emit) -> None:
    """Conv 'same' → swu (K > 1) + mvau over the window: matrix row k·C_in + c (1-D) or
    (ki·K + kj)·C_in + c (2-D) holds W[:, c, k] or W[:, c, ki, kj], the window's order (kernel taps
    major in raster order, channel minor). Bias, ReLU and Quant fuse as for MatMul."""
    where = _where(graph, node)
    x_t = streams[s].type
    w4, w_t = _codes(graph, node.input[1])
    c_out, c_in, *ks = w4.shape
    k = ks[0]
    pads = graph.axis_pads(node)
    if k % 2 == 0 or any(n != k for n in ks) or any(p != (k // 2, k // 2) for p in pads):
        raise GraphError(f"{where}: the {BACKEND} backend maps 'same' convolutions of odd square kernels (pads "
                         f"(K−1)/2 on every side), got kernel {ks} and pads {pads}")
    pts = int(np.prod(grid))
    taps = k ** len(grid)
    w = w4.transpose(*range(2, 2 + len(grid)), 1, 0).reshape(taps * c_in, c_out)
    if k > 1:
        win = f"{node.output[0]}_window"
        streams[win] = Stream(win, x_t, pts * taps * c_in)
        if len(grid) == 1:
            kind, params = "swu", {"K": k, "C": c_in, "L": pts, "pad": k // 2}
        else:
            kind, params = "swu2d", {"K": k, "C": c_in, "H": grid[0], "W": grid[1], "L": pts, "pad": k // 2}
        units.append(Unit(f"{node.name}_swu", kind, [s], [win], {**params, "mvau": node.name}, [node.name]))
        s = win
    chain = [node]
    cur = node.output[0]
    bias, b_t = None, None
    if graph.conv_bias(node) is not None:
        bias, b_t = _codes(graph, graph.conv_bias(node))
        bias = bias.reshape(-1)
    cur, relu, quant = tail(cur, chain)
    acc, out_t = _accumulator(graph, node, x_t, w, w_t, bias, b_t, cur, relu, quant, out_spec, check_shift)
    emit(Unit(node.name, "mvau", [s], [], {"K": taps * c_in, "C": c_out, "rows": pts, "kron": 1, **acc}),
         cur, out_t, chain)
