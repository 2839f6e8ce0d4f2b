"""Accuracy-target search finds the grid's cheapest feasible point while training fewer models."""

import json

import pandas as pd
import pytest

from qpde.config import Variant, load_config
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
    with pytest.raises(ConfigError, match="lut"):
        search(cfg, tmp_path, "burgers", "fno", 0.1, metric="lut")


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
