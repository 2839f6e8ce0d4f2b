"""PDEBench's metric set (pdebench/models/metrics.py `metric_func`, one channel, Lx = Ly = 1).

Arrays are [N, *spatial] or [N, T, *spatial] (further leading axes are folded into T). As in
PDEBench, every metric is computed per saved time over the N samples and then averaged over time:

- rmse: mean over samples of the per-sample RMS error (PDEBench calls it "MSE").
- nrmse: mean over samples of per-sample RMS error / per-sample RMS of the target.
- crmse: RMS over samples of the error of the spatial mean ("conserved variable" error).
- max_error: largest |error| over samples and space.
- boundary_rmse: mean over samples of the RMS error on the boundary points (1D: first and last
  point; 2D: the four edges, corners counted twice, divided by 2·nx + 2·ny).
- frmse_low / frmse_mid / frmse_high: RMS over samples of the Fourier error |FFT(pred − target)|
  per wavenumber, scaled by 1/n_points, averaged over wavenumbers 0–3, 4–11 and ≥ 12. In 2D the
  squared error is first summed over radial shells floor(√(i² + j²)) for 0 ≤ i < nx/2,
  0 ≤ j < ny/2, exactly as PDEBench does. A band with no wavenumbers gives NaN, as in PDEBench.

`mse` (the plain mean squared error over everything) is the training loss, not a PDEBench metric.
PDEBench divides by a zero target norm; we divide by max(norm, 1e-12) so all-zero targets give a
large finite nRMSE instead of inf/NaN."""

from __future__ import annotations

import numpy as np

from qpde.errors import DataError

I_LOW, I_HIGH = 4, 12  # PDEBench's iLow, iHigh
_TINY = 1e-12


def _prepare(pred, target, spatial_ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """→ float64 arrays [N, T, *spatial]."""
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if spatial_ndim not in (1, 2):
        raise DataError(f"metrics: spatial_ndim must be 1 or 2, got {spatial_ndim}")
    if p.shape != t.shape:
        raise DataError(f"metrics: prediction shape {p.shape} differs from target shape {t.shape}")
    if p.ndim < spatial_ndim + 1:
        raise DataError(
            f"metrics: need [N, (T,) *spatial] arrays with {spatial_ndim} spatial axes, got {p.shape}"
        )
    spatial = p.shape[p.ndim - spatial_ndim :]
    shape = (p.shape[0], -1, *spatial)
    return p.reshape(shape), t.reshape(shape)


def _space_axes(a: np.ndarray) -> tuple[int, ...]:
    return tuple(range(2, a.ndim))


def mse(pred, target, spatial_ndim: int = 1) -> float:
    p, t = _prepare(pred, target, spatial_ndim)
    return float(np.mean((p - t) ** 2))


def rmse(pred, target, spatial_ndim: int = 1) -> float:
    p, t = _prepare(pred, target, spatial_ndim)
    return float(np.mean(np.sqrt(np.mean((p - t) ** 2, axis=_space_axes(p)))))


def nrmse(pred, target, spatial_ndim: int = 1) -> float:
    p, t = _prepare(pred, target, spatial_ndim)
    axes = _space_axes(p)
    err = np.sqrt(np.mean((p - t) ** 2, axis=axes))
    norm = np.sqrt(np.mean(t**2, axis=axes))
    return float(np.mean(err / np.maximum(norm, _TINY)))


def crmse(pred, target, spatial_ndim: int = 1) -> float:
    p, t = _prepare(pred, target, spatial_ndim)
    axes = _space_axes(p)
    n_points = np.prod(p.shape[2:])
    per_time = np.sqrt(np.mean((p.sum(axis=axes) - t.sum(axis=axes)) ** 2, axis=0)) / n_points
    return float(np.mean(per_time))


def max_error(pred, target, spatial_ndim: int = 1) -> float:
    p, t = _prepare(pred, target, spatial_ndim)
    per_time = np.abs(p - t).max(axis=(0, *_space_axes(p)))
    return float(np.mean(per_time))


def boundary_rmse(pred, target, spatial_ndim: int = 1) -> float:
    p, t = _prepare(pred, target, spatial_ndim)
    err2 = (p - t) ** 2
    if spatial_ndim == 1:
        per = (err2[..., 0] + err2[..., -1]) / 2
    else:
        nx, ny = err2.shape[-2:]
        edges = (err2[..., 0, :] + err2[..., -1, :]).sum(axis=-1) + (err2[..., :, 0] + err2[..., :, -1]).sum(
            axis=-1
        )
        per = edges / (2 * nx + 2 * ny)
    return float(np.mean(np.sqrt(per)))


def _fourier_error(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """PDEBench's per-wavenumber error [T, K] (already RMS over samples and scaled by 1/n_points)."""
    if p.ndim == 3:  # 1D
        nx = p.shape[-1]
        diff = np.fft.rfft(p, axis=-1) - np.fft.rfft(t, axis=-1)
        return np.sqrt(np.mean(np.abs(diff) ** 2, axis=0)) / nx
    nx, ny = p.shape[-2:]
    power = np.abs(np.fft.fftn(p, axes=(-2, -1)) - np.fft.fftn(t, axes=(-2, -1))) ** 2
    n_shells = min(nx // 2, ny // 2)
    i, j = np.meshgrid(np.arange(nx // 2), np.arange(ny // 2), indexing="ij")
    shell = np.floor(np.sqrt(i**2 + j**2)).astype(int)
    keep = shell < n_shells
    shells = np.zeros(p.shape[:2] + (n_shells,))
    quadrant = power[..., : nx // 2, : ny // 2]
    for s in range(n_shells):
        shells[..., s] = quadrant[..., (shell == s) & keep].sum(axis=-1)
    return np.sqrt(np.mean(shells, axis=0)) / (nx * ny)


def _band(pred, target, spatial_ndim: int, lo: int, hi: int | None) -> float:
    p, t = _prepare(pred, target, spatial_ndim)
    per_k = _fourier_error(p, t)[:, lo:hi]
    if per_k.shape[1] == 0:
        return float("nan")
    return float(np.mean(per_k.mean(axis=1)))


def frmse_low(pred, target, spatial_ndim: int = 1) -> float:
    return _band(pred, target, spatial_ndim, 0, I_LOW)


def frmse_mid(pred, target, spatial_ndim: int = 1) -> float:
    return _band(pred, target, spatial_ndim, I_LOW, I_HIGH)


def frmse_high(pred, target, spatial_ndim: int = 1) -> float:
    return _band(pred, target, spatial_ndim, I_HIGH, None)


METRICS = (mse, rmse, nrmse, crmse, max_error, boundary_rmse, frmse_low, frmse_mid, frmse_high)


def metric_table(pred, target, spatial_ndim: int = 1) -> dict[str, float]:
    """All metrics above by name."""
    return {f.__name__: f(pred, target, spatial_ndim) for f in METRICS}
