"""Trace a checked QGraph into a da4ml combinational graph (one whole field per evaluation).

Mapping (every op QGraph admits; anything else is a GraphError naming the node):

- the first (input) Quant → the traced input: one da4ml input per element of the quantized input,
  with the exact interval [qmin, qmax]·2^exp (the accelerator receives the quantized input);
- Quant (power-of-two scale 2^e, zero point 0, FLOOR) → ``quantize(x, k, i, f, SAT|SAT_SYM, TRN)``
  with k = signed, f = −e, i = bits − k + e (so the range is exactly [qmin, qmax]·2^e; narrow
  signed ranges saturate symmetrically, SAT_SYM); TRN drops LSBs = floor, as FLOOR;
- MatMul (activation @ constant) → ``x @ W``: da4ml solves each constant matrix as a
  multiplierless constant-matrix–vector multiplication (shift-and-add adder graph);
- Add → ``+`` (bias constants broadcast like numpy; activation + activation aligns binary points);
- Relu → ``relu``;
- Conv (1-D or 2-D, stride 1) → one constant-matrix product per output position: the zero-padded
  window [C_in·K] (C_in·KH·KW in 2-D) times the kernel as a [C_in·K, C_out] matrix, solved by
  da4ml like a MatMul; MaxPool → ``maximum`` of the window's taps; nearest Resize (an integer
  repeat per axis) and Concat → wiring;
- Reshape/Transpose/Squeeze/Unsqueeze/Flatten/Identity → the same numpy op on the traced array
  (pure wiring, no logic), with the graph's own semantics (``QGraph._shape_op``).

Everything is exact: da4ml tracks each value's interval and step in Decimal, so the traced logic
is bit-exact with the float64 golden, which QGraph proves exact. ``check_trace`` verifies it with
da4ml's interpreter (``comb.predict``).
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from qpde.errors import GraphError, MismatchError
from qpde.ops import OPS, SHAPE_OPS, attr
from qpde.qgraph import FixedType, QGraph, QuantParams

# Fast, good solver settings (see docs/rtl.md): search_all_decompose_dc=False keeps the solve of a
# 64×64 matrix to seconds; the result is still a shared-subexpression adder graph.
DEFAULT_SOLVER_OPTIONS = {"search_all_decompose_dc": False}


@dataclass
class Traced:
    """A traced graph: da4ml's CombLogic plus what is needed to feed it and read it back."""

    comb: object  # da4ml.types.CombLogic
    input_type: FixedType  # type of each element of the quantized input (what the accelerator gets)
    output_type: FixedType  # type of each element of the model output
    input_shape: tuple[int, ...]  # the quantized input tensor (batch 1), flattened in C order
    output_shape: tuple[int, ...]  # the model output tensor (batch 1)
    op_counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def n_outputs(self) -> int:
        return int(np.prod(self.output_shape))

    @property
    def cost_estimate(self) -> float:
        """da4ml's own LUT estimate of the combinational logic (a model, not synthesis)."""
        return float(self.comb.cost)


def _exact_const_f(const) -> int:
    """Smallest f with const·2^f an integer, exactly, for any float (da4ml's own search stops at
    |f| = 32: a constant whose scaled value needs f < −32 gets too coarse a step, and an MSB mux with
    such a constant (saturation after several layers, when da4ml's per-value scale factors have
    drifted to 2^-40 and below) silently outputs a wrong value)."""
    value = float(const)
    if value == 0.0:
        return -32  # da4ml's convention for 0
    mantissa, exp = math.frexp(abs(value))  # value = mantissa · 2^exp, mantissa in [0.5, 1)
    ints = int(mantissa * 2.0**53)
    trailing = (ints & -ints).bit_length() - 1
    return 53 - exp - trailing


@contextlib.contextmanager
def _exact_constants():
    """Use the exact `_const_f` inside da4ml while tracing (restored afterwards)."""
    from da4ml.trace import fixed_variable, tracer

    saved = fixed_variable._const_f, tracer._const_f
    fixed_variable._const_f = tracer._const_f = _exact_const_f
    try:
        yield
    finally:
        fixed_variable._const_f, tracer._const_f = saved


