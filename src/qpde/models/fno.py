"""FNO1d and FNO2d at a fixed resolution, written so that every op is exact in hardware.

The spectral convolution is a truncated real DFT done as a constant matrix (cos/−sin rows of the
kept modes, scaled 1/N), per-mode complex channel mixing (one block-diagonal real matrix), and the
inverse DFT as a constant matrix; the DFT matrices are quantized like weights and stay fixed in
training. Layout is channels-last [batch, N, channels] so that a streaming accelerator reads one
grid point per beat. No grid-coordinate channel: periodic problems are translation equivariant.

FNO2d runs on the r×r field flattened in raster order (N = r², see qpde.task), so every layer
except the spectral transforms is the 1D model's. Its DFT is separable and done in two constant
matrices per direction: kron(I_r, F_y), the 1D real DFT along y of every row x, then a complex DFT
along x of the kept y-modes (and the mirror image for the inverse). Two sparse stages instead of
one dense r²×modes² matrix: ~r/modes times fewer MACs, and still plain MatMuls along the last axis,
so every backend maps them like the 1D DFT (no streaming transposes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import brevitas.nn as qnn
import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from qpde.quant import QuantSpec, act_kwargs, linear_kwargs

# Per-mode spectral gains ([quant] spectral_gain = "mode"): mode k's gain 2^g_k lifts its
# GAIN_QUANTILE of |X_k| (Re and Im together, over the training inputs and channels, float model)
# up to, not above, the largest mode's, so the shared power-of-two scale of the DFT's quantizer no
# longer spends its codes on the low modes alone; a second gain 2^h_k does the same for the mode
# mixing's output. g + h ≤ MAX_GAIN_EXP: the DFT, mixing and inverse-DFT weights grow by max g,
# max h and max (g + h) bits. Activations wider than GAIN_MAX_ACT_BITS get no gain (32-bit codes
# lose nothing to a shared scale, and wider weights would push their sums past float64's 53 bits).
GAIN_QUANTILE = 0.999
MAX_GAIN_EXP = 8
GAIN_MAX_ACT_BITS = 16
GAIN_SAMPLES = 4096  # training inputs the statistics are taken on (evenly spaced), bounding memory


@dataclass(frozen=True)
class FNOConfig:
    """Shape of an FNO1d."""

    width: int = 8  # channels in the Fourier layers
    modes: int = 8  # Fourier modes kept (k = 0 … modes-1)
    layers: int = 2  # Fourier layers
    proj: int = 16  # hidden width of the projection MLP
    residual: bool = True  # predict u(t+Δt) − u(t) and add the (quantized) input back


def dft_matrices(n: int, modes: int) -> tuple[np.ndarray, np.ndarray]:
    """Forward [2·modes, n] (rows: Re of mode k, then Im) and inverse [n, 2·modes] real DFT.

    Forward is rfft with norm="forward"; inverse reconstructs a real field from the kept modes,
    so inverse @ forward is the projection onto the kept band."""
    if modes > n // 2:
        raise ValueError(f"modes={modes} exceeds the Nyquist limit {n // 2} of resolution {n}")
    k = np.arange(modes)[:, None]
    x = np.arange(n)[None, :]
    phase = 2 * np.pi * k * x / n
    forward = np.concatenate([np.cos(phase), -np.sin(phase)], axis=0) / n
    weight = np.where(np.arange(modes) == 0, 1.0, 2.0)[:, None]
    inverse = np.concatenate([weight * np.cos(phase), -weight * np.sin(phase)], axis=0).T
    # sin(πk)-style round-off (~1e-16) would be nonzero weights in float: make true zeros zero.
    for matrix in (forward, inverse):
        matrix[np.abs(matrix) < 1e-12] = 0.0
    return forward, inverse


def x_modes(n: int, modes: int) -> np.ndarray:
    """Kept x wavenumbers of FNO2d: −(modes−1) … modes−1 (as indices mod n). A set closed under
    negation, so the kept band of a real field is real: inverse ∘ forward is a projection."""
    return np.r_[0:modes, n - modes + 1 : n]


def dft2d_matrices(n: int, modes: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Forward stages [F_y (n²→n·2M), F_x (n·2M→2K)] and inverse stages [I_x, I_y] of the truncated
    2D real DFT of an n×n raster-order field, K = (2M−1)·M kept complex modes.

    After F_y, index x·2M + j holds Re (j < M) or Im (j ≥ M) of mode ky = j mod M of row x. After
    F_x, index k = i·M + ky holds Re of mode (x_modes[i], ky) and K + k its Im, the [Re…, Im…] layout
    of ComplexBlockMixing. I_x ∘ F_x is the identity on the kept x band; I_y is the 1D inverse
    (weight 2 on ky > 0: the Hermitian half the real DFT drops), applied to every row."""
    forward_y, inverse_y = dft_matrices(n, modes)
    kx = x_modes(n, modes)
    theta = 2 * np.pi * np.outer(kx, np.arange(n)) / n  # [Kx, n]
    cos, sin = np.cos(theta), np.sin(theta)
    n_kx, m = len(kx), modes
    k = n_kx * m
    # b = (1/n) Σ_x a(x) e^{−iθ}:  Re b = (cos·Re a + sin·Im a)/n,  Im b = (cos·Im a − sin·Re a)/n
    forward_x = np.zeros((2 * k, n * 2 * m))
    inverse_x = np.zeros((n * 2 * m, 2 * k))
    for i in range(n_kx):
        for ky in range(m):
            re_out, im_out = i * m + ky, k + i * m + ky
            re_in, im_in = np.arange(n) * 2 * m + ky, np.arange(n) * 2 * m + m + ky
            forward_x[re_out, re_in], forward_x[re_out, im_in] = cos[i] / n, sin[i] / n
            forward_x[im_out, im_in], forward_x[im_out, re_in] = cos[i] / n, -sin[i] / n
            # a(x) = Σ_kx b e^{+iθ}:  Re a = cos·Re b − sin·Im b,  Im a = sin·Re b + cos·Im b
            inverse_x[re_in, re_out], inverse_x[re_in, im_out] = cos[i], -sin[i]
            inverse_x[im_in, re_out], inverse_x[im_in, im_out] = sin[i], cos[i]
    eye = np.eye(n)
    stages = ([np.kron(eye, forward_y), forward_x], [inverse_x, np.kron(eye, inverse_y)])
    for matrix in (*stages[0], *stages[1]):
        matrix[np.abs(matrix) < 1e-12] = 0.0
    return stages


