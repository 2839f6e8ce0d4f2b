"""Burgers 1D as PDEBench generates it: u_t + (u²/2)_x = (ν/π) u_xx on the periodic x ∈ [0, 1).

Initial conditions follow PDEBench's `init_multi` (data_gen_NLE/utils.py, k_tot=4, two picks):
every one of the k_tot modes contributes amp·sin(k·x + phase) with amp ~ U[0,1), phase ~ U[0,2π);
a mode's wavenumber is 2π·(index+1)·(times it was picked), so unpicked modes add a random constant
and a mode picked twice doubles its wavenumber. Then |u| with probability 0.1, a sign flip with
probability 0.5 and a tanh window (edges U[0.1,0.45], U[0.55,0.9], width 0.01) with probability 0.1.
One deliberate difference: PDEBench divides k by (x_last − x_first) = 1 − dx, which makes the
initial state slightly non-periodic; we divide by the period 1 so it is exactly periodic.

The solver is a conservative finite-volume scheme: MUSCL (minmod) reconstruction with the Rusanov
flux for the convective term, central differences for diffusion, SSP-RK2 in time with a CFL-limited
step that lands exactly on every saved time."""

from __future__ import annotations

import logging

import numpy as np
from rich.progress import Progress

from qpde.errors import DataError

log = logging.getLogger(__name__)

K_TOT = 4  # PDEBench's burgers_multi_solution_Hydra.py calls init_multi(..., k_tot=4)
N_PICKS = 2  # init_multi's num_choise_k
CFL = 0.4
DEFAULT_CELLS = (
    256  # default solver grid: 64 quick samples in ~4 s on one idle core; rel. L2 2.7e-3 from a 1024-cell run
)


def initial_conditions(x: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """PDEBench's `init_multi` evaluated at cell centres x: [samples, len(x)]."""
    picks = rng.integers(0, K_TOT, size=(samples, N_PICKS))
    selected = (picks[:, :, None] == np.arange(K_TOT)).sum(axis=1)  # [S, K_TOT] ∈ {0, 1, 2}
    k = 2 * np.pi * np.arange(1, K_TOT + 1) * selected
    amp = rng.uniform(0, 1, size=(samples, K_TOT, 1))
    phase = 2 * np.pi * rng.uniform(0, 1, size=(samples, K_TOT, 1))
    u = (amp * np.sin(k[:, :, None] * x[None, None, :] + phase)).sum(axis=1)
    u = np.where(rng.uniform(size=(samples, 1)) < 0.1, np.abs(u), u)
    u = u * rng.choice([1.0, -1.0], size=(samples, 1))
    window = rng.uniform(size=(samples, 1)) < 0.1
    x_left = rng.uniform(0.1, 0.45, size=(samples, 1))
    x_right = rng.uniform(0.55, 0.9, size=(samples, 1))
    mask = 0.5 * (np.tanh((x - x_left) / 0.01) - np.tanh((x - x_right) / 0.01))
    return np.where(window, u * mask, u)


def _minmod(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(a * b > 0, np.sign(a) * np.minimum(np.abs(a), np.abs(b)), 0.0)


def _rhs(u: np.ndarray, dx: float, diffusivity: float) -> np.ndarray:
    """−∂x(u²/2) + D ∂xx u for periodic cell averages u [S, N]."""
    up, um = np.roll(u, -1, axis=-1), np.roll(u, 1, axis=-1)
    slope = _minmod(u - um, up - u)
    left = u + 0.5 * slope  # state left of face i+1/2
    right = np.roll(u - 0.5 * slope, -1, axis=-1)  # state right of face i+1/2
    speed = np.maximum(np.abs(left), np.abs(right))
    flux = 0.25 * (left**2 + right**2) - 0.5 * speed * (right - left)
    flux -= diffusivity * (up - u) / dx  # diffusive flux through the same face keeps it conservative
    return -(flux - np.roll(flux, 1, axis=-1)) / dx


def solve(u0: np.ndarray, times: np.ndarray, nu: float, *, progress: bool = True) -> np.ndarray:
    """Evolve cell averages u0 [S, N] to every time in `times` (times[0] = 0): [S, T, N]."""
    u = np.asarray(u0, dtype=np.float64).copy()
    n = u.shape[-1]
    dx = 1.0 / n
    diffusivity = nu / np.pi
    out = np.empty((u.shape[0], len(times), n))
    out[:, 0] = u
    t = float(times[0])
    steps = 0
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("burgers", total=len(times) - 1)
        for index, t_save in enumerate(times[1:], start=1):
            while t_save - t > 1e-12 * max(1.0, abs(t_save)):
                dt_adv = dx / max(np.abs(u).max(), 1e-8)
                dt_diff = dx**2 / (2 * diffusivity) if diffusivity > 0 else np.inf
                # Equal sub-steps that end exactly on t_save (no sliver step at the end).
                remaining = t_save - t
                n_sub = max(1, int(np.ceil(remaining / (CFL * min(dt_adv, dt_diff)) - 1e-9)))
                dt = remaining / n_sub
                stage = u + dt * _rhs(u, dx, diffusivity)
                u = 0.5 * (u + stage + dt * _rhs(stage, dx, diffusivity))
                t = t_save if n_sub == 1 else t + dt
                steps += 1
            out[:, index] = u
            bar.advance(task)
    log.debug("burgers: %d time steps on %d cells", steps, n)
    return out


def cell_average(u: np.ndarray, factor: int) -> np.ndarray:
    """Coarsen cell averages by an integer factor (conservative)."""
    return u.reshape(*u.shape[:-1], u.shape[-1] // factor, factor).mean(axis=-1)


def generate_burgers(
    samples: int,
    resolution: int,
    seed: int,
    *,
    nu: float = 0.01,
    n_times: int = 201,
    t_final: float = 2.0,
    cells: int = DEFAULT_CELLS,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tensor [samples, n_times, resolution] float32, x cell centres, t saved times).

    The solver runs on max(resolution, cells) cells and is cell-averaged down to `resolution`."""
    cells = max(int(resolution), int(cells))
    if cells % resolution:
        raise DataError(
            f"burgers: solver cells {cells} must be a multiple of the saved resolution {resolution}"
        )
    if nu < 0 or t_final <= 0 or n_times < 2:
        raise DataError(
            f"burgers: need nu ≥ 0, t_final > 0, n_times ≥ 2; got nu={nu}, t_final={t_final}, "
            f"n_times={n_times}"
        )
    rng = np.random.default_rng(seed)
    x_fine = (np.arange(cells) + 0.5) / cells
    times = np.linspace(0.0, t_final, n_times)
    u = solve(initial_conditions(x_fine, samples, rng), times, nu, progress=progress)
    x = (np.arange(resolution) + 0.5) / resolution
    return cell_average(u, cells // resolution).astype(np.float32), x, times
