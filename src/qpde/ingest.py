"""Model files into qpde: the one cleaning step every QONNX graph goes through before `QGraph`.

qpde's own export (`export.py`) and every file a user brings (`qpde csim FILE.onnx`, `QGraph(path)`)
are normalised by the same passes: qonnx's cleanup (Quant ops in qonnx's domain, shape inference,
unique parameter tensors, constant folding that keeps Quant nodes, transposes folded into weight
quantizers, unused tensors and weights-listed-as-graph-inputs removed) and qpde's own rewrite of Gemm
into MatMul [+ Add]. A cleaned model carries the metadata mark `qpde.cleaned`, so reloading qpde's
own exports costs nothing; a file without the mark is cleaned in memory on every load (the file on
disk is never rewritten).

Differences between the two entry points: qpde's export renames nodes and tensors as qonnx's
`cleanup_model` does (stable names across runs); a foreign file keeps its node and tensor names,
so a refusal names the node the user sees in their own file (nodes qpde creates are named after the
node they replace). Every failure is a `GraphError` naming the file, on one line.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.fold_constants import FoldConstants
from qonnx.transformation.general import (
    GiveUniqueNodeNames,
    GiveUniqueParameterTensors,
    RemoveStaticGraphInputs,
    RemoveUnusedTensors,
)
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.transformation.quant_constant_folding import FoldTransposeIntoQuantInit
from qonnx.util.cleanup import cleanup_model

from qpde.errors import GraphError
from qpde.passes import GemmToMatMulAdd

CLEAN_MARK = "qpde.cleaned"
CLEAN_VERSION = "1"  # bump when the passes change: older files are then cleaned again on load
QONNX_DOMAIN_OPS = ("Quant", "Trunc", "BipolarQuant")
PRESERVED_OPS = ["Quant", "BipolarQuant", "QuantizeLinear", "DequantizeLinear"]  # never constant-folded


def clean_model(model: ModelWrapper) -> ModelWrapper:
    """qpde's export path: qonnx's `cleanup_model`, Gemm → MatMul [+ Add], cleanup again; marked."""
    model = cleanup_model(model)
    model = model.transform(GemmToMatMulAdd())
    model = cleanup_model(model)
    mark_clean(model)
    return model


def is_clean(model: ModelWrapper) -> bool:
    return any(p.key == CLEAN_MARK and p.value == CLEAN_VERSION for p in model.model.metadata_props)


def mark_clean(model: ModelWrapper) -> None:
    props = {p.key: p.value for p in model.model.metadata_props}
    onnx.helper.set_model_props(model.model, {**props, CLEAN_MARK: CLEAN_VERSION})


def load_model(path: Path | str) -> ModelWrapper:
    """Read a QONNX file and return it cleaned (in memory). Unreadable files, missing weights and
    graphs qonnx's passes cannot process are refused with a one-line `GraphError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise GraphError(f"model file not found: {path}")
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, ValueError, … for non-ONNX or truncated bytes
        raise GraphError(f"{path}: not an ONNX model ({type(exc).__name__}: {_one_line(exc)})") from exc
    if not proto.graph.node:
        raise GraphError(f"{path}: ONNX graph has no nodes")
    model = ModelWrapper(proto)
    return model if is_clean(model) else import_model(model, str(path))


def import_model(model: ModelWrapper, where: str = "model") -> ModelWrapper:
    """Clean a model qpde did not export (Brevitas `export_qonnx`, qonnx tools, hand-built graphs)."""
    graph = model.graph
    initialized = {init.name for init in graph.initializer}
    data_inputs = [i.name for i in graph.input if i.name not in initialized]
    if len(data_inputs) != 1:
        raise GraphError(
            f"{where}: {len(data_inputs)} graph inputs without a stored value "
            f"({', '.join(data_inputs[:6]) or 'none'}); "
            "qpde needs exactly one data input, with every weight, scale and bit width stored in the file "
            "(export with the parameters included)")
    for node in graph.node:  # Brevitas and older tools write other domains for qonnx's own ops
        if node.op_type in QONNX_DOMAIN_OPS:
            node.domain = "qonnx.custom_op.general"
    names = [node.name for node in graph.node]
    passes = [InferShapes(), GiveUniqueParameterTensors(), FoldConstants(exclude_op_types=PRESERVED_OPS),
              FoldTransposeIntoQuantInit(), RemoveUnusedTensors(), RemoveStaticGraphInputs(),
              GemmToMatMulAdd(), FoldTransposeIntoQuantInit(), InferShapes(), RemoveUnusedTensors()]
    if "" in names or len(set(names)) != len(names):
        passes.insert(0, GiveUniqueNodeNames())  # names must tell nodes apart in refusals
    try:
        for transformation in passes:
            model = model.transform(transformation)
    except Exception as exc:  # qonnx/onnxruntime fail with assorted exception types
        raise GraphError(f"{where}: qonnx cleanup failed in {type(transformation).__name__} "
                         f"({type(exc).__name__}: {_one_line(exc)})") from exc
    mark_clean(model)
    return model


def _one_line(exc: Exception, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