class ComplexBlockMixing(nn.Module):
    """Maps raw per-mode complex weights to one real [C·2M, C·2M] matrix acting on the flattened
    [C, 2M] spectrum (index c·2M + j, j < M real part, j ≥ M imaginary part):
    out_k = W_k · in_k in complex arithmetic, for every kept mode k."""

    def __init__(self, width: int, modes: int):
        super().__init__()
        self.width, self.modes = width, modes

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        w_re, w_im = raw[0], raw[1]  # [M, C_out, C_in] each
        c, m = self.width, self.modes
        # out[d, k] (re) = Σ_c re[c,k] W_re[k,d,c] − im[c,k] W_im[k,d,c]; out[d, M+k] (im) likewise.
        eye = torch.eye(m, dtype=raw.dtype, device=raw.device)
        re_re = torch.einsum("kdc,kl->dkcl", w_re, eye)
        im_im = torch.einsum("kdc,kl->dkcl", w_im, eye)
        top = torch.cat([re_re, -im_im], dim=3)  # rows: real outputs; cols: [re inputs, im inputs]
        bottom = torch.cat([im_im, re_re], dim=3)
        full = torch.cat([top, bottom], dim=1)  # [C_out, 2M, C_in, 2M]
        return full.reshape(c * 2 * m, c * 2 * m)

    def right_inverse(self, full: torch.Tensor) -> torch.Tensor:
        # Only used when the parametrization is registered: read the blocks back.
        c, m = self.width, self.modes
        blocks = full.reshape(c, 2 * m, c, 2 * m)
        k = torch.arange(m)
        w_re = blocks[:, k, :, k]  # [M, C_out, C_in]
        w_im = blocks[:, m + k, :, k]
        return torch.stack([w_re, w_im])


def _fixed_linear(matrix: np.ndarray, spec: QuantSpec) -> qnn.QuantLinear:
    """A constant matrix (a DFT stage) as a quantized linear map that training leaves alone."""
    layer = qnn.QuantLinear(matrix.shape[1], matrix.shape[0], bias=False, **linear_kwargs(spec, bias=False))
    layer.weight.data = torch.tensor(matrix, dtype=torch.float32)
    layer.weight.requires_grad_(False)
    return layer


