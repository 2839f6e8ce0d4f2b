"""hls4ml per-layer folding: valid ReuseFactors by hls4ml's own rule, no layer over the unroll limit,
the choice written into the project as chosen, and C-sim still bit-exact under Resource folding."""

import re
from dataclasses import replace

import numpy as np
import pytest

from qpde import golden
from qpde.config import HLSConfig
from qpde.errors import ConfigError
from qpde.backends.hls4ml import build_project, layer_list
from qpde.backends.hls4ml.folding import choose_folding, summary, valid_reuse_factors
from qpde.qgraph import QGraph
from qpde.backends.hls4ml.csim import csim_outputs
from qpde.backends.verdict import compare
from tests.conftest import edge_inputs


@pytest.mark.parametrize("n_in, n_out", [(1, 8), (8, 8), (8, 16), (16, 1), (12, 10), (64, 16), (128, 128)])
def test_valid_reuse_factors_equal_hls4ml(n_in, n_out):
    from hls4ml.backends import get_backend

    assert valid_reuse_factors(n_in, n_out) == get_backend("Vitis").get_valid_reuse_factors(n_in, n_out)


def _dense(name, n_in, n_out):
    return {"class_name": "Dense", "name": name, "n_in": n_in, "n_out": n_out}


def test_auto_folds_only_layers_over_the_unroll_limit():
    layers = [_dense("lift", 1, 8), _dense("mix", 128, 128), _dense("dft", 64, 16),
              {"class_name": "Conv1D", "name": "conv", "n_chan": 64, "filt_width": 3, "n_filt": 64},
              {"class_name": "Merge", "name": "add"}]
    folding = choose_folding(layers)
    assert set(folding) == {"lift", "mix", "dft", "conv"}
    assert (folding["lift"].strategy, folding["lift"].reuse_factor) == ("Latency", 1)
    assert (folding["dft"].strategy, folding["dft"].reuse_factor) == ("Latency", 1)
    assert (folding["mix"].strategy, folding["mix"].reuse_factor, folding["mix"].multipliers) == ("Resource", 4, 4096)
    # 192×64 = 12288 products: RF 3 is the smallest ≥ 12288/4096 that hls4ml accepts
    assert folding["conv"].reuse_factor == 3 and folding["conv"].reuse_factor in valid_reuse_factors(192, 64)
    assert max(f.multipliers for f in folding.values()) <= 4096
    assert summary(folding) == "Latency×2, Resource×2 (RF 3–4), max 4096 multipliers/layer"


def test_resource_rounds_up_to_a_valid_reuse_factor_and_budget_folds_further():
    assert valid_reuse_factors(12, 10)[:7] == [1, 2, 3, 4, 6, 12, 24]
    folding = choose_folding([_dense("d", 12, 10)], "Resource", reuse_factor=5)
    assert folding["d"].reuse_factor == 6  # 5 is invalid for 12×10; 6 is the next valid one
    budget = choose_folding([_dense("mix", 128, 128)], multiplier_budget={"mix": 512})
    assert budget["mix"].reuse_factor == 32 and budget["mix"].multipliers == 512


def test_latency_over_the_unroll_limit_is_refused_with_the_layer_name():
    with pytest.raises(ConfigError, match=r"layer mix \(Dense, 128×128 = 16384"):
        choose_folding([_dense("mix", 128, 128)], "Latency")
    with pytest.raises(ConfigError, match="strategy 'fast'"):
        choose_folding([], "fast")


@pytest.mark.parametrize("scenario", ["w4a4", "w8a8"])
def test_resource_folding_keeps_csim_bit_exact(tiny_qonnx, tmp_path, scenario):
    """A tiny unroll limit forces Resource on every layer with several products, at RFs hls4ml
    accepts; the project states them as chosen and C-sim equals the golden bit for bit."""
    _, path = tiny_qonnx(scenario)
    graph = QGraph(path)
    cfg = replace(HLSConfig(), max_unroll=8)
    project = build_project(graph, tmp_path / scenario, cfg)
    resource = {n: f for n, f in project.folding.items() if f.strategy == "Resource"}
    assert len(resource) >= 4 and len({f.reuse_factor for f in resource.values()}) >= 2
    assert all(f.multipliers <= 8 for f in project.folding.values())
    params = (tmp_path / scenario / "firmware" / "parameters.h").read_text()
    for name, f in resource.items():  # hls4ml kept every RF (it silently replaces invalid ones)
        written = re.search(rf"// {name}\n(?:(?!\n// ).)*?reuse_factor = (\d+);", params, re.S)
        assert written and int(written.group(1)) == f.reuse_factor, name
    x = edge_inputs(graph)
    verdict = compare("csim", golden.run(graph, x), csim_outputs(graph, project, x))
    assert verdict.samples == len(x) and verdict.mismatching_samples == 0, verdict


