"""The `cmvm` folded unit (a da4ml constant-matrix kernel behind the stream interface) and the per-layer
choice between it and the MVAU (qpde.backends.folded.cmvm, fold.choose_kernels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from qpde import golden
from qpde.backends.folded import build_dataflow, cycle_model, elaborate, optimize, validate
from qpde.backends.folded import model as int_model
from qpde.backends.folded.fold import Folding, choose_kernels, kernel_estimates
from qpde.errors import ConfigError
from qpde.qgraph import QGraph
from tests.folded.conftest import random_inputs
from tests.rtl.conftest import QONNX_DOMAIN, _quant

ROWS, K, C, C2 = 4, 6, 8, 5


def cmvm_qonnx(path: Path, w_bits: int, a_bits: int, seed: int = 0) -> Path:
    """x[1, R·K] → Quant(2^-3, a bits) → Reshape [1, R, K] → MatMul W1 (K×C, w bits; an all-zero column
    and an all-even one: da4ml gives them 0 and −1 fraction bits) → Add b1 (finer than the products) →
    Relu → Quant(2^-2, a bits unsigned) → MatMul W2 (C×C2) → Quant(2^-1, a bits narrow signed) → y."""
    rng = np.random.default_rng(seed)
    top = 2 ** (w_bits - 1)
    w1 = rng.integers(-top, top, size=(K, C))
    w1[:, 2] = 0
    w1[:, 5] = 2 * rng.integers(-top // 2, top // 2, size=K)
    w2 = rng.integers(-top + 1, top, size=(C, C2))
    b1 = rng.integers(-(2**6), 2**6, size=C) * 2.0**-7
    nodes, inits = [], []
    node, ini = _quant("q_in", "x", "xq", -3, a_bits)
    nodes.append(node)
    inits += ini
    inits += [numpy_helper.from_array(np.array([1, ROWS, K], np.int64), "shape"),
              numpy_helper.from_array((w1 * 2.0**-2).astype(np.float32), "W1"),
              numpy_helper.from_array(b1.astype(np.float32), "b1"),
              numpy_helper.from_array((w2 * 2.0**-3).astype(np.float32), "W2")]
    nodes.append(helper.make_node("Reshape", ["xq", "shape"], ["xr"], name="reshape"))
    nodes.append(helper.make_node("MatMul", ["xr", "W1"], ["h1"], name="mm1"))
    nodes.append(helper.make_node("Add", ["h1", "b1"], ["h2"], name="bias1"))
    nodes.append(helper.make_node("Relu", ["h2"], ["h3"], name="relu1"))
    node, ini = _quant("q_h", "h3", "h3q", -2, a_bits, signed=False)
    nodes.append(node)
    inits += ini
    nodes.append(helper.make_node("MatMul", ["h3q", "W2"], ["y0"], name="mm2"))
    node, ini = _quant("q_out", "y0", "y", -1 - (a_bits - 4) + (w_bits - 4), a_bits, narrow=True)
    nodes.append(node)
    inits += ini
    graph = helper.make_graph(nodes, "cmvm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, ROWS * K])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, ROWS, C2])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QONNX_DOMAIN, 2)])
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def cmvm_graphs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmvm")
    return {s: cmvm_qonnx(root / f"{s}.onnx", int(s[1]), int(s[3:])) for s in ("w4a8", "w8a8")}


FORCED = [{"mm1": {"kind": "cmvm"}, "mm2": {"kind": "cmvm", "simd": 2, "pe": 1}},  # full rows; narrow ports
          {"mm1": {"kind": "cmvm", "simd": 3, "pe": 2}, "mm2": {"pe": 5}}]  # beside an MVAU


@pytest.mark.parametrize("scenario", ["w4a8", "w8a8"])
def test_da4ml_kernel_is_the_exact_integer_product(cmvm_graphs, scenario):
    """da4ml's interpreter of the traced kernel equals codes @ W on edge codes (the extremes of every
    input) and random ones; the all-zero column has no bits, the all-even one drops its LSB."""
    from da4ml.types import minimal_kif

    from qpde.backends.folded.cmvm import trace_kernel

    df = build_dataflow(QGraph(cmvm_graphs[scenario]))
    unit = df.unit("mm1")
    t = df.streams[unit.inputs[0]].type
    comb = trace_kernel(unit.params, t)
    rng = np.random.default_rng(1)
    codes = np.concatenate([np.full((1, K), t.lo), np.full((1, K), t.hi), rng.integers(t.lo, t.hi + 1, size=(64, K))])
    w = unit.params["weights"].astype(np.int64)
    assert np.array_equal(np.asarray(comb.predict(codes.astype(np.float64))), codes @ w)
    kifs = [tuple(int(v) for v in minimal_kif(q)) for q in comb.out_qint]
    assert sum(kifs[2]) == 0 and kifs[5][2] == -1


@pytest.mark.parametrize("scenario", ["w4a8", "w8a8"])
@pytest.mark.parametrize("folding", FORCED)
def test_forced_cmvm_integer_model_and_cycles(cmvm_graphs, scenario, folding):
    graph = QGraph(cmvm_graphs[scenario])
    df = build_dataflow(graph)
    phys = elaborate(df, folding)
    kinds = {u.name: u.kind for u in phys.units}
    assert kinds["mm1"] == "cmvm" and kinds["mm2"] == ("cmvm" if "kind" in folding["mm2"] else "mvau")
    x = random_inputs(graph)
    want = golden.run(graph, x)
    assert len(np.unique(want)) > 20
    assert np.array_equal(int_model.run_values(graph, phys, x), want)
    par = validate(df, folding)
    cycles = cycle_model(phys)
    for name in ("mm1", "mm2"):  # a row per cycle, or the port beats of a row
        p = df.unit(name).params
        if par[name].get("kind") == "cmvm":
            assert cycles[name] == ROWS * max(p["K"] // par[name]["simd"], p["C"] // par[name]["pe"])
    if folding is FORCED[0]:
        assert par["mm1"] == {"pe": C, "simd": K, "kind": "cmvm"} and cycles["mm1"] == ROWS


def test_bad_kernel_specs_name_the_layer(cmvm_graphs):
    df = build_dataflow(QGraph(cmvm_graphs["w4a8"]))
    with pytest.raises(ConfigError, match=r"layer 'mm1' \(mvau 6×8\): kind 'da4ml'; a constant MatMul is an 'mvau'"):
        validate(df, {"mm1": {"kind": "da4ml"}})
    with pytest.raises(ConfigError, match=r"layer 'mm1' \(mvau 6×8\): SIMD 4 does not divide its 6 inputs"):
        validate(df, {"mm1": {"kind": "cmvm", "simd": 4}})
    with pytest.raises(ConfigError, match=r"unknown layers \['mm9'\]"):
        optimize(df, target_ii=8, kernels={"mm9": "cmvm"})
    with pytest.raises(ConfigError, match=r"layer 'mm1': kernel 'hls'"):
        optimize(df, target_ii=8, kernels={"mm1": "hls"})
    with pytest.raises(ConfigError, match=r"cmvm 'yes'"):
        optimize(df, target_ii=8, cmvm="yes")


def test_finn_mvau_lut_estimate_by_hand():
    """FINN's MVAU_hls.lut_estimation at P 1, Q 1, W 4, A 8 (signed), MW 6: mult 1·(2·⌈12/6⌉ − 1)·12 = 36,
    adder tree 12·1 = 12, accumulator ⌈log2 6 + 11 − 1 + 1 + ε⌉ = 14 (below ACC_W 20), weights in LUTs
    (4 words ≤ 128) 1·1·4·⌈4/64⌉ = 4: 300 + 1.1·62 + 4 = 372.2; as DSPs (12-bit products) 300 + 1.1·26 + 4."""
    from qpde.backends.folded.cmvm import mvau_lut_estimate, mvau_res_type
    from qpde.qgraph import FixedType

    params = {"K": 6, "C": 8, "w_width": 4, "acc_w": 20}
    a8 = FixedType(-128, 127, -3)
    assert mvau_lut_estimate(params, a8, 1, 1, 4, res_type="lut") == pytest.approx(372.2)
    assert mvau_res_type(params, a8) == "dsp" and mvau_lut_estimate(params, a8, 1, 1, 4) == pytest.approx(332.6)
    assert mvau_res_type(params, FixedType(-8, 7, 0)) == "lut"  # 8-bit products stay in LUTs
    # PE multiplies the datapath; the ACC_W cap and weights too large for LUT memory (c2 = 0)
    # P 2, Q 3: mult 3·3·12 = 108, adder tree 12·5 = 60, accumulator capped at ACC_W 10; 200 words: no c2
    assert mvau_lut_estimate({**params, "acc_w": 10}, a8, 3, 2, 200, res_type="lut") == \
        pytest.approx(300 + 1.1 * 2 * (108 + 60 + 10))


def test_chooser_on_small_cases(cmvm_graphs, monkeypatch):
    """choose_kernels takes cmvm exactly where its estimate is lower, keeps the MVAU's ports (the II
    cannot rise), skips forced layers and matrices over 64×64, and the Folding records the choice."""
    from qpde.backends.folded import cmvm as ck

    df = build_dataflow(QGraph(cmvm_graphs["w4a8"]))
    base = optimize(df, target_ii=32)
    est = kernel_estimates(df, base.layers)
    assert set(est) == {"mm1", "mm2"} and all(e["cmvm"] > 0 and e["mvau"] > 300 for e in est.values())
    folding, chosen = choose_kernels(df, base.layers)
    assert chosen == {n: "cmvm" for n, e in est.items() if e["cmvm"] < e["mvau"]}
    for name in chosen:
        assert folding[name] == {**base.layers[name], "kind": "cmvm"}
    # the estimates decide: a cheap kernel is taken everywhere, a dear one nowhere
    monkeypatch.setattr(ck, "cmvm_lut_estimate", lambda *a: 1.0)
    auto = optimize(df, target_ii=32, cmvm="auto")
    assert auto.kernels == {"mm1": "cmvm", "mm2": "cmvm"} and auto.ii_cycles <= base.ii_cycles
    assert all(auto.layers[n]["kind"] == "cmvm" for n in ("mm1", "mm2"))
    assert Folding.from_json(auto.to_json()) == auto
    monkeypatch.setattr(ck, "cmvm_lut_estimate", lambda *a: 1e9)
    assert optimize(df, target_ii=32, cmvm="auto").kernels == {}
    # a forced layer is kept (and recorded) whatever the estimates; the cap leaves larger matrices out
    forced = optimize(df, target_ii=32, kernels={"mm2": "cmvm"}, cmvm="auto")
    assert forced.kernels == {"mm2": "cmvm"} and forced.layers["mm2"] == {"pe": C2, "simd": C, "kind": "cmvm"}
    monkeypatch.setattr(ck, "AUTO_MAX_K", 7)
    assert set(kernel_estimates(df, base.layers)) == {"mm1"}  # mm2 has K 8 > 7
    assert optimize(df, target_ii=32).kernels == {}  # the default: MVAUs only


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["w4a8", "w8a8"])
@pytest.mark.parametrize("folding", FORCED)
def test_cmvm_unit_in_verilator_with_stalls(cmvm_graphs, tmp_path, scenario, folding):
    """The shell and its da4ml kernel under 30 % input gaps and output stalls and without: bit-exact
    with the golden, measured II = the cycle model's, Verilator -Wall clean (the kernel included)."""
    from qpde.backends.folded import build_folded
    from tests.folded.test_rtl import check

    graph = QGraph(cmvm_graphs[scenario])
    design = build_folded(graph, tmp_path, folding)
    assert design.units["cmvm"] == (2 if "kind" in folding["mm2"] else 1)
    assert (tmp_path / "src" / "qpde_cmvm_mm1.v").is_file() and (tmp_path / "src" / "shift_adder.v").is_file()
    check(graph, design, random_inputs(graph), seed=17)


