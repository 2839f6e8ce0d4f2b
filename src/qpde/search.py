"""Accuracy-target search: the cheapest quantized variant meeting an nRMSE target, trained lazily.

Strategy: a monotonicity-aware frontier walk. BOPs are known before training (they depend only on
the architecture, resolution and bit widths), so candidates (resolution × scenario) are visited in
increasing cost; the first that meets the target is the cheapest one there is. Accuracy is assumed
monotone: fewer bits (weight or activation) at no higher resolution is no more accurate. So when a
candidate misses the target, every candidate it dominates is skipped without training. The full
grid trains every point; the walk trains only the points cheaper than the answer that no earlier
failure rules out. The returned variant is verified bit-exact in C simulation before it is returned.

LUTs and latency are known only after training (they depend on the weights: da4ml's adder graphs
share terms between weights), so for `--metric lut|latency` the walk goes on past the first success:
the same monotonicity means a candidate that dominates a success (more bits, no lower resolution)
is no cheaper, so it is skipped too, and the walk ends when every candidate is trained or skipped.
Each success is then built by the open RTL backend (da4ml → Verilator verdict → Yosys; no P&R), and
the one with the fewest synthesized LUTs (or pipeline cycles) is returned.

With a part (`--part xc7a200t`, qpde.parts) the cost comes from the folded backend instead: each
success is built as folded streaming designs at `[folded] target_fps` (or `fps`), each proven
bit-exact in Verilator, synthesized for the part's family (placed by nextpnr on an ECP5 part), and
the answer is the cheapest (variant, design) whose counts fit the part and whose throughput meets
its target. The fully parallel RTL fits only toy models.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from qpde.config import SweepConfig, Variant
from qpde.errors import ConfigError, MismatchError, QpdeError
from qpde.parts import Part, fit, get_part
from qpde.pipeline import Sweep, _write_json
from qpde.quant import parse_scenario

log = logging.getLogger(__name__)
METRICS = ("bops", "lut", "latency")
RTL_COLUMN = {"lut": "lut", "latency": "latency_cycles"}


@dataclass
class Candidate:
    variant: str
    bops: int
    nrmse: float | None = None
    status: str = "pending"  # trained-meets, trained-misses, skipped-dominated, skipped-dominates-success
    cost: float | None = None  # the metric's value (lut/latency: from the RTL backend, after training)
    cost_source: str | None = None
    design: str | None = None  # the folded design (e.g. ii512) the cost is of, with --part


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
    part: str | None = None
    best_design: str | None = None  # with --part: the folded design of `best` that fits it


def candidate_bops(sweep: Sweep, variant: Variant) -> int:
    """BOPs of a variant without training it (an untrained model has the same structure)."""
    from qpde.cost import total_cost
    from qpde.task import SPATIAL_NDIM
    from qpde.train import build_model

    model = build_model(variant.arch, variant.resolution, sweep.shape(variant), variant.scenario,
                        SPATIAL_NDIM[variant.dataset])
    return total_cost(model, parse_scenario(variant.scenario))["bops"]


def _dominated(variant: Variant, failure: Variant) -> bool:
    a, b = parse_scenario(variant.scenario), parse_scenario(failure.scenario)
    return variant.resolution <= failure.resolution and a.w_bits <= b.w_bits and a.a_bits <= b.a_bits


def search(cfg: SweepConfig, root: Path, dataset: str, arch: str, target_nrmse: float, metric: str = "bops",
           part: str | None = None, fps: float | None = None) -> SearchResult:
    if metric not in METRICS:
        raise ConfigError(f"unknown search metric {metric!r}; choose from {', '.join(METRICS)}")
    if (part or fps) and metric == "bops":
        raise ConfigError("--part/--fps choose among hardware designs: use --metric lut or latency")
    chosen_part = get_part(part) if part else None
    if chosen_part or fps:
        cfg = dataclasses.replace(cfg, folded=_folded_for(cfg, chosen_part, fps))
    if dataset not in cfg.datasets or arch not in cfg.archs:
        raise ConfigError(f"{dataset}/{arch} is not in the sweep's datasets {list(cfg.datasets)} / archs {list(cfg.archs)}")
    scenarios = [s for s in cfg.scenarios if not parse_scenario(s).is_float]
    if not scenarios:
        raise ConfigError("search needs quantized scenarios (e.g. w4a4,w4a8,w8a8)")
    if metric != "bops":  # synthesis counts are enough to rank; P&R would add minutes per candidate
        cfg = dataclasses.replace(cfg, rtl=dataclasses.replace(cfg.rtl, pnr=False))
    sweep = Sweep(cfg, root)
    resolutions = cfg.resolutions_for(dataset)
    grid = [Variant(dataset, arch, s, r) for r in resolutions for s in scenarios]
    candidates = sorted((Candidate(v.id, candidate_bops(sweep, v)) for v in grid), key=lambda c: (c.bops, c.variant))
    trained: set[str] = set()
    failures: list[Variant] = []
    successes: list[Candidate] = []
    result = SearchResult(dataset, arch, target_nrmse, metric, None, candidates,
                          part=chosen_part and chosen_part.name,
                          grid_variants=len(grid) + len(resolutions))  # + a float model per resolution
    for candidate in candidates:
        variant = Variant.parse(candidate.variant)
        if any(_dominated(variant, f) for f in failures):
            candidate.status = "skipped-dominated"
            continue
        if any(_dominated(Variant.parse(s.variant), variant) for s in successes):
            candidate.status = "skipped-dominates-success"
            continue
        trained |= {variant.id, Variant(dataset, arch, "fp32", variant.resolution).id}
        candidate.nrmse = sweep.metrics(variant)["nrmse"]
        if candidate.nrmse > target_nrmse:
            candidate.status = "trained-misses"
            failures.append(variant)
            continue
        candidate.status = "trained-meets"
        successes.append(candidate)
        if metric == "bops":  # known exactly before training: the first success is the cheapest
            candidate.cost, candidate.cost_source = candidate.bops, "bops (exact count)"
            break
    for candidate in successes:
        if chosen_part or fps:
            _folded_cost(sweep, candidate, metric, chosen_part)
        elif metric != "bops":
            _rtl_cost(sweep, candidate, metric)
    ranked = sorted((c for c in successes if c.cost is not None), key=lambda c: (c.cost, c.bops))
    if ranked:
        result.best, result.best_design = ranked[0].variant, ranked[0].design
        result.csim = sweep.csim(Variant.parse(result.best))
        if result.csim["mismatching_samples"]:
            raise MismatchError(f"{result.best}: C simulation differs from the golden on "
                            f"{result.csim['mismatching_samples']} samples; not returned")
    result.trained_variants = len(trained)
    _write_json(Path(root) / f"search-{dataset}-{arch}.json", asdict(result))
    return result


def _rtl_cost(sweep: Sweep, candidate: Candidate, metric: str) -> None:
    """LUTs (Yosys) or pipeline cycles of the candidate's RTL, verified bit-exact by Verilator first.
    A design over [rtl] max_lut keeps da4ml's LUT estimate (labelled); one that cannot be built has
    no cost and is not returned."""
    variant = Variant.parse(candidate.variant)
    try:
        row = sweep.rtl(variant)
    except QpdeError as exc:
        log.warning("%s: no RTL cost (%s)", variant.id, exc)
        candidate.cost_source = f"none: {exc}"
        return
    candidate.cost = row.get(RTL_COLUMN[metric])
    candidate.cost_source = f"{row['tool']} ({'estimate' if row.get('estimate') else 'synthesis'})"


def _folded_for(cfg: SweepConfig, part: Part | None, fps: float | None):
    """The [folded] settings of a part search: synthesis for the part's family, nextpnr on an ECP5
    part (its placement is the fit check), every scenario built, the throughput target if given."""
    folded = dataclasses.replace(cfg.folded, scenarios=None)
    if fps:
        folded = dataclasses.replace(folded, target_fps=(float(fps),))
    if part is None:
        return folded
    if part.is_ecp5:
        return dataclasses.replace(folded, pnr=True, ecp5_device=part.ecp5_device, ecp5_package=part.ecp5_package)
    return dataclasses.replace(folded, pnr=False, xilinx_family=part.family)


def design_fields_per_s(row: dict, clock_mhz: float) -> tuple[float, str]:
    """A folded design's throughput: placed Fmax / measured II where placed, else the clock it was
    folded for (its fold_clock_mhz: a refolded design's is the Fmax it was refolded at; clock_mhz,
    the config's, for rows written before refolding existed)."""
    if row.get("fields_per_s"):
        return row["fields_per_s"], "placed Fmax"
    clock = row.get("fold_clock_mhz") or clock_mhz
    return clock * 1e6 / row["ii_cycles"], f"at the assumed {clock:g} MHz"


def _folded_cost(sweep: Sweep, candidate: Candidate, metric: str, part: Part | None) -> None:
    """The cheapest of the candidate's folded designs (each proven bit-exact by Verilator before it
    is synthesized) that fits the part and meets its fields/s target. None fits: no cost, and
    cost_source says why for each design."""
    variant = Variant.parse(candidate.variant)
    try:
        rows = sweep.folded(variant)["designs"]
    except QpdeError as exc:
        log.warning("%s: no folded design (%s)", variant.id, exc)
        candidate.cost_source = f"none: {exc}"
        return
    clock = sweep.cfg.folded.clock_mhz
    reasons, fitting = [], []
    for row in rows:
        name = row.get("design") or "design"
        why = fit(part, row) if part else (None if row.get("lut") is not None else "no synthesis counts")
        fps, basis = design_fields_per_s(row, clock) if row.get("ii_cycles") else (0.0, "")
        if why is None and fps < row.get("target_fps", 0):
            why = f"{fps:,.0f} fields/s ({basis}) < target {row['target_fps']:,.0f}"
        if why:
            reasons.append(f"{name}: {why}")
            continue
        lut = row["ecp5_lut"] if part and part.is_ecp5 else row["lut"]
        fitting.append((lut if metric == "lut" else row["latency_cycles"], name, row, fps, basis))
    if not fitting:
        candidate.cost_source = "none: " + "; ".join(reasons)
        return
    cost, name, row, fps, basis = min(fitting, key=lambda f: f[0])
    where = f"fits {part.name}" if part else "synthesized"
    candidate.cost, candidate.design = cost, name
    candidate.cost_source = f"folded {name} ({row['tool']}; {where}; {fps:,.0f} fields/s {basis})" + (
        "; not chosen: " + "; ".join(reasons) if reasons else "")


def load_result(path: Path) -> dict:
    return json.loads(Path(path).read_text())
