"""The dataset registry: everything qpde knows about each PDE dataset, in one table (`DATASETS`).

Adding a dataset: a generator module in qpde/data/ (a function `(samples, resolution, seed,
*, params…) -> arrays`) and one `Dataset(...)` below naming it, its PDEBench HDF5 layout and how
its arrays are written. The config, the CLI (`qpde data`), the reader and the pipeline enumerate
this table; nothing else lists datasets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qpde.registry import Registry, resolve


@dataclass(frozen=True)
class Dataset:
    name: str
    ndim: int  # spatial axes of a field
    periodic: bool  # periodic boundaries (the models pad circularly)
    layout: str  # PDEBench HDF5 layout, as error messages show it
    generator: str  # "module:function" of the solver
    write: Callable  # (path, generator result, attrs) -> None: the PDEBench file
    snapshots: int | None = None  # saved time levels when fixed (else the generator's n_times)
    steady: bool = False  # the task is a one-shot map (coefficient → solution), not a time step

    def generate_fn(self) -> Callable:
        return resolve(self.generator)


def _write_u_x_t(path: Path, result, attrs: dict) -> None:
    from qpde.data.pdebench import write_tensor

    u, x, t = result
    write_tensor(path, {"tensor": u, "x-coordinate": x, "t-coordinate": t}, attrs)


def _write_groups(path: Path, result, attrs: dict) -> None:
    from qpde.data.pdebench import write_sample_groups

    data, x, t = result
    write_sample_groups(path, data, x, t, attrs)


def _write_darcy(path: Path, result, attrs: dict) -> None:
    from qpde.data.pdebench import write_tensor

    a, u, x, y = result
    write_tensor(path, {"tensor": u[:, None], "nu": a, "x-coordinate": x, "y-coordinate": y}, attrs)


def _write_w_x_y_t(path: Path, result, attrs: dict) -> None:
    from qpde.data.pdebench import write_tensor

    w, x, y, t = result
    write_tensor(path, {"tensor": w, "x-coordinate": x, "y-coordinate": y, "t-coordinate": t}, attrs)


DATASETS: Registry = Registry("dataset")
register = DATASETS.register


register(Dataset("burgers", 1, True, "tensor [N,T,X], x-coordinate [X], t-coordinate [T] (or T+1)",
                 "qpde.data.burgers:generate_burgers", _write_u_x_t))
register(Dataset("diffusion-sorption", 1, False, "groups 0000/data [T,X,1], 0000/grid/x [X], 0000/grid/t [T]",
                 "qpde.data.diffusion_sorption:generate_diffusion_sorption", _write_groups))
register(Dataset("darcy", 2, False, "tensor [N,1,X,Y], nu [N,X,Y], x-coordinate [X], y-coordinate [Y]",
                 "qpde.data.darcy:generate_darcy", _write_darcy, snapshots=2, steady=True))
register(Dataset("navier-stokes", 2, True,
                 "tensor [N,T,X,Y], x-coordinate [X], y-coordinate [Y], t-coordinate [T] (or T+1)",
                 "qpde.data.navier_stokes:generate_navier_stokes", _write_w_x_y_t))

LAYOUTS = {name: d.layout for name, d in DATASETS.items()}  # name → layout (read by the HDF5 reader)
