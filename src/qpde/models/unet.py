"""UNet1d at a fixed resolution (PDEBench's encoder–decoder with skip connections), written so that
every op is exact in hardware.

Layout is PyTorch's channels-first [batch, channels, N] inside; the model takes and returns [B, N]
like FNO1d. Every conv has kernel `kernel` with 'same' zero padding, a bias and a FLOOR ReLU
quantizer; pooling is MaxPool1d(2); upsampling is nearest ×2 followed by a conv (hls4ml has a
native streaming UpSampling1D, but no ConvTranspose1d); the skip and the upsampled branch are
concatenated along channels without requantization (an exact union of their fixed-point types).
No batch norm: with none there is nothing to fold before export.
"""

from __future__ import annotations

from dataclasses import dataclass

import brevitas.nn as qnn
import torch
from torch import nn

from qpde.quant import QuantSpec, act_kwargs, linear_kwargs


@dataclass(frozen=True)
class UNetConfig:
    """Shape of a UNet1d."""

    depth: int = 2  # poolings (levels below the input resolution); resolution must divide by 2^depth
    features: int = 4  # channels of the first level, doubled at every level down
    kernel: int = 3  # conv kernel width (odd: 'same' padding is symmetric)
    residual: bool = True  # predict u(t+Δt) − u(t) and add the (quantized) input back


def check_shape(resolution: int, config: UNetConfig) -> None:
    if config.depth < 1 or config.features < 1:
        raise ValueError(f"UNet depth and features must be >= 1, got {config.depth} and {config.features}")
    if config.kernel < 1 or config.kernel % 2 == 0:
        raise ValueError(f"UNet kernel must be odd (symmetric 'same' padding), got {config.kernel}")
    if resolution % 2**config.depth or resolution // 2**config.depth < 1:
        raise ValueError(f"resolution {resolution} is not divisible by 2^depth = {2**config.depth}")


def _conv(c_in: int, c_out: int, kernel: int, spec: QuantSpec) -> qnn.QuantConv1d:
    return qnn.QuantConv1d(c_in, c_out, kernel, padding=kernel // 2, bias=True,
                           **linear_kwargs(spec, bias=True))


class ConvBlock(nn.Module):
    """(conv → quantized ReLU) × 2."""

    def __init__(self, c_in: int, c_out: int, kernel: int, spec: QuantSpec):
        super().__init__()
        self.conv1 = _conv(c_in, c_out, kernel, spec)
        self.act1 = qnn.QuantReLU(**act_kwargs(spec, signed=False))
        self.conv2 = _conv(c_out, c_out, kernel, spec)
        self.act2 = qnn.QuantReLU(**act_kwargs(spec, signed=False))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.act2(self.conv2(self.act1(self.conv1(h))))


class UpBlock(nn.Module):
    """Nearest ×2 upsampling → conv → quantized ReLU; concat with the skip; ConvBlock."""

    def __init__(self, c_in: int, c_out: int, kernel: int, spec: QuantSpec):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = _conv(c_in, c_out, kernel, spec)
        self.act = qnn.QuantReLU(**act_kwargs(spec, signed=False))
        self.block = ConvBlock(2 * c_out, c_out, kernel, spec)

    def forward(self, h: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.act(self.conv(self.up(h)))
        return self.block(torch.cat([skip, up], dim=1))


class UNet1d(nn.Module):
    """u(t) on N points [B, N] → u(t+Δt) [B, N]."""

    arch = "unet"

    def __init__(self, resolution: int, config: UNetConfig, spec: QuantSpec):
        super().__init__()
        check_shape(resolution, config)
        self.resolution, self.config, self.spec = resolution, config, spec
        k, f, d = config.kernel, config.features, config.depth
        channels = [f * 2**i for i in range(d + 1)]
        self.in_q = qnn.QuantIdentity(**act_kwargs(spec, signed=True))
        self.down = nn.ModuleList(
            ConvBlock(1 if i == 0 else channels[i - 1], channels[i], k, spec) for i in range(d)
        )
        self.pool = nn.MaxPool1d(2)
        self.bottleneck = ConvBlock(channels[d - 1], channels[d], k, spec)
        # up[i] brings level i+1 back to level i; applied from the deepest level up.
        self.up = nn.ModuleList(UpBlock(channels[i + 1], channels[i], k, spec) for i in range(d))
        self.head = qnn.QuantConv1d(channels[0], 1, 1, bias=True, **linear_kwargs(spec, bias=True))
        self.out_q = qnn.QuantIdentity(**act_kwargs(spec, signed=True))
        if config.residual:
            self.delta_q = qnn.QuantIdentity(**act_kwargs(spec, signed=True))

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # [B, N]
        u_q = self.in_q(u.unsqueeze(1))  # [B, 1, N]
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
        return self.out_q(out).squeeze(1)
