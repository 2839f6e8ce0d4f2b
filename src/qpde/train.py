"""Float training, then QAT fine-tuning (Brevitas) from the float checkpoint.

Checkpoints carry everything needed to rebuild the model (arch, resolution, shape, scenario), so
later stages never need the training config."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress
from torch import nn

from qpde.config import TrainConfig, Variant
from qpde.errors import ConfigError, DataError, QpdeError
from qpde.models.fno import FNO1d, FNO2d, FNOConfig
from qpde.models.transformer import Transformer1d, Transformer2d, TransformerConfig
from qpde.models.unet import UNet1d, UNet2d, UNetConfig
from qpde.quant import parse_scenario

log = logging.getLogger(__name__)


MODELS = {
    ("fno", 1): (FNO1d, FNOConfig), ("fno", 2): (FNO2d, FNOConfig),
    ("unet", 1): (UNet1d, UNetConfig), ("unet", 2): (UNet2d, UNetConfig),
    ("transformer", 1): (Transformer1d, TransformerConfig), ("transformer", 2): (Transformer2d, TransformerConfig),
}


def build_model(arch: str, resolution: int, shape: dict, scenario: str, ndim: int = 1) -> nn.Module:
    """The `arch` solver for fields with `ndim` spatial axes of `resolution` points each."""
    spec = parse_scenario(scenario)
    if (arch, ndim) not in MODELS:
        archs = sorted({a for a, _ in MODELS})
        raise ConfigError(f"no {ndim}-D {arch!r} model; architectures: {', '.join(archs)} in 1-D and 2-D")
    model_cls, config_cls = MODELS[(arch, ndim)]
    try:
        return model_cls(resolution, config_cls(**shape), spec)
    except ValueError as exc:  # modes above Nyquist, resolution not divisible by 2^depth, even kernel, …
        raise ConfigError(f"{ndim}-D {arch} at resolution {resolution}: {exc}") from exc


def fit(
    model: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    label: str,
) -> list[dict]:
    """Adam + cosine decay on MSE; returns per-epoch train/val losses. Deterministic for a seed:
    one thread, so every executor (serial, process pool, Ray) trains bit-identical models."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit(model, train, val, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, label=label)
    finally:
        torch.set_num_threads(threads)


def _fit(model, train, val, *, epochs, lr, batch_size, seed, label) -> list[dict]:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x, y = (torch.from_numpy(a) for a in train)
    xv, yv = (torch.from_numpy(a) for a in val)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    steps_per_epoch = max(1, len(x) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    history = []
    with Progress(transient=True) as progress:
        task = progress.add_task(f"train {label}", total=epochs)
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(len(x), generator=generator)
            total = 0.0
            for step in range(steps_per_epoch):
                idx = order[step * batch_size : (step + 1) * batch_size]
                loss = nn.functional.mse_loss(model(x[idx]), y[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                total += loss.item()
            model.eval()
            with torch.no_grad():
                val_loss = nn.functional.mse_loss(model(xv), yv).item()
            if not np.isfinite(val_loss):
                raise QpdeError(f"training {label} diverged at epoch {epoch} (val loss {val_loss})")
            history.append({"epoch": epoch, "train_mse": total / steps_per_epoch, "val_mse": val_loss})
            progress.advance(task)
    log.info("%s: val mse %.3g after %d epochs", label, history[-1]["val_mse"], epochs)
    return history


def save_checkpoint(path: Path, model: nn.Module, variant: Variant, shape: dict, history: list) -> Path:
    payload = {
        "arch": variant.arch,
        "resolution": variant.resolution,
        "scenario": variant.scenario,
        "ndim": model.ndim,
        "shape": shape,
        "state_dict": model.state_dict(),
        "history": history,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # atomic: an interrupted run never leaves a half-written checkpoint
    return path


def read_checkpoint(path: Path) -> dict:
    """A checkpoint's payload, unpickled with weights_only=True: tensors and plain containers only, so
    a crafted file cannot run code (a full unpickle could). Anything else is refused as a DataError."""
    import pickle
    import zipfile

    if not Path(path).is_file():
        raise DataError(f"checkpoint not found: {path}; train it with `qpde run`")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        first = next((line for line in lines if "GLOBAL" in line or "Unsupported global" in line),
                     lines[0] if lines else type(exc).__name__).split(". ")[0]
        raise DataError(f"{path}: refused to load: the checkpoint holds objects other than tensors and plain "
                        f"containers, and unpickling them could run code ({first}); delete it to retrain") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        reason = str(exc).strip().split(". ")[0]
        raise DataError(f"{path}: not a readable checkpoint (truncated or corrupt?): {reason}; delete it to retrain") \
            from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(payload, dict) or k not in payload]
    if missing:
        raise DataError(f"{path}: not a qpde checkpoint (missing {', '.join(missing)})")
    return payload


CHECKPOINT_KEYS = ("arch", "resolution", "scenario", "shape", "state_dict")


def load_checkpoint(path: Path) -> nn.Module:
    payload = read_checkpoint(path)
    model = build_model(payload["arch"], payload["resolution"], payload["shape"], payload["scenario"],
                        payload.get("ndim", 1))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model


def train_variant(
    variant: Variant,
    shape: dict,
    cfg: TrainConfig,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    out: Path,
    float_checkpoint: Path | None = None,
    ndim: int = 1,
) -> Path:
    """Train one variant; quantized ones start from the float checkpoint (QAT fine-tuning)."""
    torch.manual_seed(cfg.seed)  # the initial weights too: a rerun in a fresh process is identical
    model = build_model(variant.arch, variant.resolution, shape, variant.scenario, ndim)
    if parse_scenario(variant.scenario).is_float:
        epochs, lr = cfg.epochs, cfg.lr
    else:
        if float_checkpoint is None:
            raise ConfigError(f"{variant.id}: QAT needs the float checkpoint (train fp32 first)")
        float_state = read_checkpoint(float_checkpoint)["state_dict"]
        if hasattr(model, "fold_batch_norm"):  # QAT trains the folded convs the hardware runs
            float_state = model.fold_batch_norm(float_state)
        # Quantized models have extra quantizer parameters (learned scales); weights map 1:1.
        result = model.load_state_dict(float_state, strict=False)
        if result.unexpected_keys:
            raise QpdeError(f"{variant.id}: float checkpoint has unexpected keys {result.unexpected_keys}")
        epochs, lr = cfg.qat_epochs, cfg.qat_lr
    history = fit(
        model, train, val, epochs=epochs, lr=lr, batch_size=cfg.batch_size, seed=cfg.seed, label=variant.id
    )
    return save_checkpoint(out, model, variant, shape, history)


def shape_of(arch: str, cfg) -> dict:
    """The architecture's shape section of a sweep config, as plain keyword arguments."""
    return dataclasses.asdict(getattr(cfg, arch))
