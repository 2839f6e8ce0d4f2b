"""PDE datasets: generators for PDEBench's equations (and the FNO Navier–Stokes benchmark), PDEBench
HDF5 files, resolution change, metrics. See docs/data.md."""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from qpde.data.pdebench import PDEDataset, open_dataset
from qpde.data.registry import DATASETS
from qpde.data.resample import coarse_grid, resample
from qpde.errors import DataError

log = logging.getLogger(__name__)

__all__ = ["DATASETS", "PDEDataset", "coarse_grid", "generate", "open_dataset", "resample"]


def _generator(dataset: str) -> Callable:
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; available: {', '.join(DATASETS)}")
    return DATASETS[dataset].generate_fn()


def parameters(dataset: str) -> dict[str, object]:
    """The generator parameters a dataset accepts (beyond samples/resolution/seed), with defaults."""
    signature = inspect.signature(_generator(dataset))
    return {
        name: p.default
        for name, p in signature.parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name != "progress"
    }


SOLVER_WORKSPACE = 64  # float64 arrays of solver-grid size alive at once (stencils, FFTs, sparse matrix), generous


def memory_estimate(dataset: str, samples: int, resolution: int, **params) -> tuple[float, str]:
    """Bytes a generator needs at least (the saved fields in float64 and float32, plus one sample's
    solver workspace), and how that was counted."""
    defaults = {**parameters(dataset), **{k: v for k, v in params.items() if k != "progress"}}
    ndim = DATASETS[dataset].ndim
    times = DATASETS[dataset].snapshots or int(defaults.get("n_times") or 1)
    cells = max(int(resolution), int(defaults.get("cells") or 0))
    saved = float(samples) * times * float(resolution) ** ndim * 12
    workspace = float(cells) ** ndim * 8 * SOLVER_WORKSPACE
    how = (f"{samples} samples × {times} times × {resolution}^{ndim} points (float64 + float32), plus a "
           f"{cells}^{ndim}-point solver workspace")
    return saved + workspace, how


def available_memory() -> float:
    """Bytes of memory available now (MemAvailable), else the machine's physical memory."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def check_memory(dataset: str, samples: int, resolution: int, **params) -> None:
    """DataError, before any work, when generating would need more memory than is available."""
    need, how = memory_estimate(dataset, samples, resolution, **params)
    have = available_memory()
    if need > 0.8 * have:
        raise DataError(
            f"{dataset}: generating needs about {need / 2**30:,.1f} GiB ({how}), more than the "
            f"{have / 2**30:,.1f} GiB available; lower samples, resolution, n_times or cells"
        )


def generate(dataset: str, path: Path, *, samples: int, resolution: int, seed: int, **params) -> Path:
    """Run the dataset's solver and write a PDEBench-layout HDF5 file atomically.

    `params` are the generator's keyword parameters (see `parameters(dataset)`), plus
    `progress=False` to hide the progress bar."""
    func = _generator(dataset)
    allowed = parameters(dataset)
    unknown = sorted(set(params) - set(allowed) - {"progress"})
    if unknown:
        raise DataError(
            f"{dataset}: unknown parameter(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}"
        )
    if int(samples) < 1 or int(resolution) < 2:
        raise DataError(
            f"{dataset}: need samples ≥ 1 and resolution ≥ 2, got samples={samples}, resolution={resolution}"
        )
    check_memory(dataset, int(samples), int(resolution), **params)
    start = time.perf_counter()
    result = func(int(samples), int(resolution), int(seed), **params)
    effective = {**allowed, **{k: v for k, v in params.items() if k != "progress"}}
    attrs = {
        "dataset": dataset,
        "seed": int(seed),
        "samples": int(samples),
        "resolution": int(resolution),
        **{k: v for k, v in effective.items() if v is not None},
    }
    DATASETS[dataset].write(path, result, attrs)
    shape = np.shape(result[0])
    log.info("%s: wrote %s %s in %.1f s", dataset, path, shape, time.perf_counter() - start)
    return Path(path)
