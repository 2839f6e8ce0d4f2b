"""The unit library and a generated top: Verilog-2005 (Icarus -g2005 parses it), lint-clean under
Verilator -Wall at several parameter sets. Fast: no simulation build."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from qpde.backends.folded import build_folded
from qpde.backends.folded.codegen import HDL_DIR, UNIT_FILES
from qpde.qgraph import QGraph
from qpde.backends.rtl import verilator_bin, verilator_env
from tests.folded.test_compile import FOLDED

CASES = [
    ("qpde_fifo", {"W": 12, "DEPTH": 5, "AW": 3}),
    ("qpde_fifo", {"W": 8, "DEPTH": 64, "AW": 6}),
    ("qpde_fork", {"W": 16}),
    ("qpde_dwc", {"W": 4, "LIN": 2, "LOUT": 8, "CW": 2}),
    ("qpde_dwc", {"W": 4, "LIN": 6, "LOUT": 2, "CW": 2}),
    ("qpde_mvau", {"K": 12, "C": 6, "SIMD": 4, "PE": 3, "IN_W": 4, "IN_SIGNED": 0, "WW": 5, "PSHIFT": 2,
                   "ACC_W": 14, "HAS_BIAS": 1, "OUT_W": 3, "RSHIFT": 0, "LSHIFT": 1, "SB": 2, "FB": 1, "AB": 3}),
    ("qpde_mvau", {"K": 12, "C": 8, "SIMD": 2, "PE": 2, "IN_W": 4, "WW": 4, "ACC_W": 12, "OUT_W": 5, "SB": 3,
                   "FB": 2, "NT": 6, "SPARSE": 1, "AB": 3}),  # zero tiles skipped: the index ROM
    ("qpde_cmvm", {"K": 6, "C": 8, "SIMD": 2, "PE": 1, "IN_W": 8, "OUT_W": 4, "LAT": 3, "SB": 2, "FB": 3}),
    ("qpde_cmvm", {"K": 4, "C": 4, "SIMD": 4, "PE": 4, "IN_W": 5, "OUT_W": 6, "LAT": 2}),  # a row per beat
    ("qpde_add", {"L": 2, "AW": 4, "A_SIGNED": 0, "BW": 6, "BSHIFT": 3, "SUM_W": 11, "OUT_W": 5}),
    ("qpde_map", {"L": 3, "IN_W": 9, "OUT_W": 4, "RSHIFT": 3}),
    ("qpde_requant", {"IN_W": 11, "RSHIFT": 7, "OUT_W": 4}),  # 4 significant bits: bounds in offset binary
    ("qpde_requant", {"IN_W": 3, "RSHIFT": 5, "OUT_W": 4}),   # 1 significant bit
    ("qpde_transpose", {"W": 5, "R": 6, "C": 3, "AB": 5}),
    ("qpde_transpose", {"W": 5, "L": 2, "R": 6, "C": 4, "AB": 4, "LB": 1}),
    ("qpde_transpose", {"W": 3, "L": 3, "R": 6, "C": 9, "AB": 5, "LB": 2}),
    ("qpde_transpose", {"W": 4, "L": 4, "R": 4, "C": 4, "AB": 2, "LB": 2}),
    # 1-D units: the 2-D modules on an L×1 grid
    ("qpde_swu2d", {"W": 5, "LN": 1, "C": 1, "H": 16, "WD": 1, "KH": 3, "KW": 1, "PB": 6, "RB": 6, "KB": 2, "SB": 3,
                    "WB": 1}),
    ("qpde_swu2d", {"W": 4, "LN": 3, "C": 6, "H": 9, "WD": 1, "KH": 5, "KW": 1, "PB": 6, "RB": 5, "KB": 3, "SB": 4,
                    "WB": 1}),
    ("qpde_pool2d", {"W": 6, "SIGNED": 1, "LN": 2, "C": 6, "WD": 1, "PW": 1, "CB": 1, "WB": 2}),
    ("qpde_upsample2d", {"W": 4, "LN": 1, "C": 5, "WD": 1, "UW": 1, "CB": 1, "WB": 3}),
    ("qpde_concat", {"LN": 2, "AW": 4, "A_SIGNED": 0, "BW": 6, "B_SIGNED": 1, "ASHIFT": 2, "OUT_W": 7, "CA": 4,
                     "CB": 6, "WB": 2, "DA": 4, "DAB": 2, "DB": 5, "DBB": 3}),
    ("qpde_swu2d", {"W": 4, "LN": 1, "C": 2, "H": 8, "WD": 8, "KH": 3, "KW": 3, "PB": 8, "RB": 5, "KB": 2, "SB": 6,
                    "WB": 1}),
    ("qpde_swu2d", {"W": 5, "LN": 2, "C": 6, "H": 4, "WD": 5, "KH": 5, "KW": 5, "PB": 7, "RB": 5, "KB": 3, "SB": 6,
                    "WB": 2}),
    ("qpde_pool2d", {"W": 6, "SIGNED": 0, "LN": 2, "C": 4, "WD": 8, "CB": 2, "WB": 1}),
    ("qpde_upsample2d", {"W": 4, "LN": 1, "C": 3, "WD": 4, "CB": 2, "WB": 2}),
    ("qpde_outer", {"M": 3, "K": 5, "P": 1, "AW": 4, "A_SIGNED": 0, "BW": 6, "ACC_W": 15, "OFFSET": "64'sd4", "OUT_W": 5,
                    "RSHIFT": 2, "MB": 2, "KB": 3, "PB": 1, "OB": 2}),
    ("qpde_mvau_stream", {"M": 5, "K": 1, "P": 3, "AW": 5, "BW": 3, "B_SIGNED": 0, "ACC_W": 12, "OUT_W": 4,
                          "LSHIFT": 1, "RB": 3, "KB": 1, "PB": 2, "WB": 2}),
]


def _lint(top: str, files: list, params: dict, cwd) -> str:
    cmd = [str(verilator_bin() / "verilator"), "--lint-only", "-Wall", "--top-module", top,
           *[f"-G{k}={v}" for k, v in params.items()], *map(str, files)]
    proc = subprocess.run(cmd, cwd=cwd, env=verilator_env(), capture_output=True, text=True, timeout=120)
    return proc.stdout + proc.stderr if proc.returncode else ""


@pytest.mark.parametrize("top,params", CASES)
def test_units_lint_clean(top, params, tmp_path):
    (tmp_path / "weights.mem").write_text("0\n" * 64)
    (tmp_path / "biases.mem").write_text("0\n" * 64)
    (tmp_path / "index.mem").write_text("0\n" * 64)
    assert _lint(top, [HDL_DIR / f for f in UNIT_FILES], params, tmp_path) == ""


def test_generated_design_is_verilog_2005_and_lint_clean(fno_l1_qonnx, tmp_path):
    design = build_folded(QGraph(fno_l1_qonnx("w4a4")), tmp_path, FOLDED)
    mem = tmp_path / "src" / "memfiles"
    assert _lint(design.name, design.verilog_files, {}, mem) == ""
    if shutil.which("iverilog") is None:
        pytest.skip("iverilog not installed")
    proc = subprocess.run(["iverilog", "-g2005", "-o", str(tmp_path / "a.out"), "-s", design.name,
                           *map(str, design.verilog_files)], cwd=mem, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "error" not in proc.stderr.lower(), proc.stderr


def test_1d_spatial_units_run_on_the_2d_modules(tmp_path):
    """A 1-D conv window, pool and upsample are the 2-D modules on an L×1 grid (one point a row):
    the generated top instantiates them so and lints clean (Verilator runs: tests/folded/test_spatial)."""
    from tests.folded.test_spatial import conv_qonnx, pool_up_concat_qonnx

    graphs = {"conv": conv_qonnx(tmp_path / "conv.onnx"), "mix": pool_up_concat_qonnx(tmp_path / "mix.onnx")}
    for name, path in graphs.items():
        design = build_folded(QGraph(path), tmp_path / name)
        top = design.verilog_files[0].read_text()
        assert not any(f"qpde_{k} " in top for k in ("swu", "pool", "upsample"))
        modules = ["qpde_swu2d"] if name == "conv" else ["qpde_pool2d", "qpde_upsample2d"]
        for m in modules:
            assert f"    {m} #(" in top and ".WD(1)" in top.split(f"    {m} #(")[1].split(");")[0]
        assert _lint(design.name, design.verilog_files, {}, tmp_path / name / "src" / "memfiles") == ""
