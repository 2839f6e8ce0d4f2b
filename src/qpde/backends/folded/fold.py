"""Folding: per-layer parallelism, its validation, a cycle model and a SetFolding-style optimizer.

A folding maps layer names (Dataflow unit names) to parallelism:
- mvau: {"pe": PE, "simd": SIMD}, PE | C (outputs per row), SIMD | K (inputs per row);
- add, map: {"lanes": L}, L | elements per field;
- transpose [R, C] → [C, R]: {"lanes": L}, L | gcd(R, C) (skewed banks: an L-wide row beat in, an
  L-wide column beat out per cycle);
- pool, upsample, concat: {"lanes": L}, L | channels (a beat never straddles two points);
- outer, mvau_stream (activation × activation): {"lanes": L}, codes per beat on both inputs and the
  output; outer (Aᵀ B, tokens of M and P codes) L | gcd(M, P), mvau_stream (A B, rows of K codes, B
  and Y rows of P) L | gcd(K, P), so a beat never straddles two tokens or rows;
- swu: not in a folding; it runs at its MVAU's SIMD, which must divide the conv's C_in.
Layers missing from a folding run at parallelism 1.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from qpde.backends.folded.graph import Dataflow, Unit
from qpde.errors import ConfigError



@dataclass
class Folding:
    layers: dict[str, dict[str, int]] = field(default_factory=dict)
    ii_cycles: int = 0  # the cycle model's cycles per field (slowest unit, converters included)
    bottleneck: str = ""  # the slowest unit
    target_met: bool | None = None  # None: no target given
    note: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @staticmethod
    def from_json(text: str) -> Folding:
        return Folding(**json.loads(text))


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def unit_parallelism(df: Dataflow, unit: Unit, folding: dict) -> dict[str, int]:
    """The unit's validated parallelism (defaults 1); ConfigError names the layer otherwise."""
    spec = dict(folding.get(unit.name, {}))
    p = unit.params
    if unit.kind == "mvau":
        allowed = {"pe", "simd"}
        pe, simd = int(spec.get("pe", 1)), int(spec.get("simd", 1))
        if pe < 1 or p["C"] % pe:
            raise ConfigError(f"layer {unit.name!r} (mvau {p['K']}×{p['C']}): PE {pe} does not divide its "
                              f"{p['C']} outputs; valid PE: {_divisors(p['C'])}")
        if simd < 1 or p["K"] % simd:
            raise ConfigError(f"layer {unit.name!r} (mvau {p['K']}×{p['C']}): SIMD {simd} does not divide its "
                              f"{p['K']} inputs; valid SIMD: {_divisors(p['K'])}")
        out = {"pe": pe, "simd": simd}
    elif unit.kind in ("add", "map"):
        allowed = {"lanes"}
        n = df.streams[unit.outputs[0]].numel
        lanes = int(spec.get("lanes", 1))
        if lanes < 1 or n % lanes:
            raise ConfigError(f"layer {unit.name!r} ({unit.kind}): lanes {lanes} does not divide its {n} elements "
                              "per field")
        out = {"lanes": lanes}
    elif unit.kind in POINT_KINDS:
        allowed = {"lanes"}
        lanes = int(spec.get("lanes", 1))
        ch = _point_channels(unit)
        if lanes < 1 or ch % lanes:
            raise ConfigError(f"layer {unit.name!r} ({unit.kind}): lanes {lanes} does not divide its {ch} channels "
                              f"per point; valid lanes: {_divisors(ch)}")
        out = {"lanes": lanes}
    elif unit.kind in WINDOW_KINDS:  # lanes follow its MVAU's SIMD (_window_lanes); a given value must agree
        allowed = {"lanes"}
        out = {}
    elif unit.kind in MATMUL_AA_KINDS:
        allowed = {"lanes"}
        lanes = int(spec.get("lanes", 1))
        if lanes < 1 or matmul_aa_lanes(unit) % lanes:
            dim, what = ("M", "its tokens' M and P") if unit.kind == "outer" else ("K", "its rows' K and P")
            raise ConfigError(f"layer {unit.name!r} ({unit.kind} {p['M']}×{p['K']}×{p['P']}): lanes {lanes} does "
                              f"not divide {what} ({p[dim]}, {p['P']}); valid lanes: "
                              f"{_divisors(matmul_aa_lanes(unit))}")
        out = {"lanes": lanes}
    elif unit.kind == "transpose":
        allowed = {"lanes"}
        lanes = int(spec.get("lanes", 1))
        g = math.gcd(p["R"], p["C"])
        if lanes < 1 or g % lanes:
            raise ConfigError(f"layer {unit.name!r} (transpose {p['R']}×{p['C']}): lanes {lanes} does not divide "
                              f"both its {p['R']} rows and {p['C']} columns; valid lanes: {_divisors(g)}")
        out = {"lanes": lanes}
    else:
        allowed = set()
        out = {}
    unknown = set(spec) - allowed
    if unknown:
        raise ConfigError(f"layer {unit.name!r} ({unit.kind}): unknown folding keys {sorted(unknown)}; "
                          f"allowed: {sorted(allowed) or 'none (not foldable)'}")
    return out


