"""Transformer1d at a fixed resolution: softmax-free linear (Galerkin-type) attention over grid
points, written so that every op is exact in hardware.

Tokens are grid points: u [B, N] → [B, N, 1] → per-point lift QuantLinear(1 → dim). Per layer:
  Q, K, V = QuantLinear(dim → dim)(h), each quantized by its own FLOOR activation quantizer;
  KV      = quant( (Kᵀ V) · 2^-ceil(log2 N) )     [B, dim, dim], a sum over the N tokens;
  A       = quant( Q · KV )                       [B, N, dim];
  h       = quant( h + A );   h = quant( h + MLP(h) ),  MLP = QuantLinear → QuantReLU → QuantLinear.
Projection QuantLinear(dim → 1), residual output u + Δu like FNO1d (`residual`).

Galerkin attention is y = Q (Kᵀ V) / N. The 1/N is an explicit multiplication by the power of two
2^-ceil(log2 N) (exactly 1/N when N is a power of two, the usual case; otherwise the next smaller
power of two, a constant factor the following quantizers absorb). A power-of-two Mul only moves
the binary point, so it is exact in every backend. Both activation × activation products take
inputs that are outputs of FLOOR activation quantizers (power-of-two-scaled fixed point), so their
exact results are integers · 2^(e1+e2).

Normalisation: none (no LayerNorm/softmax: both need division or transcendental functions that are
not integer-exact); Galerkin attention is stable without softmax and the learned power-of-two
activation scales play the role of a fixed normalisation. No positional term: every op is
per-token or a sum over all tokens, so the model is translation (indeed permutation) equivariant.
Layout [B, N] in and out like FNO1d; fp32 (float spec) is the plain float model.

Transformer2d: tokens are the r² grid points of the raster-order field [B, r²] (see qpde.task).
Every op is per token or a sum over all tokens, so the 1D model is already the 2D model with
N = r²; only the attention scale 2^-ceil(log2 r²) changes. Without a positional term the model sees
a wall (Darcy's u = 0 boundary) only through the data; a position-dependent bias would need a
per-token constant that no hls4ml streaming layer holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import brevitas.nn as qnn
import torch
from torch import nn

from qpde.quant import QuantSpec, act_kwargs, linear_kwargs


@dataclass(frozen=True)
class TransformerConfig:
    """Shape of a Transformer1d."""

    dim: int = 8  # token features
    layers: int = 1  # attention + MLP blocks
    mlp: int = 16  # hidden width of each block's MLP
    residual: bool = True  # predict u(t+Δt) − u(t) and add the (quantized) input back


def check_shape(resolution: int, config: TransformerConfig) -> None:
    if config.dim < 1 or config.layers < 1 or config.mlp < 1:
        raise ValueError(f"Transformer dim, layers and mlp must be >= 1, got {config}")
    if resolution < 1:
        raise ValueError(f"resolution must be >= 1, got {resolution}")


def attention_scale(resolution: int) -> float:
    """2^-ceil(log2 N): exactly 1/N for a power-of-two N, always a power of two."""
    return 2.0 ** -math.ceil(math.log2(resolution)) if resolution > 1 else 1.0


def _linear(c_in: int, c_out: int, spec: QuantSpec) -> qnn.QuantLinear:
    return qnn.QuantLinear(c_in, c_out, bias=True, **linear_kwargs(spec, bias=True))


def _act(spec: QuantSpec, signed: bool = True):
    return qnn.QuantIdentity(**act_kwargs(spec, signed=True)) if signed else \
        qnn.QuantReLU(**act_kwargs(spec, signed=False))


class GalerkinBlock(nn.Module):
    """Galerkin attention with residual, then an MLP with residual."""

    def __init__(self, n: int, cfg: TransformerConfig, spec: QuantSpec):
        super().__init__()
        d = cfg.dim
        self.scale = attention_scale(n)
        # Activation × activation products (KᵀV, then Q·KV): MACs for qpde.cost, at a_bits × a_bits.
        self.activation_macs = 2 * n * d * d
        self.q, self.k, self.v = _linear(d, d, spec), _linear(d, d, spec), _linear(d, d, spec)
        self.q_q, self.k_q, self.v_q = _act(spec), _act(spec), _act(spec)
        self.kv_q = _act(spec)
        self.att_q = _act(spec)
        self.res1_q = _act(spec)
        self.mlp1 = _linear(d, cfg.mlp, spec)
        self.mlp_act = _act(spec, signed=False)
        self.mlp2 = _linear(cfg.mlp, d, spec)
        self.mlp2_q = _act(spec)
        self.res2_q = _act(spec)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # [B, N, d]
        q = self.q_q(self.q(h))
        k = self.k_q(self.k(h))
        v = self.v_q(self.v(h))
        kv = self.kv_q(torch.matmul(k.transpose(1, 2), v) * self.scale)  # [B, d, d]
        h = self.res1_q(h + self.att_q(torch.matmul(q, kv)))
        return self.res2_q(h + self.mlp2_q(self.mlp2(self.mlp_act(self.mlp1(h)))))


class Transformer1d(nn.Module):
    """u(t) on N points [B, N] → u(t+Δt) [B, N]."""

    arch = "transformer"
    ndim = 1

    def __init__(self, resolution: int, config: TransformerConfig, spec: QuantSpec):
        super().__init__()
        check_shape(resolution, config)
        self.resolution, self.config, self.spec = resolution, config, spec
        self.points = resolution**self.ndim  # tokens: the flat input/output vector
        d = config.dim
        self.in_q = qnn.QuantIdentity(**act_kwargs(spec, signed=True, state=True, host=True))
        self.lift = _linear(1, d, spec)
        self.lift_q = _act(spec)
        self.blocks = nn.ModuleList(GalerkinBlock(self.points, config, spec) for _ in range(config.layers))
        self.proj = _linear(d, 1, spec)
        self.out_q = qnn.QuantIdentity(**act_kwargs(spec, signed=True, state=True))
        if config.residual:
            self.delta_q = qnn.QuantIdentity(**act_kwargs(spec, signed=True, state=True))
        # Default init of a 1-input Linear draws weights in ±1, large next to a field of order 1.
        bound = 1.0 / math.sqrt(d)
        nn.init.uniform_(self.lift.weight, -bound, bound)

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # [B, N]
        u_q = self.in_q(u.unsqueeze(-1))  # [B, N, 1]
        h = self.lift_q(self.lift(u_q))
        for block in self.blocks:
            h = block(h)
        out = self.proj(h)
        if self.config.residual:
            out = u_q + self.delta_q(out)
        return self.out_q(out).squeeze(-1)


class Transformer2d(Transformer1d):
    """u(t) on an r×r grid, flattened in raster order [B, r²] → u(t+Δt) [B, r²]; r² tokens."""

    ndim = 2
