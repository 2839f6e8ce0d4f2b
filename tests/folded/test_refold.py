"""Fmax-aware folding ([folded] refold): the decision to refold at the placed Fmax, what replaces the
placed design, config validation, and `qpde search` counting fields/s at the fold clock. The
placement is mocked (no Verilator, Yosys or nextpnr): fast."""

from __future__ import annotations

import pytest

from qpde.backends.folded import flow
from qpde.config import FoldedConfig, config_from_dict
from qpde.errors import ConfigError
from qpde.qgraph import QGraph
from qpde.search import design_fields_per_s

ON = FoldedConfig(target_fps=(4e6,), refold=True)


def _row(ii: int, fmax: float | None, target: float, clock: float) -> dict:
    return {"design": f"ii{ii}", "ii_cycles": ii, "fmax_mhz": fmax, "target_fps": target, "fold_clock_mhz": clock,
            "fields_per_s": fmax * 1e6 / ii if fmax else None, "note": "placed" if fmax else "not placed: too large"}


def test_refold_only_when_placed_below_the_fold_clock_and_short_of_the_target():
    slow = _row(20, 70.04, 4e6, 100.0)  # 3.5e6 fields/s < 4e6
    assert flow.refold_clock(slow, 100.0, ON) == 70.0  # rounded down: the new fold must hold at the Fmax
    assert flow.refold_clock(slow, 100.0, FoldedConfig(refold=False)) is None
    assert flow.refold_clock(_row(20, 70.0, 3e6, 100.0), 100.0, ON) is None  # still meets its target
    assert flow.refold_clock(_row(20, 100.5, 6e6, 100.0), 100.0, ON) is None  # Fmax at or above the fold clock
    assert flow.refold_clock(_row(20, None, 4e6, 100.0), 100.0, ON) is None  # not placed: nothing measured


@pytest.fixture
def placed_at(monkeypatch):
    """Replace build/verify/synthesize/place by a placement at a given Fmax (None: not placed)."""
    calls = []

    def use(fmax_for):
        def fake(graph, folding, target, clock, out_dir, x, cfg):
            calls.append((folding.ii_cycles, clock))
            return _row(folding.ii_cycles, fmax_for(folding.ii_cycles), target, clock)

        monkeypatch.setattr(flow, "_design_row", fake)
        return calls

    return use


def test_a_design_placed_too_slow_is_refolded_at_its_fmax_and_replaced(folded_graphs, placed_at, tmp_path):
    calls = placed_at(lambda ii: 70.04)
    (row,) = flow.run_folded(QGraph(folded_graphs["mlp"]), tmp_path, None, ON)
    # at 100 MHz II 20 meets 4e6 fields/s; placed at 70 MHz it gives 3.5e6; folded at 70.0 MHz: II 12
    assert calls == [(20, 100.0), (12, 70.0)]
    assert row["design"] == "ii12" and row["fold_clock_mhz"] == 70.0 and row["fields_per_s"] >= 4e6
    assert row["refolded_from"] == "ii20" and row["refolded_from_fields_per_s"] == pytest.approx(70.04e6 / 20)
    assert row["note"].startswith("refolded at the placed 70.04 MHz")


def test_no_refold_without_the_option_or_when_the_optimizer_cannot_go_faster(folded_graphs, placed_at, tmp_path):
    graph = QGraph(folded_graphs["mlp"])
    calls = placed_at(lambda ii: 70.0)
    (row,) = flow.run_folded(graph, tmp_path, None, FoldedConfig(target_fps=(4e6,)))
    assert calls == [(20, 100.0)] and row["fold_clock_mhz"] == 100.0 and "refolded_from" not in row
    calls.clear()
    (row,) = flow.run_folded(graph, tmp_path, None, FoldedConfig(target_fps=(1e9,), refold=True))
    assert calls == [(1, 100.0)] and row["design"] == "ii1"  # II 1 already: the same folding at 70 MHz
    assert "the optimizer gives the same folding" in row["note"]


def test_a_refolded_design_that_is_not_placed_does_not_replace_the_placed_one(folded_graphs, placed_at, tmp_path):
    calls = placed_at(lambda ii: 70.0 if ii == 20 else None)
    (row,) = flow.run_folded(QGraph(folded_graphs["mlp"]), tmp_path, None, ON)
    assert calls == [(20, 100.0), (12, 70.0)]
    assert row["design"] == "ii20" and row["fmax_mhz"] == 70.0 and "gave ii12, not placed" in row["note"]


def test_refold_config_is_validated():
    assert config_from_dict({"folded": {"refold": True, "pnr": True}}).folded.refold
    with pytest.raises(ConfigError, match=r"\[folded\] refold = true .* needs pnr = true"):
        config_from_dict({"folded": {"refold": True, "pnr": False}})
    with pytest.raises(ConfigError, match="refold"):
        config_from_dict({"folded": {"refold": "yes"}})
    with pytest.raises(ConfigError, match="clock_mhz must be > 0"):
        config_from_dict({"folded": {"clock_mhz": 0}})


def test_search_counts_unplaced_fields_per_s_at_the_fold_clock():
    row = {"ii_cycles": 1000, "fields_per_s": None, "fold_clock_mhz": 70.0}
    assert design_fields_per_s(row, 100.0) == (70_000.0, "at the assumed 70 MHz")
    assert design_fields_per_s({"ii_cycles": 1000}, 100.0)[0] == 100_000.0  # rows from before refolding
    assert design_fields_per_s({**row, "fields_per_s": 65_000.0}, 100.0) == (65_000.0, "placed Fmax")
