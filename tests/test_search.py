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


def test_part_walk_returns_the_cheapest_design_that_fits_and_meets_its_target(tmp_path, monkeypatch):
    """Logic only (stages replaced by tables): with --part the cost is the cheapest folded design of
    a success whose Yosys counts fit the part and whose throughput meets its target; a success with
    no such design has no cost and is not returned."""
    import qpde.search as search_module
    from qpde.pipeline import Sweep

    cfg = load_config(_write(tmp_path, ["w4a4", "w4a8", "w8a8"]))
    cfg = with_overrides(cfg, resolutions="8,16")
    bops = {"w4a4-r8": 1, "w4a8-r8": 2, "w4a4-r16": 3, "w8a8-r8": 4, "w4a8-r16": 5, "w8a8-r16": 6}
    nrmse = {"w4a4-r8": 0.9, "w4a8-r8": 0.2, "w4a4-r16": 0.1, "w8a8-r8": 0.1, "w4a8-r16": 0.1, "w8a8-r16": 0.1}

    def design(name, lut, ii, target_fps=1e5, dsp=0, family="xc7"):
        return {"design": name, "lut": lut, "ff": lut, "dsp": dsp, "bram": 1, "ii_cycles": ii, "latency_cycles": 3 * ii,
                "target_fps": target_fps, "target": f"xilinx-{family}", "tool": "yosys", "note": ""}
    designs = {
        # w4a8-r8: the cheap design is too slow (100 MHz / 2000 = 5e4 < 1e5), the fast one fits
        "w4a8-r8": [design("ii2000", 900, 2000), design("ii500", 3000, 500)],
        # w4a4-r16: fewer LUTs, but more DSPs than the xc7a35t has (90)
        "w4a4-r16": [design("ii500", 2500, 500, dsp=120)],
    }
    seen_cfgs = []

    def folded(self, v):
        seen_cfgs.append(self.cfg.folded)
        return {"designs": designs[key(v)]}
    key = lambda v: v.id.removeprefix("burgers-fno-")  # noqa: E731
    monkeypatch.setattr(search_module, "candidate_bops", lambda c, v: bops[key(v)])
    monkeypatch.setattr(Sweep, "metrics", lambda self, v: {"nrmse": nrmse[key(v)]})
    monkeypatch.setattr(Sweep, "folded", folded)
    monkeypatch.setattr(Sweep, "csim", lambda self, v: {"samples": 4, "mismatching_samples": 0})
    result = search(cfg, tmp_path, "burgers", "fno", 0.5, metric="lut", part="xc7a35tcsg324-1")
    assert result.part == "xc7a35t" and result.best == "burgers-fno-w4a8-r8" and result.best_design == "ii500"
    by_variant = {key(Variant.parse(c.variant)): c for c in result.candidates}
    assert by_variant["w4a8-r8"].cost == 3000 and "fits xc7a35t" in by_variant["w4a8-r8"].cost_source
    assert by_variant["w4a4-r16"].cost is None and "DSP 120 > 90" in by_variant["w4a4-r16"].cost_source
    assert "50,000 fields/s" in json.dumps(asdict_candidates(result))  # the slow design's reason is kept
    assert all(c.xilinx_family == "xc7" and not c.pnr and c.scenarios is None for c in seen_cfgs)
    # a part the design cannot fit at all, and a part of another family, name the reason
    with pytest.raises(ConfigError, match="unknown part 'xc9x'"):
        search(cfg, tmp_path, "burgers", "fno", 0.5, metric="lut", part="xc9x")
    result = search(cfg, tmp_path, "burgers", "fno", 0.5, metric="lut", part="xcvu13p")
    assert result.best is None and "counts are for xilinx-xc7, not xcup" in result.candidates[1].cost_source
    assert all(c.xilinx_family == "xcup" for c in seen_cfgs[-2:])
    with pytest.raises(ConfigError, match="--metric lut or latency"):
        search(cfg, tmp_path, "burgers", "fno", 0.5, part="xc7a35t")


def asdict_candidates(result):
    from dataclasses import asdict

    return [asdict(c) for c in result.candidates]


def test_parts_fit_reads_the_family_counts():
    from qpde.parts import fit, get_part

    assert get_part("xcvu13p-flga2577-2-e").name == "xcvu13p" and get_part("lfe5u-85f").ecp5_device == "85k"
    row = {"lut": 100, "ff": 10, "dsp": 2, "bram": 0.5, "target": "xilinx-xc7"}
    assert fit(get_part("xc7a35t"), row) is None
    assert fit(get_part("xc7a35t"), {**row, "bram": 50.5}) == "does not fit xc7a35t: BRAM36 50.5 > 50"
    assert "no synthesis counts (Yosys counts withheld)" in fit(get_part("xc7a35t"), {**row, "lut": None,
                                                                                        "note": "Yosys counts withheld"})
    ecp5 = get_part("LFE5U-25F")
    assert "not placed on LFE5U-25F" in fit(ecp5, row)
    placed = {**row, "fmax_mhz": 90.0, "ecp5_lut": 30_000, "ecp5_ff": 100, "ecp5_dsp": 4, "ecp5_bram": 2}
    assert fit(ecp5, placed) == "does not fit LFE5U-25F: LUT4 30,000 > 24,288"
    assert fit(get_part("LFE5U-85F"), placed) is None


@pytest.mark.slow
def test_part_search_builds_verifies_and_fits_a_folded_design(tmp_path):
    """End to end with --part: the success is built as a folded design, proven bit-exact in
    Verilator (whole test split) before Yosys counts it for the part's family, and it fits."""
    cfg = load_config(_write(tmp_path, ["w4a4", "w8a8"]))
    result = search(cfg, tmp_path, "burgers", "fno", 1e9, metric="lut", part="xc7a35t", fps=1e4)
    best = next(c for c in result.candidates if c.variant == result.best)
    assert result.best == "burgers-fno-w4a4-r16" and best.cost > 0 and "fits xc7a35t" in best.cost_source
    rows = json.loads((tmp_path / "bitstreams" / result.best / "folded.json").read_text())["designs"]
    row = next(r for r in rows if r["design"] == result.best_design)
    assert row["rtlsim_mismatches"] == 0 and row["rtlsim_samples"] == 4 and row["lut"] == best.cost
    assert row["target"].startswith("xilinx-xc7") and row.get("fmax_mhz") is None  # no P&R for a Xilinx part
