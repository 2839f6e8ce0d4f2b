"""RTL test helpers: hand-built tiny QONNX graphs (a few dozen LUTs, so synthesis takes seconds)
and the tiny FNO exported from Brevitas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from qpde.export import export_model
from qpde.models.fno import FNOConfig
from tests.conftest import TINY_N, calibrated_fno

QONNX_DOMAIN = "qonnx.custom_op.general"
FNO_L1 = FNOConfig(width=4, modes=4, layers=1, proj=8)


def _quant(name, x, out, exp, bits, *, signed=True, narrow=False, rounding="FLOOR"):
    inits = [numpy_helper.from_array(np.array(2.0**exp, np.float32), f"{name}_scale"),
             numpy_helper.from_array(np.array(0.0, np.float32), f"{name}_zp"),
             numpy_helper.from_array(np.array(float(bits), np.float32), f"{name}_bits")]
    node = helper.make_node("Quant", [x, f"{name}_scale", f"{name}_zp", f"{name}_bits"], [out], name=name,
                            domain=QONNX_DOMAIN, rounding_mode=rounding, signed=int(signed), narrow=int(narrow))
    return node, inits


def mlp_qonnx(path: Path, *, n: int = 4, hidden: int = 3, a_bits: int = 4, w_bits: int = 3, seed: int = 0,
              narrow_out: bool = False, middle_op: str = "Relu") -> Path:
    """x[1,n] → Quant → MatMul W1 → Add b1 → Relu → Quant(unsigned) → MatMul W2 → Quant → y[1,n]."""
    rng = np.random.default_rng(seed)
    w1 = rng.integers(-(2 ** (w_bits - 1)) + 1, 2 ** (w_bits - 1), size=(n, hidden)) * 2.0**-2
    b1 = rng.integers(-(2**7), 2**7, size=(hidden,)) * 2.0**-9  # finer than the activations: truncated
    w2 = rng.integers(-(2 ** (w_bits - 1)) + 1, 2 ** (w_bits - 1), size=(hidden, n)) * 2.0**-1
    nodes, inits = [], []
    for name, x, out, exp, bits, kw in [("q_in", "x", "xq", -2, a_bits, {})]:
        node, ini = _quant(name, x, out, exp, bits, **kw)
        nodes.append(node)
        inits += ini
    inits += [numpy_helper.from_array(w1.astype(np.float32), "W1"), numpy_helper.from_array(b1.astype(np.float32), "b1"),
              numpy_helper.from_array(w2.astype(np.float32), "W2")]
    nodes.append(helper.make_node("MatMul", ["xq", "W1"], ["h1"], name="mm1"))
    nodes.append(helper.make_node("Add", ["h1", "b1"], ["h2"], name="bias1"))
    nodes.append(helper.make_node(middle_op, ["h2"], ["h3"], name="act1"))
    node, ini = _quant("q_h", "h3", "h3q", -2, a_bits, signed=False)
    nodes.append(node)
    inits += ini
    nodes.append(helper.make_node("MatMul", ["h3q", "W2"], ["y0"], name="mm2"))
    node, ini = _quant("q_out", "y0", "y", -1, a_bits, signed=True, narrow=narrow_out)
    nodes.append(node)
    inits += ini
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QONNX_DOMAIN, 2)])
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def tiny_mlp(tmp_path_factory) -> Path:
    return mlp_qonnx(tmp_path_factory.mktemp("mlp") / "mlp.onnx")


@pytest.fixture(scope="session")
def fno_l1_qonnx(tmp_path_factory):
    """scenario → QONNX path of the one-layer tiny FNO (N=16, width 4, modes 4, proj 8)."""
    cache = {}
    root = tmp_path_factory.mktemp("fno_l1")

    def get(scenario: str) -> Path:
        if scenario not in cache:
            model = calibrated_fno(scenario, shape=FNO_L1)
            cache[scenario] = export_model(model, TINY_N, root / f"{scenario}.onnx")
        return cache[scenario]

    return get
