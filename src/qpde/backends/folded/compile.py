"""Elaboration: a logical Dataflow and a folding → the physical stream graph that codegen writes.

Every stream gets its lanes from its producer (MVAU: PE; add/map: lanes; transpose: its lanes; the input:
the first consumer's). A stream read by several consumers goes through a chain of 2-way forks; a
consumer whose lanes differ gets a data-width converter (two, through the gcd, when neither lane
count divides the other).

FIFO sizing (deadlock freedom and full throughput): a fork blocks while any branch is full, and a
join (add) consumes only when both operands have data. A branch whose sibling must absorb a lot
before it produces anything (a transpose absorbs a whole tensor, an MVAU one row) therefore needs
room for that lag, or the fork starves the sibling and the join waits forever. The lag of a path
is counted in tensors of the forked stream: transpose 1, MVAU K / (elements per field) per unit,
summed along the longest path up to the first unit both branches reach (the join). A branch whose
lag is smaller than its sibling's by D gets a FIFO of (D + 1) tensors (+2 beats): D to cover the lag,
one more so the fork can already accept the next field while the join drains this one (without
it the pipeline serializes across the fork and II exceeds the slowest unit). Branches with equal
lag need no FIFO. Each unit on a path also adds PIPELINE_CYCLES / II tensors for its pipeline
registers and width converters: nothing at II in the thousands, but at II 16 (multi-lane
transposes) a few cycles per unit are whole tensors, and without them the fork stalled (measured).
A graph with activation × activation units (outer, mvau_stream: a port that waits for another
port's data) is sized by join_waits instead, from arrival times along every input port, repeated
by fifo_gaps until the FIFOs it adds (which delay their branch) need no further one.
"""

from __future__ import annotations

import math
from dataclasses import replace

from qpde.backends.folded.fold import (MATMUL_AA_KINDS, cmvm_row_cycles, in_lanes, matmul_aa_cycles, mvau_row_cycles,
                                       out_lanes, validate)
from qpde.backends.folded.graph import Dataflow, Stream, Unit

FIFO_SLACK_BEATS = 2
PIPELINE_CYCLES = 8  # per unit on a fork branch's path: registers of the unit and its width converters


def unit_cycles_logical(df: Dataflow, unit: Unit, par: dict, streams: dict) -> int:
    """Cycles per field of a logical unit at its parallelism (converters not counted: a lower bound of II)."""
    if unit.kind == "mvau" and par.get("kind") == "cmvm":
        return unit.params["rows"] * cmvm_row_cycles(unit.params, par["simd"], par["pe"])
    if unit.kind == "mvau":
        return unit.params["rows"] * mvau_row_cycles(unit.params, par["simd"], par["pe"])
    if unit.kind in MATMUL_AA_KINDS:
        return matmul_aa_cycles(unit, par.get("lanes", 1))
    return streams[unit.outputs[0]].numel // par.get("lanes", 1)


def unit_lag(df: Dataflow, unit: Unit) -> float:
    """Tensors (of the unit's input) a unit absorbs before its first output."""
    if unit.kind == "transpose":  # one [R, C] tensor: the whole field, or a row of a mode-major MVAU
        return unit.params["R"] * unit.params["C"] / df.streams[unit.inputs[0]].numel
    if unit.kind in ("mvau", "cmvm"):  # one row (the kernel's own registers: the per-unit pipeline allowance)
        return unit.params["K"] / df.streams[unit.inputs[0]].numel
    if unit.kind == "outer":  # the sums are final after the field's last token
        return 1.0
    if unit.kind == "mvau_stream":  # after its B input starts: all of B, then one row of A (in A's field time)
        p = unit.params
        return (p["K"] * p["P"] + p["K"]) / (p["M"] * p["K"])
    if unit.kind in SPATIAL_LAG_POINTS:  # 1-D spatial units: whole points of their (first) input
        p = unit.params
        return SPATIAL_LAG_POINTS[unit.kind](p) / p["L"]
    return 0.0


# Points of its input a 1-D spatial unit absorbs before its first output (rounded up to whole
# points: a conservative lag only costs FIFO depth): the sliding window pad + 1 (its first window
# reaches pad points ahead), max pooling 2, the upsampler and the concat 1 (a point of the first
# operand passes before the second is read).
SPATIAL_LAG_POINTS = {"swu": lambda p: p["pad"] + 1, "pool": lambda p: 2, "upsample": lambda p: 1,
                      "concat": lambda p: 1,
                      # 2-D, W points a row: the window reaches pad rows and pad points ahead, pooling
                      # needs two rows, the upsampler stores a row before repeating it
                      "swu2d": lambda p: p["pad"] * p["W"] + p["pad"] + 1, "pool2d": lambda p: 2 * p["W"],
                      "upsample2d": lambda p: p["W"] + 1}


def _successors(df: Dataflow, unit: Unit) -> list[Unit]:
    return [u for s in unit.outputs for u in df.consumers(s)]


