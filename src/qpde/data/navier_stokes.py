"""Incompressible Navier–Stokes 2D in vorticity form on the periodic unit torus, as in the FNO
benchmark (Li et al.; neuraloperator data_generation/navier_stokes/ns_2d.py):

    ω_t + u·∇ω = ν Δω + f,   u = (ψ_y, −ψ_x),   −Δψ = ω,
    f(x, y) = 0.1 (sin 2π(x + y) + cos 2π(x + y)),

with the initial vorticity drawn from FNO's periodic Gaussian random field (random_fields.py
GaussianRF: α = 2.5, τ = 7, σ = τ^(α − 1), zero mean). Grid points are the nodes x = i/N.

Pseudo-spectral in space (real FFTs, 2/3-rule dealiasing of the advection term with FNO's mask
|k_x|, |k_y| ≤ ⅔·N/2, Nyquist modes left out of derivatives). In time, Crank–Nicolson for the
viscous term as in FNO, but Heun's second-order predictor–corrector for advection and forcing where
FNO uses forward Euler with a fixed dt = 1e-4; the step follows a CFL limit on the velocity (and at
most MAX_DT) and lands exactly on every saved time. The mean vorticity (k = 0) stays exactly 0."""

from __future__ import annotations

import logging

import numpy as np
from rich.progress import Progress

from qpde.errors import DataError

log = logging.getLogger(__name__)

GRF_ALPHA, GRF_TAU = 2.5, 7.0
MAX_DT = 0.05  # caps dt when the flow is slow: relative error vs dt → 0 is 2e-5 at 64², ν = 1e-3