def test_default_quick_fno_has_no_layer_over_the_unroll_limit():
    import torch

    from qpde.export import export_model
    from qpde.models.fno import FNO1d, FNOConfig
    from qpde.quant import parse_scenario
    from tests.conftest import calibrated

    torch.manual_seed(0)
    model = calibrated(FNO1d(64, FNOConfig(width=8, modes=8, layers=2, proj=16), parse_scenario("w4a8")), 64)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        layers, *_ = layer_list(QGraph(export_model(model, 64, Path(tmp) / "m.onnx")))
    folding = choose_folding(layers)
    assert max(f.multipliers for f in folding.values()) <= 4096
    assert any(f.strategy == "Resource" for f in folding.values())  # the 128×128 mixing layers
    assert np.all([f.reuse_factor in valid_reuse_factors(f.n_in, f.n_out) for f in folding.values()])


def test_hls_folding_follows_the_folded_backends_optimizer(tiny_qonnx, tmp_path):
    """[hls] target_fps: each Dense gets at most the multipliers that iterate its dense matrix in the
    cycles per row of the folded RTL backend's MVAU for the same fields/s at the project's clock
    (PE·SIMD for a dense matrix; more where the MVAU skips zero tiles), with a valid RF."""
    from qpde.backends.folded import build_dataflow, optimize
    from qpde.backends.folded.fold import mvau_row_cycles
    from qpde.backends.folded.modemajor import mode_major_params

    _, path = tiny_qonnx("w4a8")
    graph = QGraph(path)
    cfg = replace(HLSConfig(), target_fps=2e6)  # 200 MHz: 100 cycles per field
    df = build_dataflow(graph)
    folded = optimize(df, target_fps=2e6, clock_mhz=200.0)
    assert folded.target_met
    project = build_project(graph, tmp_path / "hls", cfg, compile=False)
    layers, *_ = layer_list(graph)
    node_of = {lay["name"]: lay["qpde_node"] for lay in layers if lay["class_name"] == "Dense"}

    def mvau_params(node):  # a mode-major MVAU iterates its permuted weights' tiles
        params = df.unit(node).params
        return mode_major_params(params) if node in folded.mode_major else params

    checked, sparse = 0, 0
    for name, f in project.folding.items():
        par, params = folded.layers[node_of[name]], mvau_params(node_of[name])
        dense_tiles = (params["K"] // par["simd"]) * (params["C"] // par["pe"])
        row_cycles = mvau_row_cycles(params, par["simd"], par["pe"])
        sparse += row_cycles < dense_tiles
        assert f.multipliers * row_cycles <= par["pe"] * par["simd"] * dense_tiles + row_cycles
        assert f.reuse_factor in valid_reuse_factors(f.n_in, f.n_out)
        checked += 1
    assert checked == len(node_of) >= 5
    assert sparse  # the spectral mix: its zero tiles are skipped in the folded MVAU, iterated by hls4ml
    # Regression: the budget was PE·SIMD, too few multipliers for hls4ml to reach the same II there.
    from qpde.backends.hls4ml.convert import _folded_budget

    budget = _folded_budget(graph, layers, 2e6, 200.0)
    for name, node in node_of.items():
        par, params = folded.layers[node], mvau_params(node)
        dense_tiles = (params["K"] // par["simd"]) * (params["C"] // par["pe"])
        assert budget[name] == -(-par["pe"] * par["simd"] * dense_tiles // mvau_row_cycles(params, par["simd"],
                                                                                          par["pe"]))
    assert any(budget[name] > folded.layers[node]["pe"] * folded.layers[node]["simd"] for name, node in node_of.items())
    assert any(f.strategy == "Resource" for f in project.folding.values())
