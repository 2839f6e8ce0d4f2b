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


def fold_channel_gains(model):
    """Fold every Mul by a constant vector of powers of two along the last axis (the FNO's per-mode
    spectral gains, `qpde.models.fno.SpectralConv`) into the constant weight of the MatMul next to
    it, so no backend sees a per-channel Mul:

        (x @ W) · c  =  x @ (W · diag(c))        (a gain after a DFT stage: columns scaled)
        (x · c) @ W  =  x @ (diag(c) · W)        (a gain undone before an inverse DFT: rows scaled)

    Both are exact: c_j = 2^g_j only moves binary points. The new weight is written as a per-tensor
    Quant at the finest exponent of its values, e + min g, and `bits + max g − min g` bits (the
    integer codes of the old weight shifted left by g_j − min g: they fit exactly, and BOPs and
    every backend's weight width see the wider constant). A weight shared by several MatMuls (the
    DFT matrix of every layer) gets its own Quant per gain. Other Muls are left to QGraph (which
    admits only a scalar power of two). Returns the model (modified in place); re-run qonnx cleanup."""
    from qpde.errors import GraphError

    graph = model.graph
    inits = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    for mul in [n for n in graph.node if n.op_type == "Mul"]:
        consts = [name for name in mul.input if name in inits]
        if len(consts) != 1 or inits[consts[0]].size == 1:
            continue
        gain = inits[consts[0]].astype(np.float64)
        if any(d != 1 for d in gain.shape[:-1]):
            continue  # not along the last axis only: QGraph refuses it with the node's name
        gain = gain.reshape(-1)
        exps = np.log2(gain, where=gain > 0, out=np.full(gain.shape, np.nan))
        if not np.all(np.isfinite(exps) & (exps == np.round(exps))):
            raise GraphError(f"node {mul.name!r} (Mul): per-channel gains {gain[:4]} are not all positive powers "
                             "of two (not exact in fixed point)")
        dynamic = next(name for name in mul.input if name != consts[0])
        users = [n for n in graph.node if mul.output[0] in n.input]
        before, after = producer.get(dynamic), users[0] if len(users) == 1 else None
        uses_of_dynamic = [n for n in graph.node if dynamic in n.input]
        if before is not None and before.op_type == "MatMul" and uses_of_dynamic == [mul] and \
                _weight_quant(before, producer, inits) is not None:
            matmul, axis = before, 1  # gain on the product's columns
        elif after is not None and after.op_type == "MatMul" and after.input[0] == mul.output[0] and \
                _weight_quant(after, producer, inits) is not None:
            matmul, axis = after, 0  # gain on the weight's rows (the contraction axis)
        else:
            raise GraphError(f"node {mul.name!r} (Mul): a per-channel power-of-two gain must be next to a MatMul "
                             "with a quantized constant weight, into which it is folded")
        quant = _weight_quant(matmul, producer, inits)
        _set_gained_weight(model, matmul, quant, inits, exps.astype(int), axis)
        if axis == 1:
            matmul.output[0] = mul.output[0]  # the product now carries the gain itself
        else:
            matmul.input[0] = dynamic
        graph.node.remove(mul)
    _remove_dead_nodes(model)
    return model


def _weight_quant(matmul, producer, inits):
    """The Quant node producing a MatMul's weight from constants (a weight quantizer), or None."""
    node = producer.get(matmul.input[1])
    if node is None or node.op_type != "Quant" or not all(n in inits for n in node.input):
        return None
    return node


def _set_gained_weight(model, matmul, quant, inits, exps: np.ndarray, axis: int) -> None:
    from qpde.errors import GraphError
    from qpde.ops import attr

    weight, scale, zeropt, bits = (inits[name].astype(np.float64) for name in quant.input)
    where = f"node {quant.name!r} (Quant)"
    if weight.ndim != 2 or weight.shape[axis] != exps.size:
        raise GraphError(f"{where}: a weight {weight.shape} cannot take {exps.size} per-channel gains on axis {axis}")
    scale_exps = np.log2(scale)
    if np.any(zeropt != 0) or bits.size != 1 or not np.all(scale_exps == np.round(scale_exps)):
        raise GraphError(f"{where}: gains fold only into power-of-two weight quantizers with zero point 0")
    n_bits, signed, narrow = int(bits.ravel()[0]), bool(attr(quant, "signed", 1)), bool(attr(quant, "narrow", 0))
    qmin = -(2 ** (n_bits - 1)) + int(narrow) if signed else 0
    qmax = 2 ** (n_bits - int(signed)) - 1
    x = weight / scale
    codes = np.clip(np.floor(x) if attr(quant, "rounding_mode", "ROUND") == "FLOOR" else np.round(x), qmin, qmax)
    shape = (-1, 1) if axis == 0 else (1, -1)
    values = codes * scale * 2.0 ** exps.reshape(shape)  # exact: powers of two
    total_exps = np.broadcast_to(scale_exps, weight.shape) + exps.reshape(shape)
    new_exp = int(total_exps.min())
    new_bits = n_bits + int(total_exps.max()) - new_exp
    ints = values / 2.0**new_exp
    bound = 2 ** (new_bits - int(signed)) - 1
    if not (np.array_equal(ints, np.round(ints)) and np.abs(ints).max(initial=0) <= bound and _f32_exact(values)):
        raise GraphError(f"{where}: the gained weight is not exact on {new_bits} bits")
    names = []
    for value in (values, np.array(2.0**new_exp), np.array(0.0), np.array(float(new_bits))):
        name = model.make_new_valueinfo_name()
        model.graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), name))
        names.append(name)
    out = model.make_new_valueinfo_name()
    gained = helper.make_node("Quant", names, [out], name=f"{quant.name}_gained_{matmul.name}", domain=quant.domain)
    gained.attribute.extend(quant.attribute)
    graph = model.graph
    graph.node.insert(list(graph.node).index(matmul), gained)
    matmul.input[1] = out


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
