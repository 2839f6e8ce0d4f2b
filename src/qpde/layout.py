"""Where every artifact of a sweep lives under --out: one `Layout`, used by the flow's steps, the report,
the CLI and the tests, so a path is written down once.

    data/<dataset>-<key>.h5                       generated datasets (the key names the generator's inputs)
    models/<id>/checkpoint.pt, <id>.qonnx.onnx, metrics.json, metrics.error, worker.error
    hls/<id>/                                     the hls4ml project (qpde_folding.json)
    sim/<id>/csim_verdict.json, rtlsim_verdict.json, <backend>.error
    sim/stage_times.json, sim/problems.json
    bitstreams/<id>/<backend>.json                a backend's row(s) for results.csv
    bitstreams/<id>/rtl/, folded/, finn/          tool projects, logs, bitstreams
    results.csv, report.md, *.png

Also the small helpers every artifact writer shares: atomic JSON (NaN written as null) and paths made
relative to --out in notes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qpde.config import Variant


def _variant(variant: Variant | str) -> Variant:
    return variant if isinstance(variant, Variant) else Variant.parse(variant)


@dataclass(frozen=True)
class Layout:
    """Where artifacts live: the design card's top-level folders, one entry per variant id. Every
    method takes a `Variant` or its id."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    # ---- folders -----------------------------------------------------------------------------
    def data_file(self, dataset: str, key: str) -> Path:
        return self.root / "data" / f"{dataset}-{key}.h5"

    def models(self, variant: Variant | str) -> Path:
        return self.root / "models" / _variant(variant).id

    def hls(self, variant: Variant | str) -> Path:
        return self.root / "hls" / _variant(variant).id

    def sim(self, variant: Variant | str) -> Path:
        return self.root / "sim" / _variant(variant).id

    def bitstreams(self, variant: Variant | str) -> Path:
        return self.root / "bitstreams" / _variant(variant).id

    # ---- files of one variant ------------------------------------------------------------------
    def checkpoint(self, variant: Variant | str) -> Path:
        return self.models(variant) / "checkpoint.pt"

    def qonnx(self, variant: Variant | str) -> Path:
        return self.models(variant) / f"{_variant(variant).id}.qonnx.onnx"

    def metrics(self, variant: Variant | str) -> Path:
        return self.models(variant) / "metrics.json"

    def csim_verdict(self, variant: Variant | str) -> Path:
        return self.sim(variant) / "csim_verdict.json"

    def rtlsim_verdict(self, variant: Variant | str) -> Path:
        return self.sim(variant) / "rtlsim_verdict.json"

    def row(self, variant: Variant | str, backend: str) -> Path:
        """A hardware backend's figures (its rows of results.csv): hls4ml, rtl, folded, finn."""
        return self.bitstreams(variant) / f"{backend}.json"

    def project(self, variant: Variant | str, backend: str) -> Path:
        """A backend's tool folder (Verilog, logs, bitstreams): rtl, folded, finn."""
        return self.bitstreams(variant) / backend

    def error(self, variant: Variant | str, stage: str) -> Path:
        """Why a stage of a variant failed: "metrics" and "worker" (the whole variant: models/<id>/),
        or a hardware backend (sim/<id>/<backend>.error)."""
        if stage in ("metrics", "worker"):
            return self.models(variant) / f"{stage}.error"
        return self.sim(variant) / f"{stage}.error"

    # ---- files of the sweep --------------------------------------------------------------------
    @property
    def stage_times(self) -> Path:
        return self.root / "sim" / "stage_times.json"

    @property
    def problems(self) -> Path:
        return self.root / "sim" / "problems.json"

    @property
    def results(self) -> Path:
        return self.root / "results.csv"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    def variant_ids(self) -> list[str]:
        """Every variant with a models/<id>/ folder (what `qpde report` tabulates)."""
        models = self.root / "models"
        return sorted(p.name for p in models.iterdir() if p.is_dir()) if models.is_dir() else []


def finite_or_none(payload):
    """payload with every NaN/±Inf float replaced by None: JSON has no NaN (json.dumps would write an
    invalid file), and an empty cell means "no value"."""
    if isinstance(payload, float):
        return payload if np.isfinite(payload) else None
    if isinstance(payload, np.floating):
        return float(payload) if np.isfinite(payload) else None
    if isinstance(payload, dict):
        return {k: finite_or_none(v) for k, v in payload.items()}
    if isinstance(payload, (list, tuple)):
        return [finite_or_none(v) for v in payload]
    return payload


def write_json(path: Path, payload) -> Path:
    """Atomically (temp file + os.replace): a killed run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(finite_or_none(payload), indent=2, default=str, allow_nan=False))
    os.replace(tmp, path)
    return path


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def portable(text: str, root: Path) -> str:
    """`text` with the sweep root's absolute path dropped, so notes and errors name artifacts relative
    to --out: the same sweep in two folders gives identical tables."""
    return text.replace(f"{Path(root).resolve()}/", "")
