"""Burgers 1D as PDEBench generates it: u_t + (u²/2)_x = (ν/π) u_xx on the periodic x ∈ [0, 1).

Initial conditions follow PDEBench's `init_multi` (sum of sine modes with random integer
wavenumbers, amplitudes and phases; with probability 0.1 each: absolute value, sign flip, a tanh
window). The solver is a conservative finite-volume scheme: MUSCL (minmod) reconstruction with
the Rusanov flux for the convective term, central differences for diffusion, SSP-RK2 in time with
a CFL-limited step that lands exactly on every saved time."""

from __future__ import annotations

import numpy as np
from rich.progress import Progress

PDEBENCH_K_TOT = 4  # wavenumbers drawn from 1 … k_tot−1 (PDEBench's init_multi)
PDEBENCH_N_MODES = 2
CFL = 0.4


def initial_conditions(x: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """PDEBench's `init_multi` on cell centres x: [samples, len(x)]."""
    k = 2 * np.pi * rng.integers(1, PDEBENCH_K_TOT, size=(samples, PDEBENCH_N_MODES, 1))
    amp = rng.uniform(0, 1, size=(samples, PDEBENCH_N_MODES, 1))
    phase = 2 * np.pi * rng.uniform(0, 1, size=(samples, PDEBENCH_N_MODES, 1))
    u = (amp * np.sin(k * x[None, None, :] + phase)).sum(axis=1)
    u = np.where(rng.uniform(size=(samples, 1)) < 0.1, np.abs(u), u)
    u = np.where(rng.uniform(size=(samples, 1)) < 0.1, -u, u)
    window = rng.uniform(size=(samples, 1)) < 0.1
    x_left = rng.uniform(0.1, 0.45, size=(samples, 1))
    x_right = rng.uniform(0.55, 0.9, size=(samples, 1))
    mask = 0.5 * (np.tanh((x - x_left) / 0.01) - np.tanh((x - x_right) / 0.01))
    return np.where(window, u * mask, u)


def _minmod(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(a * b > 0, np.sign(a) * np.minimum(np.abs(a), np.abs(b)), 0.0)


def _rhs(u: np.ndarray, dx: float, diffusivity: float) -> np.ndarray:
    """−∂x(u²/2) + D ∂xx u for periodic cell averages u [S, N]."""
    slope = _minmod(u - np.roll(u, 1, axis=-1), np.roll(u, -1, axis=-1) - u)
    left = u + 0.5 * slope  # state left of face i+1/2
    right = np.roll(u - 0.5 * slope, -1, axis=-1)  # state right of face i+1/2
    speed = np.maximum(np.abs(left), np.abs(right))
    flux = 0.25 * (left**2 + right**2) - 0.5 * speed * (right - left)
    convective = -(flux - np.roll(flux, 1, axis=-1)) / dx
    diffusive = diffusivity * (np.roll(u, -1, axis=-1) - 2 * u + np.roll(u, 1, axis=-1)) / dx**2
    return convective + diffusive


def solve(u0: np.ndarray, times: np.ndarray, nu: float, *, progress: bool = True) -> np.ndarray:
    """Evolve cell averages u0 [S, N] to every time in `times` (times[0] = 0): [S, T, N]."""
    u = np.asarray(u0, dtype=np.float64).copy()
    n = u.shape[-1]
    dx = 1.0 / n
    diffusivity = nu / np.pi
    out = np.empty((u.shape[0], len(times), n))
    out[:, 0] = u
    t = float(times[0])
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("burgers", total=len(times) - 1)
        for index, t_save in enumerate(times[1:], start=1):
            while t < t_save - 1e-12:
                dt_adv = dx / max(np.abs(u).max(), 1e-8)
                dt_diff = dx**2 / (2 * diffusivity) if diffusivity > 0 else np.inf
                dt = min(CFL * min(dt_adv, dt_diff), t_save - t)
                stage = u + dt * _rhs(u, dx, diffusivity)
                u = 0.5 * (u + stage + dt * _rhs(stage, dx, diffusivity))
                t += dt
            out[:, index] = u
            bar.advance(task)
    return out


def cell_average(u: np.ndarray, factor: int) -> np.ndarray:
    """Coarsen cell averages by an integer factor (conservative)."""
    return u.reshape(*u.shape[:-1], u.shape[-1] // factor, factor).mean(axis=-1)


def generate_burgers(
    samples: int, resolution: int, seed: int, *, nu: float = 0.01, n_times: int = 201, t_final: float = 2.0,
    cells: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tensor [samples, n_times, resolution], x cell centres, t saved times). The solver runs on
    `cells` cells (default: 2 × resolution, at least 256) and is cell-averaged to `resolution`."""
    cells = cells or max(256, 2 * resolution)
    if cells % resolution:
        raise ValueError(f"solver cells {cells} must be a multiple of the saved resolution {resolution}")
    rng = np.random.default_rng(seed)
    x_fine = (np.arange(cells) + 0.5) / cells
    times = np.linspace(0.0, t_final, n_times)
    u = solve(initial_conditions(x_fine, samples, rng), times, nu)
    x = (np.arange(resolution) + 0.5) / resolution
    return cell_average(u, cells // resolution).astype(np.float32), x, times
