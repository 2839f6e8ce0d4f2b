"""Bring your own QONNX: plain Brevitas `export_qonnx` files (built here, tiny) through `qpde csim`.

Exact where the graph is exact (FLOOR activations, power-of-two scales): C-sim == golden with
np.array_equal; otherwise a one-line refusal naming the node (or the file) and what is needed."""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

warnings.filterwarnings("ignore", message="fast_hadamard_transform package not found")

import brevitas.nn as qnn  # noqa: E402
from brevitas.export import export_qonnx  # noqa: E402
from brevitas.inject.enum import FloatToIntImplType  # noqa: E402
from brevitas.quant import (  # noqa: E402
    Int8ActPerTensorFixedPoint,
    Int8ActPerTensorFloat,
    Int8WeightPerTensorFixedPoint,
    Uint8ActPerTensorFixedPoint,
)

from qpde import golden  # noqa: E402
from qpde.cli import app  # noqa: E402
from qpde.errors import GraphError  # noqa: E402
from qpde.ingest import is_clean  # noqa: E402
from qpde.qgraph import QGraph  # noqa: E402


class FloorAct(Int8ActPerTensorFixedPoint):
    """Brevitas' stock power-of-two activation quantizer, with FLOOR instead of ROUND."""

    float_to_int_impl_type = FloatToIntImplType.FLOOR


class FloorUAct(Uint8ActPerTensorFixedPoint):
    float_to_int_impl_type = FloatToIntImplType.FLOOR


def _mlp(act=FloorAct, uact=FloorUAct) -> nn.Module:
    """QuantIdentity → QuantLinear → QuantReLU → QuantLinear (→ output quantizer), stock Brevitas."""
    return nn.Sequential(
        qnn.QuantIdentity(act_quant=act, return_quant_tensor=True),
        qnn.QuantLinear(8, 16, bias=True, weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=4),
        qnn.QuantReLU(act_quant=uact, return_quant_tensor=True),
        qnn.QuantLinear(16, 4, bias=True, weight_quant=Int8WeightPerTensorFixedPoint),
        qnn.QuantIdentity(act_quant=act),
    )


def _cnn(act=FloorAct, uact=FloorUAct) -> nn.Module:
    """QuantConv1d → QuantReLU → QuantConv1d on [batch, 2 channels, 8], stock Brevitas."""
    return nn.Sequential(
        qnn.QuantIdentity(act_quant=act, return_quant_tensor=True),
        qnn.QuantConv1d(2, 4, 3, padding=1, bias=True, weight_quant=Int8WeightPerTensorFixedPoint),
        qnn.QuantReLU(act_quant=uact, return_quant_tensor=True),
        qnn.QuantConv1d(4, 2, 3, padding=1, bias=True, weight_quant=Int8WeightPerTensorFixedPoint),
        qnn.QuantIdentity(act_quant=act),
    )


def _export(model: nn.Module, shape: tuple[int, ...], path) -> tuple:
    """Calibrate the activation scales, export with Brevitas' own export_qonnx (nothing of qpde's),
    and write 48 random inputs next to it."""
    torch.manual_seed(0)
    model.train()
    with torch.no_grad():
        for _ in range(40):
            model(torch.randn(16, *shape[1:]))
    model.eval()
    with contextlib.redirect_stdout(io.StringIO()):
        export_qonnx(model, torch.randn(*shape), str(path))
    x = np.random.default_rng(0).normal(0, 1.5, size=(48, *shape[1:]))
    inputs = path.with_suffix(".x.npy")
    np.save(inputs, x)
    return path, inputs


MODELS = {"mlp": (_mlp, (1, 8)), "cnn": (_cnn, (1, 2, 8))}


@pytest.fixture(scope="module")
def brevitas_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("byo")

    def get(kind: str, **quantizers):
        make, shape = MODELS[kind]
        torch.manual_seed(0)
        name = kind + "".join(f"-{k}" for k in quantizers)
        return _export(make(**quantizers), shape, root / f"{name}.onnx")

    return get


