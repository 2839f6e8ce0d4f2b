"""Per-mode power-of-two spectral gains (`[quant] spectral_gain = "mode"`, issue 14).

Mode k of every Fourier layer is multiplied by 2^g_k before the spectral quantizers and by 2^-g_k
before the inverse DFT; the export folds both into the DFT/inverse-DFT weights
(`qpde.passes.fold_channel_gains`). Checked here: the gains are powers of two chosen by the rule,
the exported graph equals Brevitas and QONNX, the weights grow by exactly max g bits (and BOPs with
them, equal to qonnx's count), and the golden equals hls4ml C-sim, the da4ml trace/RTL and the
folded backend, all with np.array_equal on edge inputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from qpde import golden
from qpde.config import QuantConfig, fingerprint
from qpde.errors import ConfigError, GraphError
from qpde.export import export_model
from qpde.models.fno import FNO1d, FNO2d, FNOConfig, GAIN_QUANTILE, MAX_GAIN_EXP, mode_gain_exponents
from qpde.qgraph import QGraph
from qpde.quant import parse_scenario
from tests.conftest import TINY, TINY_N, assert_csim_exact, assert_golden_equals_brevitas_and_qonnx, calibrated, \
    edge_inputs

GAINED = dict(rounding="round", state_bits=16, spectral_gain="mode")


def _float_twin(model: torch.nn.Module) -> torch.nn.Module:
    """The float FNO with the same weights (what QAT starts from)."""
    twin = type(model)(model.resolution, model.config, parse_scenario("fp32"))
    twin.load_state_dict(model.state_dict(), strict=False)
    return twin.eval()


def _fields(n: int, count: int = 200, seed: int = 0) -> np.ndarray:
    """Smooth random fields: a decaying spectrum, so high modes are small (what the gains are for)."""
    rng = np.random.default_rng(seed)
    k = np.arange(n // 2 + 1)
    coeff = (rng.normal(size=(count, k.size)) + 1j * rng.normal(size=(count, k.size))) / (1.0 + k) ** 2.5
    return np.fft.irfft(coeff * n, n=n).astype(np.float32)


def gained_fno(scenario: str, seed: int = 0, shape: FNOConfig = TINY, n: int = TINY_N, cls=FNO1d):
    torch.manual_seed(seed)
    model = cls(n, shape, parse_scenario(scenario).with_options(**GAINED))
    gains = model.calibrate_mode_gains(_float_twin(model), _fields(model.points))
    assert gains and any(max(g["dft"]) > 0 for g in gains)
    return calibrated(model, model.points)


@pytest.fixture(scope="module")
def gained_qonnx(tmp_path_factory):
    root, cache = tmp_path_factory.mktemp("gained"), {}

    def get(scenario: str):
        if scenario not in cache:
            model = gained_fno(scenario)
            cache[scenario] = (model, export_model(model, TINY_N, root / f"{scenario}.onnx"))
        return cache[scenario]

    return get


def test_gain_rule_floors_the_quantile_ratio_and_caps_it():
    rng = np.random.default_rng(0)
    modes = 5
    scale = np.array([1.0, 0.45, 0.3, 2.0**-12, 0.0])  # mode 0 largest, mode 4 never excited
    spectrum = rng.normal(size=(4000, 2, modes)) * scale  # [samples, Re/Im, k]
    exps = mode_gain_exponents(spectrum.reshape(4000, 2 * modes), modes)
    q = np.quantile(np.abs(spectrum).transpose(2, 0, 1).reshape(modes, -1), GAIN_QUANTILE, axis=1)
    assert exps.tolist() == [0, 1, 1, MAX_GAIN_EXP, 0]
    assert np.all(q[:3] * 2.0 ** exps[:3] <= q.max())  # no gained mode above the largest: the scale holds
    assert np.all(q[1:3] * 2.0 ** (exps[1:3] + 1) > q.max())  # and each as high as a power of two goes
    assert mode_gain_exponents(spectrum.reshape(4000, -1), modes, cap=3).max() == 3
    assert mode_gain_exponents(np.zeros((10, 2 * modes)), modes).tolist() == [0] * modes


def test_gains_are_powers_of_two_shared_by_re_and_im_and_survive_a_checkpoint(tmp_path):
    from qpde.config import Variant
    from qpde.train import load_checkpoint, save_checkpoint

    model = gained_fno("w4a8")
    for layer in model.layers:
        conv = layer.spectral
        gain, mix, inv = conv.mode_gain.numpy(), conv.mix_gain.numpy(), conv.mode_gain_inv.numpy()
        exps, mix_exps = np.log2(gain), np.log2(mix)
        assert np.array_equal(exps, np.round(exps)) and exps.min() == 0
        assert np.array_equal(mix_exps, np.round(mix_exps)) and mix_exps.min() == 0
        assert (exps + mix_exps[: 2 * conv.modes]).max() <= MAX_GAIN_EXP
        assert np.array_equal(gain[: conv.modes], gain[conv.modes :])  # Re and Im of a mode alike
        assert np.array_equal(mix, np.tile(mix[: 2 * conv.modes], conv.width))  # every channel alike
        assert np.array_equal(gain * mix[: 2 * conv.modes] * inv, np.ones_like(gain))
        assert conv.gain_exponents().tolist() == exps[: conv.modes].astype(int).tolist()
    variant = Variant("burgers", "fno", "w4a8", TINY_N)
    path = save_checkpoint(tmp_path / "m.pt", model, variant, dataclasses.asdict(TINY), [], GAINED)
    again = load_checkpoint(path)
    for a, b in zip(model.layers, again.layers):
        assert np.array_equal(a.spectral.gain_exponents(), b.spectral.gain_exponents())
        assert np.array_equal(a.spectral.mix_gain_exponents(), b.spectral.mix_gain_exponents())
    with pytest.raises(ValueError, match="integers in 0..8"):
        model.layers[0].spectral.set_gain_exponents(np.array([0, 1, 2, 9]))
    with pytest.raises(ValueError, match="also summed"):
        model.layers[0].spectral.set_gain_exponents(np.array([0, 1, 2, 5]), np.array([0, 0, 0, 4]))


def test_no_gains_unless_asked_and_none_for_32_bit_activations():
    torch.manual_seed(0)
    plain = FNO1d(TINY_N, TINY, parse_scenario("w4a8").with_options("round", 16))
    assert not plain.layers[0].spectral.gained and "layers.0.spectral.mode_gain" not in plain.state_dict()
    assert plain.calibrate_mode_gains(_float_twin(plain), _fields(TINY_N)) == []
    wide = FNO1d(TINY_N, TINY, parse_scenario("w8a32").with_options(**GAINED))
    zero = {"dft": [0] * TINY.modes, "mix": [0] * TINY.modes}
    assert wide.calibrate_mode_gains(_float_twin(wide), _fields(TINY_N)) == [zero] * TINY.layers
    with pytest.raises(ConfigError, match="spectral_gain 'layer'"):
        parse_scenario("w4a8").with_options("round", 16, spectral_gain="layer")


@pytest.mark.parametrize("scenario", ["w4a4", "w4a8"])
def test_gained_export_equals_brevitas_and_qonnx_and_widens_the_dft_weights(gained_qonnx, scenario):
    """The gains are folded into the DFT (columns ×2^g) and inverse-DFT (rows ×2^-g) weights: no
    Mul is left, those weights are w + max g bits wide (BOPs count them so, equal to qonnx's count),
    the exported graph equals Brevitas and QONNX's executor, and the gains change the model."""
    from qonnx.util.inference_cost import inference_cost

    from qpde.cost import graph_cost

    model, path = gained_qonnx(scenario)
    graph = QGraph(path)
    assert not any(n.op_type == "Mul" for n in graph.model.graph.node)
    w_bits, c, m = parse_scenario(scenario).w_bits, TINY.width, TINY.modes
    role = {(TINY_N, 2 * m): "dft", (c * 2 * m, c * 2 * m): "mix", (2 * m, TINY_N): "idft"}
    found, want = [], []
    for node in graph.nodes:
        if node.op_type == "MatMul" and graph.consts[node.input[1]].shape in role:
            found.append((role[graph.consts[node.input[1]].shape], graph.const_bits[node.input[1]],
                          graph.const_type(node.input[1]).width))  # the integers really are that wide
    for layer in model.layers:
        g, h = layer.spectral.gain_exponents(), layer.spectral.mix_gain_exponents()
        want += [("dft", w_bits + g.max()), ("mix", w_bits + h.max()), ("idft", w_bits + (g + h).max())]
    assert [(r, b) for r, b, _ in found] == want and all(b == width for _, b, width in found)
    assert max(b for _, b in want) > w_bits + 2
    assert_golden_equals_brevitas_and_qonnx(model, path, stride=7)
    ours = graph_cost(graph)
    theirs = inference_cost(str(path), discount_sparsity=True)["total_cost"]
    assert (ours["macs"], ours["bops"]) == (theirs["total_macs"], theirs["total_bops"])
    # the same weights without gains compute something else (the gains are not a no-op)
    plain = FNO1d(TINY_N, TINY, parse_scenario(scenario).with_options("round", 16))
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if "_gain" not in k})
    x = torch.from_numpy(edge_inputs(graph).astype(np.float32))
    with torch.no_grad():
        assert not torch.equal(plain.eval()(x), model(x))


