"""Scenarios (`w4a8`, …, `fp32`) and the Brevitas quantizers they select.

Every quantizer has a power-of-two scale and zero point 0, so every tensor of an exported model is
an integer times 2^k. Activations round with FLOOR: it is the one rounding that QONNX, hls4ml
(AP_TRN), da4ml (TRN) and FINN all reproduce exactly. Weights are constants, so they round to
nearest (Brevitas' default) before export; their exactness is in the exported integers.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

# Brevitas warns at import about an optional CUDA kernel package irrelevant on CPU.
warnings.filterwarnings("ignore", message="fast_hadamard_transform package not found")

from brevitas.inject.enum import FloatToIntImplType
from brevitas.quant import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Uint8ActPerTensorFixedPoint
from brevitas.quant.fixed_point import Int8BiasPerTensorFixedPointInternalScaling

from qpde.errors import ConfigError

SCENARIOS = ("fp32", "w4a4", "w4a8", "w8a8", "w8a16", "w8a32")
_PATTERN = re.compile(r"^w(\d{1,2})a(\d{1,2})$")
# Biases get their own power-of-two scale and this many bits: wide enough that bias rounding
# never dominates, narrow enough that accumulators stay far below float64's 53-bit mantissa.
BIAS_BITS = 16


@dataclass(frozen=True)
class QuantSpec:
    """Bit widths of one scenario; `None` means float (no quantizer)."""

    name: str
    w_bits: int | None
    a_bits: int | None

    @property
    def is_float(self) -> bool:
        return self.w_bits is None

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


class WeightQuant(Int8WeightPerTensorFixedPoint):
    """Signed, narrow range, per-tensor power-of-two scale from max |w|, round to nearest."""


# Brevitas clamps scales at 1e-10 *after* the power-of-two restriction, which yields a scale that is
# not a power of two when a wide (a32) activation has a small range; clamp at a power of two instead.
MIN_SCALE = 2.0**-64


class ActQuant(Int8ActPerTensorFixedPoint):
    """Signed activation, learned power-of-two scale, FLOOR rounding, saturating."""

    float_to_int_impl_type = FloatToIntImplType.FLOOR
    scaling_min_val = MIN_SCALE


class UnsignedActQuant(Uint8ActPerTensorFixedPoint):
    """Unsigned activation after ReLU, learned power-of-two scale, FLOOR rounding, saturating."""

    float_to_int_impl_type = FloatToIntImplType.FLOOR
    scaling_min_val = MIN_SCALE


class BiasQuant(Int8BiasPerTensorFixedPointInternalScaling):
    """Bias with its own power-of-two scale (independent of the input's scale)."""

    bit_width = BIAS_BITS


def linear_kwargs(spec: QuantSpec, *, bias: bool) -> dict:
    """Keyword arguments for brevitas.nn.QuantLinear under a scenario."""
    if spec.is_float:
        return {"weight_quant": None, "bias_quant": None}
    kwargs = {"weight_quant": WeightQuant, "weight_bit_width": spec.w_bits}
    kwargs["bias_quant"] = BiasQuant if bias else None
    return kwargs


def act_kwargs(spec: QuantSpec, *, signed: bool) -> dict:
    """Keyword arguments for brevitas.nn.QuantIdentity / QuantReLU under a scenario."""
    if spec.is_float:
        return {"act_quant": None}
    return {"act_quant": ActQuant if signed else UnsignedActQuant, "bit_width": spec.a_bits}