def _csim(path, inputs, root, out=None):
    args = ["csim", str(path), "--inputs", str(inputs), "--root", str(root)]
    return CliRunner().invoke(app, args + (["--out", str(out)] if out else []))


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_plain_brevitas_export_is_csim_bit_exact(brevitas_file, tmp_path, kind):
    """The raw file lists its weights as graph inputs and (MLP) uses Gemm; both were refused before
    the cleaning step. Now: 0 mismatches, and C-sim outputs equal the golden's bit for bit."""
    import onnx

    path, inputs = brevitas_file(kind)
    raw = onnx.load(str(path))
    assert len(raw.graph.input) > 1  # weights exported as graph inputs
    assert (kind == "mlp") == any(n.op_type == "Gemm" for n in raw.graph.node)
    result = _csim(path, inputs, tmp_path, tmp_path / "y.npy")
    assert result.exit_code == 0, result.output
    assert "48 samples, 0 mismatching the golden" in result.output
    graph = QGraph(path)
    assert is_clean(graph.model) and {n.op_type for n in graph.nodes} <= {"Quant", "MatMul", "Add", "Relu", "Conv"}
    x = np.load(inputs)
    reference = golden.run(graph, x)
    actual = np.load(tmp_path / "y.npy")
    assert np.array_equal(actual, reference)
    assert len(np.unique(reference)) >= 8  # not trivially constant
    # the golden is the file's own semantics: QONNX's reference executor agrees on a sample
    from qonnx.core.onnx_exec import execute_onnx

    ort = execute_onnx(graph.model, {graph.input_name: x[:1].astype(np.float32)})[graph.output_name]
    assert np.array_equal(ort.astype(np.float64), reference[:1])
    assert onnx.load(str(path)) == raw  # the user's file is not rewritten


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_round_activations_are_refused_naming_the_node(brevitas_file, tmp_path, kind):
    """Brevitas' default (ROUND) activation quantizers: refused, naming the node and asking for FLOOR."""
    path, inputs = brevitas_file(kind, act=Int8ActPerTensorFixedPoint, uact=Uint8ActPerTensorFixedPoint)
    result = _csim(path, inputs, tmp_path)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {path}: node 'node__symbolic' (Quant): activation rounding ROUND")
    assert "only FLOOR" in lines[0]


def test_non_power_of_two_scale_is_refused_naming_the_node(brevitas_file, tmp_path):
    """Brevitas' float-scaled quantizer (Int8ActPerTensorFloat), even with FLOOR: refused by node."""

    class FloorFloatAct(Int8ActPerTensorFloat):
        float_to_int_impl_type = FloatToIntImplType.FLOOR

    path, inputs = brevitas_file("mlp", act=FloorFloatAct)
    result = _csim(path, inputs, tmp_path)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: node 'node__symbolic' (Quant): scale ")
    assert lines[0].endswith("is not a power of two")


def test_truncated_file_is_one_line_naming_it(brevitas_file, tmp_path):
    path, inputs = brevitas_file("mlp")
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    result = _csim(cut, inputs, tmp_path)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {cut}: not an ONNX model (")
    with pytest.raises(GraphError, match="cut.onnx: not an ONNX model"):
        QGraph(cut)


def test_weights_without_values_are_refused_naming_them(brevitas_file, tmp_path):
    """Weights listed as graph inputs with no stored value cannot be cleaned away: named, one line."""
    import onnx

    path, _ = brevitas_file("mlp")
    model = onnx.load(str(path))
    weight = next(i for i in model.graph.input if i.name.startswith("slice"))
    kept = [init for init in model.graph.initializer if init.name != weight.name]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    with pytest.raises(GraphError, match=rf"bare.onnx: 2 graph inputs without a stored value \(input, {weight.name}\)"):
        QGraph(bare)
