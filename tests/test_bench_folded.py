"""benchmarks/folded.py (d): folded LUTs vs FINN's estimate, on hand-written artifacts (fast)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest

from qpde.config import load_config

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "folded.py"
VARIANT = "burgers-fno-w4a4-r16"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_folded", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _artifacts(out: Path, *, folded_targets=(1e6,), per_layer=None) -> None:
    bits = out / "bitstreams" / VARIANT
    bits.mkdir(parents=True)
    layers = per_layer or [
        {"layer": "MVAU_hls_0", "lut": 342, "bram": 1, "uram": 0, "dsp": 0},
        {"layer": "DuplicateStreams_hls_0", "lut": 0, "bram": 0, "uram": 0, "dsp": 0, "float32": False},
        {"layer": "ElementwiseMul_hls_0", "lut": 90, "bram": 0, "uram": 0, "dsp": 0, "float32": True},
        {"layer": "InnerShuffle_rtl_0", "lut": 0, "bram": 0, "uram": 0, "dsp": 0},
    ]
    (bits / "finn.json").write_text(json.dumps({"lut": 400, "bram": 1, "ii_cycles": 96, "estimate": True,
                                                "note": "", "per_layer": layers}))
    designs = [{"design": f"ii{int(100e6 / t)}", "target_fps": t, "lut": 300 + i, "bram": 2, "ii_cycles": 100}
               for i, t in enumerate(folded_targets)]
    (bits / "folded.json").write_text(json.dumps({"designs": designs}))


def test_ratio_at_the_finn_target_lists_layers_without_a_resource_model(bench, tmp_path):
    cfg = load_config("hardware-folded")
    _artifacts(tmp_path, folded_targets=(2e5, 1e6, 3e6))
    [row] = bench.finn_comparison(cfg, tmp_path, {VARIANT: ""})
    assert row["folded_lut"] == 301 and row["folded_design"] == "ii100"  # the 1e6 design, not the others
    assert row["ratio"] == 301 / 400
    assert row["finn_no_model"] == ["DuplicateStreams_hls_0", "InnerShuffle_rtl_0"]
    assert row["finn_float32"] == ["ElementwiseMul_hls_0"]


def test_no_folded_design_at_the_target_gives_no_ratio(bench, tmp_path):
    cfg = load_config("hardware-folded")
    _artifacts(tmp_path, folded_targets=(2e5,))
    [row] = bench.finn_comparison(cfg, tmp_path, {VARIANT: ""})
    assert row["ratio"] is None and row["folded_note"] == "no folded design at this target"


def test_different_clocks_are_refused(bench, tmp_path):
    """The same fields/s at 200 MHz (FINN's default 5 ns) and 100 MHz are different cycle budgets."""
    cfg = load_config("hardware-folded")
    cfg = dataclasses.replace(cfg, hls=dataclasses.replace(cfg.hls, clock_period_ns=5.0))
    _artifacts(tmp_path)
    with pytest.raises(SystemExit, match="clock_period_ns = 10"):
        bench.finn_comparison(cfg, tmp_path, {VARIANT: ""})


def test_finn_target_not_among_the_folded_targets_is_refused(bench, tmp_path):
    cfg = load_config("hardware-folded")
    cfg = dataclasses.replace(cfg, finn=dataclasses.replace(cfg.finn, target_fps=123))
    _artifacts(tmp_path)
    with pytest.raises(SystemExit, match="target_fps 123"):
        bench.finn_comparison(cfg, tmp_path, {VARIANT: ""})


def test_failed_finn_step_gives_a_row_with_its_note(bench, tmp_path):
    cfg = load_config("hardware-folded")
    _artifacts(tmp_path)
    (tmp_path / "bitstreams" / VARIANT / "finn.json").unlink()
    [row] = bench.finn_comparison(cfg, tmp_path, {VARIANT: "FINN not installed"})
    assert row["ratio"] is None and row["finn_note"] == "FINN not installed"


def test_printed_row_names_the_caveats(bench, tmp_path, capsys):
    cfg = load_config("hardware-folded")
    _artifacts(tmp_path)
    [row] = bench.finn_comparison(cfg, tmp_path, {VARIANT: ""})
    bench.print_finn_row(row)
    text = capsys.readouterr().out
    assert "ratio 0.75" in text and "no resource model for 2 layers" in text and "float32" in text
