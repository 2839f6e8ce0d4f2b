"""2D tasks (Darcy a→u, Navier–Stokes time steps) and the 2D FNO and Transformer through the whole
flow: raster-order fields, bilinear resolution change, separable truncated 2D DFT, exact golden,
bit-exact hls4ml C-sim, per-dataset resolutions, a 2D sweep end to end."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from qpde.config import Variant, config_from_dict, with_overrides
from qpde.data import generate, open_dataset
from qpde.errors import ConfigError
from qpde.models.fno import FNO2d, FNOConfig, dft2d_matrices, x_modes
from qpde.models.transformer import Transformer2d, TransformerConfig
from qpde.pipeline import Sweep, ensure_data, run_sweep
from qpde.qgraph import QGraph
from qpde.quant import parse_scenario
from qpde.task import TaskData, evaluate, load_split
from qpde.train import build_model
from tests.conftest import (
    assert_csim_exact,
    assert_golden_equals_brevitas_and_qonnx,
    calibrated,
    edge_inputs,
    exported_per_scenario,
)

R = 8  # model grid r×r: r² = 64 values per field
FNO_TINY = FNOConfig(width=4, modes=3, layers=2, proj=8)
TF_TINY = TransformerConfig(dim=4, layers=1, mlp=8)


def _nodes(n: int) -> np.ndarray:
    return np.arange(n) / n


# ---- task ------------------------------------------------------------------------------------
def test_2d_fields_are_model_vectors_in_raster_order():
    rng = np.random.default_rng(0)
    fields = rng.normal(size=(3, 4, 16, 16)).astype(np.float32)
    data = TaskData(fields, (_nodes(16), _nodes(16)), periodic=True)
    flat = data.to_model(fields, 16)
    assert flat.shape == (3, 4, 256) and np.array_equal(flat, fields.reshape(3, 4, 256))
    assert np.array_equal(data.to_reference(flat), fields)
    x, y = data.pairs(8)
    assert x.shape == y.shape == (3 * 3, 64)
    assert np.array_equal(data.step_inputs(8), x)
    assert data.step_targets().shape == (9, 16, 16)
    with pytest.raises(ValueError, match="not a 2-D square field"):
        data.to_reference(np.zeros((2, 63)))


def test_bilinear_round_trip_keeps_a_linear_field():
    """Cell-centred, non-periodic: down to 8×8 and back to 16×16 keeps a linear field (interpolation
    and extrapolation are exact for it; tolerance: float64 rounding only)."""
    centres = (np.arange(16) + 0.5) / 16
    field = 2.0 * centres[:, None] - 3.0 * centres[None, :] + 0.5
    data = TaskData(field[None, None].repeat(2, axis=1), (centres, centres), periodic=False)
    coarse = data.to_model(field[None], 8)
    assert coarse.shape == (1, 64)
    np.testing.assert_allclose(data.to_reference(coarse.astype(np.float64))[0], field, atol=1e-6)  # float32 input


@pytest.fixture(scope="module")
def darcy_file(tmp_path_factory):
    return generate("darcy", tmp_path_factory.mktemp("darcy") / "darcy.h5", samples=10, resolution=16, seed=0,
                    progress=False)


def test_darcy_is_a_one_shot_map_from_coefficient_to_solution(darcy_file):
    with open_dataset(darcy_file) as handle:
        data = load_split(handle, "train", seed=0)
        a, u = handle.darcy_pairs(np.arange(handle.n_samples))
    assert not data.rollout and data.fields.shape[1:] == (2, 16, 16)
    assert set(np.unique(data.fields[:, 0])) <= {np.float32(0.1), np.float32(1.0)}
    assert any(np.array_equal(data.fields[0, 1], row) for row in u)
    truth = {data.step_inputs(16)[i].tobytes(): data.to_model(data.fields[i, 1], 16) for i in range(len(data.fields))}
    metrics = evaluate(lambda x: np.stack([truth[row.tobytes()] for row in x]), data, 16)
    assert metrics["nrmse"] == 0.0 and metrics["rollout_nrmse"] is None


def test_2d_rollout_uses_two_spatial_axes():
    rng = np.random.default_rng(1)
    fields = rng.normal(size=(2, 3, 8, 8))
    data = TaskData(fields, (_nodes(8), _nodes(8)), periodic=True)
    metrics = evaluate(lambda x: x, data, 8)  # persistence: u(t+Δt) ≈ u(t)
    step = np.mean([np.linalg.norm(fields[i, t + 1] - fields[i, t]) / np.linalg.norm(fields[i, t + 1])
                    for i in range(2) for t in range(2)])
    assert metrics["nrmse"] == pytest.approx(step, rel=1e-6)  # models see float32 fields
    assert metrics["rollout_nrmse"] > 0


# ---- separable truncated 2D DFT --------------------------------------------------------------
def test_dft2d_stages_are_the_truncated_fft2_and_its_real_inverse():
    """Float identities (tolerance: float64 rounding): forward = numpy fft2 on the kept modes,
    inverse ∘ forward is a projection that keeps the kept band and removes the rest."""
    n, m = 8, 3
    (fy, fx), (ix, iy) = dft2d_matrices(n, m)
    k = (2 * m - 1) * m
    assert fy.shape == (n * 2 * m, n * n) and fx.shape == (2 * k, n * 2 * m) and iy.shape == (n * n, n * 2 * m)
    w = np.random.default_rng(0).normal(size=(n, n))
    spectrum = fx @ fy @ w.ravel()
    expected = (np.fft.fft2(w) / n**2)[np.ix_(x_modes(n, m), np.arange(m))].ravel()
    np.testing.assert_allclose(spectrum[:k] + 1j * spectrum[k:], expected, atol=1e-14)
    projection = iy @ ix @ fx @ fy
    np.testing.assert_allclose(projection @ projection, projection, atol=1e-13)
    x = np.arange(n)
    kept = np.cos(2 * np.pi * (2 * x[:, None] - 1 * x[None, :]) / n) + 0.5
    np.testing.assert_allclose(projection @ kept.ravel(), kept.ravel(), atol=1e-13)
    dropped = np.cos(2 * np.pi * 3 * x[:, None] / n) * np.ones((1, n))
    np.testing.assert_allclose(projection @ dropped.ravel(), 0, atol=1e-13)


def test_fno2d_counts_sparse_dft_stages_and_refuses_modes_above_nyquist():
    from qpde.cost import total_cost

    model = FNO2d(R, FNO_TINY, parse_scenario("w4a8"))
    assert model.ndim == 2 and model.points == R * R
    assert model(torch.randn(2, R * R)).shape == (2, R * R)
    (fy, fx), (ix, iy) = dft2d_matrices(R, FNO_TINY.modes)
    dft_macs = sum(int((m != 0).sum()) for m in (fy, fx, ix, iy)) * FNO_TINY.width * FNO_TINY.layers
    assert total_cost(model, parse_scenario("w4a8"))["macs"] > dft_macs
    with pytest.raises(ConfigError, match="2-D fno at resolution 8.*Nyquist"):
        build_model("fno", R, {"modes": 5}, "fp32", ndim=2)
    with pytest.raises(ConfigError, match="no 3-D 'fno' model"):
        build_model("fno", R, {}, "fp32", ndim=3)


# ---- export, golden, C-sim -------------------------------------------------------------------
def _calibrated(arch: str, scenario: str):
    torch.manual_seed(0)
    spec = parse_scenario(scenario)
    model = FNO2d(R, FNO_TINY, spec) if arch == "fno" else Transformer2d(R, TF_TINY, spec)
    return calibrated(model, R * R)


@pytest.fixture(scope="module")
def exported_2d(tmp_path_factory):
    root = tmp_path_factory.mktemp("qonnx_2d")
    return {arch: exported_per_scenario(root / arch, lambda s, a=arch: _calibrated(a, s), R * R)
            for arch in ("fno", "transformer")}


@pytest.mark.parametrize("arch", ["fno", "transformer"])
@pytest.mark.parametrize("scenario", ["w4a4", "w8a8"])
def test_2d_golden_equals_brevitas_and_qonnx(exported_2d, arch, scenario):
    assert_golden_equals_brevitas_and_qonnx(*exported_2d[arch](scenario), stride=11)


@pytest.mark.parametrize("arch", ["fno", "transformer"])
@pytest.mark.parametrize("scenario", [
    "w4a4", "w8a8", pytest.param("w4a8", marks=pytest.mark.slow), pytest.param("w8a16", marks=pytest.mark.slow),
])
def test_2d_csim_is_bit_exact(exported_2d, tmp_path, arch, scenario):
    _, path = exported_2d[arch](scenario)
    graph = QGraph(path)
    assert graph.input_shape == (1, R * R)
    x = edge_inputs(graph)
    assert_csim_exact(graph, tmp_path / scenario, x)


# ---- config and sweep ------------------------------------------------------------------------
def test_resolutions_per_dataset_and_command_line_override(tmp_path):
    cfg = config_from_dict({"datasets": ["burgers", "darcy"], "resolutions": [64, 32],
                            "data": {"darcy": {"resolutions": [16, 8], "resolution": 16}}})
    assert {v.id for v in cfg.variants() if v.scenario == "fp32"} == {
        "burgers-fno-fp32-r64", "burgers-fno-fp32-r32", "darcy-fno-fp32-r16", "darcy-fno-fp32-r8"}
    assert with_overrides(cfg, resolutions="16").resolutions_for("darcy") == (16,)
    with pytest.raises(ConfigError, match="darcy resolution 10 is not divisible"):
        config_from_dict({"datasets": ["darcy"], "archs": ["unet"], "data": {"darcy": {"resolutions": [10]}}})
    # The model resolutions are not an input of the data: changing them keeps the dataset.
    small = config_from_dict({"datasets": ["darcy"], "data": {"darcy": {"samples": 4, "resolution": 8,
                                                                         "resolutions": [8]}}})
    other = dataclasses.replace(small, data={"darcy": dataclasses.replace(small.data["darcy"], resolutions=(16, 8))})
    layout = Sweep(small, tmp_path).layout
    assert ensure_data(small, "darcy", layout) == ensure_data(other, "darcy", layout)


def test_steady_tasks_train_without_the_residual(tmp_path):
    cfg = config_from_dict({"datasets": ["darcy", "navier-stokes"]})
    sweep = Sweep(cfg, tmp_path)
    assert sweep.shape(Variant("darcy", "fno", "fp32", 16))["residual"] is False
    assert sweep.shape(Variant("navier-stokes", "fno", "fp32", 16))["residual"] is True


def test_2d_sweep_end_to_end(tmp_path):
    """Darcy FNO and Navier–Stokes Transformer, float and w4a8 at 8×8 from a 16×16 reference grid:
    every quantized variant C-simulates bit-exactly on its whole test split."""
    cfg = config_from_dict({
        "datasets": ["darcy", "navier-stokes"], "archs": ["fno", "transformer"], "scenarios": ["fp32", "w4a8"],
        "resolutions": [R], "data": {"darcy": {"samples": 20, "resolution": 16},
                                     "navier-stokes": {"samples": 10, "resolution": 16,
                                                       "params": {"n_times": 4, "t_final": 3.0}}},
        "fno": dataclasses.asdict(FNO_TINY), "transformer": dataclasses.asdict(TF_TINY),
        "train": {"epochs": 3, "qat_epochs": 1, "batch_size": 16}, "hls": {"vendor_synth": False},
    })
    cfg = with_overrides(cfg, archs="fno,transformer")
    table = pd.read_csv(run_sweep(cfg, tmp_path))
    quantized = table[table.backend == "hls4ml"].set_index("variant")
    assert len(quantized) == 4 and (quantized.csim_mismatches == 0).all()
    assert (quantized.loc[[v for v in quantized.index if v.startswith("darcy")], "csim_samples"] == 2).all()
    assert (quantized.loc[[v for v in quantized.index if v.startswith("navier")], "csim_samples"] == 3).all()
    darcy = table[table.variant.str.startswith("darcy")]
    assert darcy.rollout_nrmse.isna().all() and table[~table.variant.str.startswith("darcy")].rollout_nrmse.notna().all()
    assert table.nrmse.notna().all()
