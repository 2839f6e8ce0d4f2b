"""PDEBench HDF5 files: written atomically, read lazily (only the requested samples are read).

Layouts (N samples, T saved times, X/Y spatial points):

- burgers (PDEBench 1D, e.g. 1D_Burgers_Sols_Nu0.01.hdf5): `tensor` [N, T, X], `x-coordinate` [X],
  `t-coordinate` [T] (PDEBench's own files store T+1 entries; both lengths are accepted).
- diffusion-sorption (PDEBench 1D_diff-sorp_NA_NA.h5): one group per sample, named by its zero-padded
  index: `0000/data` [T, X, 1], `0000/grid/x` [X], `0000/grid/t` [T].
- darcy (PDEBench 2D_DarcyFlow_beta*.hdf5): `tensor` [N, 1, X, Y] (solution u), `nu` [N, X, Y]
  (coefficient a), `x-coordinate` [X], `y-coordinate` [Y].
- navier-stokes (ours; PDEBench 2D-CFD style): `tensor` [N, T, X, Y] vorticity, `x-coordinate` [X],
  `y-coordinate` [Y], `t-coordinate` [T] (or T+1). PDEBench's incompressible-NS files hold
  `velocity`/`particles` instead; we store the scalar vorticity the FNO benchmark learns.

Files we write also carry `dataset` and the generator's parameters as root attributes; files
without them (PDEBench's own) are classified by their layout alone."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np

from qpde.data.registry import DATASETS, LAYOUTS
from qpde.errors import DataError

log = logging.getLogger(__name__)

_SAMPLE_GROUP = re.compile(r"^\d+$")


# ---- writing ----------------------------------------------------------------------------------


def _atomic(path: Path, fill: Callable[[h5py.File], None]) -> Path:
    """Write through a temporary file and rename it: readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.h5")
    try:
        with h5py.File(tmp, "w") as f:
            fill(f)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _set_attrs(f: h5py.File, attrs: dict) -> None:
    for key, value in attrs.items():
        f.attrs[key] = value


def write_tensor(path: Path, arrays: dict[str, np.ndarray], attrs: dict) -> Path:
    """Burgers / Darcy / Navier–Stokes layouts. Sample-first arrays (`tensor`, `nu`) are chunked one
    sample per chunk so that reading a few samples touches only those chunks."""

    def fill(f: h5py.File) -> None:
        for key, value in arrays.items():
            value = np.asarray(value, dtype=np.float32)
            per_sample = key in ("tensor", "nu")
            chunks = (1,) + value.shape[1:] if per_sample and value.shape[0] else None
            f.create_dataset(key, data=value, chunks=chunks)
        _set_attrs(f, attrs)

    return _atomic(path, fill)


def write_sample_groups(path: Path, data: np.ndarray, x: np.ndarray, t: np.ndarray, attrs: dict) -> Path:
    """Diffusion–sorption layout: data [N, T, X] → groups `0000/data` [T, X, 1] + `0000/grid/{x,t}`."""
    width = max(4, len(str(len(data) - 1)))

    def fill(f: h5py.File) -> None:
        for i, sample in enumerate(np.asarray(data, dtype=np.float32)):
            key = str(i).zfill(width)
            f.create_dataset(f"{key}/data", data=sample[..., None])
            f.create_dataset(f"{key}/grid/x", data=np.asarray(x, dtype=np.float32))
            f.create_dataset(f"{key}/grid/t", data=np.asarray(t, dtype=np.float32))
        _set_attrs(f, attrs)

    return _atomic(path, fill)


# ---- reading ----------------------------------------------------------------------------------


