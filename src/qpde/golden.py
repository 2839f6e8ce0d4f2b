"""The exact golden executor: runs a checked QGraph in float64 with no rounding outside Quant nodes.

QGraph's analysis proves every intermediate value is an integer · 2^k below 2^53 LSBs, so float64
arithmetic is exact and the outputs are the mathematically exact quantized model. Each op's
execution is its `golden` entry in qpde.ops (where the exactness argument of each kernel is written)."""

from __future__ import annotations

import numpy as np

from qpde.errors import GraphError
from qpde.ops import OPS, SHAPE_OPS
from qpde.qgraph import QGraph


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
        if node.op_type not in OPS:  # QGraph admits nothing else; keep the executor honest if that changes
            raise GraphError(f"golden: no executor for {node.op_type} ({node.name})")
        args = [env[n] if n in env else graph.consts[n] for n in node.input if n]
        env[node.output[0]] = OPS[node.op_type].golden(graph, node, args, batch)
    return env if keep else env[graph.output_name]


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
