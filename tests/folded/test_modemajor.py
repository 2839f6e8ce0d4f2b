"""Mode-major MVAUs (qpde.backends.folded.modemajor): the permutation finder on small matrices, the
integer model and cycle model of the rewritten dataflow, the optimizer's choice, and (slow) Verilator
runs with stalls, exact against the golden with II measured == predicted."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qpde import golden
from qpde.backends.folded import build_dataflow, build_folded, cycle_model, elaborate, optimize, validate
from qpde.backends.folded import model as int_model
from qpde.backends.folded.fold import Folding, mvau_stored_tiles, mvau_tile_counts
from qpde.backends.folded.modemajor import (IN_SUFFIX, OUT_SUFFIX, add_to_folding, find_mode_major, pays,
                                            split_perm, stored_tiles)
from qpde.errors import ConfigError
from qpde.qgraph import QGraph
from tests.conftest import edge_inputs
from tests.folded.conftest import matmul_qonnx, random_inputs


def mode_minor(width: int, modes: int, seed: int = 0, parts: int = 2) -> np.ndarray:
    """FNO1d's spectral-mix layout: index (c·parts + part)·modes + k, nonzero only where the row's and
    the column's mode k agree (every such weight nonzero)."""
    rng = np.random.default_rng(seed)
    n = width * parts
    w = np.zeros((n, modes, n, modes), dtype=np.int64)
    for k in range(modes):
        w[:, k, :, k] = rng.integers(1, 8, size=(n, n)) * rng.choice([-1, 1], size=(n, n))
    return w.reshape(n * modes, n * modes)


def test_split_perm_is_the_transpose():
    assert split_perm(6, (2, 3)).tolist() == [0, 3, 1, 4, 2, 5]  # [[0 1 2] [3 4 5]] → columns first
    assert split_perm(6, None).tolist() == list(range(6))


def test_finder_makes_the_spectral_mix_block_diagonal():
    w = mode_minor(width=2, modes=3)  # 12×12, modes interleaved: index r·3 + k
    mm = find_mode_major(w != 0)
    assert (mm.in_split, mm.out_split, mm.blocks) == ((4, 3), (4, 3), 3)
    pk, pc = mm.perms(12, 12)
    permuted = w[pk][:, pc]
    assert np.array_equal(mm.nonzero, permuted != 0)
    assert np.array_equal(permuted != 0, np.kron(np.eye(3, dtype=bool), np.ones((4, 4), dtype=bool)))
    # the same products, reordered: x[p_in] @ W[p_in][:, p_out] == (x @ W)[p_out], exactly
    x = np.random.default_rng(1).integers(-8, 8, size=(5, 12))
    assert np.array_equal(x[:, pk] @ permuted, (x @ w)[:, pc])