def kif(params: QuantParams) -> tuple[int, int, int]:
    """(sign bit, integer bits without sign, fraction bits) of a Quant with power-of-two scale."""
    k = int(params.signed)
    return k, params.bits - k + params.exp, -params.exp


def input_quant(graph: QGraph):
    """The first Quant node: the accelerator's input boundary."""
    for node in graph.nodes:
        if node.op_type == "Quant":
            return node
        if node.op_type not in SHAPE_OPS:
            raise GraphError(f"{graph._where(node)}: comes before the input quantizer; the accelerator "
                             "input must be quantized first")
    raise GraphError(f"{graph._where()}: model has no Quant node")


def trace_graph(graph: QGraph, solver_options: dict | None = None) -> Traced:
    """Walk ``graph.nodes`` and build the da4ml combinational logic of the whole model."""
    with _exact_constants():
        return _trace(graph, solver_options)


def _trace(graph: QGraph, solver_options: dict | None) -> Traced:
    from da4ml.trace import FixedVariableArray, HWConfig, comb_trace

    start = time.perf_counter()
    options = dict(DEFAULT_SOLVER_OPTIONS if solver_options is None else solver_options)
    quant0 = input_quant(graph)
    p0 = graph.quant_params(quant0, constant=False)
    from qpde.golden import run_prefix

    shape0 = run_prefix(graph, np.zeros((1, *graph.input_shape[1:])), quant0).shape
    step = 2.0**p0.exp
    inp = FixedVariableArray.from_lhs(
        low=np.full(shape0, p0.qmin * step), high=np.full(shape0, p0.qmax * step), step=np.full(shape0, step),
        hwconf=HWConfig(1, -1, -1), solver_options=options,
    )
    env = {quant0.output[0]: inp}
    counts: Counter[str] = Counter()
    started = False
    for node in graph.nodes:
        if node is quant0:
            started = True
            continue
        if not started:
            continue  # shape ops before the input quantizer: applied by the caller (golden.run_prefix)
        op = node.op_type
        dyn = [n for n in node.input if n and n not in graph.consts]
        missing = [n for n in dyn if n not in env]
        if missing:
            raise GraphError(f"{graph._where(node)}: reads {missing[0]!r}, which is not derived from the "
                             "quantized input; the RTL backend cannot implement it")
        handler = OPS[op].handler("rtl") if op in OPS else None
        if handler is None:
            raise GraphError(f"{graph._where(node)}: op {op} has no RTL mapping")
        try:
            out = handler(graph, node, env, dyn, counts)
        except GraphError:
            raise
        except Exception as exc:  # da4ml assertion or numpy shape error: name the node
            raise GraphError(f"{graph._where(node)}: da4ml could not trace it ({type(exc).__name__}: {exc})") from exc
        if not isinstance(out, FixedVariableArray):
            raise GraphError(f"{graph._where(node)}: traced result is not a traced array ({type(out).__name__})")
        env[node.output[0]] = out
        counts[op] += 1
    if graph.output_name not in env:
        raise GraphError(f"{graph._where()}: output {graph.output_name!r} is not reached from the quantized input")
    result = env[graph.output_name]
    comb = comb_trace(inp, result, keep_dead_inputs=True)
    traced = Traced(
        comb=comb,
        input_type=p0.type,
        output_type=graph.types[graph.output_name],
        input_shape=tuple(shape0),
        output_shape=tuple(result.shape),
        op_counts=dict(counts),
        seconds=time.perf_counter() - start,
    )
    traced._env, traced._inp = env, inp  # for locate_mismatch
    return traced


