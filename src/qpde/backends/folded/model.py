"""Integer model of the stream units: runs a Dataflow on integer codes exactly (numpy int64 or
Python ints), the reference the compiler is checked with against qpde.golden before any RTL."""

from __future__ import annotations

import numpy as np

from qpde.backends.folded.graph import Dataflow, Unit
from qpde.errors import GraphError
from qpde.golden import quantized_input
from qpde.qgraph import QGraph


def input_codes(graph: QGraph, df: Dataflow, x: np.ndarray) -> np.ndarray:
    """Raw float inputs [n, …] → the accelerator's input codes [n, numel] (int64), exactly."""
    t = df.streams[df.input].type
    q = quantized_input(graph, np.asarray(x, dtype=np.float64)) / 2.0**t.exp
    codes = np.round(q)
    if not np.array_equal(codes, q):
        raise GraphError("input quantizer output is not on its grid")
    return codes.reshape(len(codes), -1).astype(np.int64)


def to_values(df: Dataflow, stream: str, codes: np.ndarray) -> np.ndarray:
    """Codes → float64 values (exact: codes are below 2^53)."""
    return np.asarray(codes, dtype=np.float64) * 2.0 ** df.streams[stream].type.exp


def _ints(a: np.ndarray, bits: int) -> np.ndarray:
    return a.astype(np.int64) if bits < 63 else a.astype(object)


def run_unit(df: Dataflow, unit: Unit, args: list[np.ndarray]) -> list[np.ndarray]:
    p = unit.params
    if unit.kind in ("mvau", "cmvm"):  # cmvm: the same sums, from da4ml's adder graph
        x = args[0]
        n = len(x)
        w = _ints(p["weights"], p["acc_w"])
        acc = (_ints(x, p["acc_w"]).reshape(n, p["rows"], p["K"]) @ w) << p["pshift"]
        if p["bias"] is not None:
            acc = acc + _ints(p["bias"], p["acc_w"])
        return [p["requant"].apply(acc).reshape(n, -1)]
    if unit.kind in ("outer", "mvau_stream"):  # activation @ activation, exact, per field
        n = len(args[0])
        a, b = (_ints(np.asarray(v), p["acc_w"]) for v in args)
        if unit.kind == "outer":  # A streamed token-major [K, M]: the product is Aᵀ B
            a = a.reshape(n, p["K"], p["M"]).transpose(0, 2, 1)
        acc = a.reshape(n, p["M"], p["K"]) @ b.reshape(n, p["K"], p["P"]) + p["offset"]
        return [p["requant"].apply(acc).reshape(n, -1)]
    if unit.kind == "add":
        a, b = (_ints(v, p["sum_w"]) for v in args)
        return [p["requant"].apply((a << p["ashift"]) + (b << p["bshift"]) + p.get("offset", 0))]
    if unit.kind == "map":
        return [p["requant"].apply(args[0])]
    if unit.kind == "transpose":
        x = args[0]
        # every [R, C] tensor of the field (several when R·C is one row of a mode-major MVAU)
        return [x.reshape(len(x), -1, p["R"], p["C"]).transpose(0, 1, 3, 2).reshape(len(x), -1)]
    if unit.kind == "fork":
        return [args[0]] * len(unit.outputs)
    if unit.kind in ("fifo", "dwc"):
        return [args[0]]
    if unit.kind in SPATIAL_KINDS:
        return [run_spatial(unit, args)]
    raise GraphError(f"integer model: no unit kind {unit.kind!r} ({unit.name})")


def run(df: Dataflow, codes: np.ndarray, *, keep: bool = False):
    """Input codes [n, numel] → output codes [n, numel] (or every stream's codes with keep=True)."""
    env = {df.input: np.asarray(codes)}
    for unit in df.units:
        for name, value in zip(unit.outputs, run_unit(df, unit, [env[s] for s in unit.inputs])):
            env[name] = value
    return env if keep else env[df.output]


def run_values(graph: QGraph, df: Dataflow, x: np.ndarray) -> np.ndarray:
    """Raw inputs → model outputs in the model's units, shaped like qpde.golden.run."""
    out = to_values(df, df.output, run(df, input_codes(graph, df, x)))
    return out.reshape(len(out), *graph.output_shape[1:])


# ---- spatial units on channels-last streams [n, points·C] (point-major, raster order) -------------
SPATIAL_KINDS = ("swu", "pool", "upsample", "concat", "swu2d", "pool2d", "upsample2d")


def grid2d(unit: Unit) -> tuple[int, int, int, int]:
    """(rows, columns, factor along the rows, factor along the columns) of a swu/pool/upsample unit,
    the factor being the window size K or the pooling/upsampling 2. A 1-D field of L points is the
    L×1 grid (one point a row) with its factor along the rows only: the one 2-D hdl unit of each kind
    runs both (codegen), and these models are the same arithmetic."""
    p = unit.params
    f = p["K"] if unit.kind in ("swu", "swu2d") else 2
    return (p["H"], p["W"], f, f) if unit.kind.endswith("2d") else (p["L"], 1, f, 1)


def run_spatial(unit: Unit, args: list[np.ndarray]) -> np.ndarray:
    p = unit.params
    n = len(args[0])
    if unit.kind != "concat":
        h, w, fh, fw = grid2d(unit)
        x = np.asarray(args[0]).reshape(n, h, w, p["C"])
    if unit.kind in ("swu", "swu2d"):  # per output point: taps (ki, kj) in raster order (zero codes
        # outside the grid), then channels
        ph, pw = fh // 2, fw // 2
        padded = np.zeros((n, h + 2 * ph, w + 2 * pw, p["C"]), dtype=x.dtype)
        padded[:, ph : ph + h, pw : pw + w] = x
        win = np.stack([padded[:, i : i + h, j : j + w] for i in range(fh) for j in range(fw)], axis=3)
        return win.reshape(n, -1)
    if unit.kind in ("pool", "pool2d"):
        return x.reshape(n, h // fh, fh, w // fw, fw, p["C"]).max(axis=(2, 4)).reshape(n, -1)
    if unit.kind in ("upsample", "upsample2d"):
        return np.repeat(np.repeat(x, fh, axis=1), fw, axis=2).reshape(n, -1)
    if unit.kind == "concat":
        a = np.asarray(args[0]).astype(np.int64).reshape(n, p["L"], p["CA"]) << p["ashift"]
        b = np.asarray(args[1]).astype(np.int64).reshape(n, p["L"], p["CB"]) << p["bshift"]
        return np.concatenate([a, b], axis=2).reshape(n, -1)
    raise GraphError(f"integer model: no spatial unit kind {unit.kind!r} ({unit.name})")
