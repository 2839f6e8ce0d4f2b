"""Resolution change by linear (1D) / bilinear (2D, separable) interpolation on uniform grids.

A grid's coordinates say what kind it is: if x[0]/dx is a half-integer the points are cell centres
(PDEBench's 1D and Darcy grids: (i+½)/N), otherwise nodes (the FNO Navier–Stokes grid: i/N). The
destination grid covers the same domain with the same kind of points, so cell centres map to cell
centres of the coarser cells and nodes keep the first node. Periodic grids wrap around; on
non-periodic cell-centred grids, destination points beyond the outermost source centres (half a
source cell from the wall) are linearly extrapolated, which keeps linear fields exact."""

from __future__ import annotations

import numpy as np

from qpde.errors import DataError


def _spacing(x: np.ndarray) -> tuple[float, bool]:
    """(dx, cell_centred) of a uniform coordinate array."""
    if x.ndim != 1 or len(x) < 2:
        raise DataError(
            f"resample: a grid axis needs a 1-D coordinate array with ≥ 2 points, got shape {x.shape}"
        )
    steps = np.diff(x)
    dx = float(steps.mean())
    # float32 coordinates (PDEBench files) jitter by ~1e-7: allow 0.1% of a step, plus 8 float32 ulps
    if dx <= 0 or np.abs(steps - dx).max() > 1e-3 * dx + 8 * np.finfo(np.float32).eps * np.abs(x).max():
        raise DataError(
            f"resample: coordinates must be uniform and increasing; steps range "
            f"{steps.min():.6g}..{steps.max():.6g}"
        )
    offset = (x[0] / dx) % 1.0
    return dx, abs(offset - 0.5) < 0.25


def coarse_grid(
    grid_src: tuple[np.ndarray, ...], shape_dst: tuple[int, ...], periodic: bool
) -> tuple[np.ndarray, ...]:
    """Uniform coordinates with `shape_dst` points covering the same domain as `grid_src`."""
    if len(grid_src) != len(shape_dst):
        raise DataError(f"resample: {len(grid_src)} grid axes but destination shape {tuple(shape_dst)}")
    out = []
    for x, n in zip(grid_src, shape_dst, strict=True):
        x = np.asarray(x, dtype=np.float64)
        dx, centred = _spacing(x)
        n = int(n)
        if n < 2:
            raise DataError(f"resample: destination axes need ≥ 2 points, got {n}")
        if periodic:
            length = len(x) * dx
            lo = x[0] - dx / 2 if centred else x[0]
            out.append(lo + (np.arange(n) + (0.5 if centred else 0.0)) * length / n)
        elif centred:
            lo, hi = x[0] - dx / 2, x[-1] + dx / 2
            out.append(lo + (np.arange(n) + 0.5) * (hi - lo) / n)
        else:
            out.append(np.linspace(x[0], x[-1], n))
    return tuple(out)


def _interp_axis(
    u: np.ndarray, x_src: np.ndarray, x_dst: np.ndarray, axis: int, periodic: bool
) -> np.ndarray:
    n = len(x_src)
    dx, _ = _spacing(x_src)
    pos = (x_dst - x_src[0]) / dx
    if periodic:
        left = np.floor(pos).astype(np.int64)
        weight = pos - left
        i0, i1 = left % n, (left + 1) % n
    else:
        i0 = np.clip(np.floor(pos).astype(np.int64), 0, n - 2)
        i1 = i0 + 1
        weight = pos - i0  # outside [0, 1] only beyond the outer points: linear extrapolation
    shape = [1] * u.ndim
    shape[axis] = len(x_dst)
    weight = weight.reshape(shape)
    return np.take(u, i0, axis=axis) * (1 - weight) + np.take(u, i1, axis=axis) * weight


def resample(
    u: np.ndarray, grid_src: tuple[np.ndarray, ...], shape_dst: tuple[int, ...], periodic: bool
) -> np.ndarray:
    """Interpolate the trailing len(grid_src) axes of u from `grid_src` onto
    `coarse_grid(grid_src, shape_dst, periodic)`; returns float64."""
    out = np.asarray(u, dtype=np.float64)
    ndim = len(grid_src)
    sizes = tuple(len(x) for x in grid_src)
    if out.ndim < ndim or out.shape[out.ndim - ndim :] != sizes:
        raise DataError(f"resample: array of shape {out.shape} does not end in the grid's shape {sizes}")
    grid_dst = coarse_grid(grid_src, shape_dst, periodic)
    for k, (x_src, x_dst) in enumerate(zip(grid_src, grid_dst, strict=True)):
        if len(x_src) == len(x_dst):
            continue  # same grid: nothing to interpolate
        out = _interp_axis(out, np.asarray(x_src, dtype=np.float64), x_dst, out.ndim - ndim + k, periodic)
    return out