# ---- per-op trace handlers (qpde.ops names them) -------------------------------------------------
# handler(graph, node, env, dyn, counts) -> FixedVariableArray: env maps tensor names to traced
# arrays, dyn lists the node's non-constant inputs, counts collects per-op statistics.
def trace_quant(graph: QGraph, node, env: dict, dyn: list[str], counts: Counter):
    from da4ml.trace.ops import quantize

    x = env[dyn[0]]
    p = graph.quant_params(node, constant=False)
    k, i, f = kif(p)
    overflow = "SAT_SYM" if (p.signed and p.narrow) else "SAT"
    _check_saturation_width(graph, node, x, k, i, f)
    return quantize(x, k, i, f, overflow_mode=overflow, round_mode="TRN")


def trace_matmul(graph: QGraph, node, env: dict, dyn: list[str], counts: Counter):
    x = env[dyn[0]]
    if len(dyn) == 2:  # activation × activation (attention): multipliers
        a, b = env[dyn[0]], env[dyn[1]]
        if a.shape[0] != 1 or b.shape[0] != 1 or a.ndim != 3 or b.ndim != 3:
            raise GraphError(f"{graph._where(node)}: activation MatMul must be batched [1, M, K] @ [1, K, P]")
        return _like(x, (_like(x, a._vars[0]) @ _like(x, b._vars[0]))._vars[None])
    if len(dyn) != 1 or node.input[0] != dyn[0]:
        raise GraphError(f"{graph._where(node)}: MatMul needs activation @ constant weight")
    w = graph.consts[node.input[1]]
    if w.ndim != 2:
        raise GraphError(f"{graph._where(node)}: weight of rank {w.ndim}; only 2-D weights map")
    if not np.array_equal(w.astype(np.float32).astype(np.float64), w):
        raise GraphError(f"{graph._where(node)}: weight not exact in float32 (da4ml's solver input)")
    return x @ w


def trace_mul(graph: QGraph, node, env: dict, dyn: list[str], counts: Counter):
    """By a power-of-two constant (QGraph checked): a shift, i.e. wiring."""
    return env[dyn[0]] * float(graph.consts[next(n for n in node.input if n in graph.consts)])


def trace_add(graph: QGraph, node, env: dict, dyn: list[str], counts: Counter):
    if len(dyn) == 2:
        return env[dyn[0]] + env[dyn[1]]
    const = graph.consts[graph.add_const(node)]
    exp = graph.types[dyn[0]].exp
    if _floored_at_or_above(graph, node.output[0], exp):
        const = np.floor(const / 2.0**exp) * 2.0**exp  # exact: see _floored_at_or_above
        counts["bias_truncated"] += 1
    return env[dyn[0]] + const


def trace_relu(graph: QGraph, node, env: dict, dyn: list[str], counts: Counter):
    from da4ml.trace.ops import relu

    x = env[dyn[0]]
    if _only_unsigned_quants(graph, node.output[0]):
        counts["relu_folded"] += 1
        return x  # the unsigned Quant that follows saturates at 0 itself (see _only_unsigned_quants)
    return relu(x)


def trace_conv(graph: QGraph, node, env: dict, dyn: list[str], counts: Counter):
    return _conv(graph, node, env[dyn[0]])


def trace_maxpool(graph: QGraph, node, env: dict, dyn: list[str], counts: Counter):
    return _maxpool(env[dyn[0]], [int(k) for k in attr(node, "kernel_shape")])


def trace_resize(graph: QGraph, node, env: dict, dyn: list[str], counts: Counter):
    """Nearest, integer repeat per spatial axis (QGraph checked): wiring."""
    x = env[dyn[0]]
    out = x._vars
    for axis, factor in enumerate(graph.resize_factors(node), start=2):
        out = np.repeat(out, factor, axis=axis)
    return _like(x, out)


def trace_concat(graph: QGraph, node, env: dict, dyn: list[str], counts: Counter):
    x = env[dyn[0]]
    return _like(x, np.concatenate([env[n]._vars for n in node.input], axis=int(attr(node, "axis"))))


def trace_shape(graph: QGraph, node, env: dict, dyn: list[str], counts: Counter):
    """Reshape/Transpose/Squeeze/Unsqueeze/Flatten/Identity: the same op on the traced array (wiring)."""
    return graph._shape_op(node, env[dyn[0]], batch=None)


