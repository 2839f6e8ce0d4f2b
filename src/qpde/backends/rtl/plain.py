"""Baselines for the LUT-ratio benchmark: each constant-matrix layer of a QGraph as (a) da4ml's
multiplierless adder graph and (b) plain Verilog with `*` multipliers (`y_j = Σ_i w_ij * x_i`,
same bit widths), both combinational, synthesized by the same Yosys run (benchmarks/rtl_lut_ratio.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qpde.qgraph import FixedType, QGraph


@dataclass
class Layer:
    """One constant-matrix layer: y[n_out] = x[n_in] @ W, replicated `copies` times in the model."""

    name: str
    weights: np.ndarray  # integers, [n_in, n_out]
    weight_exp: int
    in_type: FixedType
    out_type: FixedType
    copies: int


@dataclass
class Module:
    """A synthesizable module (the attributes synth_xilinx reads)."""

    name: str
    out_dir: Path
    verilog_files: list[Path]
    latency_cycles: int | None = None
    ii_cycles: int | None = None
    meta: dict = field(default_factory=dict)


def matmul_layers(graph: QGraph) -> list[Layer]:
    """Every constant-weight MatMul of the graph with its exact input/output types and its replica
    count (a per-point layer acts on every grid point: one copy per row in the fully parallel
    design). Activation × activation products have no constant matrix to compare: skipped."""
    layers = []
    for node in graph.nodes:
        if node.op_type != "MatMul" or node.input[1] not in graph.consts:
            continue
        w_type = graph.const_type(node.input[1])
        w = np.round(graph.consts[node.input[1]] / 2.0**w_type.exp).astype(np.int64)
        in_type = graph.types[node.input[0]]
        out_type = graph.types[node.output[0]]
        shape = _static_shape(graph, node.input[0])
        copies = int(np.prod(shape[:-1])) if shape else 1
        layers.append(Layer(node.name, w, w_type.exp, in_type, out_type, copies))
    return layers


def _static_shape(graph: QGraph, tensor: str) -> tuple[int, ...]:
    from qpde.golden import run

    env = run(graph, np.zeros((1, *graph.input_shape[1:])), keep=True)
    return tuple(env[tensor].shape)


def plain_verilog(layer: Layer, name: str) -> str:
    """`assign y_j = x_0 * w_0j + …` with signed constants; input and output widths as da4ml's
    (the exact types), so the two designs compute the same integers."""
    n_in, n_out = layer.weights.shape
    w_in, w_out = layer.in_type.width, layer.out_type.width
    signed_in = layer.in_type.signed
    lines = [f"module {name} (", f"    input [{n_in * w_in - 1}:0] model_inp,",
             f"    output [{n_out * w_out - 1}:0] model_out", ");"]
    for i in range(n_in):
        bits = f"model_inp[{(i + 1) * w_in - 1}:{i * w_in}]"
        if signed_in:
            lines.append(f"    wire signed [{w_in - 1}:0] x{i} = {bits};")
        else:
            lines.append(f"    wire signed [{w_in}:0] x{i} = {{1'b0, {bits}}};")
    for j in range(n_out):
        terms = []
        for i in range(n_in):
            w = int(layer.weights[i, j])
            if w == 0:
                continue
            width = abs(w).bit_length() + 1
            terms.append(f"x{i} * {'-' if w < 0 else ''}{width}'sd{abs(w)}")
        expr = " + ".join(terms) if terms else f"{w_out}'sd0"
        lines.append(f"    wire signed [{w_out - 1}:0] y{j} = {expr};")
        lines.append(f"    assign model_out[{(j + 1) * w_out - 1}:{j * w_out}] = y{j};")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


def write_plain(layer: Layer, out_dir: Path, name: str) -> Module:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.v"
    path.write_text(plain_verilog(layer, name))
    return Module(name, out_dir, [path.resolve()])


def write_da4ml(layer: Layer, out_dir: Path, name: str, solver_options: dict | None = None) -> Module:
    """The same layer traced by da4ml (combinational, no output quantization)."""
    from da4ml.codegen import VerilogModel
    from da4ml.trace import FixedVariableArray, HWConfig, comb_trace

    from qpde.backends.rtl.trace import DEFAULT_SOLVER_OPTIONS, _exact_constants

    t = layer.in_type
    step = 2.0**t.exp
    n_in = layer.weights.shape[0]
    with _exact_constants():
        x = FixedVariableArray.from_lhs(np.full(n_in, t.lo * step), np.full(n_in, t.hi * step), np.full(n_in, step),
                                        hwconf=HWConfig(1, -1, -1),
                                        solver_options=dict(solver_options or DEFAULT_SOLVER_OPTIONS))
        y = x @ (layer.weights.astype(np.float64) * 2.0**layer.weight_exp)
        comb = comb_trace(x, y, keep_dead_inputs=True)
        out_dir = Path(out_dir)
        VerilogModel(comb, name, out_dir, latency_cutoff=-1, print_latency=False).write()
    src = out_dir / "src"
    files = [src / f"{name}.v"] + sorted((src / "static").glob("*.v"))
    return Module(name, out_dir.resolve(), [f.resolve() for f in files], meta={"estimate_lut": float(comb.cost)})
