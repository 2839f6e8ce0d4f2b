"""Round-half-up activations, the state width and the dead-ReLU scale floor.

Round-half-up is trained in Brevitas (`qpde.quant.RoundHalfUpSte`) and exported as FLOOR Quants
with half an LSB added before (`qpde.passes.round_half_up_to_floor`): the identities behind the
rewrite, the exported graph against Brevitas and QONNX, and hls4ml C-sim and the da4ml trace
against the golden, all with np.array_equal."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import brevitas.nn as qnn

from qpde import golden
from qpde.export import export_model
from qpde.models.fno import FNO1d
from qpde.qgraph import QGraph, QuantParams
from qpde.quant import RoundActQuant, RoundUnsignedActQuant, act_kwargs, min_scale, parse_scenario
from tests.conftest import TINY, TINY_N, assert_csim_exact, assert_golden_equals_brevitas_and_qonnx, calibrated, \
    edge_inputs, exported_per_scenario


def round_half_up(v: np.ndarray) -> np.ndarray:
    """Round half up by definition, without floor: the nearest integer, ties towards +inf."""
    lower = np.floor(v)
    frac = v - lower
    return np.where(frac >= 0.5, lower + 1, lower)


def _quant(x, exp, qmin, qmax, *, rounding):
    v = np.asarray(x, dtype=np.float64) / 2.0**exp
    q = round_half_up(v) if rounding == "round" else np.floor(v)
    return np.clip(q, qmin, qmax) * 2.0**exp


def _grid_values(exp: int, qmin: int, qmax: int, fine: int = 4) -> np.ndarray:
    """Every value on a grid 2^fine times finer than the quantizer's, over and beyond its range:
    every tie (k + 1/2), every value just below and above one, saturation on both sides."""
    step = 2.0 ** (exp - fine)
    return np.arange((qmin - 3) * 2**fine, (qmax + 3) * 2**fine + 1) * step


@pytest.mark.parametrize("bits,signed,narrow,exp", [(4, True, False, -2), (4, True, True, 0), (8, True, False, -5),
                                                    (3, False, False, -1), (8, False, False, 3)])
def test_round_half_up_is_floor_of_x_plus_half_lsb(bits, signed, narrow, exp):
    """round_half_up(x/s)·s == floor((x + s/2)/s)·s, saturated the same, at every tie and beyond
    both ends of the range; QpdeParams' FLOOR executor computes the right-hand side."""
    params = QuantParams(exp, bits, signed, narrow, "FLOOR")
    x = _grid_values(exp, params.qmin, params.qmax)
    ties = x[(x / 2.0**exp) % 1 == 0.5]
    assert ties.size >= params.qmax - params.qmin + 6
    want = _quant(x, exp, params.qmin, params.qmax, rounding="round")
    assert np.array_equal(params.apply(x + 2.0 ** (exp - 1)), want)
    assert np.array_equal(round_half_up(np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5])), [-2, -1, 0, 1, 2, 3])


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("exp", [-3, 0, 2])
def test_half_lsb_moves_across_relu(signed, exp):
    """Q_floor(relu(x + s/2)) == Q_round(relu(x)) for every x, signed or unsigned Quant after the
    ReLU: the half LSB can go into the bias before the ReLU. (x < 0: relu(x + s/2) ∈ [0, s/2) floors
    to 0 like round(0); ties just below 0 are the case to watch.)"""
    bits = 4
    params = QuantParams(exp, bits, signed, False, "FLOOR")
    x = _grid_values(exp, params.qmin - 2, params.qmax, fine=6)
    assert np.any((x < 0) & (x >= -2.0 ** (exp - 1)))  # the narrow band below 0
    want = _quant(np.maximum(x, 0), exp, params.qmin, params.qmax, rounding="round")
    assert np.array_equal(params.apply(np.maximum(x + 2.0 ** (exp - 1), 0)), want)


