"""The learning task: one field → the next, as one accelerator call per field.

Time-dependent datasets (Burgers, Diffusion-Sorption, Navier–Stokes) map the field at one saved time
to the field at the next, and are also scored by an autoregressive rollout. Darcy is steady: the
coefficient a maps to the solution u in one shot (PDEBench's Darcy task), held here as a two-frame
"trajectory" [a, u] so that the same pairs feed training and testing; it has no rollout.

Models may run at a reduced resolution r (r points per axis): inputs are linearly (1D) or
bilinearly (2D) interpolated down from the reference grid, and predictions are interpolated back up
to it before any error is measured, so errors of all resolutions are comparable. A model sees a
field as a flat vector of r^d values: 2D fields are flattened in raster order (row-major [X, Y]),
the order in which a streaming accelerator reads one grid point per beat.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from qpde.data import PDEDataset, coarse_grid, resample
from qpde.data.metrics import metric_table
from qpde.data.registry import DATASETS

SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
STEADY = tuple(name for name, d in DATASETS.items() if d.steady)  # one-shot maps, not time steps
SPATIAL_NDIM = {name: d.ndim for name, d in DATASETS.items()}


def split_indices(n_samples: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded 80/10/10 split of trajectory indices (whole trajectories, so no leakage)."""
    if n_samples < 3:
        raise ValueError(f"need at least 3 trajectories for train/val/test splits, got {n_samples}")
    order = np.random.default_rng(seed).permutation(n_samples)
    n_val = max(1, round(SPLIT_FRACTIONS["val"] * n_samples))
    n_test = max(1, round(SPLIT_FRACTIONS["test"] * n_samples))
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


@dataclass
class TaskData:
    """Reference trajectories of one split, and how to move between grids and model vectors."""

    fields: np.ndarray  # [n, T, *spatial] on the reference grid (Darcy: T = 2, frames a and u)
    grid: tuple[np.ndarray, ...]
    periodic: bool
    rollout: bool = True  # False for steady tasks (Darcy): a→u has no next step to roll out

    @property
    def ndim(self) -> int:
        return len(self.grid)

    @property
    def reference_shape(self) -> tuple[int, ...]:
        return tuple(self.fields.shape[2:])

    def points(self, resolution: int) -> int:
        """Length of a model's input and output vector at `resolution` points per axis."""
        return resolution**self.ndim

    def to_model(self, u: np.ndarray, resolution: int) -> np.ndarray:
        """[..., *reference] → [..., r^d] float32 at the model resolution, raster order."""
        lead = u.shape[: u.ndim - self.ndim]
        if u.shape[u.ndim - self.ndim :] != (resolution,) * self.ndim:
            u = resample(u, self.grid, (resolution,) * self.ndim, self.periodic)
        return np.ascontiguousarray(u, dtype=np.float32).reshape(*lead, self.points(resolution))

    def to_reference(self, u: np.ndarray) -> np.ndarray:
        """[..., r^d] model vectors → [..., *reference] fields."""
        resolution = round(u.shape[-1] ** (1 / self.ndim))
        if resolution**self.ndim != u.shape[-1]:
            raise ValueError(f"a vector of {u.shape[-1]} values is not a {self.ndim}-D square field")
        u = u.reshape(*u.shape[:-1], *(resolution,) * self.ndim)
        if u.shape[u.ndim - self.ndim :] == self.reference_shape:
            return u
        src = coarse_grid(self.grid, (resolution,) * self.ndim, self.periodic)
        return resample(u, src, self.reference_shape, self.periodic)

    def pairs(self, resolution: int) -> tuple[np.ndarray, np.ndarray]:
        """One-step pairs at the model resolution: ([n·(T−1), r^d], [n·(T−1), r^d])."""
        coarse = self.to_model(self.fields, resolution)
        size = coarse.shape[-1]
        return coarse[:, :-1].reshape(-1, size), coarse[:, 1:].reshape(-1, size)

    def step_inputs(self, resolution: int) -> np.ndarray:
        """Inputs of every one-step pair [n·(T−1), r^d]: the whole split as accelerator calls."""
        return self.to_model(self.fields[:, :-1], resolution).reshape(-1, self.points(resolution))

    def step_targets(self) -> np.ndarray:
        """Reference-grid targets of every one-step pair [n·(T−1), *reference]."""
        return self.fields[:, 1:].reshape(-1, *self.reference_shape)


def load_split(dataset: PDEDataset, split: str, seed: int) -> TaskData:
    indices = split_indices(dataset.n_samples, seed)[split]
    if dataset.kind in STEADY:
        a, u = dataset.darcy_pairs(indices)
        return TaskData(np.stack([a, u], axis=1), dataset.grid, dataset.periodic, rollout=False)
    return TaskData(dataset.fields(indices), dataset.grid, dataset.periodic)


def evaluate(predict: Callable[[np.ndarray], np.ndarray], data: TaskData, resolution: int) -> dict[str, float | None]:
    """One-step metrics (all pairs of the split) and autoregressive-rollout nRMSE (from t=0; None
    for steady tasks)."""
    outputs = data.to_reference(predict(data.step_inputs(resolution)))
    metrics: dict[str, float | None] = metric_table(outputs, data.step_targets(), spatial_ndim=data.ndim)
    if not data.rollout:
        metrics["rollout_nrmse"] = None
        return metrics
    n, steps = data.fields.shape[0], data.fields.shape[1] - 1
    state = data.to_model(data.fields[:, 0], resolution)
    rollout = np.empty((n, steps, *data.reference_shape))
    for t in range(steps):
        state = predict(state)
        rollout[:, t] = data.to_reference(state)
    metrics["rollout_nrmse"] = metric_table(rollout, data.fields[:, 1:], spatial_ndim=data.ndim)["nrmse"]
    return metrics
