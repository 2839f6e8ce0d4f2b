"""PDE datasets: generators (PDEBench's equations and initial conditions), PDEBench HDF5 files,
resolution change, metrics."""

from __future__ import annotations

import logging
from pathlib import Path

from qpde.data.pdebench import PDEDataset, open_dataset, write_1d
from qpde.data.resample import coarse_grid, resample
from qpde.errors import DataError

DATASETS = ("burgers",)
log = logging.getLogger(__name__)

__all__ = ["DATASETS", "PDEDataset", "coarse_grid", "generate", "open_dataset", "resample"]


def generate(dataset: str, path: Path, *, samples: int, resolution: int, seed: int, **params) -> Path:
    """Run the dataset's solver and write a PDEBench-layout HDF5 file atomically."""
    if dataset == "burgers":
        from qpde.data.burgers import generate_burgers

        try:
            tensor, x, t = generate_burgers(samples, resolution, seed, **params)
        except TypeError as exc:
            raise DataError(f"burgers: bad parameter ({exc}); allowed: nu, n_times, t_final, cells") from exc
        log.info("burgers: %d trajectories, %d times, %d cells", *tensor.shape)
        return write_1d(path, tensor, x, t, {"dataset": "burgers", "seed": seed, **params})
    raise DataError(f"unknown dataset {dataset!r}; available: {', '.join(DATASETS)}")
