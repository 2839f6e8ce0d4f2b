"""da4ml trace of QGraph == exact golden (da4ml's bit-exact interpreter; no external tools)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from qpde import golden
from qpde.errors import GraphError
from qpde.qgraph import QGraph
from qpde.backends.rtl import build_rtl, default_check_inputs
from qpde.backends.rtl.trace import _exact_const_f, check_trace, kif, predict, trace_graph
from tests.conftest import edge_inputs
from tests.rtl.conftest import mlp_qonnx


def _level_inputs(graph, n_rows=64, seed=1):
    """Exact quantizer levels, their maximum/minimum, exact ties half an LSB above each level and
    values one float ulp-ish below a level (the FLOOR boundaries)."""
    q = next(n for n in graph.nodes if n.op_type == "Quant")
    p = graph.quant_params(q, constant=False)
    levels = np.arange(p.qmin, p.qmax + 1) * p.scale
    pool = np.concatenate([levels, levels + p.scale / 2, np.nextafter(levels, -np.inf), [p.qmax * p.scale * 3]])
    rng = np.random.default_rng(seed)
    n = graph.input_shape[1]
    rows = [np.full(n, p.qmax * p.scale), np.full(n, p.qmin * p.scale)] + [rng.choice(pool, n) for _ in range(n_rows)]
    return np.asarray(rows)


@pytest.mark.parametrize("scenario", ["w4a4", "w4a8", "w8a8"])
def test_trace_equals_golden_on_tiny_fno(tiny_qonnx, scenario):
    _, path = tiny_qonnx(scenario)
    graph = QGraph(path)
    traced = trace_graph(graph)
    for x in (edge_inputs(graph, n_random=512), default_check_inputs(graph, n_random=512), _level_inputs(graph)):
        got = predict(graph, traced, x)
        want = golden.run(graph, x)
        assert np.array_equal(got, want), f"{scenario}: {np.sum(np.any(got != want, axis=1))} samples differ"
    assert traced.comb.shape == (graph.input_shape[1], graph.output_shape[1])


def test_trace_hand_built_mlp_bias_truncation_relu_fold_and_narrow(tmp_path):
    for narrow in (False, True):
        graph = QGraph(mlp_qonnx(tmp_path / f"mlp{narrow}.onnx", narrow_out=narrow, a_bits=5))
        traced = trace_graph(graph)
        assert traced.op_counts["bias_truncated"] == 1 and traced.op_counts["relu_folded"] == 1
        check_trace(graph, traced, default_check_inputs(graph, n_random=2000))
        x = _level_inputs(graph, 256)
        assert np.array_equal(predict(graph, traced, x), golden.run(graph, x))


def test_quant_kif_matches_range():
    from qpde.qgraph import QuantParams

    for signed in (True, False):
        for bits in (2, 4, 8, 16):
            for exp in (-12, -3, 0, 2):
                p = QuantParams(exp, bits, signed, False, "FLOOR")
                k, i, f = kif(p)
                assert (-(2.0**i) * k, 2.0**i - 2.0**-f) == (p.qmin * p.scale, p.qmax * p.scale)


def test_exact_const_f_agrees_with_da4ml_in_range_and_extends_it():
    from da4ml.trace.fixed_variable import _const_f

    rng = np.random.default_rng(0)
    for _ in range(2000):
        v = float(rng.integers(1, 2**20)) * 2.0 ** int(rng.integers(-30, 10))
        if -31 < _const_f(v) < 32:
            assert _exact_const_f(v) == _const_f(v)
    # da4ml stops at |f| = 32; such constants appear when per-value scale factors drift (2^-45 …)
    assert _exact_const_f(127 * 2.0**35) == -35
    assert _exact_const_f(3 * 2.0**-40) == 40
    assert _exact_const_f(0.0) == -32


def test_unsupported_op_is_a_graph_error_naming_the_node(tmp_path):
    path = mlp_qonnx(tmp_path / "sig.onnx", middle_op="Sigmoid")
    with pytest.raises(GraphError, match="act1"):
        build_rtl(path, tmp_path / "rtl")
    # The tracer's own check, for an op QGraph would admit but the tracer does not know.
    graph = QGraph(mlp_qonnx(tmp_path / "ok.onnx"))
    next(n for n in graph.nodes if n.name == "act1").op_type = "Tanh"
    with pytest.raises(GraphError, match="act1"):
        trace_graph(graph)


def test_matmul_of_non_matrix_weight_is_a_graph_error(tmp_path):
    path = mlp_qonnx(tmp_path / "w3.onnx")
    model = onnx.load(str(path))
    for init in model.graph.initializer:
        if init.name == "W2":
            init.dims.insert(0, 1)  # [1, hidden, n]
    onnx.save(model, str(path))
    graph = QGraph(path)
    with pytest.raises(GraphError, match="mm2"):
        trace_graph(graph)


def test_da4ml_saturation_of_a_33_bit_operand_is_wrong_upstream():
    """The defect the width guard exists for (da4ml 0.6): SAT of a value on a 33-bit grid wraps."""
    from da4ml.trace import FixedVariableArray, HWConfig, comb_trace
    from da4ml.trace.ops import quantize

    from qpde.backends.rtl.trace import _exact_constants

    def saturate(f: int) -> np.ndarray:  # input in [-1000, 1000] (k=1, i=10) on a fine grid → 1+10+f bits
        with _exact_constants():
            x = FixedVariableArray.from_lhs(low=np.full(1, -1000.0), high=np.full(1, 1000.0),
                                            step=np.full(1, 2.0**-37), hwconf=HWConfig(1, -1, -1), solver_options={})
            comb = comb_trace(x, quantize(x, 1, 1, f, overflow_mode="SAT", round_mode="TRN"), keep_dead_inputs=True)
        return np.asarray(comb.predict(np.array([[-1000.0], [-1.0]]))).ravel()

    assert np.array_equal(saturate(21), [-2.0, -1.0])  # 32 bits: exact
    assert not np.array_equal(saturate(22), [-2.0, -1.0])  # 33 bits: wrong (if this fails, da4ml was fixed)


def test_saturation_wider_than_32_bits_is_refused_with_the_node(tmp_path):
    graph = QGraph(mlp_qonnx(tmp_path / "mlp32.onnx", a_bits=32))
    with pytest.raises(GraphError, match=r"q_h.*33-bit|q_h.*\d+-bit value"):
        trace_graph(graph)
    trace_graph(QGraph(mlp_qonnx(tmp_path / "mlp16.onnx", a_bits=16)))  # 16-bit activations: traced


def _assert_trace_exact(graph):
    """da4ml's interpreter of the traced graph equals the golden on edge and random inputs."""
    traced = trace_graph(graph)
    x = np.concatenate([edge_inputs(graph), default_check_inputs(graph, n_random=256)])
    assert np.array_equal(predict(graph, traced, x), golden.run(graph, x))
    return traced


