"""Small QONNX graph rewrites in qonnx's Transformation style (apply → (model, changed))."""

from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper
from qonnx.transformation.base import Transformation


class GemmToMatMulAdd(Transformation):
    """Gemm(A, B[, C]) with alpha = beta = 1, transA = 0 → MatMul(A, Bᵀ if transB) [+ Add(C)].

    qonnx's GemmToMatMul requires the C input; Brevitas exports bias-free linears without it."""

    def apply(self, model):
        graph = model.graph
        for index, node in enumerate(graph.node):
            if node.op_type != "Gemm":
                continue
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0 or attrs.get("transA", 0):
                continue  # left for the graph check to refuse with the node's name
            a, b = node.input[0], node.input[1]
            new = []
            if attrs.get("transB", 0):
                b_t = model.make_new_valueinfo_name()
                new.append(helper.make_node("Transpose", [b], [b_t], perm=[1, 0], name=f"{node.name}_transB"))
                b = b_t
            has_bias = len(node.input) > 2 and node.input[2]
            product = model.make_new_valueinfo_name() if has_bias else node.output[0]
            new.append(helper.make_node("MatMul", [a, b], [product], name=f"{node.name}_matmul"))
            if has_bias:
                new.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}_bias"))
            graph.node.remove(node)
            for offset, item in enumerate(new):
                graph.node.insert(index + offset, item)
            return model, True
        return model, False


def _set_rounding(node, mode: str) -> None:
    for attr in node.attribute:
        if attr.name == "rounding_mode":
            attr.s = mode.encode()
            return
    node.attribute.append(helper.make_attribute("rounding_mode", mode))


def _f32_exact(values: np.ndarray) -> bool:
    return bool(np.array_equal(values.astype(np.float32).astype(np.float64), values))


def round_half_up_to_floor(model):
    """Rewrite every activation Quant exported with rounding_mode ROUND (qpde's round-half-up
    activation quantizers, `qpde.quant.RoundActQuant`) as a FLOOR Quant, adding half its LSB first:

        round_half_up(x / s) = floor(x / s + 1/2) = floor((x + s/2) / s)     (s = 2^e)

    exactly, for every real x (ties x/s = k + 1/2 go up in both), and saturation is applied to the
    same integer afterwards, so clip(·) agrees too. The s/2 goes where the backends already have an
    adder:
    - into the constant of a preceding bias Add (or a Conv's bias) when the sum is exact in float32
      (ONNX initializers are float32);
    - across a ReLU: relu(x + s/2) floors to the same integer as relu(x) + s/2 for every x (x ≥ 0:
      equal; x < 0: relu(x + s/2) ∈ [0, s/2) and s/2 both floor to 0), so a Quant after Relu gets
      its s/2 before the Relu, i.e. in the bias of the layer before it;
    - else as an explicit Add of the constant s/2 in front of the Quant (or its Relu): after a
      bias-free MatMul (a DFT stage) it becomes the Dense's bias in hls4ml; after an Add of two
      activations it is a constant add (hls4ml: a BatchNormalization with scale 1, exact).
    A Quant whose input is already on its grid (input exponent ≥ e) rounds nothing: it is only
    switched to FLOOR. Returns the model (modified in place); the caller re-runs qonnx cleanup."""
    from qpde.errors import GraphError
    from qpde.qgraph import QGraph

    graph = model.graph
    const = {init.name for init in graph.initializer}
    for node in graph.node:
        if node.input and all(n in const for n in node.input if n):
            const.update(node.output)
    rounds = [n for n in graph.node if n.op_type == "Quant" and n.input[0] not in const
              and next((helper.get_attribute_value(a) for a in n.attribute if a.name == "rounding_mode"),
                       b"ROUND") in (b"ROUND", "ROUND")]
    if not rounds:
        return model
    for node in rounds:
        _set_rounding(node, "FLOOR")
    checked = QGraph(model)  # types of the FLOOR graph: where half an LSB is needed, and its value
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    plans = []  # (kind, node, index or consumer, value)
    for q in rounds:
        in_type = checked.types.get(q.input[0])
        if in_type is None:
            raise GraphError(f"node {q.name!r}: a round-half-up Quant on the model input; the input "
                             "quantizer must be FLOOR (qpde.quant.act_kwargs(host=True))")
        exp = checked.quant_params(q, constant=False).exp
        if in_type.exp >= exp:
            continue  # on the grid already: round = floor = identity before saturation
        half = 2.0 ** (exp - 1)
        target, user = q.input[0], q
        prev = producer.get(target)
        if prev is not None and prev.op_type == "Relu" and len(consumers.get(target, [])) == 1:
            target, user = prev.input[0], prev
            prev = producer.get(target)
        single = len(consumers.get(target, [])) == 1 and target != graph.output[0].name
        if prev is not None and single and prev.op_type == "Add":
            index = next((i for i, n in enumerate(prev.input) if n in checked.consts), None)
            if index is not None:
                value = checked.consts[prev.input[index]] + half
                if _f32_exact(value):
                    plans.append(("bias", prev, index, value))
                    continue
        if prev is not None and single and prev.op_type == "Conv":
            weight = checked.consts[prev.input[1]]
            bias = checked.consts[prev.input[2]] if len(prev.input) > 2 and prev.input[2] else np.zeros(weight.shape[0])
            value = bias.reshape(-1) + half
            if _f32_exact(value):
                plans.append(("bias", prev, 2, value))
                continue
        size = 1
        if prev is not None and prev.op_type == "MatMul" and prev.input[1] in checked.consts:
            size = checked.consts[prev.input[1]].shape[-1]  # a full bias vector: hls4ml's Dense takes it
        plans.append(("add", user, target, np.full(size, half)))
    for kind, node, where, value in plans:
        name = model.make_new_valueinfo_name()
        graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), name))
        if kind == "bias":
            while len(node.input) <= where:
                node.input.append("")
            node.input[where] = name
        else:
            out = model.make_new_valueinfo_name()
            index = list(graph.node).index(node)
            for i, n in enumerate(node.input):
                if n == where:
                    node.input[i] = out
            graph.node.insert(index, helper.make_node("Add", [where, name], [out], name=f"{node.name}_half_lsb"))
    _remove_dead_nodes(model)
    return model


def _remove_dead_nodes(model) -> None:
    """Drop nodes none of whose outputs is used (e.g. a bias quantizer whose output was replaced)."""
    graph = model.graph
    while True:
        used = {n for node in graph.node for n in node.input} | {o.name for o in graph.output}
        dead = [node for node in graph.node if not any(o in used for o in node.output)]
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)
