"""Integer cost: parameters, MACs and BOPs per layer and in total.

MACs count the nonzero weights applied at every position (a block-diagonal mode mixing, a DFT row
of zeros or a weight quantized to 0 costs nothing in hardware). BOPs = MACs × weight bits ×
input-activation bits (a product of two activations, as in attention: the two activations' bits).

Two sources, one definition:
- quantized variants: `graph_cost` counts the exported QONNX (QGraph), i.e. the nonzero *quantized*
  weights, with the bit widths of the Quant nodes that produced each operand. It equals qonnx's
  `inference_cost` (`total_macs`, `total_bops`; with `discount_sparsity=False` the dense figures)
  on every model qpde exports (tests/test_cost.py runs it);
- float variants: `total_cost` counts the PyTorch model's nonzero float weights at 32 × 32 bits (the
  paper's convention; there is no QONNX graph).
`macs_dense`/`bops_dense` count every weight, zero or not (the structure alone).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from qpde.errors import GraphError
from qpde.quant import QuantSpec

COST_VERSION = "2"  # quantized nonzeros from QONNX + dense columns (part of the metrics cache key)
FLOAT_BITS = 32
# Ops that pass values through unchanged: an operand keeps the bit width of the Quant behind them
# (qonnx's InferDataTypes rule; Concat takes its first input's, as qonnx does).
PASS_THROUGH_OPS = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "MaxPool", "Resize",
                    "Concat")


@dataclass(frozen=True)
class LayerCost:
    name: str
    params: int
    macs: int
    bops: int
    macs_dense: int = 0
    bops_dense: int = 0


def layer_costs(model: nn.Module, spec: QuantSpec) -> list[LayerCost]:
    """Run one sample through the model and count every linear layer it applies."""
    w_bits, a_bits = spec.cost_bits
    costs: list[LayerCost] = []
    hooks = []

    def hook(name, module):
        def record(_module, inputs, output):
            if isinstance(module, (nn.Conv1d, nn.Conv2d)):  # every output position applies the whole kernel
                positions = int(output.shape[0] * output.shape[2:].numel())
            else:
                positions = int(inputs[0].numel() // module.in_features)
            weight = module.weight.detach()
            macs = int((weight != 0).sum()) * positions
            dense = weight.numel() * positions
            trainable = _trainable_params(module)
            bits = w_bits * a_bits
            costs.append(LayerCost(name, trainable, macs, macs * bits, dense, dense * bits))

        return record

    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            hooks.append(module.register_forward_hook(hook(name, module)))
    try:
        with torch.no_grad():
            model.eval()
            model(torch.zeros(1, model.points))
    finally:
        for handle in hooks:
            handle.remove()
    for name, module in model.named_modules():  # products of two activations (attention)
        macs = getattr(module, "activation_macs", 0)
        if macs:
            bops = macs * a_bits * a_bits  # activations have no zeros known in advance: dense = sparse
            costs.append(LayerCost(f"{name}.activation_products", 0, macs, bops, macs, bops))
    return costs


def _trainable_params(module: nn.Module) -> int:
    # Parametrized weights (mode mixing) count their raw parameters; fixed DFT matrices count 0.
    return sum(
        p.numel() for n, p in module.named_parameters() if p.requires_grad and "scaling" not in n and "quant" not in n
    )


def total_cost(model: nn.Module, spec: QuantSpec) -> dict[str, int]:
    """Counts of the PyTorch model: the figures of float variants (and an a-priori estimate before
    training); quantized variants take theirs from `graph_cost` of the exported QONNX."""
    costs = layer_costs(model, spec)
    keys = ("params", "macs", "bops", "macs_dense", "bops_dense")
    return {key: sum(getattr(c, key) for c in costs) for key in keys}


# ---- counts of an exported QONNX graph (quantized variants, user files) ---------------------------
def operand_bits(graph) -> dict[str, int]:
    """Bit width per tensor for BOPs: a Quant's bit width, carried through pass-through ops;
    any other computed tensor (a sum, a product, a ReLU without requantization, the float graph
    input) counts as 32 bits, as qonnx's datatype inference does."""
    bits: dict[str, int] = dict(graph.const_bits)
    for node in graph.nodes:
        if node.op_type == "Quant":
            bits[node.output[0]] = graph.quant_params(node, constant=False).bits
        elif node.op_type in PASS_THROUGH_OPS:
            bits[node.output[0]] = bits.get(node.input[0], FLOAT_BITS)
    return bits


def graph_layer_costs(graph) -> list[LayerCost]:
    """One entry per MatMul and Conv of a QGraph (every other op qpde admits costs no MAC: Add, Mul
    by 2^k, Relu, Quant, MaxPool, nearest Resize, Concat and shape ops).

    - MatMul x·W: rows × nonzero(W) MACs (rows = output elements / W's columns);
    - MatMul of two activations: every product counts (K × output elements), at both activations' bits;
    - Conv: nonzero(W) × batch × output positions.
    Weights are the quantized constants (QGraph.consts), so a weight quantized to 0 costs nothing."""
    bits = operand_bits(graph)
    costs = []
    for node in graph.nodes:
        if node.op_type not in ("MatMul", "Conv"):
            continue
        shape_in, shape_out = (graph.model.get_tensor_shape(t) for t in (node.input[0], node.output[0]))
        if shape_in is None or shape_out is None:
            raise GraphError(f"{graph._where(node)}: tensor shape unknown, cannot count MACs (run shape inference)")
        x_bits = bits.get(node.input[0], FLOAT_BITS)
        w_name = node.input[1]
        w_bits = bits.get(w_name, FLOAT_BITS)
        if node.op_type == "Conv":
            weight = graph.consts[w_name]
            positions = int(shape_out[0]) * math.prod(int(d) for d in shape_out[2:])
            dense, macs = weight.size * positions, int(np.count_nonzero(weight)) * positions
        else:
            dense = int(shape_in[-1]) * math.prod(int(d) for d in shape_out)
            if w_name in graph.consts:
                weight = graph.consts[w_name]
                macs, remainder = divmod(dense * int(np.count_nonzero(weight)), weight.size)
                if remainder:
                    raise GraphError(f"{graph._where(node)}: weight {weight.shape} does not tile the output "
                                     f"{shape_out}; cannot count MACs")
            else:  # activation × activation: no zero is known in advance
                macs = dense
        costs.append(LayerCost(node.name, 0, macs, macs * x_bits * w_bits, dense, dense * x_bits * w_bits))
    return costs


def graph_cost(graph) -> dict[str, int]:
    """MACs and BOPs (sparse: nonzero quantized weights; dense: every weight) of a QGraph."""
    costs = graph_layer_costs(graph)
    return {key: sum(getattr(c, key) for c in costs) for key in ("macs", "bops", "macs_dense", "bops_dense")}