def wavenumbers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer wavenumbers (k_x [n, 1], k_y [1, n//2 + 1]) of an rfft2 on an n×n grid."""
    return np.fft.fftfreq(n, 1.0 / n)[:, None], np.fft.rfftfreq(n, 1.0 / n)[None, :]


def gaussian_random_field(
    n: int, samples: int, rng: np.random.Generator, alpha: float = GRF_ALPHA, tau: float = GRF_TAU
) -> np.ndarray:
    """FNO's periodic GaussianRF(dim=2): [samples, n, n] with spectrum
    n²·√2·σ·(4π²|k|² + τ²)^(−α/2), σ = τ^(α−1), complex normal coefficients, real part of ifft2."""
    sigma = tau ** (0.5 * (2 * alpha - 2))
    k = np.fft.fftfreq(n, 1.0 / n)
    kx, ky = np.meshgrid(k, k, indexing="ij")
    sqrt_eig = n**2 * np.sqrt(2.0) * sigma * (4 * np.pi**2 * (kx**2 + ky**2) + tau**2) ** (-alpha / 2)
    sqrt_eig[0, 0] = 0.0
    # torch.randn(cfloat) has E|z|² = 1: real and imaginary parts each of variance ½
    z = (rng.standard_normal((samples, n, n)) + 1j * rng.standard_normal((samples, n, n))) / np.sqrt(2.0)
    return np.fft.ifft2(sqrt_eig * z, axes=(-2, -1)).real


def fno_forcing(n: int) -> np.ndarray:
    x = np.arange(n) / n
    s = x[:, None] + x[None, :]
    return 0.1 * (np.sin(2 * np.pi * s) + np.cos(2 * np.pi * s))


class Solver:
    """Advances vorticity fields [S, n, n] in Fourier space (rfft2 coefficients)."""

    def __init__(self, n: int, nu: float, forcing: np.ndarray | None, cfl: float = 0.5):
        if n % 2:
            raise DataError(f"navier-stokes: the grid size must be even, got {n}")
        self.n, self.nu, self.cfl = n, nu, cfl
        kx, ky = wavenumbers(n)
        self.lap = 4 * np.pi**2 * (kx**2 + ky**2)  # −Δ in Fourier space
        inverse = self.lap.copy()
        inverse[0, 0] = 1.0
        self.inv_lap = 1.0 / inverse
        self.inv_lap[0, 0] = 0.0
        # Nyquist modes have no well-defined derivative on a real grid
        self.dx_op = 2j * np.pi * np.where(np.abs(kx) == n // 2, 0.0, kx)
        self.dy_op = 2j * np.pi * np.where(np.abs(ky) == n // 2, 0.0, ky)
        k_max = n // 2
        self.dealias = (np.abs(kx) <= 2.0 / 3.0 * k_max) & (np.abs(ky) <= 2.0 / 3.0 * k_max)
        self.f_hat = np.zeros((n, n // 2 + 1), complex) if forcing is None else np.fft.rfft2(forcing)

    def _ifft(self, a: np.ndarray) -> np.ndarray:
        return np.fft.irfft2(a, s=(self.n, self.n), axes=(-2, -1))

    def advection(self, w_hat: np.ndarray) -> tuple[np.ndarray, float]:
        """(dealiased FFT of u·∇ω, max |u| + |v|)."""
        psi_hat = w_hat * self.inv_lap
        u = self._ifft(self.dy_op * psi_hat)
        v = -self._ifft(self.dx_op * psi_hat)
        w_x = self._ifft(self.dx_op * w_hat)
        w_y = self._ifft(self.dy_op * w_hat)
        adv = np.fft.rfft2(u * w_x + v * w_y, axes=(-2, -1)) * self.dealias
        return adv, float((np.abs(u) + np.abs(v)).max())

    def step(self, w_hat: np.ndarray, dt: float, adv: np.ndarray) -> np.ndarray:
        """One IMEX step: Crank–Nicolson viscosity, Heun advection + forcing; `adv` is advection(w_hat)."""
        explicit = 1 - 0.5 * dt * self.nu * self.lap
        implicit = 1 + 0.5 * dt * self.nu * self.lap
        predictor = (explicit * w_hat + dt * (self.f_hat - adv)) / implicit
        adv_predictor, _ = self.advection(predictor)
        return (explicit * w_hat + dt * (self.f_hat - 0.5 * (adv + adv_predictor))) / implicit

    def run(
        self, w0: np.ndarray, times: np.ndarray, *, progress: bool = False, max_dt: float = MAX_DT
    ) -> np.ndarray:
        """Vorticity at every saved time: [S, T, n, n] (times[0] is the time of w0)."""
        w_hat = np.fft.rfft2(np.asarray(w0, dtype=np.float64), axes=(-2, -1))
        w_hat[..., 0, 0] = 0.0  # zero-mean vorticity on the torus
        out = np.empty((w_hat.shape[0], len(times), self.n, self.n))
        out[:, 0] = self._ifft(w_hat)
        t, steps = float(times[0]), 0
        dx = 1.0 / self.n
        with Progress(transient=True, disable=not progress) as bar:
            task = bar.add_task("navier-stokes", total=len(times) - 1)
            for index, t_save in enumerate(times[1:], start=1):
                while t_save - t > 1e-12 * max(1.0, abs(t_save)):
                    adv, speed = self.advection(w_hat)
                    if not np.isfinite(speed):
                        raise DataError(
                            f"navier-stokes: the solution blew up at t={t:.4g}; lower cfl or nu·dt"
                        )
                    dt_max = min(max_dt, self.cfl * dx / max(speed, 1e-12))
                    remaining = t_save - t
                    n_sub = max(1, int(np.ceil(remaining / dt_max - 1e-9)))  # no extra step for round-off
                    dt = remaining / n_sub  # equal sub-steps that end exactly on t_save
                    w_hat = self.step(w_hat, dt, adv)
                    t = t_save if n_sub == 1 else t + dt
                    steps += 1
                out[:, index] = self._ifft(w_hat)
                bar.advance(task)
        log.debug("navier-stokes: %d steps on %d² points", steps, self.n)
        return out


def generate_navier_stokes(
    samples: int,
    resolution: int,
    seed: int,
    *,
    nu: float = 1e-3,
    t_final: float = 50.0,
    n_times: int = 51,
    cells: int = 0,
    forcing: bool = True,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ω [samples, n_times, r, r] float32, x, y nodes i/r, t saved times), r = resolution.

    Solved on max(resolution, cells)² points (a multiple of resolution); a finer solve is sampled
    at every (cells/resolution)-th node as FNO does (256² → 64²). The GRF initial state is drawn on
    the solver grid."""
    cells = max(int(resolution), int(cells))
    if cells % resolution:
        raise DataError(
            f"navier-stokes: solver cells {cells} must be a multiple of the saved resolution {resolution}"
        )
    if nu <= 0 or t_final <= 0 or n_times < 2:
        raise DataError(
            f"navier-stokes: need nu > 0, t_final > 0, n_times ≥ 2; got nu={nu}, t_final={t_final}, "
            f"n_times={n_times}"
        )
    stride = cells // resolution
    rng = np.random.default_rng(seed)
    w0 = gaussian_random_field(cells, samples, rng)
    solver = Solver(cells, nu, fno_forcing(cells) if forcing else None)
    times = np.linspace(0.0, t_final, n_times)
    w = solver.run(w0, times, progress=progress)[..., ::stride, ::stride].astype(np.float32)
    x = np.arange(resolution) / resolution
    return w, x, x.copy(), times
