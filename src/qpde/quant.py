"""Scenarios (`w4a8`, …, `fp32`) and the Brevitas quantizers they select.

Every quantizer has a power-of-two scale and zero point 0, so every tensor of an exported model is
an integer times 2^k. Activations round either half up (`rounding = "round"`, the default) or with
FLOOR (`"floor"`). Every exported activation Quant is FLOOR, the one rounding that QONNX, hls4ml
(AP_TRN), da4ml (TRN) and FINN all reproduce exactly: round-half-up is exported through the identity
round_half_up(x/s)·s = floor((x + s/2)/s)·s, the s/2 folded into the preceding bias or added by an
explicit constant Add (qpde.export). Weights are constants, so they round to nearest (Brevitas'
default) before export; their exactness is in the exported integers.

The solver's state (the model input, the increment added back to it and the model output) has its
own width, `state_bits` (default 16), separate from the scenario's internal activation bits: a
one-step solver changes the field by less than an 8-bit state's LSB.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

# Brevitas warns at import about an optional CUDA kernel package irrelevant on CPU.
warnings.filterwarnings("ignore", message="fast_hadamard_transform package not found")

import brevitas
import torch
from brevitas.function.ops_ste import floor_ste
from brevitas.inject import ExtendedInjector, value
from brevitas.inject.enum import FloatToIntImplType
from brevitas.quant import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Uint8ActPerTensorFixedPoint
from brevitas.quant.fixed_point import Int8BiasPerTensorFixedPointInternalScaling

from qpde.errors import ConfigError

SCENARIOS = ("fp32", "w4a4", "w4a8", "w8a8", "w8a16", "w8a32")
_PATTERN = re.compile(r"^w(\d{1,2})a(\d{1,2})$")
# Biases get their own power-of-two scale and this many bits: wide enough that bias rounding
# never dominates, narrow enough that accumulators stay far below float64's 53-bit mantissa.
BIAS_BITS = 16
WEIGHT_SCALINGS = ("tensor", "channel")  # one power-of-two weight scale per tensor, or per output channel
ROUNDINGS = ("round", "floor")  # activation rounding: round half up (exported exactly as FLOOR + s/2), FLOOR
# FNO spectral path: "off", or "mode": a power-of-two gain per Fourier mode before the spectral
# activation quantizers, undone in the inverse DFT's weights (qpde.models.fno.SpectralConv).
SPECTRAL_GAINS = ("off", "mode")
DEFAULT_STATE_BITS = 16


@dataclass(frozen=True)
class QuantSpec:
    """Bit widths of one scenario; `None` means float (no quantizer)."""

    name: str
    w_bits: int | None
    a_bits: int | None
    rounding: str = "floor"  # activation rounding: "round" (half up) or "floor"
    state_bits: int | None = None  # width of the state quantizers (input, increment, output); None: a_bits
    weight_scaling: str = "tensor"  # "tensor" or "channel" (one power-of-two scale per output channel)
    spectral_gain: str = "off"  # "off" or "mode" (per-mode power-of-two gains in the FNO's spectral path)

    @property
    def is_float(self) -> bool:
        return self.w_bits is None

    @property
    def state_width(self) -> int | None:
        """Bits of the state quantizers: state_bits, never narrower than the internal activations."""
        if self.a_bits is None:
            return None
        return max(self.a_bits, self.state_bits or self.a_bits)

    def with_options(self, rounding: str = "floor", state_bits: int | None = None,
                     weight_scaling: str = "tensor", spectral_gain: str = "off") -> QuantSpec:
        """The same scenario with a rounding, a state width, a weight scaling and spectral gains (checked)."""
        check_quant_options(rounding, state_bits, weight_scaling, spectral_gain)
        return QuantSpec(self.name, self.w_bits, self.a_bits, rounding, state_bits or None, weight_scaling,
                         spectral_gain)

    @property
    def cost_bits(self) -> tuple[int, int]:
        """(weight, activation) bits for BOPs; float counts as 32×32 bits."""
        return (self.w_bits or 32, self.a_bits or 32)


def parse_scenario(name: str) -> QuantSpec:
    """`"w4a8"` → QuantSpec(4, 8); `"fp32"` → float. Anything else is a ConfigError."""
    if name == "fp32":
        return QuantSpec(name, None, None)
    match = _PATTERN.match(name)
    if not match:
        raise ConfigError(f"unknown scenario {name!r}: use fp32 or wXaY, e.g. {', '.join(SCENARIOS[1:])}")
    w_bits, a_bits = int(match[1]), int(match[2])
    if not (2 <= w_bits <= 16 and 2 <= a_bits <= 32):
        raise ConfigError(f"scenario {name!r}: weight bits must be in 2..16 and activation bits in 2..32")
    return QuantSpec(name, w_bits, a_bits)


def check_quant_options(rounding: str, state_bits: int | None, weight_scaling: str = "tensor",
                        spectral_gain: str = "off") -> None:
    if spectral_gain not in SPECTRAL_GAINS:
        raise ConfigError(f"[quant] spectral_gain {spectral_gain!r}: use one of {', '.join(SPECTRAL_GAINS)}")
    if weight_scaling not in WEIGHT_SCALINGS:
        raise ConfigError(f"[quant] weight_scaling {weight_scaling!r}: use one of {', '.join(WEIGHT_SCALINGS)}")
    if rounding not in ROUNDINGS:
        raise ConfigError(f"[quant] rounding {rounding!r}: use one of {', '.join(ROUNDINGS)}")
    if state_bits is not None and (isinstance(state_bits, bool) or not isinstance(state_bits, int)
                                   or not (state_bits == 0 or 2 <= state_bits <= 24)):
        # 24: the state is an accumulator operand in every backend; wider states would push the
        # residual add and the lift's products towards float64's 53-bit exactness bound.
        raise ConfigError(f"[quant] state_bits {state_bits!r}: an integer in 2..24, or 0 for the activation bits")


class WeightQuant(Int8WeightPerTensorFixedPoint):
    """Signed, narrow range, per-tensor power-of-two scale from max |w|, round to nearest."""


class ChannelWeightQuant(WeightQuant):
    """The same with one power-of-two scale per output channel (QGraph folds it exactly)."""

    scaling_per_output_channel = True


# Brevitas clamps scales at 1e-10 *after* the power-of-two restriction, which yields a scale that is
# not a power of two when a wide (a32) activation has a small range; clamp at a power of two instead.
# The floor is relative to the bit width: an activation's full range is never below 2^-MIN_RANGE_EXP.
# A dead ReLU (all calibration outputs 0) used to get the 2^-64 clamp, and its product with the next
# weights then needed more than float64's 53 bits next to a normal bias (the variant was lost). A
# range of 2^-16 ≈ 1.5e-5 is far below any value that matters next to O(1) fields, and it keeps
# every dead activation's grid within ~16 + bits of the others (docs/design-notes.md).
MIN_RANGE_EXP = 16
MIN_SCALE = 2.0**-64  # absolute floor (kept for wide activations, a32: 2^-(32+16) is above it)


def min_scale(bit_width) -> float:
    """Smallest activation scale: 2^-(bits + MIN_RANGE_EXP), i.e. a range of at least 2^-MIN_RANGE_EXP."""
    return max(MIN_SCALE, 2.0 ** -(int(bit_width) + MIN_RANGE_EXP))


class RoundHalfUpSte(brevitas.jit.ScriptModule):
    """floor(x + 1/2) with a straight-through gradient: round half up (ties towards +inf), the
    rounding that a FLOOR quantizer reproduces exactly after adding half an LSB."""

    def __init__(self) -> None:
        super().__init__()

    @brevitas.jit.script_method
    def forward(self, x: torch.Tensor):
        return floor_ste(x + 0.5)


class _ActFloor(ExtendedInjector):
    float_to_int_impl_type = FloatToIntImplType.FLOOR

    @value
    def scaling_min_val(bit_width):
        return min_scale(bit_width)


class _ActRoundHalfUp(_ActFloor):
    # Exported as rounding_mode "ROUND"; qpde.export rewrites every such activation Quant to FLOOR
    # plus half an LSB (QGraph refuses ROUND activations in any other graph).
    float_to_int_impl_type = FloatToIntImplType.ROUND
    float_to_int_impl = RoundHalfUpSte


class ActQuant(_ActFloor, Int8ActPerTensorFixedPoint):
    """Signed activation, learned power-of-two scale, FLOOR rounding, saturating."""


class UnsignedActQuant(_ActFloor, Uint8ActPerTensorFixedPoint):
    """Unsigned activation after ReLU, learned power-of-two scale, FLOOR rounding, saturating."""


class RoundActQuant(_ActRoundHalfUp, Int8ActPerTensorFixedPoint):
    """Signed activation, learned power-of-two scale, round half up, saturating."""


class RoundUnsignedActQuant(_ActRoundHalfUp, Uint8ActPerTensorFixedPoint):
    """Unsigned activation after ReLU, learned power-of-two scale, round half up, saturating."""


class BiasQuant(Int8BiasPerTensorFixedPointInternalScaling):
    """Bias with its own power-of-two scale (independent of the input's scale)."""

    bit_width = BIAS_BITS


def linear_kwargs(spec: QuantSpec, *, bias: bool) -> dict:
    """Keyword arguments for brevitas.nn.QuantLinear under a scenario."""
    if spec.is_float:
        return {"weight_quant": None, "bias_quant": None}
    weight_quant = ChannelWeightQuant if spec.weight_scaling == "channel" else WeightQuant
    kwargs = {"weight_quant": weight_quant, "weight_bit_width": spec.w_bits}
    kwargs["bias_quant"] = BiasQuant if bias else None
    return kwargs


def act_kwargs(spec: QuantSpec, *, signed: bool, state: bool = False, host: bool = False) -> dict:
    """Keyword arguments for brevitas.nn.QuantIdentity / QuantReLU under a scenario.

    state: a state quantizer (model input, increment, output): `spec.state_width` bits.
    host: the model's input quantizer, applied where raw floats enter the accelerator: always FLOOR
    (an exported graph starts with its input Quant; in a rollout its input is the previous output,
    already on the state grid when both share the scale, so rounding never applies there)."""
    if spec.is_float:
        return {"act_quant": None}
    bits = spec.state_width if state else spec.a_bits
    if spec.rounding == "round" and not host:
        return {"act_quant": RoundActQuant if signed else RoundUnsignedActQuant, "bit_width": bits}
    return {"act_quant": ActQuant if signed else UnsignedActQuant, "bit_width": bits}