def _like(x, variables: np.ndarray):
    """A traced array of `variables` (da4ml FixedVariables) with x's solver settings."""
    from da4ml.trace import FixedVariableArray

    return FixedVariableArray(variables, x.solver_options, hwconf=x.hwconf)


def _conv(graph: QGraph, node, x):
    """ONNX Conv (1-D or 2-D, stride 1, no groups; QGraph checked) on x [1, C_in, *S] as one
    constant-matrix product per output position: the window [C_in·ΠK] (zero-padded at the borders)
    times the kernel as a [C_in·ΠK, C_out] matrix, so da4ml solves it like a MatMul. The golden's
    conv sums the same exact products."""
    from da4ml.trace import FixedVariable

    w = graph.consts[node.input[1]]
    if not np.array_equal(w.astype(np.float32).astype(np.float64), w):
        raise GraphError(f"{graph._where(node)}: weight not exact in float32 (da4ml's solver input)")
    bias = graph.consts[node.input[2]] if len(node.input) > 2 and node.input[2] else None
    c_out, c_in, *kernel = w.shape
    zero = FixedVariable.from_const(0.0, hwconf=x.hwconf)
    padded = np.pad(x._vars[0], [(0, 0)] + graph.axis_pads(node), constant_values=zero)
    out_shape = [n - k + 1 for n, k in zip(padded.shape[1:], kernel)]
    # [Πout, C_in·ΠK]: one row per output position, the window flattened c-major like the kernel below
    windows = np.stack([padded[(slice(None), *(slice(p, p + k) for p, k in zip(pos, kernel)))].reshape(-1)
                        for pos in np.ndindex(*out_shape)])
    y = _like(x, windows) @ w.reshape(c_out, -1).T  # [Πout, C_out]
    if bias is not None:
        y = y + bias.reshape(1, c_out)
    return _like(x, y._vars.T.reshape(1, c_out, *out_shape))


