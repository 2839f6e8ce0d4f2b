"""Diffusion–sorption 1D as PDEBench generates it (pdebench/data_gen/src/sim_diff_sorp.py):

    u_t = D / R(u) · u_xx on x ∈ [0, 1],  R(u) = 1 + (1 − φ)/φ · ρ_s · k_f · n_f · (u + 1e-6)^(n_f − 1)

with D = 5e-4, φ = 0.29, ρ_s = 2880, k_f = 3.5e-4, n_f = 0.874 and a random constant initial state
u0 ~ U[0, 0.2] per sample. The spatial discretisation is PDEBench's, boundary conditions included:
cell-centred finite volumes with a ghost cell on each side, the left ghost held at the solubility
u = 1 (so the Dirichlet value sits half a cell outside x = 0) and the right ghost set to
D·(u[N−2] − u[N−1])/dx, PDEBench's discrete form of the Cauchy outflow condition. Note that this
right condition depends on dx, as in PDEBench.

R is singular as u → 0 when n_f < 1; PDEBench regularises with u + 1e-6, and we additionally clip
u at 0 first so that a tiny negative undershoot of the implicit solver cannot produce NaN.

Time integration: PDEBench uses explicit RK45 one sample at a time; the problem is stiff
(D/(R·dx²) ≈ 500 s⁻¹ at 1024 cells over t ≤ 500 s), so we use the L-stable linearly implicit ROS2
method with an analytic tridiagonal Jacobian and PDEBench's tolerances (rtol 1e-3, atol 1e-6: max
difference 8e-5 to a 1e-6 run), samples with similar initial states advanced together."""

from __future__ import annotations

import logging

import numpy as np
from rich.progress import Progress
from scipy.linalg import lapack

from qpde.errors import DataError

log = logging.getLogger(__name__)

DIFFUSIVITY = 5e-4
POROSITY = 0.29
RHO_S = 2880.0
K_F = 3.5e-4
N_F = 0.874
SOLUBILITY = 1.0
REGULARISATION = 1e-6  # PDEBench's (u + 1e-6)
BATCH = 16  # samples per stacked solve; samples are batched by initial state, see generate


def retardation(u: np.ndarray, n_f: float = N_F) -> np.ndarray:
    """Freundlich retardation factor R(u), regularised at u → 0."""
    coefficient = (1 - POROSITY) / POROSITY * RHO_S * K_F * n_f
    return 1 + coefficient * (np.maximum(u, 0.0) + REGULARISATION) ** (n_f - 1)


def rhs(u: np.ndarray, dx: float, n_f: float = N_F, diffusivity: float = DIFFUSIVITY) -> np.ndarray:
    """du/dt for cell values u [S, N] with PDEBench's ghost-cell boundary conditions."""
    left = np.full(u.shape[:-1] + (1,), SOLUBILITY)
    right = diffusivity * (u[..., -2:-1] - u[..., -1:]) / dx
    padded = np.concatenate([left, u, right], axis=-1)
    laplacian = (padded[..., :-2] - 2 * u + padded[..., 2:]) / dx**2
    return diffusivity / retardation(u, n_f) * laplacian


