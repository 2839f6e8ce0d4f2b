"""Small QONNX graph rewrites in qonnx's Transformation style (apply → (model, changed))."""

from __future__ import annotations

from onnx import helper
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
