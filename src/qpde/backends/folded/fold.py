"""Folding: per-layer parallelism, its validation, a cycle model and a SetFolding-style optimizer.

A folding maps layer names (Dataflow unit names) to parallelism:
- mvau: {"pe": PE, "simd": SIMD}, PE | C (outputs per row), SIMD | K (inputs per row);
  {"kind": "cmvm"} [+ "simd", "pe": its port lanes, default K and C: one row per cycle] implements the
  layer as a da4ml constant-matrix kernel instead (cmvm.py); `optimize(cmvm="auto")` chooses it per layer;
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
    # layer → "cmvm" where the layer is a da4ml constant-matrix kernel instead of an MVAU (forced by a
    # {"kind": "cmvm"} folding entry or chosen by optimize(cmvm="auto"); see choose_kernels)
    kernels: dict[str, str] = field(default_factory=dict)
    # MVAUs in mode-major order (modemajor.py); `layers` holds their transposers' lanes, which is what
    # elaborate/build_folded read (modemajor.apply)
    mode_major: list[str] = field(default_factory=list)

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
        allowed = {"pe", "simd", "kind"}
        kind = spec.get("kind", "mvau")
        if kind not in ("mvau", "cmvm"):
            raise ConfigError(f"layer {unit.name!r} (mvau {p['K']}×{p['C']}): kind {kind!r}; a constant MatMul is "
                              "an 'mvau' (PE×SIMD folded) or a 'cmvm' (da4ml constant-matrix kernel)")
        if kind == "cmvm":  # default ports: a whole row in and out per beat (a window's point per beat)
            window = _window_of(df, unit)
            pe, simd = int(spec.get("pe", p["C"])), int(spec.get("simd", window.params["C"] if window else p["K"]))
        else:
            pe, simd = int(spec.get("pe", 1)), int(spec.get("simd", 1))
        if pe < 1 or p["C"] % pe:
            raise ConfigError(f"layer {unit.name!r} (mvau {p['K']}×{p['C']}): PE {pe} does not divide its "
                              f"{p['C']} outputs; valid PE: {_divisors(p['C'])}")
        if simd < 1 or p["K"] % simd:
            raise ConfigError(f"layer {unit.name!r} (mvau {p['K']}×{p['C']}): SIMD {simd} does not divide its "
                              f"{p['K']} inputs; valid SIMD: {_divisors(p['K'])}")
        out = {"pe": pe, "simd": simd} | ({"kind": "cmvm"} if kind == "cmvm" else {})
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
    from qpde.backends.folded.modemajor import apply

    df = apply(df, folding)  # the transposers of mode-major MVAUs named in the folding
    names = {u.name for u in df.units}
    unknown = set(folding) - names
    if unknown:
        raise ConfigError(f"folding names unknown layers {sorted(unknown)}; layers: {sorted(names)}")
    par = {u.name: unit_parallelism(df, u, folding) for u in df.units}
    _window_lanes(df, par, folding)
    return par


def in_lanes(unit: Unit, par: dict[str, int]) -> int:
    return par["simd"] if unit.kind in MATRIX_KINDS else par.get("lanes", 1)


def out_lanes(unit: Unit, par: dict[str, int]) -> int:
    return par["pe"] if unit.kind in MATRIX_KINDS else par.get("lanes", 1)


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


def cmvm_row_cycles(params: dict, simd: int, pe: int) -> int:
    """A cmvm unit takes a row per cycle; its ports move K/SIMD input and C/PE output beats per row."""
    return max(params["K"] // simd, params["C"] // pe, 1)


def unit_cycles(df: Dataflow, unit: Unit) -> int:
    """Cycles per field of one unit of an elaborated graph (lanes set on its streams)."""
    p = unit.params
    if unit.kind == "cmvm":
        return p["rows"] * cmvm_row_cycles(p, df.streams[unit.inputs[0]].lanes, df.streams[unit.outputs[0]].lanes)
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


def _grow(df: Dataflow, unit: Unit, par: dict[str, int], row_cycles=None) -> list[dict[str, int]]:
    """The larger parallelisms of a unit, smallest step first: SIMD (up to K), then PE; lanes.
    row_cycles(g): an MVAU's cycles per row at g (default: in its own order, mvau_row_cycles)."""
    p = unit.params
    if row_cycles is None:
        row_cycles = lambda g: mvau_row_cycles(p, g["simd"], g["pe"])  # noqa: E731
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
            return sorted(steps, key=lambda g: (g["pe"] * g["simd"], row_cycles(g)))
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
             clock_mhz: float | None = None, max_pe_simd: int | None = None, kernels: dict[str, str] | None = None,
             cmvm: str = "off", mode_major: bool = True) -> Folding:
    """SetFolding in spirit: start every layer at parallelism 1 and raise the slowest unit's folding
    one step at a time until the cycle model's II meets the target (target_ii cycles, or target_fps
    fields/s at clock_mhz), the slowest unit cannot grow (an MVAU at full PE·SIMD, a transpose at
    gcd(R, C) lanes, a converter between units that cannot), or
    the next step would exceed max_pe_simd (Σ PE·SIMD over MVAUs, the multiplier budget).

    kernels: layers forced to a da4ml constant-matrix kernel ({layer: "cmvm"}; one row per cycle, not
    grown). cmvm="auto": afterwards, every other MVAU of at most 64×64 becomes a cmvm unit at the same
    port lanes where its LUT estimate is lower (choose_kernels); "off": MVAUs only.

    An MVAU with a mode-major order (modemajor.py) takes it at every step where it pays
    (modemajor.pays: fewer stored tiles and fewer cycles or ROM bits): its cycles are the better
    order's, and its two transposers join the graph (their cycles count in the II), at the fewest
    lanes that keep the design as fast; they grow like any transpose. mode_major=False: never."""
    from qpde.backends.folded import modemajor
    from qpde.backends.folded.compile import elaborate

    if cmvm not in ("off", "auto"):
        raise ConfigError(f"cmvm {cmvm!r}: 'off' (MVAUs only) or 'auto' (per layer, by LUT estimate)")
    if target_fps is not None:
        if not clock_mhz:
            raise ConfigError("target_fps needs clock_mhz")
        target_ii = max(1, math.floor(clock_mhz * 1e6 / target_fps))
    forced = {}
    for name, kind in (kernels or {}).items():
        if kind not in ("mvau", "cmvm"):
            raise ConfigError(f"layer {name!r}: kernel {kind!r}; 'mvau' or 'cmvm'")
        if kind == "cmvm":
            forced[name] = {"kind": "cmvm"}
    folding = {k: v for k, v in validate(df, forced).items() if df.unit(k).kind not in WINDOW_KINDS}  # swu: from its MVAU
    note = ""
    mm: frozenset[str] = frozenset()
    views: dict[frozenset, Dataflow] = {}

    def view(names: frozenset) -> Dataflow:  # the dataflow with these MVAUs mode-major
        if names not in views:
            views[names] = modemajor.rewrite(df, names)
        return views[names]

    def uses_mm(unit: Unit, g: dict) -> bool:
        return mode_major and modemajor.pays(unit.params, g["simd"], g["pe"], df.streams[unit.inputs[0]].type.width,
                                             df.streams[unit.outputs[0]].type.width)

    def best_row_cycles(unit: Unit, g: dict) -> int:
        if unit.params.get("mode_major") is None:
            return mvau_row_cycles(unit.params, g["simd"], g["pe"])
        orig, perm = modemajor.stored_tiles(unit.params, g["simd"], g["pe"])
        return max(perm if uses_mm(unit, g) else orig, unit.params["K"] // g["simd"])

    def trials(unit: Unit, steps: list[dict]):
        """(folding, mode-major MVAUs) per step; an MVAU turning mode-major tries its transposers at
        1, 2, … lanes (each at most its gcd(R, C))."""
        for g in steps:
            if unit.kind != "mvau" or unit.params.get("mode_major") is None:
                yield {**folding, unit.name: g}, mm
                continue
            extra = modemajor.transposer_names(df, unit.name)
            base = {k: v for k, v in folding.items() if k not in extra}
            base[unit.name] = g
            if not uses_mm(unit, g):
                yield base, mm - {unit.name}
            elif unit.name in mm:
                yield {**folding, unit.name: g}, mm
            else:
                t_units = {u.name: u for u in view(mm | {unit.name}).units if u.name in extra}
                gcds = {n: _gcd(u) for n, u in t_units.items()}
                for lanes in _divisors(max(gcds.values())):
                    yield {**base, **{n: {"lanes": max(d for d in _divisors(gd) if d <= lanes)}
                                      for n, gd in gcds.items()}}, mm | {unit.name}

    while True:
        cur = view(mm)
        cycles = cycle_model(elaborate(cur, folding))
        slowest = max(cycles, key=cycles.get)
        ii = cycles[slowest]
        if target_ii is not None and ii <= target_ii:
            break
        unit = next((u for u in cur.units if u.name == slowest), None)
        if unit is not None and unit.kind in WINDOW_KINDS:  # a sliding window runs at its MVAU's SIMD
            unit = cur.unit(unit.params["mvau"])
        if unit is None or unit.kind not in FOLDABLE:
            # the input stream or a width converter: grow the neighbour that sets its width
            unit = _limiting_neighbour(cur, slowest, folding)
        if unit is not None and unit.kind == "mvau":
            unit = df.unit(unit.name)  # the original order (a mode-major view holds the permuted weights)
        # the smallest step that does not make the design slower (a step whose lanes share only a
        # small gcd with a neighbour's would put a slow width converter between them: skip it)
        steps = []
        if unit is not None and unit.name not in forced:
            rc = (lambda g, u=unit: best_row_cycles(u, g)) if unit.kind == "mvau" else None
            steps = _grow(cur, unit, folding[unit.name], rc)
        if unit is not None and unit.kind == "mvau":  # an MVAU step must speed the MVAU up (zero tiles:
            # a larger SIMD or PE alone can leave as many nonzero tiles per row)
            now = best_row_cycles(unit, folding[unit.name])
            steps = [g for g in steps if best_row_cycles(unit, g) < now]
        trial = next(((t, names) for t, names in (trials(unit, steps) if unit is not None else ())
                      if max(cycle_model(elaborate(view(names), t)).values()) <= ii), None)
        if trial is None:
            why = f"; a transpose moves at most gcd(R, C) = {_gcd(unit)} elements " \
                "per cycle" if unit is not None and unit.kind == "transpose" and not steps else ""
            if steps:
                why = f"; every larger {unit.name} folding needs a slower width converter"
            note = f"{slowest} cannot be folded further ({ii} cycles per field{why})"
            break
        macs = sum(v["pe"] * v["simd"] for v in trial[0].values() if "pe" in v and v.get("kind") != "cmvm")
        if max_pe_simd is not None and macs > max_pe_simd:
            note = f"PE·SIMD budget {max_pe_simd} reached ({slowest}: {ii} cycles per field)"
            break
        folding, mm = trial
    chosen = {name: "cmvm" for name in forced}
    if cmvm == "auto":
        # mode-major MVAUs keep their permuted MVAU
        folding, auto = choose_kernels(view(mm), folding, skip=set(forced) | set(mm))
        chosen.update(auto)
        if auto:  # a cmvm unit is never slower than the MVAU it replaces (same ports): II can only drop
            cycles = cycle_model(elaborate(view(mm), folding))
            slowest = max(cycles, key=cycles.get)
            ii = cycles[slowest]
    return Folding(layers=folding, ii_cycles=ii, bottleneck=slowest,
                   target_met=None if target_ii is None else ii <= target_ii, note=note, kernels=chosen,
                   mode_major=sorted(mm))


def kernel_estimates(df: Dataflow, folding: dict) -> dict[str, dict[str, float]]:
    """Per constant MatMul at its folding's ports: the LUT estimates of the MVAU (FINN's formula) and
    of a cmvm unit (da4ml's cost + its shell), for matrices the automatic choice considers."""
    from qpde.backends.folded import cmvm as ck

    par = validate(df, folding)
    out = {}
    for u in df.units:
        if u.kind != "mvau" or not ck.auto_candidate(u.params):
            continue
        simd, pe = par[u.name]["simd"], par[u.name]["pe"]
        in_t, out_t = df.streams[u.inputs[0]].type, df.streams[u.outputs[0]].type
        stored = mvau_stored_tiles(u.params, simd, pe)
        out[u.name] = {"mvau": ck.mvau_lut_estimate(u.params, in_t, simd, pe, stored),
                       "mvau_res_type": ck.mvau_res_type(u.params, in_t),
                       "cmvm": ck.cmvm_lut_estimate(u.params, in_t, out_t.width, simd, pe), "simd": simd, "pe": pe}
    return out


def choose_kernels(df: Dataflow, folding: dict, skip: set[str] = frozenset()) -> tuple[dict, dict[str, str]]:
    """Per MVAU of at most 64×64 (not in skip): a cmvm unit at the same port lanes where its LUT estimate
    is below the MVAU's (kernel_estimates). Returns the new folding and {layer: "cmvm"} of the changes."""
    folding = dict(folding)
    chosen = {}
    for name, est in kernel_estimates(df, folding).items():
        if name not in skip and folding.get(name, {}).get("kind") != "cmvm" and est["cmvm"] < est["mvau"]:
            folding[name] = {"pe": est["pe"], "simd": est["simd"], "kind": "cmvm"}
            chosen[name] = "cmvm"
    return folding, chosen


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
MATRIX_KINDS = ("mvau", "cmvm")  # units with SIMD input and PE output lanes
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