def jacobian_bands(
    u: np.ndarray, dx: float, n_f: float = N_F, diffusivity: float = DIFFUSIVITY, f: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tridiagonal ∂(du/dt)/∂u of `rhs` per sample: (lower, main, upper), each [S, N]; lower[:, i]
    is ∂f_i/∂u_{i−1} (lower[:, 0] = 0) and upper[:, i] is ∂f_i/∂u_{i+1} (upper[:, −1] = 0).
    `f` is rhs(u) when the caller already has it."""
    coefficient = (1 - POROSITY) / POROSITY * RHO_S * K_F * n_f
    base = np.maximum(u, 0.0) + REGULARISATION
    r = 1 + coefficient * base ** (n_f - 1)
    dr = np.where(u > 0, coefficient * (n_f - 1) * base ** (n_f - 2), 0.0)
    g = diffusivity / r
    f = rhs(u, dx, n_f, diffusivity) if f is None else f
    main = -2 * g / dx**2 - dr / r * f  # ∂g/∂u · L = −(R'/R) · f
    lower = g / dx**2
    upper = lower.copy()
    # the right ghost D·(u[N−2] − u[N−1])/dx feeds the last cell
    lower[:, -1] *= 1 + diffusivity / dx
    main[:, -1] -= g[:, -1] * diffusivity / dx**3
    lower[:, 0] = 0
    upper[:, -1] = 0
    return lower, main, upper


def _tridiagonal_solve(factors: tuple, b: np.ndarray) -> np.ndarray:
    """Solve with LAPACK dgttrf factors for right-hand sides b [S, N] (stacked like the matrix)."""
    return lapack.dgttrs(*factors[:5], b.reshape(-1))[0].reshape(b.shape)


def solve(
    u0: np.ndarray,
    times: np.ndarray,
    *,
    n_f: float = N_F,
    rtol: float = 1e-3,
    atol: float = 1e-6,
    diffusivity: float = DIFFUSIVITY,
) -> np.ndarray:
    """Cell values u0 [S, N] → [S, T, N] at `times` (times[0] = 0).

    ROS2 (Verwer et al. 1999): a two-stage, second-order, L-stable linearly implicit Runge–Kutta
    method — one tridiagonal factorisation per step and no Newton iteration. The step adapts to
    the difference between ROS2 and its embedded first-order solution, measured per sample (RMS
    over cells) and limited by the worst sample, and lands exactly on every saved time."""
    u = np.array(u0, dtype=np.float64)
    samples, n = u.shape
    dx = 1.0 / n
    gamma = 1 + 1 / np.sqrt(2)
    out = np.empty((samples, len(times), n))
    out[:, 0] = u
    t, h = float(times[0]), 1e-3 * float(times[1] - times[0])
    steps = rejected = 0
    for index, t_save in enumerate(times[1:], start=1):
        while t < t_save:
            h_step = min(h, t_save - t)
            f0 = rhs(u, dx, n_f, diffusivity)
            lower, main, upper = jacobian_bands(u, dx, n_f, diffusivity, f0)
            # I − γ·h·J, stacked into one tridiagonal system (zero couplings between samples)
            factors = lapack.dgttrf(
                (-gamma * h_step * lower).reshape(-1)[1:],
                (1 - gamma * h_step * main).reshape(-1),
                (-gamma * h_step * upper).reshape(-1)[:-1],
            )
            if factors[-1] != 0:
                raise DataError(f"diffusion-sorption: singular implicit system at t={t:.4g}")
            k1 = _tridiagonal_solve(factors, f0)
            k2 = _tridiagonal_solve(factors, rhs(u + h_step * k1, dx, n_f, diffusivity) - 2 * k1)
            new = u + h_step * (1.5 * k1 + 0.5 * k2)
            scale = atol + rtol * np.maximum(np.abs(u), np.abs(new))
            error = np.sqrt(np.mean((0.5 * h_step * (k1 + k2) / scale) ** 2, axis=1)).max()
            if not np.isfinite(error):
                error = np.inf
            if error <= 1:
                u, steps = new, steps + 1
                t = t_save if h_step == t_save - t else t + h_step
            else:
                rejected += 1
            # embedded error is O(h²): exponent 1/2, with the usual safety factor and limits
            factor = min(4.0, max(0.2, 0.9 / np.sqrt(max(error, 1e-12))))
            if error <= 1 and h_step < h:
                h = max(h, h_step * factor)  # a step shortened to hit t_save says little about h
            else:
                h = h_step * factor
            if h < 1e-12 * max(1.0, abs(t_save)):
                raise DataError(
                    f"diffusion-sorption: step size underflow at t={t:.4g}; "
                    f"the solution is not finite (check n_f and the initial state)"
                )
        out[:, index] = u
    log.debug("diffusion-sorption: %d steps (%d rejected) on %d cells", steps, rejected, n)
    return out


def generate_diffusion_sorption(
    samples: int,
    resolution: int,
    seed: int,
    *,
    n_times: int = 101,
    t_final: float = 500.0,
    cells: int = 1024,
    n_f: float = N_F,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u [samples, n_times, resolution] float32, x cell centres, t saved times).

    The solver runs on max(resolution, cells) cells (default 1024 as PDEBench, whose right boundary
    condition depends on the cell size) and is cell-averaged down to `resolution`."""
    cells = max(int(resolution), int(cells))
    if cells % resolution:
        raise DataError(
            f"diffusion-sorption: solver cells {cells} must be a multiple of the saved "
            f"resolution {resolution}; pass cells=<a multiple> (PDEBench solves on 1024 cells)"
        )
    if t_final <= 0 or n_times < 2 or not 0 < n_f <= 1:
        raise DataError(
            f"diffusion-sorption: need t_final > 0, n_times ≥ 2, 0 < n_f ≤ 1; got "
            f"t_final={t_final}, n_times={n_times}, n_f={n_f}"
        )
    rng = np.random.default_rng(seed)
    u0 = rng.uniform(0.0, 0.2, size=samples)  # PDEBench: np.ones(Nx) * np.random.uniform(0, 0.2)
    times = np.linspace(0.0, t_final, n_times)
    out = np.empty((samples, n_times, resolution), np.float32)
    # The shared step size follows the stiffest sample (small u0: large R'), so samples with similar
    # initial states are solved together.
    order = np.argsort(u0)
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("diffusion-sorption", total=samples)
        for start in range(0, samples, BATCH):
            batch = order[start : start + BATCH]
            u = solve(u0[batch, None] * np.ones((1, cells)), times, n_f=n_f)
            out[batch] = u.reshape(len(batch), n_times, resolution, cells // resolution).mean(axis=-1)
            bar.advance(task, len(batch))
    x = (np.arange(resolution) + 0.5) / resolution
    return out, x, times
