"""C simulation against the golden: the whole test set, compared bit for bit."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from qpde import golden
from qpde.hls.convert import HLSProject
from qpde.qgraph import SPATIAL_OPS, QGraph


@dataclass
class Verdict:
    """Result of comparing a simulation with the golden on every sample."""

    backend: str
    samples: int
    mismatching_samples: int
    mismatching_values: int
    first_mismatch_index: int | None
    max_abs_difference: float

    @property
    def exact(self) -> bool:
        return self.mismatching_samples == 0

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: Path) -> Verdict:
        return cls(**json.loads(Path(path).read_text()))


def compare(backend: str, reference: np.ndarray, actual: np.ndarray) -> Verdict:
    """Exact comparison (np.array_equal semantics per sample)."""
    reference = reference.reshape(reference.shape[0], -1)
    actual = actual.reshape(actual.shape[0], -1)
    if reference.shape != actual.shape:
        raise ValueError(f"{backend}: output shape {actual.shape} differs from the golden's {reference.shape}")
    differs = reference != actual
    bad = np.flatnonzero(differs.any(axis=1))
    return Verdict(
        backend=backend,
        samples=int(reference.shape[0]),
        mismatching_samples=int(bad.size),
        mismatching_values=int(differs.sum()),
        first_mismatch_index=int(bad[0]) if bad.size else None,
        max_abs_difference=float(np.abs(reference - actual).max()) if reference.size else 0.0,
    )


def csim_outputs(graph: QGraph, project: HLSProject, x: np.ndarray) -> np.ndarray:
    """C-simulation outputs for raw float model inputs x [n, *input]: quantized as the model's first
    Quant does (exactly), then streamed through the compiled hls4ml model.

    hls4ml holds the tensors of a convolutional graph channels-last ([W, C], [H, W, C]; see
    `convert._hls_shape`): a channels-first input such as a user CNN's [n, C, W] is moved to that
    layout on the way in and the output back on the way out (qpde's own models stream [n, N], C = 1)."""
    xq = golden.quantized_input(graph, x)
    channels_last = any(n.op_type in SPATIAL_OPS for n in graph.nodes)
    if channels_last and xq.ndim in (3, 4):
        xq = np.moveaxis(xq, 1, -1)
    out_shape = tuple(graph.output_shape[1:])
    out = project.predict(xq)
    if channels_last and len(out_shape) in (2, 3):
        return np.moveaxis(out.reshape((x.shape[0],) + out_shape[1:] + out_shape[:1]), -1, 1)
    return out.reshape((x.shape[0],) + out_shape)


def csim_verdict(graph: QGraph, project: HLSProject, x: np.ndarray) -> Verdict:
    return compare("hls4ml-csim", golden.run(graph, x), csim_outputs(graph, project, x))
