"""The folded step's gate: a design whose Yosys netlist (xc7 or ECP5) differs from the golden keeps its
row (counts withheld, not placed) and fails the step, so `qpde run`/`qpde step` exit 1."""

from __future__ import annotations

import json

import pytest

from qpde.errors import MismatchError
from qpde.flow import _folded_netlists_exact


def test_a_differing_netlist_fails_the_folded_step(tmp_path):
    path = tmp_path / "folded.json"
    fine = {"design": "ii64", "postsynth_mismatches": 0, "ecp5_postsynth_mismatches": 0}
    path.write_text(json.dumps({"designs": [fine, {"design": "ii16", "postsynth_mismatches": 0}]}))
    _folded_netlists_exact(path)  # equal (or ECP5 not checked): passes
    path.write_text(json.dumps({"designs": [fine, {**fine, "design": "ii16", "ecp5_postsynth_mismatches": 3}]}))
    with pytest.raises(MismatchError, match="ii16: the synth_ecp5 netlist differs from the golden on 3 fields"):
        _folded_netlists_exact(path)
    path.write_text(json.dumps({"designs": [{**fine, "postsynth_mismatches": 8}]}))
    with pytest.raises(MismatchError, match="ii64: the synth_xilinx netlist"):
        _folded_netlists_exact(path)