@pytest.mark.slow
def test_forced_cmvm_layers_in_tiny_fno_end_to_end(fno_l1_qonnx, tmp_path):
    """optimize with two layers forced to cmvm (a 16×8 DFT and the 4×8 projection, a row per cycle
    behind width converters): the tiny FNO w4a8 in Verilator equals the golden, II as predicted."""
    from qpde.backends.folded import build_folded
    from tests.conftest import edge_inputs
    from tests.folded.test_rtl import check

    graph = QGraph(fno_l1_qonnx("w4a8"))
    df = build_dataflow(graph)
    forced = {"MatMul_2": "cmvm", "MatMul_5": "cmvm"}
    assert {(df.unit(n).params["K"], df.unit(n).params["C"]) for n in forced} == {(16, 8), (4, 8)}
    folding = optimize(df, target_ii=64, kernels=forced)
    assert folding.target_met and folding.kernels == forced
    design = build_folded(graph, tmp_path, folding.layers)
    assert design.units["cmvm"] == 2 and design.predicted_ii == folding.ii_cycles
    check(graph, design, edge_inputs(graph)[:48], seed=19)


def test_folded_cmvm_config_key(tmp_path):
    """[folded] cmvm: "off" (default) or "auto"; anything else is a one-line error naming the key."""
    from qpde.backends.folded.flow import folding_label
    from qpde.config import load_config

    path = tmp_path / "c.toml"
    path.write_text('[folded]\ncmvm = "auto"\n')
    assert load_config(path).folded.cmvm == "auto"
    path.write_text('[folded]\ncmvm = "yes"\n')
    with pytest.raises(ConfigError, match=r"\[folded\]: cmvm must be one of off, auto, got 'yes'"):
        load_config(path)
    label = folding_label(Folding(layers={"a": {"pe": 2, "simd": 4}, "b": {"pe": 8, "simd": 8, "kind": "cmvm"}},
                                  ii_cycles=64, bottleneck="a", kernels={"b": "cmvm"}))
    assert label == "II 64 (model), ΣPE·SIMD 8, bottleneck a, cmvm b"  # a kernel has no PE·SIMD multipliers


