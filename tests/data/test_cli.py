"""`qpde data`: the command function as the main CLI registers it (qpde.cli wraps it in cli_errors)."""

from typer.testing import CliRunner

from qpde.cli import app
from qpde.data import open_dataset


def test_data_command_writes_file(tmp_path):
    out = tmp_path / "b.h5"
    result = CliRunner().invoke(
        app,
        [
            "data",
            "burgers",
            "--out",
            str(out),
            "--samples",
            "3",
            "--resolution",
            "16",
            "--seed",
            "2",
            "-p",
            "n_times=3",
            "-p",
            "cells=32",
        ],
    )
    assert result.exit_code == 0, result.output
    with open_dataset(out) as ds:
        assert (ds.kind, ds.n_samples, ds.n_times, ds.spatial_shape) == ("burgers", 3, 3, (16,))


def test_data_command_errors_are_one_line(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["data", "kdv", "--out", str(tmp_path / "k.h5")])
    assert result.exit_code == 2 and "unknown dataset 'kdv'; available: burgers" in result.output
    result = runner.invoke(app, ["data", "darcy", "--out", str(tmp_path / "d.h5"), "-p", "nu=1"])
    assert (
        result.exit_code == 2
        and "bad --param 'nu=1'; use KEY=VALUE with KEY one of beta, cells" in result.output
    )
    result = runner.invoke(app, ["data", "darcy", "--out", str(tmp_path / "d.h5"), "-p", "beta=high"])
    assert result.exit_code == 2 and "--param beta needs a number" in result.output
