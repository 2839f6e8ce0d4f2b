"""Integer cost: parameters, MACs and BOPs per layer and in total.

MACs count the nonzero weights applied at every position (a block-diagonal mode mixing or a DFT
row of zeros costs nothing in hardware). BOPs = MACs × weight bits × input-activation bits (a product
of two activations, as in attention: × activation bits twice), with float counted as 32 × 32 bits
(the paper's convention)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from qpde.quant import QuantSpec


@dataclass(frozen=True)
class LayerCost:
    name: str
    params: int
    macs: int
    bops: int


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
            trainable = _trainable_params(module)
            costs.append(LayerCost(name, trainable, macs, macs * w_bits * a_bits))

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
            costs.append(LayerCost(f"{name}.activation_products", 0, macs, macs * a_bits * a_bits))
    return costs


def _trainable_params(module: nn.Module) -> int:
    # Parametrized weights (mode mixing) count their raw parameters; fixed DFT matrices count 0.
    return sum(
        p.numel() for n, p in module.named_parameters() if p.requires_grad and "scaling" not in n and "quant" not in n
    )


def total_cost(model: nn.Module, spec: QuantSpec) -> dict[str, int]:
    costs = layer_costs(model, spec)
    return {
        "params": sum(c.params for c in costs),
        "macs": sum(c.macs for c in costs),
        "bops": sum(c.bops for c in costs),
    }
