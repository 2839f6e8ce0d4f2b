"""PDEBench HDF5 files: written atomically, read lazily (only the requested samples).

Burgers / 1D-CFD layout: `tensor` [N, T, X], `x-coordinate` [X], `t-coordinate` [T] (PDEBench's own
files store T+1 time edges; both lengths are accepted on reading)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from qpde.errors import DataError


def write_1d(path: Path, tensor: np.ndarray, x: np.ndarray, t: np.ndarray, attrs: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.h5")
    with h5py.File(tmp, "w") as f:
        f.create_dataset("tensor", data=np.asarray(tensor, dtype=np.float32), chunks=(1,) + tensor.shape[1:])
        f.create_dataset("x-coordinate", data=np.asarray(x, dtype=np.float32))
        f.create_dataset("t-coordinate", data=np.asarray(t, dtype=np.float32))
        for key, value in attrs.items():
            f.attrs[key] = value
    os.replace(tmp, path)  # a reader never sees a half-written file
    return path


@dataclass
class PDEDataset:
    """A lazily read PDEBench file; `fields(indices)` loads only those samples."""

    path: Path
    kind: str
    n_samples: int
    n_times: int
    spatial_shape: tuple[int, ...]
    grid: tuple[np.ndarray, ...]
    t: np.ndarray | None
    periodic: bool
    _file: h5py.File = field(repr=False, default=None)

    def fields(self, indices) -> np.ndarray:
        indices = np.asarray(indices, dtype=int)
        if indices.size and (indices.min() < 0 or indices.max() >= self.n_samples):
            raise DataError(f"{self.path}: sample index out of range 0..{self.n_samples - 1}")
        order = np.argsort(indices)
        data = self._file["tensor"][np.sort(indices).tolist()] if indices.size else np.empty((0,))
        out = np.empty_like(data)
        out[order] = data  # h5py needs increasing indices; restore the caller's order
        return out.astype(np.float32)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> PDEDataset:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_dataset(path: Path) -> PDEDataset:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}; generate it with `qpde data burgers --out {path}`")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {exc}") from exc
    try:
        return _open_1d(path, f)
    except DataError:
        f.close()
        raise


def _require(f: h5py.File, path: Path, key: str, ndim: int) -> h5py.Dataset:
    if key not in f:
        raise DataError(f"{path}: missing dataset '{key}' (PDEBench 1D layout: tensor [N,T,X], "
                        f"x-coordinate [X], t-coordinate [T])")
    ds = f[key]
    if not isinstance(ds, h5py.Dataset) or ds.ndim != ndim:
        raise DataError(f"{path}: '{key}' must be a {ndim}-D dataset, found shape {getattr(ds, 'shape', None)}")
    return ds


def _open_1d(path: Path, f: h5py.File) -> PDEDataset:
    tensor = _require(f, path, "tensor", 3)
    x = _require(f, path, "x-coordinate", 1)[()]
    t = _require(f, path, "t-coordinate", 1)[()]
    n, n_t, n_x = tensor.shape
    if len(x) != n_x:
        raise DataError(f"{path}: x-coordinate has {len(x)} points but tensor has {n_x} (shape {tensor.shape})")
    if len(t) not in (n_t, n_t + 1):
        raise DataError(f"{path}: t-coordinate has {len(t)} entries for {n_t} saved times (shape {tensor.shape})")
    kind = f.attrs.get("dataset", "burgers")
    return PDEDataset(path, str(kind), n, n_t, (n_x,), (np.asarray(x, dtype=np.float64),),
                      np.asarray(t[:n_t], dtype=np.float64), kind == "burgers", f)
