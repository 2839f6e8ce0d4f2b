"""Per-layer hls4ml Strategy and ReuseFactor: no layer above HLS's unroll limit, every choice valid
by hls4ml's own rules, and recorded.

A Dense (or Conv's per-position Dense) of n_in × n_out multiplications unrolls n_in·n_out/RF
multipliers per clock. Vivado/Vitis HLS refuse to unroll more than 4096 iterations (hls4ml issues
#904, #1013), so the fully parallel Latency strategy (RF 1) is only possible up to 4096; above it a
layer needs Strategy Resource and RF ≥ n_in·n_out/4096. hls4ml accepts only certain RFs per layer
(`FPGABackend._validate_reuse_factor`: RF divides n_in·n_out, RF < n_in or a multiple of it, …) and
silently replaces an invalid one by the closest valid one; qpde picks a valid one itself and writes
the choice to the project (`qpde_folding.json`), so what the report says is what hls4ml builds.

Strategies (`[hls] strategy`):
- "auto": Latency RF 1 where n_in·n_out ≤ max_unroll, else Resource with the smallest valid RF that
  brings the unrolled multipliers under max_unroll (and under a per-layer multiplier budget when a
  folding optimizer gives one);
- "Resource": every layer Resource with the smallest valid RF ≥ `[hls] reuse_factor` (and over the
  limit's minimum);
- "Latency": every layer RF 1; a layer over max_unroll is refused, naming it.
C simulation is exact for every choice (the accumulator types do not depend on the order of sums).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from qpde.errors import ConfigError

MAX_UNROLL = 4096  # Vivado/Vitis HLS: loops of more iterations are not unrolled (hls4ml #904)
STRATEGIES = ("auto", "Latency", "Resource")
FOLDED_CLASSES = ("Dense", "Conv1D", "Conv2D")
FOLDING_FILE = "qpde_folding.json"


@dataclass(frozen=True)
class LayerFolding:
    """One hls4ml layer's multiplications per invocation (n_in × n_out) and how they are folded."""

    n_in: int
    n_out: int
    strategy: str  # hls4ml strategy: Latency or Resource
    reuse_factor: int

    @property
    def multipliers(self) -> int:
        """Multiplications unrolled per clock (hls4ml's block factor)."""
        return math.ceil(self.n_in * self.n_out / self.reuse_factor)


def mult_size(layer: dict) -> tuple[int, int] | None:
    """(n_in, n_out) of the matrix–vector product a layer does per invocation, as hls4ml's
    `get_layer_mult_size` counts it; None for layers without constant-weight products."""
    kind = layer["class_name"]
    if kind == "Dense":
        return int(layer["n_in"]), int(layer["n_out"])
    if kind == "Conv1D":
        return int(layer["n_chan"]) * int(layer["filt_width"]), int(layer["n_filt"])
    if kind == "Conv2D":
        return int(layer["n_chan"]) * int(layer["filt_height"]) * int(layer["filt_width"]), int(layer["n_filt"])
    return None


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def valid_reuse_factors(n_in: int, n_out: int) -> list[int]:
    """hls4ml's valid ReuseFactors of an n_in × n_out layer, by hls4ml's own rule, checked only on
    the divisors of n_in·n_out (the rule requires one), so large layers cost microseconds."""
    from hls4ml.backends.fpga.fpga_backend import FPGABackend

    rule = FPGABackend._validate_reuse_factor
    return [rf for rf in _divisors(n_in * n_out) if rule(None, n_in, n_out, rf)]


def smallest_valid_rf(n_in: int, n_out: int, at_least: float) -> int:
    """The smallest valid ReuseFactor ≥ at_least (n_in·n_out, one multiplier, is always valid)."""
    return next(rf for rf in valid_reuse_factors(n_in, n_out) if rf >= at_least)


def choose_folding(layers: list[dict], strategy: str = "auto", reuse_factor: int = 1, max_unroll: int = MAX_UNROLL,
                   multiplier_budget: dict[str, int] | None = None) -> dict[str, LayerFolding]:
    """Strategy and ReuseFactor for every layer with constant-weight products (see the module doc).
    `multiplier_budget` (layer name → multipliers) lets a throughput-driven optimizer fold further."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"[hls] strategy {strategy!r} not supported; choose from {', '.join(STRATEGIES)}")
    if max_unroll < 1 or reuse_factor < 1:
        raise ConfigError(f"[hls] max_unroll ({max_unroll}) and reuse_factor ({reuse_factor}) must be >= 1")
    folding = {}
    for layer in layers:
        size = mult_size(layer)
        if size is None:
            continue
        n_in, n_out = size
        products = n_in * n_out
        if strategy == "Latency":
            if products > max_unroll:
                raise ConfigError(
                    f"[hls] strategy Latency: layer {layer['name']} ({layer['class_name']}, {n_in}×{n_out} = "
                    f"{products} multiplications) exceeds the unroll limit {max_unroll}; use strategy \"auto\" or "
                    "\"Resource\"")
            folding[layer["name"]] = LayerFolding(n_in, n_out, "Latency", 1)
            continue
        budget = min(max_unroll, (multiplier_budget or {}).get(layer["name"], max_unroll))
        minimum = products / max(budget, 1)
        if strategy == "auto" and products <= budget:
            folding[layer["name"]] = LayerFolding(n_in, n_out, "Latency", 1)
            continue
        wanted = max(minimum, reuse_factor if strategy == "Resource" else 1)
        folding[layer["name"]] = LayerFolding(n_in, n_out, "Resource", smallest_valid_rf(n_in, n_out, wanted))
    return folding


def hls_layer_config(folding: dict[str, LayerFolding]) -> dict[str, dict]:
    """hls4ml LayerName entries (Strategy, ReuseFactor) of a folding."""
    return {name: {"Strategy": f.strategy, "ReuseFactor": f.reuse_factor} for name, f in folding.items()}


def save_folding(folding: dict[str, LayerFolding], project_dir: Path) -> Path:
    path = Path(project_dir) / FOLDING_FILE
    path.write_text(json.dumps({name: {**asdict(f), "multipliers": f.multipliers} for name, f in folding.items()},
                               indent=2))
    return path


def summary(folding: dict[str, LayerFolding]) -> str:
    """One line for results.csv: e.g. "Latency×3, Resource×2 (RF 4–16), max 4096 multipliers/layer"."""
    if not folding:
        return ""
    by = {s: [f for f in folding.values() if f.strategy == s] for s in ("Latency", "Resource")}
    parts = [f"{s}×{len(fs)}" for s, fs in by.items() if fs]
    if by["Resource"]:
        rfs = sorted({f.reuse_factor for f in by["Resource"]})
        parts[-1] += f" (RF {rfs[0]}" + (f"–{rfs[-1]})" if len(rfs) > 1 else ")")
    return ", ".join(parts) + f", max {max(f.multipliers for f in folding.values())} multipliers/layer"
