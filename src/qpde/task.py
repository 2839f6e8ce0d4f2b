"""The learning task: the field at one saved time → the field at the next saved time.

One "solved field" is one accelerator call. Models may run at a reduced resolution: inputs are
linearly interpolated down from the reference grid, and predictions are interpolated back up to
it before any error is measured, so errors of all resolutions are comparable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from qpde.data import PDEDataset, coarse_grid, resample
from qpde.data.metrics import metric_table

SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


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
    """Reference trajectories of one split, and how to move between grids."""

    fields: np.ndarray  # [n, T, X] on the reference grid
    grid: tuple[np.ndarray, ...]
    periodic: bool

    def to_model(self, u: np.ndarray, resolution: int) -> np.ndarray:
        if u.shape[-1] == resolution:
            return u.astype(np.float32)
        return resample(u, self.grid, (resolution,), self.periodic).astype(np.float32)

    def to_reference(self, u: np.ndarray) -> np.ndarray:
        if u.shape[-1] == self.fields.shape[-1]:
            return u
        src = coarse_grid(self.grid, (u.shape[-1],), self.periodic)
        return resample(u, src, self.fields.shape[2:], self.periodic)

    def pairs(self, resolution: int) -> tuple[np.ndarray, np.ndarray]:
        """One-step pairs at the model resolution: ([n·(T−1), r], [n·(T−1), r])."""
        coarse = self.to_model(self.fields, resolution)
        return coarse[:, :-1].reshape(-1, resolution), coarse[:, 1:].reshape(-1, resolution)

    def step_inputs(self, resolution: int) -> np.ndarray:
        """Inputs of every one-step pair [n·(T−1), r]: the whole split as accelerator calls."""
        return self.pairs(resolution)[0]

    def step_targets(self) -> np.ndarray:
        """Reference-grid targets of every one-step pair [n·(T−1), X]."""
        return self.fields[:, 1:].reshape(-1, self.fields.shape[-1])


def load_split(dataset: PDEDataset, split: str, seed: int) -> TaskData:
    indices = split_indices(dataset.n_samples, seed)[split]
    return TaskData(dataset.fields(indices), dataset.grid, dataset.periodic)


def evaluate(predict: Callable[[np.ndarray], np.ndarray], data: TaskData, resolution: int) -> dict[str, float]:
    """One-step metrics (all pairs of the split) and autoregressive-rollout nRMSE (from t=0)."""
    outputs = data.to_reference(predict(data.step_inputs(resolution)))
    metrics = metric_table(outputs, data.step_targets(), spatial_ndim=1)
    n, steps = data.fields.shape[0], data.fields.shape[1] - 1
    state = data.to_model(data.fields[:, 0], resolution)
    rollout = np.empty((n, steps, data.fields.shape[-1]))
    for t in range(steps):
        state = predict(state)
        rollout[:, t] = data.to_reference(state)
    metrics["rollout_nrmse"] = metric_table(
        rollout.reshape(n * steps, -1), data.fields[:, 1:].reshape(n * steps, -1), spatial_ndim=1
    )["nrmse"]
    return metrics
