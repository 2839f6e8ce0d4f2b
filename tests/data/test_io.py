"""PDEBench file layouts: writing, layout detection, lazy reads, and one-line errors for bad files."""

import h5py
import numpy as np
import pytest

from qpde.data import DATASETS, generate, open_dataset
from qpde.data.pdebench import write_sample_groups, write_tensor
from qpde.errors import DataError


@pytest.fixture
def burgers_file(tmp_path):
    return generate(
        "burgers", tmp_path / "b.h5", samples=4, resolution=32, seed=0, n_times=3, cells=64, progress=False
    )


def _grid(n):
    return (np.arange(n) + 0.5) / n


def test_burgers_round_trip_order_and_duplicates(burgers_file):
    with open_dataset(burgers_file) as ds:
        assert (ds.kind, ds.n_samples, ds.n_times, ds.spatial_shape, ds.periodic) == (
            "burgers",
            4,
            3,
            (32,),
            True,
        )
        assert np.allclose(ds.grid[0], _grid(32)) and np.allclose(ds.t, [0, 1, 2])
        everything = ds.fields(range(4))
        assert everything.dtype == np.float32 and everything.shape == (4, 3, 32)
        assert np.array_equal(ds.fields([3, 1, 3]), everything[[3, 1, 3]])
        assert ds.fields([]).shape == (0, 3, 32)
        with pytest.raises(DataError, match="out of range.*4 samples"):
            ds.fields([4])
    with pytest.raises(DataError, match="closed"):
        ds.fields([0])
    with h5py.File(burgers_file) as f:
        assert f["tensor"].shape == (4, 3, 32) and f["tensor"].chunks == (1, 3, 32)
        assert f.attrs["dataset"] == "burgers" and f.attrs["nu"] == 0.01 and f.attrs["seed"] == 0
    assert not list(burgers_file.parent.glob("*.tmp.h5"))


def test_reads_touch_only_requested_samples(burgers_file):
    """Lazy reading: the tensor is indexed with exactly the requested (sorted, unique) rows."""
    requested = []
    with open_dataset(burgers_file) as ds:
        real = ds._file

        class Spy:
            def __init__(self, dataset):
                self.dataset, self.shape = dataset, dataset.shape

            def __getitem__(self, key):
                requested.append(key)
                return self.dataset[key]

        class FileSpy:
            def __getitem__(self, key):
                return Spy(real[key])

            def close(self):
                real.close()

        ds._file = FileSpy()
        ds.fields([2, 0, 2])
    assert requested == [[0, 2]]


def test_pdebench_time_edges_are_accepted(tmp_path):
    path = tmp_path / "pdebench.h5"
    with h5py.File(path, "w") as f:  # PDEBench's own 1D files: no attributes, T+1 time entries
        f["tensor"] = np.zeros((2, 5, 8), np.float32)
        f["x-coordinate"] = _grid(8)
        f["t-coordinate"] = np.linspace(0, 2, 6)
    with open_dataset(path) as ds:
        assert ds.kind == "burgers" and ds.n_times == 5 and len(ds.t) == 5


def test_darcy_layout(tmp_path):
    a = np.random.default_rng(0).uniform(size=(3, 8, 6))
    u = a * 2
    path = write_tensor(
        tmp_path / "d.h5",
        {"tensor": u[:, None], "nu": a, "x-coordinate": _grid(8), "y-coordinate": _grid(6)},
        {},
    )
    with open_dataset(path) as ds:
        assert (ds.kind, ds.n_samples, ds.n_times, ds.spatial_shape, ds.periodic, ds.t) == (
            "darcy",
            3,
            1,
            (8, 6),
            False,
            None,
        )
        a_read, u_read = ds.darcy_pairs([2, 0])
        assert np.allclose(a_read, a[[2, 0]]) and np.allclose(u_read, u[[2, 0]])
        assert ds.fields([1]).shape == (1, 1, 8, 6)


def test_navier_stokes_layout(tmp_path):
    w = np.random.default_rng(0).normal(size=(2, 4, 8, 8))
    x = np.arange(8) / 8
    path = write_tensor(
        tmp_path / "ns.h5",
        {"tensor": w, "x-coordinate": x, "y-coordinate": x, "t-coordinate": np.arange(4.0)},
        {"dataset": "navier-stokes"},
    )
    with open_dataset(path) as ds:
        assert (ds.kind, ds.n_times, ds.spatial_shape, ds.periodic) == ("navier-stokes", 4, (8, 8), True)
        assert np.allclose(ds.fields([1]), w[[1]])
        with pytest.raises(DataError, match="darcy_pairs.*navier-stokes"):
            ds.darcy_pairs([0])


def test_diffusion_sorption_groups(tmp_path):
    data = np.random.default_rng(0).uniform(size=(3, 5, 16))
    path = write_sample_groups(tmp_path / "ds.h5", data, _grid(16), np.linspace(0, 500, 5), {})
    with h5py.File(path) as f:
        assert f["0002/data"].shape == (5, 16, 1) and f["0000/grid/t"].shape == (5,)
    with open_dataset(path) as ds:
        assert (ds.kind, ds.n_samples, ds.n_times, ds.spatial_shape, ds.periodic) == (
            "diffusion-sorption",
            3,
            5,
            (16,),
            False,
        )
        assert np.allclose(ds.fields([2, 0]), data[[2, 0]])
    with h5py.File(path, "a") as f:
        del f["0001/data"]
        f["0001/data"] = np.zeros((4, 16, 1))
    with (
        open_dataset(path) as ds,
        pytest.raises(DataError, match=r"'0001/data' has shape \(4, 16, 1\), expected \(5, 16, 1\)"),
    ):
        ds.fields([1])