def validate(df: Dataflow, folding: dict) -> dict[str, dict[str, int]]:
    names = {u.name for u in df.units}
    unknown = set(folding) - names
    if unknown:
        raise ConfigError(f"folding names unknown layers {sorted(unknown)}; layers: {sorted(names)}")
    par = {u.name: unit_parallelism(df, u, folding) for u in df.units}
    _window_lanes(df, par, folding)
    return par


def in_lanes(unit: Unit, par: dict[str, int]) -> int:
    return par["simd"] if unit.kind == "mvau" else par.get("lanes", 1)


def out_lanes(unit: Unit, par: dict[str, int]) -> int:
    return par["pe"] if unit.kind == "mvau" else par.get("lanes", 1)


def mvau_tiles(params: dict, simd: int, pe: int) -> list[list[int]]:
    """Zero-tile skipping: per output fold f (columns f·PE …), the input words s (rows s·SIMD …) whose
    SIMD×PE tile of the weight matrix holds a nonzero weight, in order. Only these tiles are stored
    and iterated; a fold with none still takes one (zero) tile, so its outputs (bias, requantized)
    are produced like any other's."""
    k, c = params["K"], params["C"]
    nonzero = params.get("nonzero")
    if nonzero is None:
        nonzero = np.asarray(params["weights"] != 0, dtype=bool)
    tiles = nonzero.reshape(k // simd, simd, c // pe, pe).any(axis=(1, 3))  # [NS, NF]
    return [np.flatnonzero(tiles[:, f]).tolist() for f in range(c // pe)]


def mvau_stored_tiles(params: dict, simd: int, pe: int) -> int:
    """ROM words (PE·SIMD weights each) and issue cycles per row: Σ_f max(1, nonzero tiles of fold f)."""
    return sum(max(1, len(t)) for t in mvau_tiles(params, simd, pe))


def mvau_tile_counts(df: Dataflow, unit: Unit) -> dict[str, int]:
    """An elaborated MVAU's weight tiles: dense (K/SIMD)·(C/PE), stored (zero tiles skipped), and the
    bits of each tile (PE·SIMD weights)."""
    p = unit.params
    simd, pe = df.streams[unit.inputs[0]].lanes, df.streams[unit.outputs[0]].lanes
    return {"dense": (p["K"] // simd) * (p["C"] // pe), "stored": mvau_stored_tiles(p, simd, pe),
            "tile_bits": simd * pe * p["w_width"]}


def mvau_row_cycles(params: dict, simd: int, pe: int) -> int:
    """Cycles per input row: the stored tiles, but at least the K/SIMD beats that bring the row in
    (the double-buffered row is written while the previous one is read)."""
    return max(mvau_stored_tiles(params, simd, pe), params["K"] // simd)


def unit_cycles(df: Dataflow, unit: Unit) -> int:
    """Cycles per field of one unit of an elaborated graph (lanes set on its streams)."""
    p = unit.params
    if unit.kind == "mvau":
        lanes_in = df.streams[unit.inputs[0]].lanes
        lanes_out = df.streams[unit.outputs[0]].lanes
        return p["rows"] * mvau_row_cycles(p, lanes_in, lanes_out)
    if unit.kind in MATMUL_AA_KINDS:
        return matmul_aa_cycles(unit, df.streams[unit.outputs[0]].lanes)
    if unit.kind == "dwc":
        s_in, s_out = df.streams[unit.inputs[0]], df.streams[unit.outputs[0]]
        return s_in.numel // min(s_in.lanes, s_out.lanes)
    if unit.kind in ("pool", "pool2d"):  # one input beat per cycle, an output beat every other (every 4th)
        s = df.streams[unit.inputs[0]]
        return s.numel // s.lanes
    s = df.streams[unit.outputs[0]]
    return s.numel // s.lanes  # one beat per cycle


def cycle_model(df: Dataflow) -> dict[str, int]:
    """Cycles per field of every unit of an elaborated graph and of the input stream ('input')."""
    s = df.streams[df.input]
    cycles = {"input": s.numel // s.lanes}
    cycles.update({u.name: unit_cycles(df, u) for u in df.units})
    return cycles


def _grow(df: Dataflow, unit: Unit, par: dict[str, int]) -> list[dict[str, int]]:
    """The larger parallelisms of a unit, smallest step first: SIMD (up to K), then PE; lanes."""
    p = unit.params
    if unit.kind == "mvau":
        window = _window_of(df, unit)
        simds = _divisors(window.params["C"] if window else p["K"])
        if _block_sparse(p):
            # Zero tiles: growing SIMD alone soon makes every word span all blocks (nothing skipped),
            # while PE and SIMD grown together can keep the tiles inside the blocks (the spectral mix:
            # PE = SIMD dividing its modes). Every larger (SIMD, PE), fewest multipliers first, then
            # fewest cycles; optimize keeps the first that is faster.
            steps = [{"pe": e, "simd": d} for d in simds for e in _divisors(p["C"])
                     if d >= par["simd"] and e >= par["pe"] and (d, e) != (par["simd"], par["pe"])]
            return sorted(steps, key=lambda g: (g["pe"] * g["simd"], mvau_row_cycles(p, g["simd"], g["pe"])))
        return [{**par, "simd": d} for d in simds if d > par["simd"]] + \
            [{**par, "pe": d} for d in _divisors(p["C"]) if d > par["pe"]]
    if unit.kind in ("add", "map"):
        return [{"lanes": d} for d in _divisors(df.streams[unit.outputs[0]].numel) if d > par["lanes"]]
    if unit.kind in POINT_KINDS:
        return [{"lanes": d} for d in _divisors(_point_channels(unit)) if d > par["lanes"]]
    if unit.kind == "transpose":
        return [{"lanes": d} for d in _divisors(math.gcd(p["R"], p["C"])) if d > par["lanes"]]
    if unit.kind in MATMUL_AA_KINDS:
        return [{"lanes": d} for d in _divisors(matmul_aa_lanes(unit)) if d > par["lanes"]]
    return []


def _block_sparse(params: dict) -> bool:
    """At least half the weights are zero (a block-structured matrix: FNO's spectral mix). A few
    zeros (small weights quantized to 0) keep the dense growth order."""
    nonzero = params.get("nonzero")
    if nonzero is None:
        nonzero = np.asarray(params["weights"] != 0, dtype=bool)
    return 2 * int(nonzero.sum()) <= nonzero.size


def optimize(df: Dataflow, *, target_ii: int | None = None, target_fps: float | None = None,
             clock_mhz: float | None = None, max_pe_simd: int | None = None) -> Folding:
    """SetFolding in spirit: start every layer at parallelism 1 and raise the slowest unit's folding
    one step at a time until the cycle model's II meets the target (target_ii cycles, or target_fps
    fields/s at clock_mhz), the slowest unit cannot grow (an MVAU at full PE·SIMD, a transpose at
    gcd(R, C) lanes, a converter between units that cannot), or
    the next step would exceed max_pe_simd (Σ PE·SIMD over MVAUs, the multiplier budget)."""
    from qpde.backends.folded.compile import elaborate

    if target_fps is not None:
        if not clock_mhz:
            raise ConfigError("target_fps needs clock_mhz")
        target_ii = max(1, math.floor(clock_mhz * 1e6 / target_fps))
    folding = {k: v for k, v in validate(df, {}).items() if df.unit(k).kind not in WINDOW_KINDS}  # swu: from its MVAU
    note = ""
    while True:
        cycles = cycle_model(elaborate(df, folding))
        slowest = max(cycles, key=cycles.get)
        ii = cycles[slowest]
        if target_ii is not None and ii <= target_ii:
            break
        unit = next((u for u in df.units if u.name == slowest), None)
        if unit is not None and unit.kind in WINDOW_KINDS:  # a sliding window runs at its MVAU's SIMD
            unit = df.unit(unit.params["mvau"])
        if unit is None or unit.kind not in FOLDABLE:
            # the input stream or a width converter: grow the neighbour that sets its width
            unit = _limiting_neighbour(df, slowest, folding)
        # the smallest step that does not make the design slower (a step whose lanes share only a
        # small gcd with a neighbour's would put a slow width converter between them: skip it)
        steps = _grow(df, unit, folding[unit.name]) if unit is not None else []
        if unit is not None and unit.kind == "mvau":  # an MVAU step must speed the MVAU up (zero tiles:
            # a larger SIMD or PE alone can leave as many nonzero tiles per row)
            now = mvau_row_cycles(unit.params, folding[unit.name]["simd"], folding[unit.name]["pe"])
            steps = [g for g in steps if mvau_row_cycles(unit.params, g["simd"], g["pe"]) < now]
        trial = next((t for t in ({**folding, unit.name: g} for g in steps)
                      if max(cycle_model(elaborate(df, t)).values()) <= ii), None)
        if trial is None:
            why = f"; a transpose moves at most gcd(R, C) = {_gcd(unit)} elements " \
                "per cycle" if unit is not None and unit.kind == "transpose" and not steps else ""
            if steps:
                why = f"; every larger {unit.name} folding needs a slower width converter"
            note = f"{slowest} cannot be folded further ({ii} cycles per field{why})"
            break
        macs = sum(v["pe"] * v["simd"] for v in trial.values() if "pe" in v)
        if max_pe_simd is not None and macs > max_pe_simd:
            note = f"PE·SIMD budget {max_pe_simd} reached ({slowest}: {ii} cycles per field)"
            break
        folding = trial
    return Folding(layers=folding, ii_cycles=ii, bottleneck=slowest,
                   target_met=None if target_ii is None else ii <= target_ii, note=note)


def _limiting_neighbour(df: Dataflow, name: str, folding: dict) -> Unit | None:
    """For a slow width converter or input stream: the narrow side's foldable unit, if any."""
    from qpde.backends.folded.compile import elaborate

    if name == "input":
        first = next(iter(df.consumers(df.input)), None)
        if first is not None and first.kind in WINDOW_KINDS:
            return df.unit(first.params["mvau"])
        return next((u for u in df.consumers(df.input) if u.kind in FOLDABLE), None)
    phys = elaborate(df, folding)
    unit = next((u for u in phys.units if u.name == name), None)
    if unit is None or unit.kind != "dwc":
        return None
    s_in, s_out = phys.streams[unit.inputs[0]], phys.streams[unit.outputs[0]]
    logical = {u.name: u for u in df.units}
    owner = unit.params["producer"] if s_in.lanes < s_out.lanes else unit.params["consumer"]
    found = logical.get(owner)
    if found is not None and found.kind in WINDOW_KINDS:
        found = logical.get(found.params["mvau"])
    return found if found is not None and found.kind in FOLDABLE else None


# ---- 1-D spatial units -------------------------------------------------------------------------
POINT_KINDS = ("pool", "upsample", "concat", "pool2d", "upsample2d")  # lanes | channels per point
WINDOW_KINDS = ("swu", "swu2d")  # sliding windows: lanes = their MVAU's SIMD
FOLDABLE = ("mvau", "add", "map", "transpose", "outer", "mvau_stream") + POINT_KINDS


def _point_channels(unit: Unit) -> int:
    p = unit.params
    return math.gcd(p["CA"], p["CB"]) if unit.kind == "concat" else p["C"]


def _window_of(df: Dataflow, mvau: Unit) -> Unit | None:
    """The sliding-window unit feeding a conv's MVAU, if any."""
    return next((u for u in df.units if u.kind in WINDOW_KINDS and u.params["mvau"] == mvau.name), None)


def _window_lanes(df: Dataflow, par: dict[str, dict[str, int]], folding: dict) -> None:
    """A sliding window emits SIMD codes of one point per beat: SIMD | C_in, its lanes = SIMD."""
    for u in df.units:
        if u.kind not in WINDOW_KINDS:
            continue
        simd, ch = par[u.params["mvau"]]["simd"], u.params["C"]
        if ch % simd:
            raise ConfigError(f"layer {u.params['mvau']!r} (conv, {u.params['K']}-tap window of {ch} channels): SIMD {simd} does "
                              f"not divide its {ch} input channels; valid SIMD: {_divisors(ch)}")
        given = folding.get(u.name, {}).get("lanes", simd)
        if given != simd:
            raise ConfigError(f"layer {u.name!r} (swu): lanes {given} differ from its MVAU's SIMD {simd}; leave the "
                              "sliding window out of the folding")
        par[u.name] = {"lanes": simd}


def _gcd(unit: Unit) -> int:
    return math.gcd(unit.params["R"], unit.params["C"])


# ---- activation × activation MatMul (hdl/qpde_outer.v, hdl/qpde_mvau_stream.v) ---------------------
MATMUL_AA_KINDS = ("outer", "mvau_stream")


def matmul_aa_lanes(unit: Unit) -> int:
    """The largest lanes (codes per beat) of an activation × activation unit; every divisor is valid.
    outer: A's tokens hold M codes, B's and Y's rows P; mvau_stream: A's rows K, B's and Y's rows P."""
    p = unit.params
    return math.gcd(p["M"] if unit.kind == "outer" else p["K"], p["P"])


def matmul_aa_cycles(unit: Unit, lanes: int = 1) -> int:
    """Cycles per field: L codes per cycle on each input port and on the output, the ports working in
    parallel (A: M·K codes, B: K·P, Y: M·P; the output buffer and B's banks overlap fields and rows).
    outer: a field ends when both its streams have passed and the previous field's M·P sums have left;
    mvau_stream: a row takes max(K, P)/L (its K/L beats, the previous row's P/L outputs), M rows a field,
    while the next field's B (K·P/L beats) loads into the other bank. L divides every term."""
    p = unit.params
    return max(p["M"] * p["K"], p["K"] * p["P"], p["M"] * p["P"]) // lanes
