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
