"""One tiny QONNX graph per op of qpde.ops, and an independent exact reference executor.

Every graph quantizes its input with a FLOOR Quant (the accelerator boundary), applies the op under
test (with the few nodes it needs around it) and quantizes the result. `reference` executes a graph
in exact rational arithmetic (fractions.Fraction) straight from the ONNX/QONNX definitions, sharing
no code with qpde's golden executor, so `golden.run == reference` checks each op's golden entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

QONNX_DOMAIN = "qonnx.custom_op.general"


@dataclass
class Case:
    """A tiny graph: its nodes, constants, input shape and a name; `ops` are the ops it tests;
    `unmapped`: backend → the op it must refuse (by name) in this graph."""

    name: str
    ops: tuple[str, ...]
    in_shape: tuple[int, ...]
    unmapped: dict[str, str] = field(default_factory=dict)
    nodes: list = field(default_factory=list)
    inits: dict[str, np.ndarray] = field(default_factory=dict)

    def quant(self, x: str, out: str, exp: int, bits: int, *, signed: bool = True, narrow: bool = False) -> None:
        name = f"q_{out}"
        for suffix, value in (("s", 2.0**exp), ("z", 0.0), ("b", float(bits))):
            self.inits[f"{name}_{suffix}"] = np.array(value, dtype=np.float32)
        self.nodes.append(helper.make_node("Quant", [x, f"{name}_s", f"{name}_z", f"{name}_b"], [out], name=name,
                                           domain=QONNX_DOMAIN, rounding_mode="FLOOR", signed=int(signed),
                                           narrow=int(narrow)))

    def node(self, op: str, inputs: list[str], out: str, **attrs) -> None:
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{op.lower()}_{out}", **attrs))

    def const(self, name: str, values, dtype=np.float32) -> str:
        self.inits[name] = np.asarray(values, dtype=dtype)
        return name

    def model(self) -> onnx.ModelProto:
        inits = [numpy_helper.from_array(v, k) for k, v in self.inits.items()]
        graph = helper.make_graph(self.nodes, self.name,
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(self.in_shape))],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                       helper.make_opsetid(QONNX_DOMAIN, 2)])

    def save(self, folder: Path) -> Path:
        path = Path(folder) / f"{self.name}.onnx"
        onnx.save(self.model(), str(path))
        return path


def _weights(shape, bits: int, exp: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-(2 ** (bits - 1)) + 1, 2 ** (bits - 1), size=shape) * 2.0**exp


def cases() -> list[Case]:
    out = []

    c = Case("quant", ("Quant",), (1, 6))  # a FLOOR requantization: coarser, unsigned and narrow
    c.quant("x", "xq", -3, 6)
    c.quant("xq", "y", -1, 3, signed=False)
    out.append(c)

    c = Case("quant_narrow", ("Quant",), (1, 6))
    c.quant("x", "xq", -3, 6)
    c.quant("xq", "y", -2, 3, narrow=True)
    out.append(c)

    c = Case("matmul", ("MatMul",), (1, 4))
    c.quant("x", "xq", -2, 4)
    c.node("MatMul", ["xq", c.const("W", _weights((4, 3), 3, -2, 1))], "h")
    c.quant("h", "y", -3, 8)
    out.append(c)

    c = Case("matmul_aa", ("MatMul", "Transpose"), (1, 2, 3))  # activation × activation: [1,2,3] @ [1,3,2]
    c.quant("x", "xq", -2, 4)
    c.node("Transpose", ["xq"], "xt", perm=[0, 2, 1])
    c.node("MatMul", ["xq", "xt"], "h")
    c.quant("h", "y", -3, 8)
    out.append(c)

    c = Case("add_bias", ("Add", "MatMul"), (1, 4))
    c.quant("x", "xq", -2, 4)
    c.node("MatMul", ["xq", c.const("W", _weights((4, 3), 3, -1, 2))], "h")
    c.node("Add", ["h", c.const("b", _weights((3,), 6, -5, 3))], "hb")
    c.quant("hb", "y", -2, 6)
    out.append(c)

    c = Case("add_const", ("Add",), (1, 4), {"folded": "Add"})  # a constant Add with no MatMul before it
    c.quant("x", "xq", -2, 4)
    c.node("Add", ["xq", c.const("half", 2.0**-3)], "h")
    c.quant("h", "y", -2, 5)
    out.append(c)

    c = Case("add_two", ("Add", "Relu"), (1, 4))  # activation + activation on different grids
    c.quant("x", "xq", -2, 4)
    c.node("Relu", ["xq"], "r")
    c.quant("r", "rq", -1, 3, signed=False)
    c.node("Add", ["xq", "rq"], "h")
    c.quant("h", "y", -2, 6)
    out.append(c)

    c = Case("mul", ("Mul",), (1, 4), {"hls4ml": "Mul", "folded": "Mul"})  # by a power of two: moves the binary point
    c.quant("x", "xq", -2, 4)
    c.node("Mul", ["xq", c.const("k", 0.25)], "h")
    c.quant("h", "y", -3, 4)
    out.append(c)

    c = Case("mul_after_matmul_aa", ("MatMul", "Mul", "Transpose"), (1, 2, 3))  # hls4ml folds this Mul
    c.quant("x", "xq", -2, 4)
    c.node("Transpose", ["xq"], "xt", perm=[0, 2, 1])
    c.node("MatMul", ["xq", "xt"], "h")
    c.node("Mul", ["h", c.const("k", 0.5)], "hs")
    c.quant("hs", "y", -3, 8)
    out.append(c)

    c = Case("relu", ("Relu",), (1, 6))
    c.quant("x", "xq", -2, 4)
    c.node("Relu", ["xq"], "h")
    c.quant("h", "y", -2, 4)
    out.append(c)

    c = Case("reshape", ("Reshape",), (1, 6))
    c.quant("x", "xq", -2, 4)
    c.node("Reshape", ["xq", c.const("shape", [1, 2, 3], np.int64)], "h")
    c.node("Reshape", ["h", c.const("shape2", [1, 6], np.int64)], "h2")
    c.quant("h2", "y", -1, 4)
    out.append(c)

    c = Case("transpose", ("Transpose",), (1, 2, 3))
    c.quant("x", "xq", -2, 4)
    c.node("Transpose", ["xq"], "h", perm=[0, 2, 1])
    c.quant("h", "y", -1, 4)
    out.append(c)

    c = Case("unsqueeze_squeeze", ("Unsqueeze", "Squeeze"), (1, 6))  # shape ops before the input Quant
    c.node("Unsqueeze", ["x", c.const("ax", [1], np.int64)], "xu")
    c.quant("xu", "xq", -2, 4)
    c.node("Squeeze", ["xq", c.const("ax2", [1], np.int64)], "h")
    c.quant("h", "y", -1, 4)
    out.append(c)

    c = Case("flatten_identity", ("Flatten", "Identity"), (1, 2, 3))
    c.quant("x", "xq", -2, 4)
    c.node("Identity", ["xq"], "xi")
    c.node("Flatten", ["xi"], "h", axis=1)
    c.quant("h", "y", -1, 4)
    out.append(c)

    c = Case("conv1d", ("Conv",), (1, 2, 8))
    c.quant("x", "xq", -2, 4)
    c.node("Conv", ["xq", c.const("W", _weights((3, 2, 3), 3, -2, 4)), c.const("b", _weights((3,), 5, -4, 5))], "h",
           kernel_shape=[3], pads=[1, 1])
    c.quant("h", "y", -2, 8)
    out.append(c)

    c = Case("conv2d", ("Conv",), (1, 1, 4, 4))
    c.quant("x", "xq", -2, 4)
    c.node("Conv", ["xq", c.const("W", _weights((2, 1, 3, 3), 3, -2, 6))], "h", kernel_shape=[3, 3],
           pads=[1, 1, 1, 1])
    c.quant("h", "y", -2, 8)
    out.append(c)

    c = Case("maxpool", ("MaxPool",), (1, 2, 8))
    c.quant("x", "xq", -2, 4)
    c.node("MaxPool", ["xq"], "h", kernel_shape=[2], strides=[2])
    c.quant("h", "y", -1, 4)
    out.append(c)

    c = Case("resize", ("Resize",), (1, 2, 4))
    c.quant("x", "xq", -2, 4)
    c.node("Resize", ["xq", "", c.const("scales", [1.0, 1.0, 2.0])], "h", mode="nearest",
           coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    c.quant("h", "y", -1, 4)
    out.append(c)

    c = Case("concat", ("Concat", "Relu"), (1, 1, 8))
    c.quant("x", "xq", -2, 4)
    c.node("Relu", ["xq"], "r")
    c.quant("r", "rq", -1, 3, signed=False)
    c.node("Concat", ["xq", "rq"], "h", axis=1)
    c.quant("h", "y", -2, 5)
    out.append(c)
    return out


# ---- exact rational reference --------------------------------------------------------------------
def _frac(a) -> np.ndarray:
    return np.vectorize(Fraction, otypes=[object])(np.asarray(a, dtype=np.float64))


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _quant_ref(x: np.ndarray, scale: Fraction, bits: int, signed: bool, narrow: bool) -> np.ndarray:
    qmin = (-(2 ** (bits - 1)) + int(narrow)) if signed else 0
    qmax = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    return np.vectorize(lambda v: min(max(math.floor(v / scale), qmin), qmax) * scale, otypes=[object])(x)


def _conv_ref(x, w, b, pads):
    """Direct definition: y[n, o, p] = b[o] + Σ_{c, k} w[o, c, k] · x_padded[n, c, p + k]."""
    n_axes = x.ndim - 2
    padded = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[i + n_axes]) for i in range(n_axes)],
                    constant_values=Fraction(0))
    c_out, c_in, *kernel = w.shape
    out_shape = [s - k + 1 for s, k in zip(padded.shape[2:], kernel)]
    y = np.empty((x.shape[0], c_out, *out_shape), dtype=object)
    for n in range(x.shape[0]):
        for o in range(c_out):
            for pos in np.ndindex(*out_shape):
                acc = b[o] if b is not None else Fraction(0)
                for c in range(c_in):
                    for tap in np.ndindex(*kernel):
                        acc += w[(o, c, *tap)] * padded[(n, c, *(p + t for p, t in zip(pos, tap)))]
                y[(n, o, *pos)] = acc
    return y


def reference(case: Case, x: np.ndarray) -> np.ndarray:
    """Execute the case's graph on x [n, *in_shape[1:]] exactly; returns Fractions (object array)."""
    batch = x.shape[0]
    env = {"x": _frac(x)}
    consts = {k: _frac(v) if v.dtype.kind == "f" else v for k, v in case.inits.items()}
    for node in case.nodes:
        args = [env.get(n, consts.get(n)) for n in node.input]
        a = _attrs(node)
        op = node.op_type
        if op == "Quant":
            scale, bits = args[1].item(), int(args[3].item())
            out = _quant_ref(args[0], scale, bits, bool(a.get("signed", 1)), bool(a.get("narrow", 0)))
        elif op == "MatMul":
            lhs, rhs = args
            if rhs.ndim == 3:  # activation × activation, one product per sample
                out = np.array([lhs[n].dot(rhs[n]) for n in range(lhs.shape[0])], dtype=object)
            else:
                out = lhs.dot(rhs)
        elif op == "Add":
            out = args[0] + args[1]
        elif op == "Mul":
            out = args[0] * args[1]
        elif op == "Relu":
            out = np.vectorize(lambda v: max(v, Fraction(0)), otypes=[object])(args[0])
        elif op == "Reshape":
            shape = [int(s) for s in case.inits[node.input[1]]]
            out = args[0].reshape([batch] + shape[1:])
        elif op == "Transpose":
            out = np.transpose(args[0], a["perm"])
        elif op == "Unsqueeze":
            out = np.expand_dims(args[0], tuple(int(v) for v in case.inits[node.input[1]]))
        elif op == "Squeeze":
            out = np.squeeze(args[0], tuple(int(v) for v in case.inits[node.input[1]]))
        elif op == "Flatten":
            out = args[0].reshape(batch, -1)
        elif op == "Identity":
            out = args[0]
        elif op == "Conv":
            out = _conv_ref(args[0], args[1], args[2] if len(args) > 2 else None, a.get("pads"))
        elif op == "MaxPool":
            k = a["kernel_shape"][0]
            v = args[0]
            out = np.empty(v.shape[:-1] + (v.shape[-1] // k,), dtype=object)
            for idx in np.ndindex(*out.shape):
                out[idx] = max(v[idx[:-1] + (idx[-1] * k + t,)] for t in range(k))
        elif op == "Resize":  # asymmetric + floor: source index floor(i / scale)
            scale = int(case.inits[node.input[2]][-1])
            v = args[0]
            out = v[..., [i // scale for i in range(v.shape[-1] * scale)]]
        elif op == "Concat":
            out = np.concatenate(args, axis=a["axis"])
        else:
            raise NotImplementedError(op)
        env[node.output[0]] = out
    return env["y"]


def edge_inputs(case: Case, n_random: int = 24, seed: int = 0) -> np.ndarray:
    """Every level of the input Quant (4 bits, 2^-2 here), ties half an LSB above each, values just
    below each, saturation both ways, and random values: all float32-exact."""
    levels = np.arange(-8, 8) * 0.25
    candidates = np.concatenate([levels, levels + 0.125, levels - 2.0**-10, [-4.0, 4.0, -100.0, 100.0]])
    rng = np.random.default_rng(seed)
    size = int(np.prod(case.in_shape[1:]))
    rows = [np.resize(np.roll(candidates, -i * size), size) for i in range(-(-len(candidates) // size) + 1)]
    rows += list(rng.choice(candidates, size=(n_random, size)))
    return np.asarray(rows, dtype=np.float64).reshape(-1, *case.in_shape[1:])