def test_gained_fno2d_export_equals_brevitas(tmp_path):
    model = gained_fno("w4a4", shape=FNOConfig(width=2, modes=2, layers=1, proj=4), n=8, cls=FNO2d)
    path = export_model(model, 64, tmp_path / "fno2d.onnx")
    assert_golden_equals_brevitas_and_qonnx(model, path, stride=11)


def test_fold_refuses_a_gain_that_is_not_a_power_of_two(gained_qonnx, tmp_path):
    from brevitas.export import export_qonnx
    from qonnx.core.modelwrapper import ModelWrapper

    from qpde.ingest import clean_model
    from qpde.passes import fold_channel_gains

    model = gained_fno("w4a4")
    with torch.no_grad():
        model.layers[0].spectral.mode_gain[1] = 3.0
    raw = tmp_path / "raw.onnx"
    export_qonnx(model, torch.zeros(1, TINY_N), str(raw))
    with pytest.raises(GraphError, match="Mul.*not all positive powers of two"):
        fold_channel_gains(clean_model(ModelWrapper(str(raw))))


def test_config_option_is_checked_and_off_keeps_old_cache_keys():
    from qpde.config import load_config
    from qpde.flow import _train_config

    cfg = load_config("quick")
    assert cfg.quant.spectral_gain == "off"
    variant = next(v for v in cfg.variants() if v.scenario == "w4a8")
    old = {"rounding": cfg.quant.rounding, "state_bits": cfg.quant.state_bits,
           "weight_scaling": cfg.quant.weight_scaling}
    assert fingerprint(_train_config(cfg, variant)) == fingerprint({**_train_config(cfg, variant), "quant": old})
    on = dataclasses.replace(cfg, quant=QuantConfig(spectral_gain="mode"))
    assert fingerprint(_train_config(on, variant)) != fingerprint(_train_config(cfg, variant))