def _reach(df: Dataflow, unit: Unit) -> set[str]:
    seen, todo = set(), [unit]
    while todo:
        u = todo.pop()
        if u.name not in seen:
            seen.add(u.name)
            todo += _successors(df, u)
    return seen


def _lag_to(df: Dataflow, unit: Unit, join: set[str], memo: dict, pipe: float) -> float:
    """Largest summed lag from `unit` to a unit of `join` (join units excluded), −inf if none."""
    if unit.name in join:
        return 0.0
    if unit.name not in memo:
        nxt = [_lag_to(df, v, join, memo, pipe) for v in _successors(df, unit)]
        memo[unit.name] = unit_lag(df, unit) + pipe + max(nxt, default=-math.inf)
    return memo[unit.name]


def branch_lags(df: Dataflow, consumers: list[Unit], pipe: float = 0.0) -> list[float]:
    """Per consumer of one stream: lag of its path to where it meets the other consumers' paths
    (`pipe`: tensors added per unit on the path for its pipeline registers and width converters)."""
    reach = [_reach(df, u) for u in consumers]
    lags = []
    for i, u in enumerate(consumers):
        others = set().union(*(r for j, r in enumerate(reach) if j != i)) if len(reach) > 1 else set()
        join = reach[i] & others
        lag = _lag_to(df, u, join, {}, pipe) if join else 0.0
        lags.append(lag if lag > -math.inf else 0.0)
    return lags


def port_offset(unit: Unit, port: int) -> float:
    """Tensors after a unit starts that it first reads input `port`: outer reads B only once A's first
    row (M of its K·M codes) is in; mvau_stream reads A only once all of B (K·P codes, P/M of A's field
    time) is in. Other units read every input from the start."""
    p = unit.params
    if unit.kind == "outer" and port == 1:
        return 1 / p["K"]
    if unit.kind == "mvau_stream" and port == 0:
        return p["P"] / p["M"]
    return 0.0


def join_waits(df: Dataflow, stream: str, consumers: list[Unit], pipe: float = 0.0,
               buffered: list[bool] | None = None) -> list[float]:
    """Per consumer of `stream`: how long (in tensors) its data waits at the joins on its path for the
    other operands, from arrival times along every input port: a unit starts when each port's data is
    there by the port's offset (port_offset), its output starts `unit_lag + pipe` after its start.

    Unlike branch_lags (lag to the first unit another branch reaches), this follows every port:
    Galerkin attention's Q enters mvau_stream, which the K and V branches also reach, but only through
    outer (which first absorbs a whole field), so Q must wait a field there; branch_lags sees no lag.
    On a join of two plain paths it gives branch_lags' gaps.

    `buffered` (per consumer): its data passes a FIFO first, which delays it like a unit on the path
    (0 to `pipe`). fifo_gaps uses it for a second pass: a branch whose partner got a FIFO may now wait
    for the partner's data (Galerkin attention's K row at `outer` for the V row behind V's FIFO)."""
    delay_of: dict[str, bool] = {}
    for u, b in zip(consumers, buffered or [False] * len(consumers)):
        delay_of[u.name] = delay_of.get(u.name, False) or b

    def arrivals(starts: set[str], pipe: float) -> dict[str, float]:
        begin: dict[str, float] = {}  # unit → its start
        for u in df.units:
            arr = {}  # input port → arrival of its first beat
            for i, name in enumerate(u.inputs):
                if name == stream and u.name in starts:
                    arr[i] = pipe if delay_of[u.name] else 0.0
                elif (p := df.producer(name)) is not None and p.name in begin:
                    arr[i] = begin[p.name] + unit_lag(df, p) + pipe
            if arr:
                begin[u.name] = max(t - port_offset(u, i) for i, t in arr.items())
        return begin

    def waits(delay: float) -> list[float]:
        """How much later a unit on the branch starts with every branch's data than with the branch's
        own alone: the branch's data waits that long (waits between two ports the branch feeds
        itself are a later fork's, and cancel here)."""
        every = arrivals({u.name for u in consumers}, delay)
        out = []
        for u in consumers:
            own = arrivals({u.name}, delay)
            out.append(max((every[name] - t for name, t in own.items()), default=0.0))
        return out

    # A unit's pipeline delays its output by 0 to `pipe`: either extreme can make a branch the late one
    # (a map's 1 cycle of B against outer's row of A, the tiny graphs' 8-cycle allowance at II 16)
    return [max(a, b) for a, b in zip(waits(0.0), waits(pipe))]