class SpectralConv(nn.Module):
    """Truncated DFT → per-mode complex mixing → inverse DFT, each a quantized linear map."""

    def __init__(self, n: int, width: int, modes: int, spec: QuantSpec):
        super().__init__()
        forward, inverse = dft_matrices(n, modes)
        self.dft, self.idft = _fixed_linear(forward, spec), _fixed_linear(inverse, spec)
        self.dft_q = qnn.QuantIdentity(**act_kwargs(spec, signed=True))
        self._init_mixing(width, modes, spec)
        self.idft_q = qnn.QuantIdentity(**act_kwargs(spec, signed=True))
        self._init_gains(spec)

    def _init_gains(self, spec: QuantSpec) -> None:
        """Buffers of the per-mode gains, all 1 until `set_gain_exponents`; only with spectral_gain
        = "mode" (other checkpoints keep their keys). mode_gain (2^g over the [Re…, Im…] spectrum)
        before the DFT's quantizer, mix_gain (2^h, per channel c·2M + j) before the mode mixing's
        quantizer, mode_gain_inv (2^-(g+h)) before the inverse DFT."""
        self.gain_cap = MAX_GAIN_EXP if (spec.a_bits or 0) <= GAIN_MAX_ACT_BITS else 0
        if spec.is_float or spec.spectral_gain != "mode":
            return
        self.register_buffer("mode_gain", torch.ones(2 * self.modes))
        self.register_buffer("mix_gain", torch.ones(self.width * 2 * self.modes))
        self.register_buffer("mode_gain_inv", torch.ones(2 * self.modes))

    @property
    def gained(self) -> bool:
        return hasattr(self, "mode_gain")

    def set_gain_exponents(self, exps: np.ndarray, mix_exps: np.ndarray | None = None) -> None:
        """Set g_k (before the DFT's quantizer) and h_k (added before the mixing's quantizer) per
        kept mode, integers with g + h in 0..gain_cap. Re and Im of a mode share them, so the
        complex mode mixing commutes with the gain (out_k = W_k·(2^g_k in_k) = 2^g_k·W_k in_k)."""
        exps = np.asarray(exps)
        mix_exps = np.zeros_like(exps) if mix_exps is None else np.asarray(mix_exps)
        for e in (exps, mix_exps, exps + mix_exps):
            if e.shape != (self.modes,) or not np.array_equal(e, np.round(e)) or e.min() < 0 or e.max() > self.gain_cap:
                raise ValueError(f"mode gain exponents must be {self.modes} integers in 0..{self.gain_cap} "
                                 f"(also summed), got {exps} and {mix_exps}")
        gain = torch.tensor(np.tile(2.0**exps, 2), dtype=torch.float32)
        mix = torch.tensor(np.tile(2.0**mix_exps, 2), dtype=torch.float32)
        self.mode_gain.copy_(gain)
        self.mix_gain.copy_(mix.repeat(self.width))
        self.mode_gain_inv.copy_(1.0 / (gain * mix))  # exact: powers of two

    def gain_exponents(self) -> np.ndarray | None:
        if not self.gained:
            return None
        return np.log2(self.mode_gain[: self.modes].numpy()).round().astype(int)

    def mix_gain_exponents(self) -> np.ndarray | None:
        if not self.gained:
            return None
        return np.log2(self.mix_gain[: self.modes].numpy()).round().astype(int)

    def _gain(self, s: torch.Tensor) -> torch.Tensor:  # [B, C, 2M], before the DFT's quantizer
        return s * self.mode_gain if self.gained else s

    def _mix_gain(self, s: torch.Tensor) -> torch.Tensor:  # [B, C·2M], before the mixing's quantizer
        return s * self.mix_gain if self.gained else s

    def _ungain(self, s: torch.Tensor) -> torch.Tensor:  # before the inverse DFT (folded into its weights)
        return s * self.mode_gain_inv if self.gained else s

    def _init_mixing(self, width: int, modes: int, spec: QuantSpec) -> None:
        self.width, self.modes = width, modes
        size = width * 2 * modes
        self.mix = qnn.QuantLinear(size, size, bias=False, **linear_kwargs(spec, bias=False))
        parametrize.register_parametrization(self.mix, "weight", ComplexBlockMixing(width, modes))
        scale = 1.0 / width
        with torch.no_grad():
            self.mix.parametrizations.weight.original.copy_(scale * torch.randn(2, modes, width, width))
        self.mix_q = qnn.QuantIdentity(**act_kwargs(spec, signed=True))

    def transform(self, h: torch.Tensor) -> torch.Tensor:  # [B, C, N] → [B, C, 2M]
        return self.dft_q(self._gain(self.dft(h)))

    def inverse(self, s: torch.Tensor) -> torch.Tensor:  # [B, C, 2M] → [B, C, N]
        return self.idft_q(self.idft(self._ungain(s)))

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # h: [B, N, C]
        batch = h.shape[0]
        s = self.transform(h.transpose(1, 2))
        s = self.mix_q(self._mix_gain(self.mix(s.reshape(batch, -1)))).reshape(batch, self.width, 2 * self.modes)
        return self.inverse(s).transpose(1, 2)  # [B, N, C]


