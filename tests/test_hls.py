"""hls4ml: a real g++ compile and C simulation per scenario family, bit-exact against the golden."""

import numpy as np
import pytest

from qpde import golden
from qpde.config import HLSConfig
from qpde.backends.hls4ml import build_project, layer_list
from qpde.qgraph import QGraph
from qpde.backends.hls4ml.csim import csim_outputs
from qpde.backends.verdict import compare
from qpde.errors import MismatchError
from tests.conftest import edge_inputs


@pytest.mark.parametrize("scenario", ["w4a4", "w4a8", "w8a8", "w8a16", "w8a32"])
def test_csim_is_bit_exact(tiny_qonnx, tmp_path, scenario):
    _, path = tiny_qonnx(scenario)
    graph = QGraph(path)
    project = build_project(graph, tmp_path / scenario, HLSConfig())
    x = edge_inputs(graph)
    verdict = compare("csim", golden.run(graph, x), csim_outputs(graph, project, x))
    assert verdict.samples == len(x)
    assert verdict.mismatching_samples == 0, verdict


def test_precisions_are_explicit_and_quant_folded(tiny_qonnx):
    _, path = tiny_qonnx("w4a8")
    layers, precision, _, _ = layer_list(QGraph(path))
    assert all("auto" not in p for prec in precision.values() for p in prec.values())
    dense = [lay for lay in layers if lay["class_name"] == "Dense"]
    # Weight types are the exact width of the quantized integers: never more than the scenario's 4 bits.
    widths = [int(precision[lay["name"]]["weight"].split("<")[1].split(",")[0]) for lay in dense]
    assert dense and max(widths) == 4 and min(widths) >= 2
    # Activation quantizers become result types (floor + saturate), not separate layers.
    assert not any(lay.get("activation") == "linear" for lay in layers)
    assert sum("AP_TRN,AP_SAT" in p["result"] for p in precision.values()) >= 10


def test_compare_reports_first_mismatch():
    ref = np.zeros((4, 3))
    act = ref.copy()
    act[2, 1] = 2.0**-30
    verdict = compare("x", ref, act)
    assert (verdict.mismatching_samples, verdict.first_mismatch_index, verdict.mismatching_values) == (1, 2, 1)
    assert not verdict.exact


def test_a_verdict_of_no_samples_proves_nothing():
    """An empty comparison must not pass the gates that let a design be synthesized or reported."""
    verdict = compare("x", np.zeros((0, 3)), np.zeros((0, 3)))
    assert verdict.samples == 0 and not verdict.exact
    with pytest.raises(MismatchError, match="compared no samples"):
        verdict.require_exact()
