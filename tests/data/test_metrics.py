"""PDEBench metric definitions on hand-computable cases (exact values)."""

import numpy as np
import pytest

from qpde.data import metrics
from qpde.data.metrics import metric_table
from qpde.errors import DataError


def test_small_1d_case_every_metric():
    """Errors [[0, 0], [1, 0]] against targets [[3, 4], [1, 0]] (2 samples × 2 points)."""
    target = np.array([[3.0, 4.0], [1.0, 0.0]])
    pred = np.array([[3.0, 4.0], [0.0, 0.0]])
    table = metric_table(pred, target, spatial_ndim=1)
    half = np.sqrt(0.5)
    expected = {
        "mse": 0.25,
        "rmse": (0 + half) / 2,  # per-sample RMS errors 0 and √½
        "nrmse": (0 + 1) / 2,  # sample 2: RMS error √½ over RMS target √½
        "crmse": np.sqrt((0 + 1) / 2) / 2,  # spatial-sum errors 0, 1 → RMS over samples / 2 points
        "max_error": 1.0,
        "boundary_rmse": (0 + half) / 2,  # √((e₀² + e₋₁²)/2) per sample
        # rfft of [1, 0] = [1, 1]; RMS over samples √½ per wavenumber, / 2 points
        "frmse_low": half / 2,
    }
    for name, value in expected.items():
        assert table[name] == pytest.approx(value, rel=1e-12), name
    assert np.isnan(table["frmse_mid"]) and np.isnan(table["frmse_high"])  # no wavenumbers ≥ 4 (as PDEBench)


def test_per_time_averaging_like_pdebench():
    """[N, T, X]: max error is the maximum over samples and space per time, then the time mean."""
    target = np.zeros((2, 2, 4))
    pred = target.copy()
    pred[0, 0, 1] = 1.0
    pred[1, 1, 2] = -3.0
    assert metrics.max_error(pred, target) == 2.0
    assert metrics.rmse(pred, target) == pytest.approx((0.5 + 0 + 0 + 1.5) / 4)


def test_fourier_bands_1d():
    """Error 0.8·cos(2π·5x) on 32 points: |FFT| = 0.8·16 at k = 5 → 0.4 after /32; the mid band
    averages wavenumbers 4…11, so 0.4/8 = 0.05; error 0.3 (constant) only moves the low band (k=0): 0.3/4."""
    x = np.arange(32) / 32
    err = 0.8 * np.cos(2 * np.pi * 5 * x) + 0.3
    target = np.ones((3, 32))
    pred = target + err
    assert metrics.frmse_mid(pred, target) == pytest.approx(0.05)
    assert metrics.frmse_low(pred, target) == pytest.approx(0.3 / 4)
    assert metrics.frmse_high(pred, target) == pytest.approx(0.0, abs=1e-15)


def test_fourier_shells_and_boundary_2d():
    """16×16, error 0.5 + cos(2π·3x): FFT (0,0) = 128 → shell 0: 128/256 = ½; (±3,0) = 128 each but
    PDEBench sums only the quadrant 0 ≤ i, j < 8 → shell 3: ½. Low band = (½ + ½)/4 = ¼.
    Boundary: the x-edges see 1.5 everywhere (cos = 1 at x = 0) and cos(2π·3·15/16) ≈ 0.924 …"""
    n = 16
    x = np.arange(n) / n
    err = 0.5 + np.cos(2 * np.pi * 3 * x)[:, None] * np.ones((1, n))
    target = np.zeros((2, n, n))
    pred = target + err
    assert metrics.frmse_low(pred, target, spatial_ndim=2) == pytest.approx(0.25)
    assert metrics.frmse_mid(pred, target, spatial_ndim=2) == pytest.approx(0.0, abs=1e-15)
    assert np.isnan(metrics.frmse_high(pred, target, spatial_ndim=2))  # 8 shells only
    edges = n * (err[0, 0] ** 2 + err[-1, 0] ** 2) + (err[:, 0] ** 2).sum() + (err[:, -1] ** 2).sum()
    assert metrics.boundary_rmse(pred, target, spatial_ndim=2) == pytest.approx(np.sqrt(edges / (4 * n)))
    constant = np.full((1, n, n), 0.7)
    assert metrics.boundary_rmse(constant, 0 * constant, spatial_ndim=2) == pytest.approx(0.7)


def test_nrmse_is_scale_invariant_and_guards_zero_targets():
    rng = np.random.default_rng(0)
    target, pred = rng.normal(size=(5, 3, 8, 8)), rng.normal(size=(5, 3, 8, 8))
    assert metrics.nrmse(pred, target, 2) == pytest.approx(metrics.nrmse(7 * pred, 7 * target, 2))
    assert np.isfinite(metrics.nrmse(np.ones((1, 4)), np.zeros((1, 4))))


def test_bad_shapes():
    with pytest.raises(DataError, match="differs from target shape"):
        metric_table(np.zeros((2, 4)), np.zeros((2, 5)))
    with pytest.raises(DataError, match="spatial_ndim must be 1 or 2"):
        metric_table(np.zeros((2, 4)), np.zeros((2, 4)), spatial_ndim=3)
