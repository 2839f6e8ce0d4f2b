"""PDEBench's metric set (pdebench/models/metrics.py `metric_func`), per field then averaged.

nRMSE = ‖pred − target‖₂ / ‖target‖₂ per sample (PDEBench's normalisation), averaged over samples.
Frequency RMSEs split the error spectrum into PDEBench's bands: low k < 4, mid 4 ≤ k < 12,
high k ≥ 12."""

from __future__ import annotations

import numpy as np

LOW, HIGH = 4, 12


def _flat(a: np.ndarray, spatial_ndim: int) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a.reshape((-1,) + a.shape[a.ndim - spatial_ndim :])


def mse(pred, target, spatial_ndim: int = 1) -> float:
    return float(np.mean((_flat(pred, spatial_ndim) - _flat(target, spatial_ndim)) ** 2))


def rmse(pred, target, spatial_ndim: int = 1) -> float:
    err = _flat(pred, spatial_ndim) - _flat(target, spatial_ndim)
    return float(np.mean(np.sqrt(np.mean(err.reshape(len(err), -1) ** 2, axis=1))))


def nrmse(pred, target, spatial_ndim: int = 1) -> float:
    p, t = _flat(pred, spatial_ndim), _flat(target, spatial_ndim)
    err = np.sqrt(np.sum((p - t).reshape(len(p), -1) ** 2, axis=1))
    norm = np.sqrt(np.sum(t.reshape(len(t), -1) ** 2, axis=1))
    return float(np.mean(err / np.maximum(norm, 1e-12)))


def max_error(pred, target, spatial_ndim: int = 1) -> float:
    return float(np.max(np.abs(_flat(pred, spatial_ndim) - _flat(target, spatial_ndim))))


def boundary_rmse(pred, target, spatial_ndim: int = 1) -> float:
    """RMSE over the first and last point of every spatial axis (PDEBench's bRMSE)."""
    err = _flat(pred, spatial_ndim) - _flat(target, spatial_ndim)
    edges = [np.take(err, [0, -1], axis=1 + k) for k in range(spatial_ndim)]
    return float(np.sqrt(np.mean(np.concatenate([e.reshape(len(err), -1) for e in edges], axis=1) ** 2)))


def _band_rmse(pred, target, spatial_ndim: int, lo: int, hi: int | None) -> float:
    err = _flat(pred, spatial_ndim) - _flat(target, spatial_ndim)
    axes = tuple(range(1, 1 + spatial_ndim))
    spectrum = np.abs(np.fft.rfftn(err, axes=axes)) / np.prod(err.shape[1:])
    grids = np.meshgrid(*[np.abs(np.fft.fftfreq(n, 1 / n)) for n in err.shape[1:-1]],
                        np.fft.rfftfreq(err.shape[-1], 1 / err.shape[-1]), indexing="ij")
    radius = np.sqrt(sum(g**2 for g in grids))
    band = (radius >= lo) & (radius < (hi if hi is not None else np.inf))
    if not band.any():
        return float("nan")
    return float(np.sqrt(np.mean(spectrum[:, band] ** 2)))


def frmse_low(pred, target, spatial_ndim: int = 1) -> float:
    return _band_rmse(pred, target, spatial_ndim, 0, LOW)


def frmse_mid(pred, target, spatial_ndim: int = 1) -> float:
    return _band_rmse(pred, target, spatial_ndim, LOW, HIGH)


def frmse_high(pred, target, spatial_ndim: int = 1) -> float:
    return _band_rmse(pred, target, spatial_ndim, HIGH, None)


def metric_table(pred, target, spatial_ndim: int = 1) -> dict[str, float]:
    funcs = (mse, rmse, nrmse, max_error, boundary_rmse, frmse_low, frmse_mid, frmse_high)
    return {f.__name__: f(pred, target, spatial_ndim) for f in funcs}
