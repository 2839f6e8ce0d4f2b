"""Folded-backend fixtures: tiny hand-built QONNX graphs that isolate one or two stream units, and
the tiny FNO fixtures of tests/rtl."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.rtl.conftest import QONNX_DOMAIN, _quant, fno_l1_qonnx, mlp_qonnx  # noqa: F401 (fixtures)


def _save(path: Path, nodes, inits, in_shape, out_shape) -> Path:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QONNX_DOMAIN, 2)])
    onnx.save(model, str(path))
    return path


def transpose_qonnx(path: Path, rows: int = 6, cols: int = 4) -> Path:
    """x[1, rows·cols] → Quant(2^-2, 5 bits) → Reshape [1, rows, cols] → Transpose → Quant(2^-1, 3 bits,
    saturating and flooring: a stand-alone requantization) → y[1, cols, rows]."""
    nodes, inits = [], []
    node, ini = _quant("q_in", "x", "xq", -2, 5)
    nodes.append(node)
    inits += ini
    inits.append(numpy_helper.from_array(np.array([1, rows, cols], np.int64), "shape"))
    nodes.append(helper.make_node("Reshape", ["xq", "shape"], ["xr"], name="reshape"))
    nodes.append(helper.make_node("Transpose", ["xr"], ["xt"], name="transpose", perm=[0, 2, 1]))
    node, ini = _quant("q_out", "xt", "y", -1, 3)
    nodes.append(node)
    inits += ini
    return _save(path, nodes, inits, [1, rows * cols], [1, cols, rows])


def residual_qonnx(path: Path, n: int = 8, seed: int = 1) -> Path:
    """x[1, n] → Quant(2^-2, 4 bits) → fork: MatMul W [n×n] → Quant(2^-3) ; + the Quant'd x (exponents
    differ: the add aligns them) → Relu → Quant(2^-1, 3 bits unsigned) → y. The fork needs a FIFO: the
    MVAU absorbs a whole row before its first output."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    node, ini = _quant("q_in", "x", "xq", -2, 4)
    nodes.append(node)
    inits += ini
    inits.append(numpy_helper.from_array((rng.integers(-7, 8, size=(n, n)) * 2.0**-3).astype(np.float32), "W"))
    nodes.append(helper.make_node("MatMul", ["xq", "W"], ["h"], name="mm"))
    node, ini = _quant("q_h", "h", "hq", -3, 5)
    nodes.append(node)
    inits += ini
    nodes.append(helper.make_node("Add", ["hq", "xq"], ["s"], name="add"))
    nodes.append(helper.make_node("Relu", ["s"], ["r"], name="relu"))
    node, ini = _quant("q_out", "r", "y", -1, 3, signed=False)
    nodes.append(node)
    inits += ini
    return _save(path, nodes, inits, [1, n], [1, n])


def mul_qonnx(path: Path) -> Path:
    """x → Quant → Mul by 2 → Quant → y: QGraph accepts it, the folded backend does not map Mul."""
    nodes, inits = [], []
    node, ini = _quant("q_in", "x", "xq", -2, 4)
    nodes.append(node)
    inits += ini
    inits.append(numpy_helper.from_array(np.array(2.0, np.float32), "two"))
    nodes.append(helper.make_node("Mul", ["xq", "two"], ["m"], name="double"))
    node, ini = _quant("q_out", "m", "y", -2, 4)
    nodes.append(node)
    inits += ini
    return _save(path, nodes, inits, [1, 4], [1, 4])


SPARSE_ROWS, SPARSE_K, SPARSE_C = 4, 12, 8