@pytest.mark.parametrize("scenario", ["w4a8", "w8a8"])
def test_generated_cmvm_design_is_verilog_2005_and_lint_clean(cmvm_graphs, tmp_path, scenario):
    """The top, the shell, the kernels (da4ml's stages, our enable pipeline and adapter) and da4ml's
    cells: Verilator -Wall clean and Icarus -g2005 parses them (fast: no simulation build)."""
    import shutil
    import subprocess

    from qpde.backends.folded import build_folded
    from tests.folded.test_hdl import _lint

    design = build_folded(QGraph(cmvm_graphs[scenario]), tmp_path, FORCED[0])
    names = {p.name for p in design.verilog_files}
    assert {"qpde_cmvm.v", "qpde_cmvm_mm1.v", "qpde_cmvm_mm1_pipe.v", "qpde_cmvm_mm1_stage0.v", "shift_adder.v"} <= names
    mem = tmp_path / "src" / "memfiles"
    assert _lint(design.name, design.verilog_files, {}, mem) == ""
    if shutil.which("iverilog") is None:
        pytest.skip("iverilog not installed")
    proc = subprocess.run(["iverilog", "-g2005", "-o", str(tmp_path / "a.out"), "-s", design.name,
                           *map(str, design.verilog_files)], cwd=mem, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "error" not in proc.stderr.lower(), proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name,kw", [("conv5", dict(ch=4, grid=(7,), c_out=2, k=5, seed=1)),
                                     ("conv3_2d", dict(grid=(4, 5), seed=2))])
def test_forced_cmvm_conv_behind_its_window(tmp_path, name, kw):
    """A convolution's matrix as a cmvm unit behind its sliding window (1-D and 2-D): its input port
    takes the window's point per beat (SIMD = C_in), a row is taps beats; exact, II as predicted."""
    from qpde.backends.folded import build_folded
    from tests.folded.test_rtl import check
    from tests.folded.test_spatial import conv_qonnx

    graph = QGraph(conv_qonnx(tmp_path / f"{name}.onnx", **kw))
    design = build_folded(graph, tmp_path / "d", {"conv": {"kind": "cmvm"}})
    unit = build_dataflow(graph).unit("conv")
    assert design.folding["conv"]["simd"] == unit.params["K"] // kw.get("k", 3) ** len(kw["grid"])
    check(graph, design, random_inputs(graph), seed=23)