def _maxpool(x, kernel: list[int]):
    """Non-overlapping max pooling over the last len(kernel) axes: the maximum of the window's taps
    (ONNX floor mode, as the golden: a ragged tail is dropped)."""
    n_axes = len(kernel)
    n_out = [n // k for n, k in zip(x.shape[-n_axes:], kernel)]
    taps = [x[(..., *(slice(t, o * k, k) for t, o, k in zip(tap, n_out, kernel)))] for tap in np.ndindex(*kernel)]
    return functools.reduce(np.maximum, taps)


# da4ml 0.6 saturates by comparing the value (on the target grid) with the bounds through an MSB
# multiplexer, which is exact only for operands of at most 32 bits (measured: a 33-bit operand makes
# SAT return a wrapped value, silently, in da4ml's interpreter). Wider ones are refused.
MAX_SATURATION_BITS = 32


def _check_saturation_width(graph: QGraph, node, x, k: int, i: int, f: int) -> None:
    xk, xi, xf = (np.asarray(a) for a in x.kif)
    needs_saturation = (xk > k) | (xi > i)
    if not needs_saturation.any():
        return  # da4ml returns the value unchanged (or only drops fraction bits): no comparator
    bits = int((xk + xi + np.minimum(xf, f))[needs_saturation].max())
    if bits > MAX_SATURATION_BITS:
        raise GraphError(f"{graph._where(node)}: saturating a {bits}-bit value to {k + i + f} bits; da4ml's "
                         f"saturation is exact only up to {MAX_SATURATION_BITS}-bit operands, so the RTL backend "
                         "cannot build this variant (use activations of at most 16 bits, e.g. w8a16)")


def _floored_at_or_above(graph: QGraph, tensor: str, exp: int) -> bool:
    """True when every use of `tensor` reaches a FLOOR Quant with scale ≥ 2^exp through only
    Relu and shape ops.

    Then a bias b added to an activation x on the 2^exp grid may be replaced by
    b' = floor(b/2^exp)·2^exp without changing any Quant output: z = x + b' is on the grid, the
    dropped part b − b' is in [0, 2^exp), and the next multiple of a coarser grid step above z is at
    least 2^exp above z, so floor((z + b − b')/2^e) = floor(z/2^e) for every e ≥ exp; Relu
    commutes with that floor (floor(max(y, 0)/s) = max(floor(y/s), 0)) and saturation is applied
    after it. The adders and ReLUs then carry only the bits that can reach an output."""
    if tensor == graph.output_name:
        return False
    for user in graph.consumers.get(tensor, []):
        if user.op_type == "Quant":
            if graph.quant_params(user, constant=False).exp < exp:
                return False
        elif user.op_type == "Relu" or user.op_type in SHAPE_OPS:
            if not _floored_at_or_above(graph, user.output[0], exp):
                return False
        else:
            return False
    return True


def _only_unsigned_quants(graph: QGraph, tensor: str) -> bool:
    """True when every use of `tensor` is an unsigned Quant (range [0, qmax]).

    Then Relu needs no logic of its own: clip(floor(max(y, 0)/s), 0, qmax) =
    clip(floor(y/s), 0, qmax), so the Quant's saturation at 0 (applied after dropping the LSBs, on
    fewer bits) is the ReLU."""
    users = graph.consumers.get(tensor, [])
    return bool(users) and tensor != graph.output_name and all(
        u.op_type == "Quant" and graph.quant_params(u, constant=False).qmin == 0 for u in users)


def comb_inputs(graph: QGraph, x: np.ndarray) -> np.ndarray:
    """Raw float model inputs [n, N] → the accelerator's input rows (quantized, flattened), exact."""
    from qpde.golden import quantized_input

    q = quantized_input(graph, np.asarray(x, dtype=np.float64))
    return q.reshape(q.shape[0], -1)


def predict(graph: QGraph, traced: Traced, x: np.ndarray) -> np.ndarray:
    """da4ml's bit-exact interpreter on raw inputs; returns outputs shaped like golden.run."""
    x = np.asarray(x, dtype=np.float64)
    out = np.asarray(traced.comb.predict(comb_inputs(graph, x)), dtype=np.float64)
    return out.reshape(x.shape[0], *traced.output_shape[1:])


def locate_mismatch(graph: QGraph, traced: Traced, x: np.ndarray) -> str | None:
    """Name the first node whose traced output differs from the golden on x (None if none)."""
    from da4ml.trace import comb_trace

    from qpde.golden import run

    golden = run(graph, x, keep=True)
    rows = comb_inputs(graph, x)
    for node in graph.nodes:
        name = node.output[0]
        # Quant outputs are the exact boundaries (truncated biases change only what lies between).
        if name not in traced._env or (node.op_type != "Quant" and name != graph.output_name):
            continue
        arr = traced._env[name]
        with _exact_constants():
            comb = comb_trace(traced._inp, arr, keep_dead_inputs=True)
        got = np.asarray(comb.predict(rows), dtype=np.float64).reshape(len(x), -1)
        want = golden[name].reshape(len(x), -1)
        if not np.array_equal(got, want):
            return f"{node.name} ({node.op_type})"
    return None


def check_trace(graph: QGraph, traced: Traced, x: np.ndarray) -> None:
    """Raise MismatchError unless the interpreter equals the golden exactly on x."""
    from qpde.golden import run

    got = predict(graph, traced, x)
    want = run(graph, x)
    if got.shape != want.shape:
        raise MismatchError(f"traced output shape {got.shape} != golden {want.shape}")
    bad = np.flatnonzero(~np.all((got == want).reshape(len(x), -1), axis=1))
    if bad.size:
        i = int(bad[0])
        raise MismatchError(f"da4ml trace differs from the golden on {bad.size}/{len(x)} samples "
                            f"(first: sample {i}, got {got[i].ravel()[:8]}, want {want[i].ravel()[:8]})")