class SpectralConv2d(SpectralConv):
    """The same on an n×n raster-order field (N = n²), the DFTs in two separable stages each, every
    stage followed by its own activation quantizer."""

    def __init__(self, n: int, width: int, modes: int, spec: QuantSpec):
        nn.Module.__init__(self)
        (forward_y, forward_x), (inverse_x, inverse_y) = dft2d_matrices(n, modes)
        self.dft_y, self.dft = _fixed_linear(forward_y, spec), _fixed_linear(forward_x, spec)
        self.dft_y_q = qnn.QuantIdentity(**act_kwargs(spec, signed=True))
        self.dft_q = qnn.QuantIdentity(**act_kwargs(spec, signed=True))
        self._init_mixing(width, len(x_modes(n, modes)) * modes, spec)
        self.idft_x, self.idft = _fixed_linear(inverse_x, spec), _fixed_linear(inverse_y, spec)
        self.idft_x_q = qnn.QuantIdentity(**act_kwargs(spec, signed=True))
        self.idft_q = qnn.QuantIdentity(**act_kwargs(spec, signed=True))
        self._init_gains(spec)

    def transform(self, h: torch.Tensor) -> torch.Tensor:
        return self.dft_q(self._gain(self.dft(self.dft_y_q(self.dft_y(h)))))

    def inverse(self, s: torch.Tensor) -> torch.Tensor:
        return self.idft_q(self.idft(self.idft_x_q(self.idft_x(self._ungain(s)))))


def mode_gain_exponents(spectrum: np.ndarray, modes: int, cap=MAX_GAIN_EXP) -> np.ndarray:
    """g_k for a spectrum [..., 2·modes] laid out [Re…, Im…]: floor(log2(q_max / q_k)) in 0..cap
    (a number or one per mode), q_k the GAIN_QUANTILE of |Re X_k| and |Im X_k| together. The floor
    keeps every gained mode's quantile at or below the largest one, which sets the shared quantizer
    scale. A mode that is never excited (q_k = 0) gets no gain: there is nothing to resolve."""
    flat = np.abs(np.asarray(spectrum, dtype=np.float64)).reshape(-1, 2, modes)  # [samples, Re/Im, k]
    q = np.quantile(flat.transpose(2, 0, 1).reshape(modes, -1), GAIN_QUANTILE, axis=1)
    if not np.any(q > 0):
        return np.zeros(modes, dtype=int)
    ratio = np.divide(q.max(), q, out=np.ones(modes), where=q > 0)
    return np.clip(np.floor(np.log2(ratio)), 0, cap).astype(int)