@pytest.mark.parametrize("quant,signed", [(RoundActQuant, True), (RoundUnsignedActQuant, False)])
def test_brevitas_round_quantizer_rounds_half_up(quant, signed):
    """qpde's Brevitas activation quantizer (training) rounds half up at ties and saturates."""
    torch.manual_seed(0)
    layer = qnn.QuantIdentity(act_quant=quant, bit_width=4) if signed else qnn.QuantReLU(act_quant=quant, bit_width=4)
    layer.train()
    for _ in range(40):
        layer(torch.randn(256) * 3)
    layer.eval()
    scale = float(layer.act_quant.scale())
    exp = int(np.log2(scale))
    assert scale == 2.0**exp
    qmin, qmax = (-8, 7) if signed else (0, 15)
    x = _grid_values(exp, qmin, qmax).astype(np.float32)
    with torch.no_grad():
        got = layer(torch.from_numpy(x)).numpy().astype(np.float64)
    want = _quant(np.maximum(x, 0) if not signed else x, exp, qmin, qmax, rounding="round")
    assert np.array_equal(got, want)


def _round_fno(scenario: str, seed: int = 0, state_bits: int | None = 16) -> FNO1d:
    torch.manual_seed(seed)
    spec = parse_scenario(scenario).with_options("round", state_bits)
    return calibrated(FNO1d(TINY_N, TINY, spec), TINY_N)


@pytest.fixture(scope="module")
def round_qonnx(tmp_path_factory):
    return exported_per_scenario(tmp_path_factory.mktemp("round"), _round_fno, TINY_N)


@pytest.mark.parametrize("scenario", ["w4a4", "w4a8", "w8a8"])
def test_round_export_equals_brevitas_and_qonnx(round_qonnx, scenario):
    """The trained round-half-up Brevitas model == its exported FLOOR graph (golden and QONNX's
    executor), bit for bit, on edge and random inputs."""
    model, path = round_qonnx(scenario)
    graph = QGraph(path)
    quants = [n for n in graph.nodes if n.op_type == "Quant"]
    assert {graph.quant_params(n, constant=False).rounding for n in quants} == {"FLOOR"}
    assert any(n.op_type == "Add" and n.name.endswith("_half_lsb") for n in graph.model.graph.node) or \
        any(n.op_type == "Add" for n in graph.nodes)
    assert_golden_equals_brevitas_and_qonnx(model, path, stride=7)
    # and the model really rounds: the FLOOR model with the same weights differs
    floor_model = FNO1d(TINY_N, TINY, parse_scenario(scenario).with_options("floor", 16))
    floor_model.load_state_dict(model.state_dict())
    floor_model.eval()
    x = torch.from_numpy(edge_inputs(graph).astype(np.float32))
    with torch.no_grad():
        assert not torch.equal(floor_model(x), model(x))


def test_state_quantizers_have_state_bits(round_qonnx):
    model, path = round_qonnx("w4a4")
    assert model.in_q.act_quant.bit_width() == 16 and model.out_q.act_quant.bit_width() == 16
    assert model.delta_q.act_quant.bit_width() == 16 and model.lift_q.act_quant.bit_width() == 4
    graph = QGraph(path)
    bits = [graph.quant_params(n, constant=False).bits for n in graph.nodes if n.op_type == "Quant"]
    assert bits[0] == 16 and bits[-1] == 16 and set(bits[1:-2]) == {4}


@pytest.mark.parametrize("scenario", ["w4a4", "w8a8"])
def test_round_export_csim_exact(round_qonnx, scenario, tmp_path):
    """hls4ml C-sim of the round-half-up FNO (FLOOR + half LSB: Dense biases and a scale-1
    BatchNormalization after the activation adds) == golden, bit for bit."""
    _, path = round_qonnx(scenario)
    graph = QGraph(path)
    x = edge_inputs(graph, n_random=64)
    assert_csim_exact(graph, tmp_path / "hls", x)


@pytest.mark.parametrize("scenario", ["w4a4", "w8a8"])
def test_round_export_rtl_trace_exact(round_qonnx, scenario):
    from qpde.backends.rtl import default_check_inputs
    from qpde.backends.rtl.trace import predict, trace_graph

    _, path = round_qonnx(scenario)
    graph = QGraph(path)
    traced = trace_graph(graph)
    for x in (edge_inputs(graph, n_random=256), default_check_inputs(graph, n_random=256)):
        assert np.array_equal(predict(graph, traced, x), golden.run(graph, x))


