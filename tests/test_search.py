"""Accuracy-target search finds the grid's cheapest feasible point while training fewer models."""

import json

import pandas as pd
import pytest

from qpde.config import Variant, load_config, with_overrides
from qpde.errors import ConfigError
from qpde.search import _dominated, search
from tests.test_pipeline import _write


def test_domination_is_fewer_bits_at_no_higher_resolution():
    failed = Variant("burgers", "fno", "w4a8", 32)
    assert _dominated(Variant("burgers", "fno", "w4a4", 16), failed)
    assert _dominated(Variant("burgers", "fno", "w4a8", 32), failed)
    assert not _dominated(Variant("burgers", "fno", "w8a8", 16), failed)
    assert not _dominated(Variant("burgers", "fno", "w4a4", 64), failed)


def test_unknown_metric_is_refused(tmp_path):
    cfg = load_config(_write(tmp_path, ["w4a4"]))
    with pytest.raises(ConfigError, match="luts.*choose from bops, lut, latency"):
        search(cfg, tmp_path, "burgers", "fno", 0.1, metric="luts")


@pytest.mark.slow
def test_search_matches_full_grid(tmp_path):
    from qpde.pipeline import run_sweep

    scenarios = ["fp32", "w4a4", "w4a8", "w8a8", "w8a16"]
    cfg = load_config(_write(tmp_path, scenarios))
    grid = pd.read_csv(run_sweep(cfg, tmp_path / "grid", executor="serial"))
    quantized = grid[grid["backend"] == "hls4ml"].sort_values("bops")
    target = float(quantized["nrmse"].median())
    expected = quantized[quantized["nrmse"] <= target].iloc[0]["variant"]
    result = search(cfg, tmp_path / "search", "burgers", "fno", target)
    assert result.best == expected
    assert result.csim["mismatching_samples"] == 0
    assert result.trained_variants <= result.grid_variants
    saved = json.loads((tmp_path / "search" / "search-burgers-fno.json").read_text())
    assert saved["best"] == expected


@pytest.mark.slow
def test_lut_search_returns_the_fewest_synthesized_luts_among_non_dominated_successes(tmp_path):
    """Every success that no other success dominates is built (Verilator-verified, Yosys LUTs); the
    returned one has the fewest LUTs among them, and anything dominating a success was not trained."""
    cfg = load_config(_write(tmp_path, ["w4a4", "w4a8", "w8a8"]))
    result = search(cfg, tmp_path, "burgers", "fno", 1e9, metric="lut")  # every candidate meets it
    by_status = {c.variant: c for c in result.candidates}
    meets = [c for c in result.candidates if c.status == "trained-meets"]
    assert [c.variant for c in meets] == ["burgers-fno-w4a4-r16"]  # w4a8, w8a8 dominate it
    assert by_status["burgers-fno-w8a8-r16"].status == "skipped-dominates-success"
    assert result.best == "burgers-fno-w4a4-r16" and meets[0].cost > 0 and "synthesis" in meets[0].cost_source
    rtlsim = json.loads((tmp_path / "sim" / result.best / "rtlsim_verdict.json").read_text())
    assert rtlsim["mismatching_samples"] == 0 and result.csim["mismatching_samples"] == 0


def test_lut_walk_ranks_successes_by_measured_luts(tmp_path, monkeypatch):
    """Logic only (stages replaced by tables): BOPs order differs from LUT order, so the walk must
    build every non-dominated success and return the fewest LUTs, skipping what dominates a success."""
    import qpde.search as search_module
    from qpde.pipeline import Sweep

    cfg = load_config(_write(tmp_path, ["w4a4", "w4a8", "w8a8"]))
    cfg = with_overrides(cfg, resolutions="8,16")
    bops = {"w4a4-r8": 1, "w4a8-r8": 2, "w4a4-r16": 3, "w8a8-r8": 4, "w4a8-r16": 5, "w8a8-r16": 6}
    nrmse = {"w4a4-r8": 0.9, "w4a8-r8": 0.2, "w4a4-r16": 0.1, "w8a8-r8": 0.1, "w4a8-r16": 0.1, "w8a8-r16": 0.1}
    luts = {"w4a8-r8": 900, "w4a4-r16": 500, "w8a8-r8": 2000}
    key = lambda v: v.id.removeprefix("burgers-fno-")  # noqa: E731
    monkeypatch.setattr(search_module, "candidate_bops", lambda c, v: bops[key(v)])
    monkeypatch.setattr(Sweep, "metrics", lambda self, v: {"nrmse": nrmse[key(v)]})
    monkeypatch.setattr(Sweep, "rtl", lambda self, v: {"lut": luts[key(v)], "tool": "yosys", "estimate": False})
    monkeypatch.setattr(Sweep, "csim", lambda self, v: {"samples": 4, "mismatching_samples": 0})
    result = search(cfg, tmp_path, "burgers", "fno", 0.5, metric="lut")
    status = {key(Variant.parse(c.variant)): c.status for c in result.candidates}
    assert status == {"w4a4-r8": "trained-misses", "w4a8-r8": "trained-meets", "w4a4-r16": "trained-meets",
                      "w8a8-r8": "skipped-dominates-success", "w4a8-r16": "skipped-dominates-success",
                      "w8a8-r16": "skipped-dominates-success"}
    assert result.best == "burgers-fno-w4a4-r16"  # 500 LUTs, though w4a8-r8 has fewer BOPs
    bops_result = search(cfg, tmp_path, "burgers", "fno", 0.5, metric="bops")
    assert bops_result.best == "burgers-fno-w4a8-r8"