def test_finder_on_rectangular_and_one_sided_matrices():
    # K = 3·2 inputs of mode i % 2, C = 2·2 outputs of mode j % 2: both sides transposed, 2 blocks
    i, j = np.meshgrid(np.arange(6), np.arange(4), indexing="ij")
    mm = find_mode_major((i % 2) == (j % 2))
    assert (mm.in_split, mm.out_split, mm.blocks) == ((3, 2), (2, 2), 2)
    # outputs already mode-major (mode j // 2): only the input is transposed
    mm = find_mode_major((i % 2) == (j // 2))
    assert (mm.in_split, mm.out_split, mm.blocks) == ((3, 2), None, 2)
    # block-diagonal already, dense, or no transpose helps: nothing to do
    assert find_mode_major(np.kron(np.eye(3), np.ones((4, 4))) != 0) is None
    assert find_mode_major(np.ones((12, 12), dtype=bool)) is None
    assert find_mode_major(np.eye(12, dtype=bool)[::-1]) is None  # anti-diagonal: a reversal, not a transpose


def test_stored_tiles_and_when_mode_major_pays():
    """12×12 spectral mix (3 modes, blocks of 4): at PE = SIMD = 2 every 2-word of the mode-minor order
    holds two of the three modes, so any two words share one and all 36 tiles are stored; mode-major,
    only the 2×2 tiles of each 4×4 block: 12."""
    w = mode_minor(width=2, modes=3)
    params = {"K": 12, "C": 12, "weights": w, "nonzero": w != 0, "mode_major": find_mode_major(w != 0), "w_width": 4}
    assert stored_tiles(params, 1, 1) == (48, 48)  # one tile per nonzero weight in either order
    assert stored_tiles(params, 2, 2) == (36, 12)
    assert stored_tiles(params, 4, 4) == (9, 3)
    assert not pays(params, 1, 1, 4, 4)  # equal tiles: the transposers would only cost
    assert pays(params, 2, 2, 4, 4)  # 36 → 12 cycles per row
    # SIMD 1, PE 4: a mode-minor fold of 4 outputs holds every mode (all 36 tiles); mode-major one
    # block each, 12 tiles = the K/SIMD = 12 input beats of the row: faster
    assert stored_tiles(params, 1, 4) == (36, 12) and pays(params, 1, 4, 4, 4)
    assert mvau_stored_tiles({"K": 12, "C": 12, "nonzero": params["mode_major"].nonzero}, 2, 2) == 12


MIX_FOLDING = {"mm": {"pe": 2, "simd": 2}, "mm" + IN_SUFFIX: {"lanes": 1}, "mm" + OUT_SUFFIX: {"lanes": 1}}


def test_rewritten_dataflow_is_exact_and_its_cycles_counted(tmp_path):
    """Three rows of the 12×12 mix per field: each row transposed [4, 3] → [3, 4] on its own."""
    graph = QGraph(matmul_qonnx(tmp_path / "mix.onnx", mode_minor(width=2, modes=3), rows=3, out_bits=6))
    df = build_dataflow(graph)
    assert add_to_folding(df, {"mm": {"pe": 2, "simd": 2}}, ["mm"]) == MIX_FOLDING
    phys = elaborate(df, MIX_FOLDING)
    assert [u.kind for u in phys.units if u.kind != "dwc"] == ["transpose", "mvau", "transpose"]
    x = random_inputs(graph)
    want = golden.run(graph, x)
    assert np.array_equal(int_model.run_values(graph, phys, x), want)
    assert np.array_equal(int_model.run_values(graph, elaborate(df, {"mm": {"pe": 2, "simd": 2}}), x), want)
    cycles = cycle_model(phys)
    assert cycles["mm"] == 3 * 12 and cycle_model(elaborate(df, {"mm": {"pe": 2, "simd": 2}}))["mm"] == 3 * 36
    assert cycles["mm" + IN_SUFFIX] == cycles["mm" + OUT_SUFFIX] == 36  # R·C/L per row, 3 rows
    assert mvau_tile_counts(phys, phys.unit("mm")) == {"dense": 36, "stored": 12, "tile_bits": 16}
    # the transposers' lanes are checked like any transpose's (gcd(4, 3) = 1)
    with pytest.raises(ConfigError, match=r"layer 'mm_to_mode_major' \(transpose 4×3\): lanes 2"):
        validate(df, {**MIX_FOLDING, "mm" + IN_SUFFIX: {"lanes": 2}})


def test_mode_major_of_a_layer_without_that_order_is_refused(fno_l1_qonnx):
    df = build_dataflow(QGraph(fno_l1_qonnx("w4a4")))
    assert df.unit("MatMul_3").params["mode_major"] is not None  # the spectral mix (found from its weights)
    assert all(u.params["mode_major"] is None for u in df.units if u.kind == "mvau" and u.name != "MatMul_3")
    with pytest.raises(ConfigError, match=r"layer 'MatMul_4' \(mvau 8×16\): no mode-major order"):
        elaborate(df, {"MatMul_4" + IN_SUFFIX: {"lanes": 1}})
    with pytest.raises(ConfigError, match=r"mode_major names 'Add_2', which is not an MVAU"):
        validate(df, {"Add_2" + OUT_SUFFIX: {"lanes": 1}})


def test_tiny_fno_mode_major_is_exact_and_the_optimizer_takes_it(fno_l1_qonnx):
    """Tiny FNO (width 4, 4 modes: a 32×32 spectral mix, blocks of 8 mode-major). At II 64 mode-major
    needs PE 2 × SIMD 2 for the mix (61 stored tiles: the 64 of its 4 diagonal blocks less those
    of weights quantized to 0), the mode-minor order PE 8 × SIMD 2 with all 64 tiles stored."""
    graph = QGraph(fno_l1_qonnx("w4a4"))
    df = build_dataflow(graph)
    f = optimize(df, target_ii=64)
    dense = optimize(df, target_ii=64, mode_major=False)
    assert f.target_met and dense.target_met and f.mode_major == ["MatMul_3"] and dense.mode_major == []
    assert {"MatMul_3" + IN_SUFFIX, "MatMul_3" + OUT_SUFFIX} <= set(f.layers)
    macs = {k: sum(v["pe"] * v["simd"] for v in g.layers.values() if "pe" in v) for k, g in (("mm", f), ("dense", dense))}
    assert macs["mm"] < macs["dense"]
    phys = elaborate(df, f.layers)
    cycles = cycle_model(phys)
    assert max(cycles.values()) == f.ii_cycles
    par = f.layers["MatMul_3"]
    orig, perm = stored_tiles(df.unit("MatMul_3").params, par["simd"], par["pe"])
    assert perm < orig and cycles["MatMul_3"] == max(perm, 32 // par["simd"])
    assert cycles["MatMul_3" + IN_SUFFIX] == 32 // f.layers["MatMul_3" + IN_SUFFIX]["lanes"]
    x = edge_inputs(graph)
    assert np.array_equal(int_model.run_values(graph, phys, x), golden.run(graph, x))
    # recorded: in the folding's JSON, and its layers alone rebuild the design
    assert json.loads(f.to_json())["mode_major"] == ["MatMul_3"] and Folding.from_json(f.to_json()) == f
    # at PE = SIMD = 1 both orders store one tile per nonzero weight: the optimizer keeps the graph as it is
    assert optimize(df, target_ii=512).mode_major == []


@pytest.mark.slow
@pytest.mark.parametrize("folding", [MIX_FOLDING, {"mm": {"pe": 4, "simd": 2}, "mm" + IN_SUFFIX: {"lanes": 1},
                                                   "mm" + OUT_SUFFIX: {"lanes": 1}}])
def test_mode_major_mvau_in_verilator(tmp_path, folding):
    from tests.folded.test_rtl import check

    graph = QGraph(matmul_qonnx(tmp_path / "mix.onnx", mode_minor(width=2, modes=3), rows=3, out_bits=6))
    design = build_folded(graph, tmp_path / "d", folding)
    assert design.mode_major == ["mm"] and design.tiles["mm"]["stored"] < design.tiles["mm"]["dense"]
    check(graph, design, random_inputs(graph), seed=5)


@pytest.mark.slow
@pytest.mark.parametrize("target", [64, 16])
def test_tiny_fno_mode_major_in_verilator(fno_l1_qonnx, tmp_path, target):
    """The optimizer's mode-major tiny FNO end to end: exact under stalls, II measured == predicted."""
    from tests.folded.test_rtl import check

    graph = QGraph(fno_l1_qonnx("w4a4"))
    f = optimize(build_dataflow(graph), target_ii=target)
    assert f.mode_major == ["MatMul_3"] and f.ii_cycles == target
    design = build_folded(graph, tmp_path, f.layers)
    assert design.mode_major == ["MatMul_3"] and design.predicted_ii == target
    check(graph, design, random_inputs(graph, n=24) if target == 64 else edge_inputs(graph), seed=target)
