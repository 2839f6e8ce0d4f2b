"""Resolution change by linear interpolation on uniform grids (periodic grids wrap)."""

from __future__ import annotations

import numpy as np


def coarse_grid(grid_src: tuple[np.ndarray, ...], shape_dst: tuple[int, ...], periodic: bool) -> tuple[np.ndarray, ...]:
    """Uniform destination coordinates covering the same domain as the source grid.

    Periodic (cell-centred) grids keep cell centres; others keep both end points."""
    out = []
    for x, n in zip(grid_src, shape_dst):
        x = np.asarray(x, dtype=np.float64)
        if periodic:
            dx = x[1] - x[0]
            lo, hi = x[0] - dx / 2, x[-1] + dx / 2
            out.append(lo + (np.arange(n) + 0.5) * (hi - lo) / n)
        else:
            out.append(np.linspace(x[0], x[-1], n))
    return tuple(out)


def _interp_axis(u: np.ndarray, x_src: np.ndarray, x_dst: np.ndarray, axis: int, periodic: bool) -> np.ndarray:
    n = len(x_src)
    if periodic:
        dx = x_src[1] - x_src[0]
        pos = (x_dst - x_src[0]) / dx
        left = np.floor(pos).astype(int)
        weight = pos - left
        i0, i1 = left % n, (left + 1) % n
    else:
        i1 = np.clip(np.searchsorted(x_src, x_dst, side="right"), 1, n - 1)
        i0 = i1 - 1
        weight = np.clip((x_dst - x_src[i0]) / (x_src[i1] - x_src[i0]), 0.0, 1.0)
    shape = [1] * u.ndim
    shape[axis] = len(x_dst)
    weight = weight.reshape(shape)
    return np.take(u, i0, axis=axis) * (1 - weight) + np.take(u, i1, axis=axis) * weight


def resample(u: np.ndarray, grid_src: tuple[np.ndarray, ...], shape_dst: tuple[int, ...], periodic: bool) -> np.ndarray:
    """Linear (1D) / bilinear (2D) interpolation of the trailing len(grid_src) axes of u."""
    grid_dst = coarse_grid(grid_src, shape_dst, periodic)
    out = np.asarray(u, dtype=np.float64)
    ndim = len(grid_src)
    for k, (x_src, x_dst) in enumerate(zip(grid_src, grid_dst)):
        out = _interp_axis(out, np.asarray(x_src, dtype=np.float64), x_dst, out.ndim - ndim + k, periodic)
    return out