def _assert_verilator_exact(path, out_dir):
    """The generated Verilog, run by Verilator, equals the golden on edge and random inputs."""
    from qpde.backends.rtl import rtl_verdict

    graph = QGraph(path)
    x = np.concatenate([edge_inputs(graph), default_check_inputs(graph, n_random=512)])
    verdict = rtl_verdict(graph, build_rtl(path, out_dir), x)
    assert verdict.samples == len(x) and verdict.mismatching_samples == 0, verdict


def _tiny_unet(tmp_path, scenario: str, depth: int, features: int, n: int):
    import torch

    from qpde.export import export_model
    from qpde.models.unet import UNet1d, UNetConfig
    from qpde.quant import parse_scenario
    from tests.conftest import calibrated

    torch.manual_seed(0)
    model = calibrated(UNet1d(n, UNetConfig(depth=depth, features=features), parse_scenario(scenario)), n)
    return export_model(model, n, tmp_path / f"unet-{scenario}.onnx")


@pytest.mark.parametrize("scenario", ["w4a4", "w8a8"])
def test_unet_conv_pool_upsample_concat_trace_equals_golden(tmp_path, scenario):
    """Conv as a constant-matrix product per output position, MaxPool as max of taps, nearest
    Resize and Concat as wiring: da4ml's interpreter equals the golden on edge and random inputs."""
    graph = QGraph(_tiny_unet(tmp_path, scenario, depth=2, features=4, n=16))
    traced = _assert_trace_exact(graph)
    assert {"Conv", "MaxPool", "Resize", "Concat"} <= set(traced.op_counts)


