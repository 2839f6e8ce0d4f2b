"""Resolution change: grid kinds, exactness on linear fields, round trips of smooth fields."""

import numpy as np
import pytest

from qpde.data import coarse_grid, resample
from qpde.errors import DataError


def centres(n):
    return (np.arange(n) + 0.5) / n


def test_periodic_cell_centred_round_trip():
    """sin(2πx), 64 → 32 → 64 cells. Linear interpolation error ≤ h²/8·max|u''| with h the coarse
    spacing: (1/32)²/8·4π² = 4.8e-3 for the way back; measured 4.8e-3 (coarse: 1.2e-3)."""
    x = centres(64)
    u = np.sin(2 * np.pi * x)[None]
    coarse = resample(u, (x,), (32,), periodic=True)
    (xc,) = coarse_grid((x,), (32,), periodic=True)
    assert np.allclose(xc, centres(32))
    assert np.abs(coarse[0] - np.sin(2 * np.pi * xc)).max() < 1.3e-3
    back = resample(coarse, (xc,), (64,), periodic=True)
    assert np.abs(back - u).max() < 5e-3
    assert np.array_equal(resample(u, (x,), (64,), periodic=True), u)


def test_periodic_node_grid_subsamples_exactly_and_wraps():
    """Navier–Stokes grid (nodes i/N): halving keeps every other node, so values are copied exactly;
    doubling puts the new midpoint after the last node halfway to the first one (wrap-around)."""
    x = np.arange(16) / 16
    u = np.random.default_rng(0).normal(size=(3, 16, 16))
    coarse = resample(u, (x, x), (8, 8), periodic=True)
    assert np.array_equal(coarse, u[:, ::2, ::2])
    (xc, yc) = coarse_grid((x, x), (8, 8), periodic=True)
    assert np.allclose(xc, np.arange(8) / 8) and np.allclose(yc, xc)
    fine = resample(coarse, (xc, yc), (16, 16), periodic=True)
    assert np.allclose(fine[:, -1, 0], 0.5 * (coarse[:, -1, 0] + coarse[:, 0, 0]))


def test_non_periodic_cell_centred_is_exact_for_bilinear_fields():
    """Darcy / diffusion–sorption grids: the coarse centres lie inside the domain and the fine
    centres next to the walls are extrapolated linearly, so a + bx + cy + dxy is reproduced exactly."""
    x, y = centres(32), centres(24)
    field = 1 + 2 * x[:, None] - 3 * y[None, :] + 0.5 * x[:, None] * y[None, :]
    coarse = resample(field, (x, y), (8, 6), periodic=False)
    xc, yc = coarse_grid((x, y), (8, 6), periodic=False)
    assert np.allclose(xc, centres(8)) and np.allclose(yc, centres(6))
    assert np.allclose(
        coarse, 1 + 2 * xc[:, None] - 3 * yc[None, :] + 0.5 * xc[:, None] * yc[None, :], atol=1e-13
    )
    assert np.allclose(resample(coarse, (xc, yc), (32, 24), periodic=False), field, atol=1e-13)


def test_node_grid_keeps_end_points():
    x = np.linspace(0, 1, 33)
    (xc,) = coarse_grid((x,), (17,), periodic=False)
    assert np.allclose(xc, np.linspace(0, 1, 17))
    u = np.exp(x)
    assert np.allclose(resample(u, (x,), (17,), periodic=False), np.exp(xc))  # nodes coincide


def test_2d_smooth_round_trip_with_walls():
    """sin(πx)·sin(πy) on 64² cell centres → 16² → 64². Bilinear error ≤ h²/8·(|u_xx| + |u_yy|)
    = (1/16)²/8·2π² = 9.6e-3 on the way up (6e-4 on the way down); measured 9.60e-3, in the
    middle — the linearly extrapolated wall cells (u ≈ 0 there) are not worse."""
    x = centres(64)
    u = np.sin(np.pi * x)[:, None] * np.sin(np.pi * x)[None, :]
    grid = coarse_grid((x, x), (16, 16), periodic=False)
    back = resample(resample(u, (x, x), (16, 16), periodic=False), grid, (64, 64), periodic=False)
    error = np.abs(back - u)
    assert error.max() < 1.05e-2
    assert error[:, [0, -1]].max() < 5e-3


def test_bad_inputs():
    x = centres(8)
    with pytest.raises(DataError, match=r"shape \(4, 7\) does not end in the grid's shape \(8,\)"):
        resample(np.zeros((4, 7)), (x,), (4,), periodic=True)
    with pytest.raises(DataError, match="uniform"):
        resample(np.zeros(8), (x**2,), (4,), periodic=False)
    with pytest.raises(DataError, match="2 grid axes but destination shape"):
        coarse_grid((x, x), (4,), periodic=True)


def test_float32_coordinates_from_files_are_accepted():
    """PDEBench stores coordinates as float32: (i + ½)/1000 is uniform only to ~1e-7."""
    x = ((np.arange(1000) + 0.5) / 1000).astype(np.float32)
    u = np.sin(2 * np.pi * x.astype(np.float64))
    coarse = resample(u, (x,), (500,), periodic=True)
    assert np.abs(coarse - np.sin(2 * np.pi * centres(500))).max() < 1e-4
