"""MACs and BOPs: quantized variants are counted on their QONNX (nonzero *quantized* weights) and
equal qonnx's own `inference_cost`, exactly, on every model kind qpde exports; dense counts (every
weight) equal qonnx's with `discount_sparsity=False` and the PyTorch model's structure."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from qpde.cost import graph_cost, graph_layer_costs, layer_costs, total_cost
from qpde.export import export_model
from qpde.models.fno import FNO1d, FNO2d, FNOConfig
from qpde.models.transformer import Transformer1d, TransformerConfig
from qpde.models.unet import UNet1d, UNet2d, UNetConfig
from qpde.qgraph import QGraph
from qpde.quant import parse_scenario
from tests.conftest import calibrated

MODELS = {  # kind → (constructor, resolution, points)
    "fno": (lambda spec: FNO1d(16, FNOConfig(width=4, modes=4, layers=2, proj=8), spec), 16),
    "unet": (lambda spec: UNet1d(16, UNetConfig(depth=2, features=4, kernel=3), spec), 16),
    "transformer": (lambda spec: Transformer1d(16, TransformerConfig(dim=4, layers=1, mlp=8), spec), 16),
    "fno2d": (lambda spec: FNO2d(8, FNOConfig(width=2, modes=3, layers=1, proj=4), spec), 64),
    "unet2d": (lambda spec: UNet2d(8, UNetConfig(depth=1, features=2, kernel=3), spec), 64),
}
CASES = [("fno", "w4a8"), ("fno", "w8a8"), ("unet", "w4a8"), ("transformer", "w4a8"), ("fno2d", "w4a4"),
         ("unet2d", "w4a8")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("cost")
    cache = {}

    def get(kind: str, scenario: str):
        if (kind, scenario) not in cache:
            make, points = MODELS[kind]
            torch.manual_seed(0)
            model = calibrated(make(parse_scenario(scenario)), points)
            cache[kind, scenario] = (model, export_model(model, points, root / f"{kind}-{scenario}.qonnx.onnx"))
        return cache[kind, scenario]

    return get


def _qonnx_cost(path, discount_sparsity=True):
    from qonnx.util.inference_cost import inference_cost

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return inference_cost(str(path), discount_sparsity=discount_sparsity, cost_breakdown=True)


@pytest.mark.parametrize("kind, scenario", CASES)
def test_macs_and_bops_equal_qonnx_inference_cost(exported, kind, scenario):
    model, path = exported(kind, scenario)
    graph = QGraph(path)
    ours = graph_cost(graph)
    sparse, dense = _qonnx_cost(path)["total_cost"], _qonnx_cost(path, False)["total_cost"]
    assert (sparse["total_macs"], sparse["total_bops"]) == (ours["macs"], ours["bops"])
    assert (dense["total_macs"], dense["total_bops"]) == (ours["macs_dense"], ours["bops_dense"])
    # Ops qonnx does not know cost no MAC in qpde either: nearest Resize (a repeat) and shape ops.
    unsupported = set(eval(sparse["unsupported"]))  # qonnx writes the set as its repr
    assert unsupported <= {"Resize", "Squeeze", "Unsqueeze"} and ("Resize" in unsupported) == kind.startswith("unet")
    # Dense counts are the structure: the PyTorch model's every weight at every position.
    torch_counts = total_cost(model, parse_scenario(scenario))
    assert (torch_counts["macs_dense"], torch_counts["bops_dense"]) == (ours["macs_dense"], ours["bops_dense"])
    assert ours["macs"] <= torch_counts["macs"] <= ours["macs_dense"]  # quantization only adds zeros


@pytest.mark.parametrize("kind, scenario", [("fno", "w4a8"), ("unet", "w4a8"), ("transformer", "w4a8")])
def test_per_layer_counts_equal_qonnx_per_node(exported, kind, scenario):
    """Node by node (qonnx names nodes as qpde's export does), with the bit widths in qonnx's key."""
    _, path = exported(kind, scenario)
    graph = QGraph(path)
    per_node = _qonnx_cost(path)["node_cost"]
    w_bits, a_bits = parse_scenario(scenario).cost_bits
    ours = graph_layer_costs(graph)
    assert ours and {c.name for c in ours} == set(per_node)
    for cost in ours:
        node = next(n for n in graph.nodes if n.name == cost.name)
        weighted = node.input[1] in graph.consts
        key = f"op_mac_SCALEDINT<{a_bits}>_SCALEDINT<{w_bits if weighted else a_bits}>"
        assert {k: v for k, v in per_node[cost.name].items() if k.startswith("op_mac")} == {key: cost.macs}


def test_attention_products_are_counted_dense_at_activation_bits(exported):
    """KᵀV and Q·(KᵀV) multiply two activations: qpde counts every product (K × output elements, no
    zero is known in advance) at a_bits × a_bits. qonnx counts these MatMuls the same way: dense
    (its sparsity discount applies only to a constant operand), keyed by both activations' types."""
    model, path = exported("transformer", "w4a8")
    graph = QGraph(path)
    attention = [c for c in graph_layer_costs(graph)
                 if all(n not in graph.consts for n in next(x for x in graph.nodes if x.name == c.name).input)]
    n, dim = 16, 4
    assert [c.macs for c in attention] == [n * dim * dim, n * dim * dim]  # KᵀV: [d, N]·[N, d]; Q·KV: [N, d]·[d, d]
    assert all(c.macs == c.macs_dense and c.bops == c.macs * 8 * 8 for c in attention)
    per_node = _qonnx_cost(path)["node_cost"]
    assert all(per_node[c.name].get("op_mac_SCALEDINT<8>_SCALEDINT<8>") == c.macs for c in attention)
    torch_products = [c for c in layer_costs(model, parse_scenario("w4a8")) if c.name.endswith("activation_products")]
    assert sum(c.macs for c in torch_products) == sum(c.macs for c in attention)


def test_weights_quantized_to_zero_cost_nothing(exported):
    """The FNO's 4-bit DFT and mixing matrices have zeros their float matrices have not: the w4a8
    count is below the float model's nonzero count (the 11.6% gap of issue 12 on the default FNO)."""
    model, path = exported("fno", "w4a8")
    graph = QGraph(path)
    assert graph_cost(graph)["macs"] < total_cost(model, parse_scenario("w4a8"))["macs"]
    for cost in graph_layer_costs(graph):  # rows × nonzero quantized weights, layer by layer
        node = next(n for n in graph.nodes if n.name == cost.name)
        weight = graph.consts[node.input[1]]
        assert cost.macs * weight.size == cost.macs_dense * np.count_nonzero(weight)


def test_float_variants_keep_the_float_count(exported):
    """fp32 has no QONNX: MACs are the PyTorch model's nonzero float weights at every position, at
    32 × 32 bits; the dense columns count every weight, the same structure as a quantized export."""
    spec = parse_scenario("fp32")
    counts = total_cost(MODELS["fno"][0](spec), spec)
    assert counts["bops"] == counts["macs"] * 32 * 32 and counts["bops_dense"] == counts["macs_dense"] * 32 * 32
    assert counts["macs"] < counts["macs_dense"]  # the DFT's exact zeros (sin 0, sin πk) cost nothing
    assert counts["macs_dense"] == graph_cost(QGraph(exported("fno", "w4a8")[1]))["macs_dense"]
