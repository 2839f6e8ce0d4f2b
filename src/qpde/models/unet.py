"""UNet1d and UNet2d at a fixed resolution (PDEBench's encoder–decoder with skip connections),
written so that every op is exact in hardware.

Layout is PyTorch's channels-first [batch, channels, N] (1-D) or [batch, channels, r, r] (2-D)
inside; the models take and return the flat field [B, N] or [B, r²] (raster order, see qpde.task)
like FNO1d/FNO2d. Every conv has kernel `kernel` (kernel × kernel in 2-D) with 'same' zero padding,
a bias and a FLOOR ReLU quantizer; pooling is max pooling by 2 along every axis; upsampling is
nearest ×2 followed by a conv (hls4ml has native streaming UpSampling1D/2D, but no
ConvTranspose); the skip and the upsampled branch are concatenated along channels without
requantization (an exact union of their fixed-point types).

Batch norm (`batch_norm`, PDEBench's UNet has it) is a float-training device here: the float model
has BatchNorm after every 3×3 conv; the quantized models have none, and QAT starts from the float
checkpoint with each BatchNorm folded into its conv (w·γ/σ, (b − μ)·γ/σ + β, `fold_batch_norm`).
So QAT trains, and the graph exports, the folded convs that the hardware runs: no BatchNorm node
ever reaches QONNX.
"""

from __future__ import annotations

from dataclasses import dataclass

import brevitas.nn as qnn
import torch
from torch import nn

from qpde.quant import QuantSpec, act_kwargs, linear_kwargs


@dataclass(frozen=True)
class UNetConfig:
    """Shape of a UNet1d / UNet2d."""

    depth: int = 2  # poolings (levels below the input resolution); resolution must divide by 2^depth
    features: int = 4  # channels of the first level, doubled at every level down
    kernel: int = 3  # conv kernel width, per axis (odd: 'same' padding is symmetric)
    residual: bool = True  # predict u(t+Δt) − u(t) and add the (quantized) input back
    batch_norm: bool = False  # BatchNorm in float training, folded into the convs before QAT


BN_EPS = 1e-5
BATCH_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}
NORM_OF_CONV = {"conv1": "bn1", "conv2": "bn2", "conv": "bn"}  # sibling module names in the blocks


def check_shape(resolution: int, config: UNetConfig) -> None:
    if config.depth < 1 or config.features < 1:
        raise ValueError(f"UNet depth and features must be >= 1, got {config.depth} and {config.features}")
    if config.kernel < 1 or config.kernel % 2 == 0:
        raise ValueError(f"UNet kernel must be odd (symmetric 'same' padding), got {config.kernel}")
    if resolution % 2**config.depth or resolution // 2**config.depth < 1:
        raise ValueError(f"resolution {resolution} is not divisible by 2^depth = {2**config.depth}")


QUANT_CONV = {1: qnn.QuantConv1d, 2: qnn.QuantConv2d}
MAX_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d}


def _conv(c_in: int, c_out: int, kernel: int, spec: QuantSpec, ndim: int) -> nn.Module:
    return QUANT_CONV[ndim](c_in, c_out, kernel, padding=kernel // 2, bias=True, **linear_kwargs(spec, bias=True))


def _norm(channels: int, spec: QuantSpec, ndim: int, batch_norm: bool) -> nn.Module:
    """BatchNorm in a float model that asks for it; quantized models get it folded into the conv."""
    return BATCH_NORM[ndim](channels, eps=BN_EPS) if batch_norm and spec.is_float else nn.Identity()


class ConvBlock(nn.Module):
    """(conv → [batch norm] → quantized ReLU) × 2."""

    def __init__(self, c_in: int, c_out: int, kernel: int, spec: QuantSpec, ndim: int, batch_norm: bool = False):
        super().__init__()
        self.conv1 = _conv(c_in, c_out, kernel, spec, ndim)
        self.bn1 = _norm(c_out, spec, ndim, batch_norm)
        self.act1 = qnn.QuantReLU(**act_kwargs(spec, signed=False))
        self.conv2 = _conv(c_out, c_out, kernel, spec, ndim)
        self.bn2 = _norm(c_out, spec, ndim, batch_norm)
        self.act2 = qnn.QuantReLU(**act_kwargs(spec, signed=False))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.act2(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(h))))))


