"""Darcy solver: manufactured solution with second-order convergence; coefficient fields."""

import numpy as np
import pytest

from qpde.data import darcy
from qpde.errors import DataError


def _manufactured_error(n: int) -> float:
    """u* = sin(πx)·sin(πy) (zero on the walls), a = 1 + ½·sin(2πx)·cos(πy), f = −∇·(a∇u*)."""
    x = (np.arange(n) + 0.5) / n
    X, Y = np.meshgrid(x, x, indexing="ij")
    pi = np.pi
    u = np.sin(pi * X) * np.sin(pi * Y)
    a = 1 + 0.5 * np.sin(2 * pi * X) * np.cos(pi * Y)
    a_x, a_y = pi * np.cos(2 * pi * X) * np.cos(pi * Y), -0.5 * pi * np.sin(2 * pi * X) * np.sin(pi * Y)
    u_x, u_y = pi * np.cos(pi * X) * np.sin(pi * Y), pi * np.sin(pi * X) * np.cos(pi * Y)
    f = -(a_x * u_x + a_y * u_y - 2 * pi**2 * a * u)
    return float(np.abs(darcy.solve(a, f) - u).max())


def test_manufactured_solution_second_order():
    """Measured max errors: 32² 1.17e-3, 64² 2.97e-4 → observed order 1.98."""
    e32, e64 = _manufactured_error(32), _manufactured_error(64)
    assert e32 < 1.3e-3 and e64 < 3.3e-4
    assert np.log2(e32 / e64) > 1.9


def test_discrete_conservation_with_jumping_coefficient():
    """With a = 1 | 0.1 (jump at x = ½), the outflow through the walls, Σ 2·a·u over wall cells
    (conductance 2a across half a cell), equals the total source β·1 to round-off."""
    n = 64
    a = np.where((np.arange(n) + 0.5)[:, None] / n < 0.5, 1.0, 0.1) * np.ones((1, n))
    u = darcy.solve(a, 3.0)
    outflow = sum(
        (2 * a[edge] * u[edge]).sum() for edge in (np.s_[0, :], np.s_[-1, :], np.s_[:, 0], np.s_[:, -1])
    )
    assert outflow == pytest.approx(3.0, rel=1e-10)
    assert u.min() > 0 and np.allclose(u, u[:, ::-1])  # positive inside, symmetric in y
    assert np.argmax(u[:, n // 2]) >= n // 2  # the low-permeability side holds the higher head


def test_grf_and_threshold():
    rng = np.random.default_rng(0)
    field = darcy.gaussian_random_field_neumann(32, 200, rng)
    assert abs(field.mean()) < 0.05  # zero mean mode removed; samples centred
    a = darcy.coefficient_fields(32, 50, np.random.default_rng(1))
    assert set(np.unique(a)) == {0.1, 1.0}
    assert 0.3 < (a == 1.0).mean() < 0.7  # threshold at 0 of a symmetric field


def test_generate_shapes_refinement_and_beta_scaling():
    a, u, x, y = darcy.generate_darcy(2, 16, seed=3, beta=1.0, progress=False)
    assert a.shape == u.shape == (2, 16, 16) and u.dtype == np.float32
    assert np.allclose(x, (np.arange(16) + 0.5) / 16) and np.allclose(y, x)
    a10, u10, _, _ = darcy.generate_darcy(2, 16, seed=3, beta=10.0, progress=False)
    assert np.array_equal(a, a10) and np.allclose(u10, 10 * u, rtol=1e-5)  # linear in β
    a_fine, u_fine, _, _ = darcy.generate_darcy(2, 16, seed=3, cells=32, progress=False)
    assert np.array_equal(a_fine, a)  # same coefficient on the saved grid, solved on 32²
    assert np.abs(u_fine - u).max() < 0.1 * np.abs(u).max()
    with pytest.raises(DataError, match="beta must be > 0"):
        darcy.generate_darcy(1, 8, seed=0, beta=-1.0)
