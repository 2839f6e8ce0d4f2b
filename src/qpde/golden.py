"""The exact golden executor: runs a checked QGraph in float64 with no rounding outside Quant nodes.

QGraph's analysis proves every intermediate value is an integer · 2^k below 2^53 LSBs, so float64
arithmetic is exact and the outputs are the mathematically exact quantized model."""

from __future__ import annotations

import numpy as np

from qpde.errors import GraphError
from qpde.qgraph import SHAPE_OPS, QGraph, _attr


def run(graph: QGraph, x: np.ndarray, *, keep: bool = False) -> np.ndarray | dict[str, np.ndarray]:
    """Execute on a batch of raw (float) model inputs shaped [n, *input_shape[1:]].

    With keep=True, return every dynamic tensor by name (to locate a first mismatch)."""
    x = np.asarray(x, dtype=np.float64)
    expected = graph.input_shape[1:]
    if tuple(x.shape[1:]) != tuple(expected):
        raise GraphError(f"input shape {tuple(x.shape)} does not match the model's [n, {', '.join(map(str, expected))}]")
    batch = x.shape[0]
    env: dict[str, np.ndarray] = {graph.input_name: x}
    for node in graph.nodes:
        args = [env[n] if n in env else graph.consts[n] for n in node.input if n]
        op = node.op_type
        if op == "Quant":
            out = graph.quant_params(node, constant=False).apply(args[0])
        elif op == "MatMul" and all(n not in graph.consts for n in node.input):
            out = matmul_aa(args[0], args[1])
        elif op == "MatMul":
            out = args[0] @ args[1]
        elif op == "Mul":  # by a constant power of two (QGraph checked): moves the binary point only
            out = args[0] * args[1]
        elif op == "Add":
            out = args[0] + args[1]
        elif op == "Relu":
            out = np.maximum(args[0], 0.0)
        elif op == "Conv":
            out = conv(args[0], args[1], args[2] if len(args) > 2 else None, graph.conv_pads(node))
        elif op == "MaxPool":
            out = maxpool(args[0], [int(k) for k in _attr(node, "kernel_shape")])
        elif op == "Resize":
            out = args[0]
            for axis, factor in enumerate(graph.resize_factors(node), start=2):
                out = np.repeat(out, factor, axis=axis)
        elif op == "Concat":
            out = np.concatenate(args, axis=int(_attr(node, "axis")))
        elif op in SHAPE_OPS:
            out = graph._shape_op(node, args[0], batch=batch)
        else:  # QGraph admits nothing else; keep the executor honest if that changes
            raise GraphError(f"golden: no executor for {op} ({node.name})")
        env[node.output[0]] = out
    return env if keep else env[graph.output_name]


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


conv1d = conv  # the 1-D case: pads (left, right)


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


def maxpool(x: np.ndarray, kernel: list[int]) -> np.ndarray:
    """Non-overlapping max pooling over the last len(kernel) axes (ONNX floor mode: a ragged tail is
    dropped). One axis at a time: the max of a window is the max of its per-axis maxima."""
    for axis, k in enumerate(kernel, start=x.ndim - len(kernel)):
        n_out = x.shape[axis] // k
        x = np.take(x, np.arange(n_out * k), axis=axis)
        x = x.reshape(*x.shape[:axis], n_out, k, *x.shape[axis + 1 :]).max(axis=axis + 1)
    return x


def quantized_input(graph: QGraph, x: np.ndarray) -> np.ndarray:
    """The model input after its first Quant (what the accelerator receives), exactly."""
    quant = next(n for n in graph.nodes if n.op_type == "Quant")
    params = graph.quant_params(quant, constant=False)
    shaped = run_prefix(graph, x, quant)
    return params.apply(shaped)


def run_prefix(graph: QGraph, x: np.ndarray, stop) -> np.ndarray:
    """Apply the shape ops that precede node `stop` (e.g. the Unsqueeze before the input Quant)."""
    value = np.asarray(x, dtype=np.float64)
    for node in graph.nodes:
        if node is stop:
            return value
        if node.op_type not in SHAPE_OPS:
            raise GraphError(f"node {node.name} ({node.op_type}) comes before the input quantizer")
        value = graph._shape_op(node, value, batch=value.shape[0])
    raise GraphError("model has no Quant node")
