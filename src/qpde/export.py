"""Brevitas model → cleaned QONNX file, checked by QGraph (so a bad graph fails here, not later)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path

import torch
from brevitas.export import export_qonnx
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.cleanup import cleanup_model

from qpde.errors import GraphError
from qpde.ingest import clean_model
from qpde.passes import fold_channel_gains, round_half_up_to_floor
from qpde.qgraph import QGraph

log = logging.getLogger(__name__)
# torch.onnx logs a warning per torchvision op it skips: noise for a model with none of them.
logging.getLogger("torch.onnx").setLevel(logging.ERROR)


def export_model(model: torch.nn.Module, n_inputs: int, path: Path) -> Path:
    """Export a trained quantized model to QONNX and clean it up. Its input is [1, n_inputs], the
    flat field (`model.points`: resolution^d values, 2D fields in raster order)."""
    if getattr(model, "spec", None) is not None and model.spec.is_float:
        raise GraphError("float models have no fixed-point graph; export a quantized scenario (e.g. w8a8)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = path.with_suffix(".raw.onnx")
    model.eval()
    # torch.onnx prints progress lines to stdout; keep the CLI's output clean.
    with contextlib.redirect_stdout(io.StringIO()):
        export_qonnx(model, torch.zeros(1, n_inputs), str(raw))
    clean = clean_model(ModelWrapper(str(raw)))  # the passes every user file gets too (ingest.py)
    # Round-half-up activations (qpde.quant.RoundActQuant) → FLOOR Quants with half an LSB added.
    # Per-mode spectral gains (a Mul by 2^g next to a DFT stage) → the DFT/inverse-DFT weights.
    clean = cleanup_model(fold_channel_gains(clean))
    clean = cleanup_model(round_half_up_to_floor(clean))
    QGraph(clean)  # refuse unsupported graphs before anything is written
    tmp = path.with_suffix(".tmp.onnx")
    clean.save(str(tmp))
    os.replace(tmp, path)
    raw.unlink()
    log.info("exported %s", path)
    return path