def sparse_weights(seed: int = 2) -> np.ndarray:
    """A K×C weight code matrix shaped like FNO1d's spectral mix (nonzero only where the row's and the
    column's "mode" agree: here (i // 2) % 3 == (j // 2) % 3), plus two all-zero columns (6, 7: a
    fold without any tile at PE 2) and two all-zero rows (10, 11: a row word that is never read at
    SIMD 2): zero tiles at every folding the tests use."""
    rng = np.random.default_rng(seed)
    i, j = np.meshgrid(np.arange(SPARSE_K), np.arange(SPARSE_C), indexing="ij")
    w = rng.integers(1, 8, size=(SPARSE_K, SPARSE_C)) * rng.choice([-1, 1], size=(SPARSE_K, SPARSE_C))
    w[(i // 2) % 3 != (j // 2) % 3] = 0
    w[:, 6:] = 0
    w[10:, :] = 0
    return w


def sparse_qonnx(path: Path) -> Path:
    """x[1, R·K] → Quant(2^-2, 4 bits) → Reshape [1, R, K] → MatMul W (sparse_weights · 2^-2) → Add a bias
    (nonzero on the all-zero columns too) → Quant(2^-1, 5 bits) → y[1, R, C]."""
    return matmul_qonnx(path, sparse_weights(), SPARSE_ROWS, out_bits=5)


def matmul_qonnx(path: Path, w: np.ndarray, rows: int, out_bits: int, seed: int = 3) -> Path:
    """x[1, R·K] → Quant(2^-2, 4 bits) → Reshape [1, R, K] → MatMul (w · 2^-2) → Add a bias → Quant(2^-1,
    out_bits) → y[1, R, C]."""
    rng = np.random.default_rng(seed)
    k, c = w.shape
    nodes, inits = [], []
    node, ini = _quant("q_in", "x", "xq", -2, 4)
    nodes.append(node)
    inits += ini
    inits += [numpy_helper.from_array(np.array([1, rows, k], np.int64), "shape"),
              numpy_helper.from_array((w * 2.0**-2).astype(np.float32), "W"),
              numpy_helper.from_array((rng.integers(-20, 20, size=c) * 2.0**-3).astype(np.float32), "b")]
    nodes.append(helper.make_node("Reshape", ["xq", "shape"], ["xr"], name="reshape"))
    nodes.append(helper.make_node("MatMul", ["xr", "W"], ["h"], name="mm"))
    nodes.append(helper.make_node("Add", ["h", "b"], ["hb"], name="bias"))
    node, ini = _quant("q_out", "hb", "y", -1, out_bits)
    nodes.append(node)
    inits += ini
    return _save(path, nodes, inits, [1, rows * k], [1, rows, c])


def random_inputs(graph, n: int = 48, seed: int = 0) -> np.ndarray:
    """Raw inputs spanning the input quantizer's range and beyond (saturation) plus ties."""
    from qpde.backends.rtl import default_check_inputs

    x = default_check_inputs(graph, n_random=n, seed=seed)
    return x


@pytest.fixture(scope="session")
def folded_graphs(tmp_path_factory):
    root = tmp_path_factory.mktemp("folded_graphs")
    return {
        "mlp": mlp_qonnx(root / "mlp.onnx", n=4, hidden=6, narrow_out=True),
        "transpose": transpose_qonnx(root / "transpose.onnx"),
        "residual": residual_qonnx(root / "residual.onnx"),
        "mul": mul_qonnx(root / "mul.onnx"),
        "sparse": sparse_qonnx(root / "sparse.onnx"),
    }


@pytest.fixture(scope="session")
def fno_round_qonnx(tmp_path_factory):
    """scenario → QONNX of the one-layer tiny FNO trained the default way: round-half-up activations
    (exported as FLOOR + half an LSB: a constant Add after the residual sum) and 16-bit state."""
    import torch

    from qpde.export import export_model
    from qpde.models.fno import FNO1d
    from qpde.quant import parse_scenario
    from tests.conftest import TINY_N, calibrated
    from tests.rtl.conftest import FNO_L1

    cache, root = {}, tmp_path_factory.mktemp("fno_round")

    def get(scenario: str) -> Path:
        if scenario not in cache:
            torch.manual_seed(0)
            spec = parse_scenario(scenario).with_options(rounding="round", state_bits=16)
            model = calibrated(FNO1d(TINY_N, FNO_L1, spec), TINY_N)
            cache[scenario] = export_model(model, TINY_N, root / f"{scenario}.onnx")
        return cache[scenario]

    return get


R2D = 8  # FNO2d grid r×r


@pytest.fixture(scope="session")
def fno2d_qonnx(tmp_path_factory):
    """scenario → QONNX path of a tiny FNO2d (8×8 grid, width 4, 3 modes, 2 layers, proj 8) whose
    y-direction DFT stages are kron(I_8, F_y) matrices."""
    import torch

    from qpde.export import export_model
    from qpde.models.fno import FNO2d, FNOConfig
    from qpde.quant import parse_scenario
    from tests.conftest import calibrated

    root = tmp_path_factory.mktemp("fno2d")
    cache = {}

    def get(scenario: str, rounding: str = "floor") -> Path:
        """rounding "round": the default export (half an LSB added after each MatMul's bias)."""
        key = f"{scenario}_{rounding}"
        if key not in cache:
            torch.manual_seed(0)
            spec = parse_scenario(scenario).with_options(rounding=rounding)
            model = calibrated(FNO2d(R2D, FNOConfig(width=4, modes=3, layers=2, proj=8), spec), R2D * R2D)
            cache[key] = export_model(model, R2D * R2D, root / f"{key}.onnx")
        return cache[key]

    return get