def fifo_gaps(df: Dataflow, stream: str, consumers: list[Unit], pipe: float) -> list[float]:
    """join_waits to a fixed point: a FIFO given to one branch delays that branch's data by its pipeline
    (up to `pipe`), which can make another branch wait at a join that the first pass saw balanced. At
    4 lanes the tiny Transformer's attention units take one beat per token: V's FIFO (1/16 field, for
    outer's first A row) put V's rows 2 cycles behind K's, K (no FIFO) filled outer's two A banks and
    stalled the fork, and II was 17.6 instead of 16. Gaps only grow, so this ends within len(consumers)
    passes."""
    gaps = join_waits(df, stream, consumers, pipe)
    while True:
        buffered = [g > 0 for g in gaps]
        again = [max(a, b) for a, b in zip(gaps, join_waits(df, stream, consumers, pipe, buffered))]
        if [g > 0 for g in again] == buffered:
            return again
        gaps = again


def elaborate(df: Dataflow, folding: dict) -> Dataflow:
    """Physical graph for a folding (validated: ConfigError names a bad layer). MVAUs whose mode-major
    transposers the folding names run in that order (modemajor.apply)."""
    from qpde.backends.folded.modemajor import apply

    df = apply(df, folding)
    par = validate(df, folding)
    streams = {name: replace(s) for name, s in df.streams.items()}
    producers = {s: u for u in df.units for s in u.outputs}
    for name, s in streams.items():
        if name == df.input:  # as wide as its first consumer reads (1 when it goes straight out)
            first = next(iter(df.consumers(name)), None)
            s.lanes = in_lanes(first, par[first.name]) if first is not None else 1
        else:
            u = producers[name]
            s.lanes = out_lanes(u, par[u.name])
    units: list[Unit] = []
    rewired: dict[tuple[str, int], str] = {}  # (consumer, input index) → stream it reads

    def add_stream(name: str, like: Stream, lanes: int) -> str:
        streams[name] = Stream(name, like.type, like.numel, lanes)
        return name

    def convert(s: str, lanes: int, tag: str, producer: str, consumer: str) -> str:
        """Width converters from stream s to `lanes` lanes."""
        steps = []
        have = streams[s].lanes
        if have != lanes:
            g = math.gcd(have, lanes)
            steps = [lanes] if g in (have, lanes) else [g, lanes]
        for k, lanes_k in enumerate(steps):
            out = add_stream(f"{tag}_w{k}", streams[s], lanes_k)
            units.append(Unit(f"dwc_{tag}_{k}", "dwc", [s], [out], {"producer": producer, "consumer": consumer}))
            s = out
        return s

    def distribute(s: str) -> None:
        ends = [(u, i) for u in df.consumers(s) for i, name in enumerate(u.inputs) if name == s]
        out_too = s == df.output
        n = len(ends) + (1 if out_too else 0)
        producer = producers[s].name if s in producers else "input"
        heads = [s]
        if n > 1:  # chain of 2-way forks: branch k leaves fork k, the last fork's b output is the last branch
            heads, cur = [], s
            for k in range(n - 1):
                a = add_stream(f"{s}_f{k}a", streams[s], streams[s].lanes)
                b = add_stream(f"{s}_f{k}b", streams[s], streams[s].lanes)
                units.append(Unit(f"fork_{s}_{k}", "fork", [cur], [a, b]))
                heads.append(a)
                cur = b
            heads.append(cur)
            if any(u.kind in MATMUL_AA_KINDS for u in df.units):  # joins of streamed operands: see join_waits
                gaps = fifo_gaps(df, s, [u for u, _ in ends], pipe) + ([0.0] if out_too else [])
            else:
                lags = branch_lags(df, [u for u, _ in ends], pipe) + ([0.0] if out_too else [])
                gaps = [max(lags) - lag for lag in lags]
            for k, gap in enumerate(gaps):
                if gap > 0:
                    depth = math.ceil((gap + 1) * streams[s].numel / streams[s].lanes) + FIFO_SLACK_BEATS
                    q = add_stream(f"{s}_q{k}", streams[s], streams[s].lanes)
                    units.append(Unit(f"fifo_{s}_{k}", "fifo", [heads[k]], [q], {"depth": depth}))
                    heads[k] = q
        for k, (u, i) in enumerate(ends):
            rewired[(u.name, i)] = convert(heads[k], in_lanes(u, par[u.name]), f"{s}_{k}", producer, u.name)
        if out_too:
            df_out[0] = heads[-1]

    # A unit's pipeline (MVAU: 4 stages; the converters next to it) delays its output by a few cycles
    # more than its lag in tensors: negligible at II in the thousands, several tensors at II 16.
    ii = max(unit_cycles_logical(df, u, par[u.name], streams) for u in df.units)
    pipe = PIPELINE_CYCLES / ii
    df_out = [df.output]
    distribute(df.input)
    for u in df.units:
        inputs = [rewired[(u.name, i)] for i in range(len(u.inputs))]
        kind = "cmvm" if par[u.name].get("kind") == "cmvm" else u.kind  # a constant MatMul as a da4ml kernel
        units.append(replace(u, inputs=inputs, kind=kind))
        for s in u.outputs:
            distribute(s)
    return Dataflow(streams, units, df.input, df_out[0])
