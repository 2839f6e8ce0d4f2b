"""Accuracy-target search: the cheapest quantized variant meeting an nRMSE target, trained lazily.

Strategy: a monotonicity-aware frontier walk. BOPs are known before training (they depend only on
the architecture, resolution and bit widths), so candidates (resolution × scenario) are visited in
increasing cost; the first that meets the target is the cheapest one there is. Accuracy is assumed
monotone: fewer bits (weight or activation) at no higher resolution is no more accurate. So when a
candidate misses the target, every candidate it dominates is skipped without training. The full
grid trains every point; the walk trains only the points cheaper than the answer that no earlier
failure rules out. The returned variant is verified bit-exact in C simulation before it is returned.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from qpde.config import SweepConfig, Variant
from qpde.errors import ConfigError, QpdeError
from qpde.pipeline import Sweep, _write_json
from qpde.quant import parse_scenario

log = logging.getLogger(__name__)
METRICS = ("bops",)


@dataclass
class Candidate:
    variant: str
    bops: int
    nrmse: float | None = None
    status: str = "pending"  # trained-meets, trained-misses, skipped-dominated


@dataclass
class SearchResult:
    dataset: str
    arch: str
    target_nrmse: float
    metric: str
    best: str | None
    candidates: list[Candidate] = field(default_factory=list)
    trained_variants: int = 0
    grid_variants: int = 0
    csim: dict | None = None


def candidate_bops(cfg: SweepConfig, variant: Variant) -> int:
    """BOPs of a variant without training it (an untrained model has the same structure)."""
    from qpde.cost import total_cost
    from qpde.train import build_model, shape_of

    model = build_model(variant.arch, variant.resolution, shape_of(variant.arch, cfg), variant.scenario)
    return total_cost(model, parse_scenario(variant.scenario))["bops"]


def _dominated(variant: Variant, failure: Variant) -> bool:
    a, b = parse_scenario(variant.scenario), parse_scenario(failure.scenario)
    return variant.resolution <= failure.resolution and a.w_bits <= b.w_bits and a.a_bits <= b.a_bits


def search(cfg: SweepConfig, root: Path, dataset: str, arch: str, target_nrmse: float, metric: str = "bops") -> SearchResult:
    if metric not in METRICS:
        raise ConfigError(f"search metric {metric!r} not available yet; choose from {', '.join(METRICS)} "
                          "(LUT and latency need synthesis of every candidate)")
    if dataset not in cfg.datasets or arch not in cfg.archs:
        raise ConfigError(f"{dataset}/{arch} is not in the sweep's datasets {list(cfg.datasets)} / archs {list(cfg.archs)}")
    scenarios = [s for s in cfg.scenarios if not parse_scenario(s).is_float]
    if not scenarios:
        raise ConfigError("search needs quantized scenarios (e.g. w4a4,w4a8,w8a8)")
    sweep = Sweep(cfg, root)
    grid = [Variant(dataset, arch, s, r) for r in cfg.resolutions for s in scenarios]
    candidates = sorted((Candidate(v.id, candidate_bops(cfg, v)) for v in grid), key=lambda c: (c.bops, c.variant))
    trained: set[str] = set()
    failures: list[Variant] = []
    result = SearchResult(dataset, arch, target_nrmse, metric, None, candidates,
                          grid_variants=len(grid) + len(cfg.resolutions))  # + a float model per resolution
    for candidate in candidates:
        variant = Variant.parse(candidate.variant)
        if any(_dominated(variant, f) for f in failures):
            candidate.status = "skipped-dominated"
            continue
        trained |= {variant.id, Variant(dataset, arch, "fp32", variant.resolution).id}
        candidate.nrmse = sweep.metrics(variant)["nrmse"]
        if candidate.nrmse <= target_nrmse:
            candidate.status = "trained-meets"
            result.best = variant.id
            result.csim = sweep.csim(variant)
            if result.csim["mismatching_samples"]:
                raise QpdeError(f"{variant.id}: C simulation differs from the golden on "
                                f"{result.csim['mismatching_samples']} samples; not returned")
            break
        candidate.status = "trained-misses"
        failures.append(variant)
    result.trained_variants = len(trained)
    _write_json(Path(root) / f"search-{dataset}-{arch}.json", asdict(result))
    return result


def load_result(path: Path) -> dict:
    return json.loads(Path(path).read_text())
