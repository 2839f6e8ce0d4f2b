import h5py
import numpy as np
import pytest

from qpde.data import coarse_grid, generate, open_dataset, resample
from qpde.data.metrics import metric_table, nrmse, rmse
from qpde.errors import DataError


@pytest.fixture
def burgers_file(tmp_path):
    return generate("burgers", tmp_path / "b.h5", samples=4, resolution=32, seed=0, n_times=3)


def test_round_trip_and_lazy_order(burgers_file):
    with open_dataset(burgers_file) as ds:
        assert (ds.kind, ds.n_samples, ds.n_times, ds.spatial_shape, ds.periodic) == ("burgers", 4, 3, (32,), True)
        all_fields = ds.fields([0, 1, 2, 3])
        assert np.array_equal(ds.fields([3, 1]), all_fields[[3, 1]])
    with h5py.File(burgers_file) as f:
        assert f["tensor"].shape == (4, 3, 32) and f["t-coordinate"].shape == (3,)


def test_pdebench_time_edges_are_accepted(tmp_path):
    path = tmp_path / "pdebench.h5"
    with h5py.File(path, "w") as f:
        f["tensor"] = np.zeros((2, 5, 8), np.float32)
        f["x-coordinate"] = np.linspace(0, 1, 8, dtype=np.float32)
        f["t-coordinate"] = np.linspace(0, 2, 6, dtype=np.float32)  # PDEBench stores T+1 entries
    with open_dataset(path) as ds:
        assert ds.n_times == 5 and len(ds.t) == 5


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found.*qpde data"):
        open_dataset(tmp_path / "nope.h5")


def test_truncated_file(burgers_file, tmp_path):
    data = burgers_file.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match="cut.h5"):
        with open_dataset(cut) as ds:
            ds.fields([0, 1, 2, 3])


@pytest.mark.parametrize(
    "layout, message",
    [
        ({"x-coordinate": np.zeros(8), "t-coordinate": np.zeros(5)}, "missing dataset 'tensor'"),
        ({"tensor": np.zeros((2, 5)), "x-coordinate": np.zeros(8), "t-coordinate": np.zeros(5)}, "'tensor' must be a 3-D"),
        ({"tensor": np.zeros((2, 5, 8)), "x-coordinate": np.zeros(7), "t-coordinate": np.zeros(5)}, "x-coordinate has 7"),
        ({"tensor": np.zeros((2, 5, 8)), "x-coordinate": np.zeros(8), "t-coordinate": np.zeros(9)}, "t-coordinate has 9"),
    ],
)
def test_wrong_layout_names_the_key(tmp_path, layout, message):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        for key, value in layout.items():
            f[key] = value
    with pytest.raises(DataError, match=message):
        open_dataset(path)


def test_unknown_dataset(tmp_path):
    with pytest.raises(DataError, match="unknown dataset"):
        generate("kdv", tmp_path / "k.h5", samples=1, resolution=8, seed=0)


def test_resample_periodic_linear_is_exact_for_linear_pieces_and_round_trips_smooth_fields():
    x = (np.arange(64) + 0.5) / 64
    u = np.sin(2 * np.pi * x)[None]
    coarse = resample(u, (x,), (32,), periodic=True)
    (xc,) = coarse_grid((x,), (32,), periodic=True)
    assert np.allclose(xc, (np.arange(32) + 0.5) / 32)
    # Interpolation error of linear interpolation ~ (h²/8)·max|u''| = (1/64)²/8·4π² ≈ 1.2e-3
    assert np.abs(coarse[0] - np.sin(2 * np.pi * xc)).max() < 1.3e-3
    back = resample(coarse, (xc,), (64,), periodic=True)
    assert np.abs(back - u).max() < 5e-3
    same = resample(u, (x,), (64,), periodic=True)
    assert np.allclose(same, u, atol=1e-14)


def test_metrics_on_hand_computable_cases():
    target = np.array([[3.0, 4.0], [1.0, 0.0]])
    pred = np.array([[3.0, 4.0], [0.0, 0.0]])
    assert rmse(pred, target) == pytest.approx(np.mean([0.0, np.sqrt(0.5)]))
    assert nrmse(pred, target) == pytest.approx(np.mean([0.0, 1.0]))
    table = metric_table(pred, target)
    assert table["max_error"] == 1.0 and table["mse"] == 0.25
    assert set(table) == {"mse", "rmse", "nrmse", "max_error", "boundary_rmse", "frmse_low", "frmse_mid", "frmse_high"}