class PDEDataset:
    """One open PDEBench file. Metadata is read on opening; sample data only by `fields` /
    `darcy_pairs`, and then only for the requested samples."""

    def __init__(
        self,
        path: Path,
        f: h5py.File,
        kind: str,
        n_samples: int,
        n_times: int,
        spatial_shape: tuple[int, ...],
        grid: tuple[np.ndarray, ...],
        t: np.ndarray | None,
        sample_keys: list[str] | None = None,
    ):
        self.path, self.kind, self.n_samples, self.n_times = path, kind, n_samples, n_times
        self.spatial_shape, self.grid, self.t = spatial_shape, grid, t
        self.periodic = DATASETS[kind].periodic
        self._file: h5py.File | None = f
        self._sample_keys = sample_keys

    def __repr__(self) -> str:
        return (
            f"PDEDataset({self.kind!r}, {self.path}, n_samples={self.n_samples}, "
            f"n_times={self.n_times}, spatial_shape={self.spatial_shape})"
        )

    # indices → (sorted unique indices for h5py, positions restoring the caller's order)
    def _plan(self, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < -self.n_samples or indices.max() >= self.n_samples):
            raise DataError(
                f"{self.path}: sample index out of range; the file has {self.n_samples} samples "
                f"(0..{self.n_samples - 1}), asked for {indices.min()}..{indices.max()}"
            )
        indices = indices % max(self.n_samples, 1)
        unique, inverse = np.unique(indices, return_inverse=True)
        return unique, inverse

    def _handle(self) -> h5py.File:
        if self._file is None:
            raise DataError(f"{self.path}: dataset is closed; open it again with open_dataset()")
        return self._file

    def _read_rows(self, key: str, indices) -> np.ndarray:
        unique, inverse = self._plan(indices)
        ds = self._handle()[key]
        try:
            rows = ds[unique.tolist()] if unique.size else np.empty((0,) + ds.shape[1:], ds.dtype)
        except OSError as exc:  # h5py reports truncated chunks as OSError
            raise DataError(f"{self.path}: cannot read '{key}' (file truncated or corrupt?): {exc}") from exc
        rows = np.asarray(rows, dtype=np.float32)
        self._require_finite(rows, key, unique)
        return rows[inverse]

    def _require_finite(self, rows: np.ndarray, key: str, samples) -> None:
        """DataError naming file, key and sample when a sample holds NaN or Inf: a model trained or
        tested on it would give meaningless results (and false C-sim "mismatches")."""
        if not rows.size:
            return
        finite = np.isfinite(rows.reshape(len(rows), -1)).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise DataError(f"{self.path}: '{key}' sample {int(np.asarray(samples)[bad[0]])} holds NaN or Inf "
                            f"({bad.size} of the {len(rows)} samples read are not finite)")

    def _read_groups(self, indices) -> np.ndarray:
        unique, inverse = self._plan(indices)
        f = self._handle()
        expected = (self.n_times, *self.spatial_shape, 1)
        out = np.empty((len(unique), self.n_times, *self.spatial_shape), np.float32)
        for row, index in enumerate(unique):
            key = f"{self._sample_keys[index]}/data"
            if key not in f or not isinstance(f[key], h5py.Dataset):
                raise DataError(f"{self.path}: missing dataset '{key}' ({LAYOUTS[self.kind]})")
            if f[key].shape != expected:
                raise DataError(
                    f"{self.path}: '{key}' has shape {f[key].shape}, expected {expected} "
                    f"like the first sample"
                )
            try:
                out[row] = f[key][()][..., 0]
                self._require_finite(out[row : row + 1], key, [index])
            except OSError as exc:
                raise DataError(
                    f"{self.path}: cannot read '{key}' (file truncated or corrupt?): {exc}"
                ) from exc
        return out[inverse]

    def fields(self, indices) -> np.ndarray:
        """float32 [n, T, *spatial] of the given samples (Darcy: the solution u as [n, 1, X, Y])."""
        if self.kind == "diffusion-sorption":
            return self._read_groups(indices)
        return self._read_rows("tensor", indices)

    def darcy_pairs(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """Darcy only: (coefficient a [n, X, Y], solution u [n, X, Y]), float32."""
        if self.kind != "darcy":
            raise DataError(
                f"{self.path}: darcy_pairs() needs a darcy file, this one holds {self.kind}; "
                f"use fields() instead"
            )
        return self._read_rows("nu", indices), self._read_rows("tensor", indices)[:, 0]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> PDEDataset:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _generate_hint(path: Path) -> str:
    name = path.name.lower().replace("_", "-")
    for dataset in sorted(DATASETS, key=len, reverse=True):
        if dataset in name or dataset.replace("-", "") in name.replace("-", ""):
            return f"`qpde data {dataset} --out {path}`"
    return f"`qpde data DATASET --out {path}` (DATASET: {', '.join(DATASETS)})"


def open_dataset(path: Path) -> PDEDataset:
    """Open a PDEBench-layout file, detecting which of the four layouts it holds."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}; generate it with {_generate_hint(path)}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(
            f"{path}: not a readable HDF5 file (truncated or corrupt?): {exc}; "
            f"regenerate it with {_generate_hint(path)}"
        ) from exc
    try:
        dataset = _describe(path, f)
    except DataError:
        f.close()
        raise
    except (OSError, KeyError) as exc:  # damaged metadata inside an otherwise openable file
        f.close()
        raise DataError(f"{path}: cannot read the file's metadata (truncated or corrupt?): {exc}") from exc
    log.debug("opened %r", dataset)
    return dataset


def _dataset(f: h5py.File, path: Path, key: str, ndim: int, layout: str) -> h5py.Dataset:
    if key not in f:
        raise DataError(f"{path}: missing dataset '{key}' (expected layout: {layout})")
    ds = f[key]
    if not isinstance(ds, h5py.Dataset):
        raise DataError(f"{path}: '{key}' is a group, expected a {ndim}-D dataset (layout: {layout})")
    if ds.ndim != ndim:
        raise DataError(
            f"{path}: '{key}' must be a {ndim}-D dataset, found shape {ds.shape} (layout: {layout})"
        )
    return ds


def _coordinate(
    f: h5py.File, path: Path, key: str, n: int, layout: str, *, allow_edges: bool = False
) -> np.ndarray:
    values = np.asarray(_dataset(f, path, key, 1, layout)[()], dtype=np.float64)
    ok = len(values) == n or (allow_edges and len(values) == n + 1)
    if not ok:
        expected = f"{n} or {n + 1}" if allow_edges else f"{n}"
        raise DataError(
            f"{path}: {key} has {len(values)} points but the data has {n} along that axis "
            f"(expected {expected}; layout: {layout})"
        )
    return values[:n]


def _attr_kind(f: h5py.File) -> str | None:
    kind = f.attrs.get("dataset")
    if isinstance(kind, bytes):
        kind = kind.decode()
    return str(kind) if kind is not None else None


def _check_kind(path: Path, declared: str | None, detected: str) -> None:
    if declared is not None and declared != detected:
        raise DataError(
            f"{path}: attribute dataset={declared!r} but the layout is that of {detected} "
            f"({LAYOUTS[detected]}); expected {LAYOUTS.get(declared, 'a known dataset')}"
        )


def _describe(path: Path, f: h5py.File) -> PDEDataset:
    declared = _attr_kind(f)
    if "tensor" not in f:
        groups = sorted((k for k in f.keys() if _SAMPLE_GROUP.match(k)), key=int)
        if groups:
            _check_kind(path, declared, "diffusion-sorption")
            return _describe_groups(path, f, groups)
        raise DataError(
            f"{path}: missing dataset 'tensor' and no per-sample groups '0000/...'; expected one of: "
            + "; ".join(f"{k}: {v}" for k, v in LAYOUTS.items())
        )
    tensor = f["tensor"]
    if not isinstance(tensor, h5py.Dataset) or tensor.ndim not in (3, 4):
        raise DataError(
            f"{path}: 'tensor' must be a 3-D [N,T,X] or 4-D [N,1,X,Y] / [N,T,X,Y] dataset, found "
            f"shape {getattr(tensor, 'shape', 'a group')}"
        )
    if tensor.ndim == 3:
        layout = LAYOUTS["burgers"]
        kind = declared if declared in DATASETS else "burgers"
        _check_kind(path, kind, "burgers")
        n, n_t, n_x = tensor.shape
        x = _coordinate(f, path, "x-coordinate", n_x, layout)
        t = _coordinate(f, path, "t-coordinate", n_t, layout, allow_edges=True)
        return PDEDataset(path, f, "burgers", n, n_t, (n_x,), (x,), t)
    n, n_t, n_x, n_y = tensor.shape
    if "nu" in f or declared == "darcy":
        _check_kind(path, declared, "darcy")
        layout = LAYOUTS["darcy"]
        if n_t != 1:
            raise DataError(
                f"{path}: darcy 'tensor' must be [N,1,X,Y], found shape {tensor.shape} ({layout})"
            )
        nu = _dataset(f, path, "nu", 3, layout)
        if nu.shape != (n, n_x, n_y):
            raise DataError(
                f"{path}: 'nu' has shape {nu.shape} but 'tensor' {tensor.shape} needs "
                f"{(n, n_x, n_y)} ({layout})"
            )
        x = _coordinate(f, path, "x-coordinate", n_x, layout)
        y = _coordinate(f, path, "y-coordinate", n_y, layout)
        return PDEDataset(path, f, "darcy", n, 1, (n_x, n_y), (x, y), None)
    _check_kind(path, declared, "navier-stokes")
    layout = LAYOUTS["navier-stokes"]
    x = _coordinate(f, path, "x-coordinate", n_x, layout)
    y = _coordinate(f, path, "y-coordinate", n_y, layout)
    t = _coordinate(f, path, "t-coordinate", n_t, layout, allow_edges=True)
    return PDEDataset(path, f, "navier-stokes", n, n_t, (n_x, n_y), (x, y), t)


def _describe_groups(path: Path, f: h5py.File, groups: list[str]) -> PDEDataset:
    layout = LAYOUTS["diffusion-sorption"]
    first = groups[0]
    data = _dataset(f, path, f"{first}/data", 3, layout)
    n_t, n_x, channels = data.shape
    if channels != 1:
        raise DataError(f"{path}: '{first}/data' must be [T,X,1], found shape {data.shape} ({layout})")
    x = _coordinate(f, path, f"{first}/grid/x", n_x, layout)
    t = _coordinate(f, path, f"{first}/grid/t", n_t, layout)
    return PDEDataset(path, f, "diffusion-sorption", len(groups), n_t, (n_x,), (x,), t, sample_keys=groups)