class FourierLayer(nn.Module):
    def __init__(self, spectral: SpectralConv, width: int, spec: QuantSpec, last: bool):
        super().__init__()
        self.spectral = spectral
        self.skip = qnn.QuantLinear(width, width, bias=True, **linear_kwargs(spec, bias=True))
        self.skip_q = qnn.QuantIdentity(**act_kwargs(spec, signed=True))
        # The last layer feeds the projection without a nonlinearity, as in the FNO paper.
        self.act = (
            qnn.QuantIdentity(**act_kwargs(spec, signed=True))
            if last
            else qnn.QuantReLU(**act_kwargs(spec, signed=False))
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.act(self.spectral(h) + self.skip_q(self.skip(h)))


class FNO1d(nn.Module):
    """u(t) on N points [B, N] → u(t+Δt) [B, N]."""

    arch = "fno"
    ndim = 1
    spectral_conv = SpectralConv

    def __init__(self, resolution: int, config: FNOConfig, spec: QuantSpec):
        super().__init__()
        self.resolution, self.config, self.spec = resolution, config, spec
        self.points = resolution**self.ndim  # length of the flat input/output vector
        c = config.width
        self.in_q = qnn.QuantIdentity(**act_kwargs(spec, signed=True, state=True, host=True))
        self.lift = qnn.QuantLinear(1, c, bias=True, **linear_kwargs(spec, bias=True))
        self.lift_q = qnn.QuantIdentity(**act_kwargs(spec, signed=True))
        self.layers = nn.ModuleList(
            FourierLayer(self.spectral_conv(resolution, c, config.modes, spec), c, spec, last=i == config.layers - 1)
            for i in range(config.layers)
        )
        self.proj1 = qnn.QuantLinear(c, config.proj, bias=True, **linear_kwargs(spec, bias=True))
        self.proj_act = qnn.QuantReLU(**act_kwargs(spec, signed=False))
        self.proj2 = qnn.QuantLinear(config.proj, 1, bias=True, **linear_kwargs(spec, bias=True))
        self.out_q = qnn.QuantIdentity(**act_kwargs(spec, signed=True, state=True))
        if config.residual:
            self.delta_q = qnn.QuantIdentity(**act_kwargs(spec, signed=True, state=True))
        self._init_lifting()

    def _init_lifting(self) -> None:
        # Default init of a 1-input Linear draws weights in ±1, large next to a field of order 1.
        bound = 1.0 / math.sqrt(self.config.width)
        nn.init.uniform_(self.lift.weight, -bound, bound)

    def calibrate_mode_gains(self, float_model: FNO1d, inputs: np.ndarray) -> list[dict]:
        """Choose every Fourier layer's per-mode gain exponents from the float model's spectra of
        `inputs` (training fields [S, N]): g from the DFT's output, h from the mode mixing's output
        once gained by g (the mixing is linear per mode). Returns per layer {"dft": g, "mix": h};
        a no-op returning [] unless spectral_gain = "mode"."""
        convs = [layer.spectral for layer in self.layers if layer.spectral.gained]
        if not convs:
            return []
        index = np.unique(np.linspace(0, len(inputs) - 1, min(len(inputs), GAIN_SAMPLES)).round().astype(int))
        seen: list[dict[str, list]] = [{"dft": [], "mix": []} for _ in float_model.layers]
        hooks = []
        for layer, keep in zip(float_model.layers, seen):
            for name in keep:
                hook = lambda m, i, out, keep=keep[name]: keep.append(out.detach())  # noqa: E731
                hooks.append(getattr(layer.spectral, name).register_forward_hook(hook))
        try:
            float_model.eval()
            with torch.no_grad():
                x = torch.from_numpy(np.asarray(inputs, dtype=np.float32)[index])
                for start in range(0, len(x), 256):
                    float_model(x[start : start + 256])
        finally:
            for handle in hooks:
                handle.remove()
        chosen = []
        for conv, keep in zip(convs, seen):
            m = conv.modes
            g = mode_gain_exponents(torch.cat(keep["dft"]).numpy(), m, conv.gain_cap)
            mixed = torch.cat(keep["mix"]).numpy().reshape(-1, 2 * m) * np.tile(2.0**g, 2)
            h = mode_gain_exponents(mixed, m, conv.gain_cap - g)
            conv.set_gain_exponents(g, h)
            chosen.append({"dft": g.tolist(), "mix": h.tolist()})
        return chosen

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # [B, N]
        u_q = self.in_q(u.unsqueeze(-1))
        h = self.lift_q(self.lift(u_q))
        for layer in self.layers:
            h = layer(h)
        out = self.proj2(self.proj_act(self.proj1(h)))
        if self.config.residual:
            out = u_q + self.delta_q(out)
        return self.out_q(out).squeeze(-1)


class FNO2d(FNO1d):
    """u(t) on an r×r grid, flattened in raster order [B, r²] → u(t+Δt) [B, r²]."""

    ndim = 2
    spectral_conv = SpectralConv2d