def test_missing_file_names_the_command(tmp_path):
    with pytest.raises(DataError, match="not found.*nope.h5.*qpde data DATASET"):
        open_dataset(tmp_path / "nope.h5")
    with pytest.raises(DataError, match="qpde data darcy --out"):
        open_dataset(tmp_path / "2D_DarcyFlow_beta1.0.hdf5")


def test_truncated_file(burgers_file, tmp_path):
    data = burgers_file.read_bytes()
    for fraction in (3, 2):
        cut = tmp_path / f"cut{fraction}.h5"
        cut.write_bytes(data[: len(data) // fraction])
        with pytest.raises(DataError, match=f"cut{fraction}.h5.*(truncated|corrupt)"):
            with open_dataset(cut) as ds:
                ds.fields(range(ds.n_samples))


@pytest.mark.parametrize(
    "layout, message",
    [
        ({"x-coordinate": np.zeros(8)}, "missing dataset 'tensor' and no per-sample groups"),
        (
            {"tensor": np.zeros((2, 5)), "x-coordinate": np.zeros(8)},
            r"'tensor' must be a 3-D.*found shape \(2, 5\)",
        ),
        ({"tensor": np.zeros((2, 5, 8)), "t-coordinate": np.zeros(5)}, "missing dataset 'x-coordinate'"),
        (
            {"tensor": np.zeros((2, 5, 8)), "x-coordinate": np.zeros(7), "t-coordinate": np.zeros(5)},
            "x-coordinate has 7 points but the data has 8",
        ),
        (
            {"tensor": np.zeros((2, 5, 8)), "x-coordinate": np.zeros(8), "t-coordinate": np.zeros(9)},
            "t-coordinate has 9 points.*expected 5 or 6",
        ),
        (
            {
                "tensor": np.zeros((2, 1, 8, 8)),
                "nu": np.zeros((2, 8, 7)),
                "x-coordinate": np.zeros(8),
                "y-coordinate": np.zeros(8),
            },
            r"'nu' has shape \(2, 8, 7\).*needs \(2, 8, 8\)",
        ),
        (
            {"tensor": np.zeros((2, 3, 8, 8)), "nu": np.zeros((2, 8, 8))},
            r"darcy 'tensor' must be \[N,1,X,Y\]",
        ),
        (
            {"tensor": np.zeros((2, 1, 8, 8)), "nu": np.zeros((2, 8, 8)), "x-coordinate": np.zeros(8)},
            "missing dataset 'y-coordinate'",
        ),
        (
            {"tensor": np.zeros((2, 3, 8, 8)), "x-coordinate": np.zeros(8), "y-coordinate": np.zeros(8)},
            "missing dataset 't-coordinate'",
        ),
        ({"0000/data": np.zeros((5, 8)), "0000/grid/x": np.zeros(8)}, r"'0000/data' must be a 3-D.*\(5, 8\)"),
        (
            {"0000/data": np.zeros((5, 8, 1)), "0000/grid/x": np.zeros(8), "0000/grid/t": np.zeros(4)},
            "0000/grid/t has 4 points but the data has 5",
        ),
    ],
)
def test_wrong_layout_names_key_and_shapes(tmp_path, layout, message):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        for key, value in layout.items():
            f[key] = value
    with pytest.raises(DataError, match=message):
        open_dataset(path)


def test_declared_dataset_must_match_layout(tmp_path):
    path = write_tensor(
        tmp_path / "x.h5",
        {"tensor": np.zeros((1, 2, 4)), "x-coordinate": _grid(4), "t-coordinate": np.arange(2.0)},
        {"dataset": "darcy"},
    )
    with pytest.raises(DataError, match="dataset='darcy' but the layout is that of burgers"):
        open_dataset(path)


def test_generate_rejects_unknown_dataset_and_parameters(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'kdv'; available: " + ", ".join(DATASETS)):
        generate("kdv", tmp_path / "k.h5", samples=1, resolution=8, seed=0)
    with pytest.raises(DataError, match="unknown parameter.*viscosity; allowed: nu, n_times"):
        generate("burgers", tmp_path / "k.h5", samples=1, resolution=8, seed=0, viscosity=1.0)
    assert not (tmp_path / "k.h5").exists()


@pytest.mark.parametrize(
    "dataset, params, shape",
    [
        ("burgers", {"n_times": 3, "cells": 32}, (2, 3, 16)),
        ("diffusion-sorption", {"n_times": 3, "t_final": 10.0, "cells": 32}, (2, 3, 16)),
        ("darcy", {"beta": 10.0}, (2, 1, 16, 16)),
        ("navier-stokes", {"n_times": 3, "t_final": 0.2}, (2, 3, 16, 16)),
    ],
)
def test_generate_writes_every_layout_readably(tmp_path, dataset, params, shape):
    path = generate(
        dataset, tmp_path / f"{dataset}.h5", samples=2, resolution=16, seed=1, progress=False, **params
    )
    with open_dataset(path) as ds:
        assert ds.kind == dataset and (ds.n_samples, ds.n_times, *ds.spatial_shape) == (shape[0], *shape[1:])
        fields = ds.fields([0, 1])
        assert fields.shape == shape and fields.dtype == np.float32 and np.isfinite(fields).all()
        assert len(ds.grid) == len(ds.spatial_shape)
        assert all(len(g) == n for g, n in zip(ds.grid, ds.spatial_shape, strict=True))


def test_failed_write_leaves_neither_file_nor_temporary(tmp_path):
    with pytest.raises(ValueError):
        write_tensor(tmp_path / "x.h5", {"tensor": np.array(["not a number"])}, {})
    assert list(tmp_path.iterdir()) == []