def test_dead_relu_gets_a_floored_scale_and_the_variant_exports(tmp_path):
    """A ReLU that never fires (proj1's bias far below its inputs) calibrates to the scale floor
    2^-(bits + 16), not 2^-64, and the model still exports exactly (before, proj2's accumulator
    needed more than float64's 53 bits next to its bias and the variant was lost)."""
    torch.manual_seed(0)
    spec = parse_scenario("w8a8").with_options("round", 16)
    model = FNO1d(TINY_N, TINY, spec)
    with torch.no_grad():
        model.proj1.bias.fill_(-1e3)  # dead ReLU
    calibrated(model, TINY_N)
    assert float(model.proj_act.act_quant.scale()) == min_scale(8) == 2.0**-24
    path = export_model(model, TINY_N, tmp_path / "dead.qonnx.onnx")
    graph = QGraph(path)  # checks every accumulator < 2^53
    x = edge_inputs(graph)
    with torch.no_grad():
        brevitas = model(torch.from_numpy(x.astype(np.float32))).numpy().astype(np.float64)
    # The dead ReLU's outputs are exact zeros, so the values Brevitas sums in float32 are exact.
    assert np.array_equal(golden.run(graph, x), brevitas)


def test_input_quantizer_is_floor_even_in_round_mode():
    spec = parse_scenario("w4a8").with_options("round", 16)
    assert act_kwargs(spec, signed=True, state=True, host=True)["act_quant"].__name__ == "ActQuant"
    assert act_kwargs(spec, signed=True)["act_quant"] is RoundActQuant


def _channel_fno(scenario: str, seed: int = 0) -> FNO1d:
    torch.manual_seed(seed)
    spec = parse_scenario(scenario).with_options("round", 16, "channel")
    model = FNO1d(TINY_N, TINY, spec)
    with torch.no_grad():  # output channels of very different sizes: per-channel scales differ
        model.layers[0].skip.weight.mul_(torch.tensor([1.0, 0.1, 0.02, 0.5])[:, None])
    return calibrated(model, TINY_N)


@pytest.mark.parametrize("scenario", ["w4a4", "w8a8"])
def test_per_channel_weight_scales_are_exact(scenario, tmp_path):
    """Per-output-channel power-of-two weight scales: folded exactly by QGraph, the export equals
    Brevitas and QONNX, and C-sim (w4a4) and the da4ml trace equal the golden."""
    from qpde.backends.rtl.trace import predict, trace_graph

    model = _channel_fno(scenario)
    scales = model.layers[0].skip.quant_weight().scale.detach().ravel()
    assert len(set(scales.tolist())) > 1
    path = export_model(model, TINY_N, tmp_path / f"{scenario}.qonnx.onnx")
    assert_golden_equals_brevitas_and_qonnx(model, path, stride=7)
    graph = QGraph(path)
    x = edge_inputs(graph, n_random=64)
    assert np.array_equal(predict(graph, trace_graph(graph), x), golden.run(graph, x))
    if scenario == "w4a4":
        assert_csim_exact(graph, tmp_path / "hls", x)


@pytest.mark.parametrize("arch,shape", [("transformer", {"dim": 4, "layers": 1, "mlp": 8}),
                                        ("unet", {"depth": 1, "features": 4, "kernel": 3})])
def test_round_export_of_transformer_and_unet_is_exact(arch, shape, tmp_path):
    """Round-half-up in the other architectures: half LSBs after activation MatMuls and power-of-two
    Muls (Transformer: the extension layer, then a scale-1 BatchNormalization), in Conv biases
    before ReLUs (UNet) and after the residual add; Brevitas == golden and C-sim == golden."""
    from qpde.train import build_model

    torch.manual_seed(0)
    model = calibrated(build_model(arch, 16, shape, "w4a8", 1, {"rounding": "round", "state_bits": 16}), 16)
    path = export_model(model, 16, tmp_path / f"{arch}.qonnx.onnx")
    graph = QGraph(path)
    x = edge_inputs(graph)
    with torch.no_grad():
        brevitas = model(torch.from_numpy(x.astype(np.float32))).numpy().astype(np.float64)
    assert max(t.max_abs.bit_length() for t in graph.types.values() if t) <= 24  # float32 is exact here
    assert np.array_equal(golden.run(graph, x), brevitas)
    assert_csim_exact(graph, tmp_path / "hls", x[:40])
