"""Navier–Stokes solver: Taylor–Green decay, time convergence, zero mean vorticity, GRF statistics."""

import numpy as np
import pytest

from qpde.data import navier_stokes as ns
from qpde.errors import DataError


def test_taylor_green_vortex_decays_exactly():
    """ω0 = 2·cos 2πx·cos 2πy (ψ ∝ ω, so u·∇ω = 0) with no forcing decays as exp(−8π²νt).
    ν = 0.01, t ≤ 1, 32²: measured max error 9.31e-5 with the default dt cap 0.05 and 2.33e-5 with
    0.025 — exactly the Crank–Nicolson amplification error 2·|r(z)ⁿ − e^(−nz)|, order 2.00."""
    n, nu = 32, 0.01
    x = np.arange(n) / n
    w0 = 2 * np.cos(2 * np.pi * x)[:, None] * np.cos(2 * np.pi * x)[None, :]
    times = np.linspace(0, 1, 5)
    exact = w0[None] * np.exp(-8 * np.pi**2 * nu * times)[:, None, None]
    solver = ns.Solver(n, nu, forcing=None)
    coarse, fine = (np.abs(solver.run(w0[None], times, max_dt=dt)[0] - exact).max() for dt in (0.05, 0.025))
    assert coarse < 1e-4 and fine < 2.5e-5
    assert np.log2(coarse / fine) > 1.95


def test_second_order_in_time_and_zero_mean():
    """Forced GRF flow, 32², ν = 1e-3, t = 2, dt capped at 0.1 / 0.05 / 0.025 (CFL-limited below):
    differences to a dt = 0.00625 run: 1.07e-4, 2.67e-5, 6.4e-6 (max |ω| 0.56) → orders 2.00, 2.06."""
    n = 32
    w0 = ns.gaussian_random_field(n, 2, np.random.default_rng(0))
    solver = ns.Solver(n, 1e-3, ns.fno_forcing(n), cfl=10.0)  # let max_dt, not the CFL, set the step
    times = np.array([0.0, 2.0])
    reference = solver.run(w0, times, max_dt=0.00625)[:, -1]
    errors = [np.abs(solver.run(w0, times, max_dt=dt)[:, -1] - reference).max() for dt in (0.1, 0.05, 0.025)]
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert (orders > 1.8).all(), (errors, orders)
    assert np.abs(reference.mean(axis=(-2, -1))).max() < 1e-14


def test_grf_matches_fno_spectrum():
    """FNO's GaussianRF: coefficients n²·√2·σ·(4π²|k|² + τ²)^(−α/2)·z, real part of ifft2, so
    E|fft2(ω)_k|²/n⁴ = σ²·(4π²|k|² + τ²)^(−α) (the real part keeps half the power); σ = 7^1.5.
    400 samples: within 3% at |k| = 1 and |k|² = 13 (sampling error ~ 1/√800 ≈ 3.5%)."""
    n, samples = 32, 400
    w = ns.gaussian_random_field(n, samples, np.random.default_rng(1))
    assert np.abs(w.mean(axis=(-2, -1))).max() < 1e-12
    power = (np.abs(np.fft.fft2(w)) ** 2).mean(axis=0) / n**4
    sigma = 7.0**1.5
    for i, j in ((1, 0), (0, 1), (2, 3)):
        expected = sigma**2 * (4 * np.pi**2 * (i * i + j * j) + 49) ** (-2.5)
        assert power[i, j] == pytest.approx(expected, rel=0.12)


def test_generate_subsamples_nodes_and_is_seeded():
    w, x, y, t = ns.generate_navier_stokes(2, 16, seed=4, t_final=0.5, n_times=3, cells=32, progress=False)
    assert w.shape == (2, 3, 16, 16) and w.dtype == np.float32
    assert np.allclose(x, np.arange(16) / 16) and np.allclose(t, [0, 0.25, 0.5])
    w0 = ns.gaussian_random_field(32, 2, np.random.default_rng(4))
    assert np.allclose(w[:, 0], w0[:, ::2, ::2], atol=1e-6)  # FNO-style subsampling of the 32² solve
    again = ns.generate_navier_stokes(2, 16, seed=4, t_final=0.5, n_times=3, cells=32, progress=False)[0]
    assert np.array_equal(w, again)
    with pytest.raises(DataError, match="nu > 0"):
        ns.generate_navier_stokes(1, 16, seed=0, nu=0.0)