def test_gained_trace_equals_golden(gained_qonnx):
    """da4ml's trace of the gained w4a4 and w4a8 FNOs == golden (the RTL backend's netlist)."""
    from qpde.backends.rtl import default_check_inputs
    from qpde.backends.rtl.trace import predict, trace_graph

    for scenario in ("w4a4", "w4a8"):
        graph = QGraph(gained_qonnx(scenario)[1])
        traced = trace_graph(graph)
        x = np.concatenate([edge_inputs(graph, n_random=128), default_check_inputs(graph, n_random=128)])
        assert np.array_equal(predict(graph, traced, x), golden.run(graph, x))


def test_gained_folded_integer_model_equals_golden_with_widths_grown(gained_qonnx):
    """The folded backend's integer model == golden, and its DFT/inverse-DFT MVAUs store weights
    exactly w + max g bits wide (their accumulators grow with them)."""
    from qpde.backends.folded import build_dataflow
    from qpde.backends.folded import model as int_model

    model, path = gained_qonnx("w4a8")
    graph = QGraph(path)
    df = build_dataflow(graph)
    widths = {u.name: u.params["w_width"] for u in df.units if u.kind == "mvau"}
    matmuls = [n for n in graph.nodes if n.op_type == "MatMul"]
    assert sum(graph.const_bits[n.input[1]] > 4 for n in matmuls) >= 2 * len(model.layers)  # DFT, inverse DFT
    for node in matmuls:  # every MVAU stores its weights' exact integer width (the gained ones w + max g)
        w_t = graph.const_type(node.input[1])
        assert widths[node.name] == w_t.width + (0 if w_t.signed else 1), node.name
        if graph.const_bits[node.input[1]] > 4:
            assert widths[node.name] == graph.const_bits[node.input[1]], node.name
    x = edge_inputs(graph)
    want = golden.run(graph, x)
    assert len(np.unique(want)) >= 8
    assert np.array_equal(int_model.run_values(graph, df, x), want)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["w4a4", "w4a8"])
def test_gained_csim_exact(gained_qonnx, scenario, tmp_path):
    graph = QGraph(gained_qonnx(scenario)[1])
    assert_csim_exact(graph, tmp_path / "hls", edge_inputs(graph, n_random=64))


@pytest.mark.slow
def test_gained_rtl_in_verilator(gained_qonnx, tmp_path):
    from qpde.backends.rtl import build_rtl, default_check_inputs, rtl_verdict, verilator_bin

    if verilator_bin() is None:
        pytest.skip("verilator not available")
    graph = QGraph(gained_qonnx("w4a4")[1])
    design = build_rtl(gained_qonnx("w4a4")[1], tmp_path / "rtl")
    x = np.concatenate([edge_inputs(graph, n_random=128), default_check_inputs(graph, n_random=256)])
    verdict = rtl_verdict(graph, design, x)
    assert verdict.samples == len(x) and verdict.mismatching_samples == 0, verdict


@pytest.mark.slow
def test_gained_folded_in_verilator(gained_qonnx, tmp_path):
    from qpde.backends.folded import build_folded
    from tests.folded.test_rtl import check

    graph = QGraph(gained_qonnx("w4a8")[1])
    check(graph, build_folded(graph, tmp_path, {}), edge_inputs(graph), seed=5)