class UpBlock(nn.Module):
    """Nearest ×2 upsampling → conv → [batch norm] → quantized ReLU; concat with the skip; ConvBlock."""

    def __init__(self, c_in: int, c_out: int, kernel: int, spec: QuantSpec, ndim: int, batch_norm: bool = False):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")  # ×2 along every spatial axis
        self.conv = _conv(c_in, c_out, kernel, spec, ndim)
        self.bn = _norm(c_out, spec, ndim, batch_norm)
        self.act = qnn.QuantReLU(**act_kwargs(spec, signed=False))
        self.block = ConvBlock(2 * c_out, c_out, kernel, spec, ndim, batch_norm)

    def forward(self, h: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.act(self.bn(self.conv(self.up(h))))
        return self.block(torch.cat([skip, up], dim=1))


class UNet1d(nn.Module):
    """u(t) on N points [B, N] → u(t+Δt) [B, N]."""

    arch = "unet"
    ndim = 1

    def __init__(self, resolution: int, config: UNetConfig, spec: QuantSpec):
        super().__init__()
        check_shape(resolution, config)
        self.resolution, self.config, self.spec = resolution, config, spec
        self.points = resolution**self.ndim  # length of the flat input/output vector
        n = self.ndim
        k, f, d, bn = config.kernel, config.features, config.depth, config.batch_norm
        channels = [f * 2**i for i in range(d + 1)]
        self.in_q = qnn.QuantIdentity(**act_kwargs(spec, signed=True, state=True, host=True))
        self.down = nn.ModuleList(
            ConvBlock(1 if i == 0 else channels[i - 1], channels[i], k, spec, n, bn) for i in range(d)
        )
        self.pool = MAX_POOL[n](2)
        self.bottleneck = ConvBlock(channels[d - 1], channels[d], k, spec, n, bn)
        # up[i] brings level i+1 back to level i; applied from the deepest level up.
        self.up = nn.ModuleList(UpBlock(channels[i + 1], channels[i], k, spec, n, bn) for i in range(d))
        self.head = QUANT_CONV[n](channels[0], 1, 1, bias=True, **linear_kwargs(spec, bias=True))
        self.out_q = qnn.QuantIdentity(**act_kwargs(spec, signed=True, state=True))
        if config.residual:
            self.delta_q = qnn.QuantIdentity(**act_kwargs(spec, signed=True, state=True))

    @staticmethod
    def fold_batch_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A float state dict with every BatchNorm (eval statistics) folded into the conv before it:
        the state of the same UNet without batch norm, computing the same function."""
        state = dict(state)
        for key in [k for k in state if k.endswith(".weight")]:
            prefix, _, _ = key.rpartition(".")
            module_path, _, name = prefix.rpartition(".")
            norm = f"{module_path}.{NORM_OF_CONV[name]}" if name in NORM_OF_CONV else None
            if norm is None or f"{norm}.running_var" not in state:
                continue
            scale = state[f"{norm}.weight"] / torch.sqrt(state[f"{norm}.running_var"] + BN_EPS)
            shape = (-1,) + (1,) * (state[key].dim() - 1)
            state[key] = state[key] * scale.reshape(shape)
            state[f"{prefix}.bias"] = (state[f"{prefix}.bias"] - state[f"{norm}.running_mean"]) * scale \
                + state[f"{norm}.bias"]
            for stat in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                state.pop(f"{norm}.{stat}", None)
        return state

    def to_grid(self, u: torch.Tensor) -> torch.Tensor:
        return u.unsqueeze(1)  # [B, N] → [B, 1, N]

    def from_grid(self, h: torch.Tensor) -> torch.Tensor:
        return h.squeeze(1)

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # [B, points]
        u_q = self.in_q(self.to_grid(u))
        skips = []
        h = u_q
        for i, block in enumerate(self.down):
            h = block(h if i == 0 else self.pool(h))
            skips.append(h)
        h = self.bottleneck(self.pool(h))
        for i in reversed(range(self.config.depth)):
            h = self.up[i](h, skips[i])
        out = self.head(h)
        if self.config.residual:
            out = u_q + self.delta_q(out)
        return self.from_grid(self.out_q(out))


class UNet2d(UNet1d):
    """u(t) on an r×r grid, flattened in raster order [B, r²] → u(t+Δt) [B, r²].

    With one channel, [B, r²] → [B, 1, r, r] keeps the data order, so the exported Reshapes around
    the convolutional body are pure relabellings for every backend."""

    ndim = 2

    def to_grid(self, u: torch.Tensor) -> torch.Tensor:
        return u.reshape(-1, 1, self.resolution, self.resolution)

    def from_grid(self, h: torch.Tensor) -> torch.Tensor:
        return h.reshape(-1, self.points)