@pytest.mark.slow
def test_unet_verilog_equals_golden_in_verilator(tmp_path):
    _assert_verilator_exact(_tiny_unet(tmp_path, "w4a4", depth=1, features=4, n=8), tmp_path / "rtl")


def _tiny_unet2d(tmp_path, scenario: str, depth: int, features: int, r: int = 8):
    import torch

    from qpde.export import export_model
    from qpde.models.unet import UNet2d, UNetConfig
    from qpde.quant import parse_scenario
    from tests.conftest import calibrated

    torch.manual_seed(0)
    model = calibrated(UNet2d(r, UNetConfig(depth=depth, features=features), parse_scenario(scenario)), r * r)
    return export_model(model, r * r, tmp_path / f"unet2d-{scenario}.onnx")


@pytest.mark.parametrize("scenario", ["w4a4", "w8a8"])
def test_unet2d_conv_pool_upsample_concat_trace_equals_golden(tmp_path, scenario):
    """The 2-D ops mapped like the 1-D ones (Conv: a constant-matrix product per output position over
    the 3×3 window; MaxPool: max of the 2×2 taps; nearest Resize and Concat: wiring): da4ml's
    interpreter equals the golden on edge and random r×r fields."""
    graph = QGraph(_tiny_unet2d(tmp_path, scenario, depth=2, features=2))
    traced = _assert_trace_exact(graph)
    assert {"Conv", "MaxPool", "Resize", "Concat"} <= set(traced.op_counts)
    assert traced.input_shape == (1, 1, 8, 8) and traced.comb.shape == (64, 64)


@pytest.mark.slow
def test_unet2d_verilog_equals_golden_in_verilator(tmp_path):
    # w4a8: at depth 1 the untrained w4a4 model's quantized Δu is constant, so da4ml would prune its body
    _assert_verilator_exact(_tiny_unet2d(tmp_path, "w4a8", depth=1, features=2), tmp_path / "rtl")


def _tiny_transformer(tmp_path, scenario: str, **shape):
    from qpde.export import export_model
    from qpde.models.transformer import TransformerConfig
    from tests.test_transformer import N, TINY, calibrated_transformer

    model = calibrated_transformer(scenario, cfg=TransformerConfig(**shape) if shape else TINY)
    return export_model(model, N, tmp_path / f"transformer-{scenario}.onnx")


@pytest.mark.parametrize("scenario", ["w4a4", "w8a8"])
def test_transformer_attention_trace_equals_golden(tmp_path, scenario):
    """Activation × activation MatMuls (KᵀV, Q·KV) as da4ml multipliers and the 2^-k scale as a shift:
    da4ml's interpreter equals the golden exactly."""
    graph = QGraph(_tiny_transformer(tmp_path, scenario))
    traced = _assert_trace_exact(graph)
    assert traced.op_counts["MatMul"] >= 2 and traced.op_counts["Mul"] == 1


@pytest.mark.slow
def test_transformer_verilog_equals_golden_in_verilator(tmp_path):
    _assert_verilator_exact(_tiny_transformer(tmp_path, "w4a4", dim=2, layers=1, mlp=4), tmp_path / "rtl")
