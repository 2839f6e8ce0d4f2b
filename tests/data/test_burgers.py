"""Burgers solver against the Cole–Hopf exact solution of viscous Burgers, and conservation."""

import numpy as np
import pytest

from qpde.data.burgers import cell_average, generate_burgers, initial_conditions, solve
from qpde.errors import DataError


def cole_hopf(x: np.ndarray, t: float, diffusivity: float, n_fine: int = 4096) -> np.ndarray:
    """Exact u(x, t) for u0 = sin(2πx), periodic, u_t + u u_x = D u_xx.

    u = −2D φ_x/φ with φ solving the heat equation from φ0 = exp(−(1 − cos 2πx)/(4πD)); φ is
    evolved exactly in Fourier space (φ0 is smooth and periodic: spectral accuracy ~1e-13)."""
    xf = np.arange(n_fine) / n_fine
    phi0 = np.exp(-(1 - np.cos(2 * np.pi * xf)) / (4 * np.pi * diffusivity))
    k = np.fft.rfftfreq(n_fine, 1 / n_fine) * 2 * np.pi
    phi_hat = np.fft.rfft(phi0) * np.exp(-diffusivity * k**2 * t)
    phi = np.fft.irfft(phi_hat, n_fine)
    phi_x = np.fft.irfft(1j * k * phi_hat, n_fine)
    u_fine = -2 * diffusivity * phi_x / phi
    # evaluate at x by spectral interpolation of the smooth periodic solution
    u_hat = np.fft.rfft(u_fine) / n_fine
    modes = np.arange(len(u_hat))
    weights = np.where((modes == 0) | (modes == n_fine // 2), 1.0, 2.0)
    return np.real((weights * u_hat)[None, :] * np.exp(2j * np.pi * modes[None, :] * x[:, None])).sum(axis=1)


def _error(cells: int, nu: float, t: float) -> float:
    x = (np.arange(cells) + 0.5) / cells
    # Cell averages of sin(2πx) exactly: sinc factor of the cell
    u0 = np.sin(2 * np.pi * x) * np.sinc(1.0 / cells)
    u = solve(u0[None, :], np.array([0.0, t]), nu, progress=False)[0, -1]
    return float(np.abs(u - cole_hopf(x, t, nu / np.pi)).max())


def test_cole_hopf_error_and_second_order_convergence():
    """ν = 0.3 (D = ν/π ≈ 0.095), t = 0.25, sin(2πx) initial state (smooth, no shock).
    Measured max errors: 128 cells 1.6e-4, 256 cells 4.1e-5 → observed order 1.99 (MUSCL with the
    minmod limiter is second order on smooth data)."""
    e128, e256 = _error(128, 0.3, 0.25), _error(256, 0.3, 0.25)
    assert e128 < 3e-4 and e256 < 8e-5
    assert np.log2(e128 / e256) > 1.7


def test_mass_is_conserved_to_round_off():
    rng = np.random.default_rng(3)
    x = (np.arange(128) + 0.5) / 128
    u0 = initial_conditions(x, 8, rng)
    u = solve(u0, np.linspace(0, 2, 5), 0.01, progress=False)
    mass = u.mean(axis=-1)
    assert np.abs(mass - mass[:, :1]).max() < 1e-12


def test_generated_shapes_and_cell_averaging():
    tensor, x, t = generate_burgers(3, 32, seed=0, n_times=4, cells=128)
    assert tensor.shape == (3, 4, 32) and tensor.dtype == np.float32
    assert np.allclose(x, (np.arange(32) + 0.5) / 32) and np.allclose(t, [0, 2 / 3, 4 / 3, 2])
    assert np.array_equal(cell_average(np.arange(8.0)[None], 4), [[1.5, 5.5]])
    with pytest.raises(DataError, match="multiple"):
        generate_burgers(1, 48, seed=0, n_times=2, cells=128)


def test_same_seed_same_data():
    a = generate_burgers(2, 32, seed=5, n_times=3, cells=64, progress=False)[0]
    b = generate_burgers(2, 32, seed=5, n_times=3, cells=64, progress=False)[0]
    assert np.array_equal(a, b)


def test_initial_conditions_follow_pdebench_init_multi():
    """Modes 1…4 (doubled when picked twice) plus a constant from unpicked modes; |u| and the
    window (p = 0.1 each) add other harmonics, so ≈ 0.9·0.9 = 81% of states stay band-limited."""
    n = 256
    x = (np.arange(n) + 0.5) / n
    u = initial_conditions(x, 2000, np.random.default_rng(0))
    power = np.abs(np.fft.rfft(u, axis=1)) / n
    allowed = np.zeros(power.shape[1], bool)
    allowed[[0, 1, 2, 3, 4, 6, 8]] = True
    band_limited = power[:, ~allowed].max(axis=1) < 1e-10
    assert 0.77 < band_limited.mean() < 0.85
    assert (power[band_limited, 0] > 1e-3).mean() > 0.9  # unpicked modes add a random offset
    # A sign flip with p = 0.5 makes the offsets symmetric about zero.
    offsets = u[band_limited].mean(axis=1)
    assert 0.45 < (offsets > 0).mean() < 0.55
