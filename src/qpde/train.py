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
from qpde.models import ARCHS
from qpde.quant import parse_scenario

log = logging.getLogger(__name__)


def build_model(arch: str, resolution: int, shape: dict, scenario: str, ndim: int = 1,
                quant: dict | None = None) -> nn.Module:
    """The `arch` solver for fields with `ndim` spatial axes of `resolution` points each. `quant`:
    rounding and state_bits (config [quant]); None is FLOOR with the state at the activation width
    (checkpoints written before [quant] existed)."""
    spec = parse_scenario(scenario)
    if quant is not None:
        spec = spec.with_options(**quant)
    model_cls = ARCHS[arch].model_class(ndim) if arch in ARCHS else None
    if model_cls is None:
        raise ConfigError(f"no {ndim}-D {arch!r} model; architectures: {', '.join(sorted(ARCHS))} in 1-D and 2-D")
    try:
        return model_cls(resolution, ARCHS[arch].shape(**shape), spec)
    except ValueError as exc:  # modes above Nyquist, resolution not divisible by 2^depth, even kernel, …
        raise ConfigError(f"{ndim}-D {arch} at resolution {resolution}: {exc}") from exc


def resolve_device(name: str = "auto") -> torch.device:
    """`auto`: CUDA when PyTorch sees a GPU, else the CPU; `cuda` without a GPU is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise ConfigError(f"device cuda: PyTorch {torch.__version__} ({build}) sees no CUDA GPU; "
                              "use --device cpu or auto")
        return torch.device("cuda")
    raise ConfigError(f"device {name!r}: use auto, cpu or cuda")


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
    device: str | torch.device = "cpu",
    keep_best: bool = False,
) -> list[dict]:
    """Adam + cosine decay on MSE; returns per-epoch train/val losses. Deterministic for a seed on
    the CPU: one thread, so every executor (serial, process pool, Ray) trains bit-identical models.
    On CUDA the model and the batches live on the GPU (the same code path; results may differ from
    the CPU's in the last bits); the model is returned on the CPU either way. keep_best: the model
    ends with the weights (and quantizer scales) of the epoch with the lowest validation MSE."""
    device = resolve_device(device) if isinstance(device, str) else device
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit(model, train, val, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, label=label,
                    device=device, keep_best=keep_best)
    finally:
        model.to("cpu")
        torch.set_num_threads(threads)


def _fit(model, train, val, *, epochs, lr, batch_size, seed, label, device, keep_best=False) -> list[dict]:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)  # batch order drawn on the CPU: the same on any device
    model.to(device)
    x, y = (torch.from_numpy(a).to(device) for a in train)
    xv, yv = (torch.from_numpy(a).to(device) for a in val)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    steps_per_epoch = max(1, len(x) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    history = []
    best = (float("inf"), None)
    with Progress(transient=True) as progress:
        task = progress.add_task(f"train {label}", total=epochs)
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(len(x), generator=generator)
            total = 0.0
            for step in range(steps_per_epoch):
                idx = order[step * batch_size : (step + 1) * batch_size].to(device)
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
            if keep_best and val_loss < best[0]:
                best = (val_loss, {k: v.detach().clone() for k, v in model.state_dict().items()})
            progress.advance(task)
    if keep_best and best[1] is not None:
        model.load_state_dict(best[1])
        history[int(np.argmin([h["val_mse"] for h in history]))]["kept"] = True
    log.info("%s: val mse %.3g after %d epochs", label, min(h["val_mse"] for h in history), epochs)
    return history


def save_checkpoint(path: Path, model: nn.Module, variant: Variant, shape: dict, history: list,
                    quant: dict | None = None) -> Path:
    payload = {
        "arch": variant.arch,
        "resolution": variant.resolution,
        "scenario": variant.scenario,
        "ndim": model.ndim,
        "shape": shape,
        "quant": quant,
        # on the CPU: a checkpoint trained on a GPU loads on a machine without one
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
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
                        payload.get("ndim", 1), payload.get("quant"))
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
    quant: dict | None = None,
) -> Path:
    """Train one variant; quantized ones start from the float checkpoint (QAT fine-tuning)."""
    torch.manual_seed(cfg.seed)  # the initial weights too: a rerun in a fresh process is identical
    if parse_scenario(variant.scenario).is_float:
        quant = None  # the float model has no quantizers
    model = build_model(variant.arch, variant.resolution, shape, variant.scenario, ndim, quant)
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
        if hasattr(model, "calibrate_mode_gains"):  # per-mode spectral gains from the float model's spectra
            gains = model.calibrate_mode_gains(load_checkpoint(float_checkpoint), train[0])
            if gains:
                log.info("%s: spectral gain exponents per layer %s", variant.id, gains)
        epochs, lr = cfg.qat_epochs, cfg.qat_lr
    history = fit(
        model, train, val, epochs=epochs, lr=lr, batch_size=cfg.batch_size, seed=cfg.seed, label=variant.id,
        device=cfg.device,
    )
    return save_checkpoint(out, model, variant, shape, history, quant)


def shape_of(arch: str, cfg) -> dict:
    """The architecture's shape section of a sweep config, as plain keyword arguments."""
    return dataclasses.asdict(getattr(cfg, arch))
