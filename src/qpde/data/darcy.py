"""Darcy flow 2D as in PDEBench: −∇·(a ∇u) = β on the unit square, u = 0 on the boundary.

The coefficient a is FNO's thresholded Gaussian random field (neuraloperator
data_generation/darcy/GRF.m: covariance (−Δ + τ²)^(−α) with Neumann boundaries, α = 2, τ = 3,
sampled through an inverse DCT) mapped to 1 where the field is ≥ 0 and 0.1 elsewhere, PDEBench's
two values. PDEBench's files use β ∈ {0.01, 0.1, 1, 10, 100}; any β > 0 is accepted here.

Discretisation: cell-centred finite volumes on the saved grid's cells (x = (i + ½)/n, as in
PDEBench's Darcy files), five-point stencil with harmonic-mean face coefficients (exact for the
flux through a face between two constant-coefficient cells) and the Dirichlet wall half a cell from
the boundary cells. `cells` > resolution refines every saved cell into (cells/resolution)² solver
cells with the same coefficient and cell-averages the solution back, so `nu` stays exactly binary.
One sparse LU (SuperLU) per sample."""

from __future__ import annotations

import logging

import numpy as np
from rich.progress import Progress
from scipy.fft import idctn
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import splu

from qpde.errors import DataError

log = logging.getLogger(__name__)

A_HIGH, A_LOW = 1.0, 0.1  # PDEBench's two permeability values
GRF_ALPHA, GRF_TAU = 2.0, 3.0  # FNO's Darcy GRF


def gaussian_random_field_neumann(
    n: int, samples: int, rng: np.random.Generator, alpha: float = GRF_ALPHA, tau: float = GRF_TAU
) -> np.ndarray:
    """FNO's GRF.m on an n×n grid: KL expansion in cosines, coefficients
    τ^(α−1)·(π²|k|² + τ²)^(−α/2), zero mean mode, inverse orthonormal DCT-II (MATLAB's idct2)."""
    k1, k2 = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    coef = tau ** (alpha - 1) * (np.pi**2 * (k1**2 + k2**2) + tau**2) ** (-alpha / 2)
    kl = n * coef * rng.standard_normal((samples, n, n))
    kl[:, 0, 0] = 0.0
    return idctn(kl, type=2, norm="ortho", axes=(-2, -1))


def coefficient_fields(n: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Thresholded GRF: a ∈ {1, 0.1}, [samples, n, n]."""
    return np.where(gaussian_random_field_neumann(n, samples, rng) >= 0, A_HIGH, A_LOW)


def operator(a: np.ndarray):
    """Sparse matrix of −∇·(a∇·) · h² on an n×m cell grid (unknowns in C order), Dirichlet walls."""
    nx, ny = a.shape
    index = np.arange(nx * ny).reshape(nx, ny)
    rows, cols, vals = [], [], []
    diagonal = np.zeros((nx, ny))
    for axis in (0, 1):
        lo = [slice(None)] * 2
        hi = [slice(None)] * 2
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        a_lo, a_hi = a[tuple(lo)], a[tuple(hi)]
        face = 2 * a_lo * a_hi / (a_lo + a_hi)  # harmonic mean: series conductances of two half-cells
        i_lo, i_hi = index[tuple(lo)].ravel(), index[tuple(hi)].ravel()
        rows += [i_lo, i_hi]
        cols += [i_hi, i_lo]
        vals += [-face.ravel(), -face.ravel()]
        diagonal[tuple(lo)] += face
        diagonal[tuple(hi)] += face
        # wall faces: half a cell from the centre, conductance 2a
        first = [slice(None)] * 2
        last = [slice(None)] * 2
        first[axis], last[axis] = 0, -1
        diagonal[tuple(first)] += 2 * a[tuple(first)]
        diagonal[tuple(last)] += 2 * a[tuple(last)]
    rows.append(index.ravel())
    cols.append(index.ravel())
    vals.append(diagonal.ravel())
    return coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(nx * ny, nx * ny)
    ).tocsc()


def solve(a: np.ndarray, f: np.ndarray | float) -> np.ndarray:
    """u [n, m] at cell centres of −∇·(a∇u) = f on the unit square (h = 1/n), u = 0 on the walls."""
    nx, ny = a.shape
    if nx != ny:
        raise DataError(f"darcy: the unit square needs a square grid, got {a.shape}")
    h = 1.0 / nx
    source = np.broadcast_to(np.asarray(f, dtype=np.float64), a.shape) * h**2
    return splu(operator(a)).solve(source.ravel()).reshape(nx, ny)


def generate_darcy(
    samples: int,
    resolution: int,
    seed: int,
    *,
    beta: float = 1.0,
    cells: int = 0,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(a [samples, r, r], u [samples, r, r] float32, x, y cell centres), r = resolution.

    The solver grid has max(resolution, cells) cells per side (a multiple of resolution)."""
    cells = max(int(resolution), int(cells))
    if cells % resolution:
        raise DataError(
            f"darcy: solver cells {cells} must be a multiple of the saved resolution {resolution}"
        )
    if not beta > 0:
        raise DataError(f"darcy: beta must be > 0 (PDEBench: 0.01, 0.1, 1, 10, 100), got {beta}")
    factor = cells // resolution
    rng = np.random.default_rng(seed)
    a = coefficient_fields(resolution, samples, rng)
    u = np.empty((samples, resolution, resolution), np.float32)
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("darcy", total=samples)
        for i in range(samples):
            fine = solve(np.kron(a[i], np.ones((factor, factor))), beta)
            u[i] = fine.reshape(resolution, factor, resolution, factor).mean(axis=(1, 3))
            bar.advance(task)
    x = (np.arange(resolution) + 0.5) / resolution
    return a.astype(np.float32), u, x, x.copy()
