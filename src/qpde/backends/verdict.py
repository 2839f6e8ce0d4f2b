"""The one verdict every backend returns: a simulation's outputs compared with the exact golden on
every sample, bit for bit (np.array_equal per sample).

    verdict = compare("rtl-verilator", golden.run(graph, x), outputs, simulator="verilator 5.48")
    verdict.save(path)            # JSON: the fields below, then the backend's own details
    verdict.require_exact()       # MismatchError naming the first mismatching sample
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from qpde.errors import MismatchError


@dataclass
class Verdict:
    """Result of comparing a simulation with the golden on every sample."""

    backend: str  # what ran: hls4ml-csim, rtl-verilator, finn-exec, …
    samples: int
    mismatching_samples: int  # samples with at least one differing output value
    mismatching_values: int
    first_mismatch_index: int | None  # index of the first mismatching sample
    max_abs_difference: float
    details: dict = field(default_factory=dict)  # what the backend adds (simulator, latency_cycles, …)

    @property
    def exact(self) -> bool:
        """Every sample equals the golden; a verdict of no samples proves nothing and is not exact."""
        return self.samples > 0 and self.mismatching_samples == 0

    def to_json(self) -> dict:
        """The JSON form: the fields above, then the details at the same level."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "details"}
        data.update(self.details)
        return data

    @classmethod
    def from_json(cls, data: dict) -> Verdict:
        names = {f.name for f in fields(cls)} - {"details"}
        return cls(**{k: v for k, v in data.items() if k in names},
                   details={k: v for k, v in data.items() if k not in names})

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: Path) -> Verdict:
        return cls.from_json(json.loads(Path(path).read_text()))

    def require_exact(self) -> None:
        """MismatchError when any sample differs from the golden."""
        if self.samples == 0:
            raise MismatchError(f"{self.backend} compared no samples: nothing is proven")
        if not self.exact:
            raise MismatchError(f"{self.backend} differs from the golden on {self.mismatching_samples}/"
                                f"{self.samples} samples (first: sample {self.first_mismatch_index})")


def compare(backend: str, reference: np.ndarray, actual: np.ndarray, **details) -> Verdict:
    """Exact comparison (np.array_equal semantics per sample) of outputs [n, …] with the golden's."""
    reference = np.asarray(reference)
    actual = np.asarray(actual)
    reference = reference.reshape(len(reference), int(np.prod(reference.shape[1:])))  # -1 fails for 0 samples
    actual = actual.reshape(len(actual), int(np.prod(actual.shape[1:])))
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
        details=details,
    )
