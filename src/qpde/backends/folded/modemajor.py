"""Mode-major MVAUs: a block-sparse weight matrix whose blocks interleave (FNO's spectral mix, ordered
mode-minor) made block-diagonal by transposing its input and output rows.

FNO1d's spectral mix acts on the flat [width, 2, modes] spectrum (index (c·2 + part)·modes + k) and
mixes only equal modes k: in this order a SIMD word of ≥ modes consecutive inputs touches every mode,
so once PE or SIMD reaches the modes every PE×SIMD tile holds a nonzero and zero-tile skipping saves
nothing. Viewed as [2·width, modes] and transposed to [modes, 2·width], each mode's 2·width inputs are
consecutive; with the outputs likewise, the matrix is block-diagonal and a tile that stays inside a
block (PE, SIMD dividing 2·width) is skipped unless it is on the diagonal.

In hardware (rewrite): a `transpose` unit ([R, C] → [C, R], the existing transposer) before the MVAU,
the MVAU on the permuted weights W[p_in][:, p_out] (and bias[p_out]), and a transpose back after it.
The ONNX graph and the golden are unchanged; the permutation is found from the weights alone
(find_mode_major), and whether it pays is decided per folding (pays): fewer stored tiles, and either
fewer cycles or fewer weight ROM bits than the two transposers' ping-pong buffers add.

A folding selects it by naming the transposers (layers `<mvau>_to_mode_major` / `<mvau>_from_mode_major`,
{"lanes": L}, L | gcd(R, C)): `apply` rewrites the logical Dataflow accordingly, so a folding's
`layers` alone describe the design (elaborate and build_folded call it); `add_to_folding` adds them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from qpde.errors import ConfigError

IN_SUFFIX, OUT_SUFFIX = "_to_mode_major", "_from_mode_major"  # the transposer units' layer names


@dataclass
class ModeMajor:
    """A permutation of an MVAU's rows and columns. in_split (R, C): the input row, viewed as [R, C], is
    transposed to [C, R] before the MVAU (None: kept); out_split (R, C): the MVAU emits its outputs in
    the order of the [R, C] view of the output row transposed ([C, R]) and a transposer restores it
    (None: kept). blocks: diagonal blocks of the permuted matrix (1 in the original order when found)."""

    in_split: tuple[int, int] | None
    out_split: tuple[int, int] | None
    blocks: int
    nonzero: np.ndarray = field(repr=False, compare=False, default=None)  # the permuted nonzero pattern

    def perms(self, k: int, c: int) -> tuple[np.ndarray, np.ndarray]:
        return split_perm(k, self.in_split), split_perm(c, self.out_split)


def split_perm(n: int, split: tuple[int, int] | None) -> np.ndarray:
    """perm[new] = old: the C-order index of the element at position `new` once [R, C] is transposed."""
    if split is None:
        return np.arange(n)
    r, c = split
    if r * c != n:
        raise ValueError(f"split {split} of {n} elements")
    return np.arange(n).reshape(r, c).T.reshape(-1)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def diagonal_blocks(rows: np.ndarray, cols: np.ndarray, k: int, c: int, above: int = 1) -> int:
    """Largest n > `above` such that the K×C matrix whose nonzeros sit at (rows, cols) is block-diagonal
    with n contiguous blocks of K/n × C/n (every nonzero in a diagonal block); `above` if none.
    n blocks hold at most K·C/n nonzeros, which bounds the search."""
    bound = k * c // max(1, len(rows))
    for n in sorted(_divisors(math.gcd(k, c)), reverse=True):
        if n <= above:
            break
        if n > bound:
            continue
        kb, cb = k // n, c // n
        # a strided sample of the nonzeros first: most candidates fail on it, cheaply
        if np.array_equal(rows[::64] // kb, cols[::64] // cb) and np.array_equal(rows // kb, cols // cb):
            return n
    return above


def find_mode_major(nonzero: np.ndarray) -> ModeMajor | None:
    """The transposes of the input and output rows ([R, C] → [C, R] for every factorisation K = R·C,
    C = R'·C', or none) that make the matrix block-diagonal with the most blocks, if that is more than
    in the original order; None otherwise (or when fewer than half the weights are zero: at most one
    block). Ties: fewer transposes, then the larger gcd(R, C) (the transposer's lanes)."""
    nonzero = np.asarray(nonzero, dtype=bool)
    k, c = nonzero.shape
    if 2 * int(nonzero.sum()) > nonzero.size:
        return None
    rows, cols = np.nonzero(nonzero)
    best_n = diagonal_blocks(rows, cols, k, c)
    splits_k = [None] + [(r, k // r) for r in _divisors(k)[1:-1]]
    splits_c = [None] + [(r, c // r) for r in _divisors(c)[1:-1]]
    # where each original row/column goes: the inverse of split_perm
    pos_k = {s: np.argsort(split_perm(k, s))[rows] for s in splits_k}
    pos_c = {s: np.argsort(split_perm(c, s))[cols] for s in splits_c}
    best, best_key, base = None, None, best_n
    for si in splits_k:
        for so in splits_c:
            if si is None and so is None:
                continue
            lo = base if best is None else best_n - 1  # more blocks than the original order; ties: key
            n = diagonal_blocks(pos_k[si], pos_c[so], k, c, above=lo)
            if n <= lo:
                continue
            key = (n, -((si is not None) + (so is not None)), min(math.gcd(*s) for s in (si, so) if s is not None))
            if best_key is None or key > best_key:
                best, best_key, best_n = (si, so, n), key, n
    if best is None:
        return None
    si, so, n = best
    pk, pc = split_perm(k, si), split_perm(c, so)
    return ModeMajor(si, so, n, nonzero[pk][:, pc])


def permuted_params(params: dict) -> dict:
    """An MVAU's params with rows and columns permuted to mode-major (weights, nonzero, bias); the
    accumulator (width, shifts, requantization) is unchanged: a permutation keeps every column's sum."""
    mm: ModeMajor = params["mode_major"]
    pk, pc = mm.perms(params["K"], params["C"])
    out = {**params, "weights": params["weights"][pk][:, pc], "nonzero": mm.nonzero, "mode_major": None}
    if params["bias"] is not None:
        out["bias"] = params["bias"][pc]
    return out


def stored_tiles(params: dict, simd: int, pe: int) -> tuple[int, int]:
    """Stored tiles in the original and in the mode-major order (the latter = the former without one)."""
    from qpde.backends.folded.fold import mvau_stored_tiles

    mm = params.get("mode_major")
    if mm is None:
        dense = mvau_stored_tiles(params, simd, pe)
        return dense, dense
    cache = mm.__dict__.setdefault("_tiles", {})  # the optimizer asks for the same foldings often
    if (simd, pe) not in cache:
        cache[simd, pe] = (mvau_stored_tiles(params, simd, pe),
                           mvau_stored_tiles({"K": params["K"], "C": params["C"], "nonzero": mm.nonzero}, simd, pe))
    return cache[simd, pe]


def buffer_bits(params: dict, in_width: int, out_width: int) -> int:
    """Bits of the two transposers' ping-pong buffers (2 rows each) a mode-major MVAU adds."""
    mm: ModeMajor = params["mode_major"]
    return 2 * (params["K"] * in_width * (mm.in_split is not None) + params["C"] * out_width * (mm.out_split is not None))


def pays(params: dict, simd: int, pe: int, in_width: int, out_width: int) -> bool:
    """Mode-major at this folding: fewer stored tiles, and either fewer cycles per row (max(tiles, K/SIMD))
    or fewer weight ROM bits saved than the transposers' buffers cost."""
    if params.get("mode_major") is None:
        return False
    orig, perm = stored_tiles(params, simd, pe)
    if perm >= orig:
        return False
    floor = params["K"] // simd
    if max(perm, floor) < max(orig, floor):
        return True
    return (orig - perm) * pe * simd * params["w_width"] > buffer_bits(params, in_width, out_width)


def rewrite(df, names, lanes: dict | None = None):
    """The Dataflow with each MVAU of `names` in mode-major order: transpose → MVAU (permuted weights) →
    transpose back, the transposers named `<mvau>` + IN_SUFFIX / OUT_SUFFIX. ConfigError names a layer
    that is not an MVAU or has no mode-major order."""
    from qpde.backends.folded.graph import Dataflow, Stream, Unit

    names = set(names or ())
    if not names:
        return df
    by_name = {u.name: u for u in df.units}
    for name in sorted(names):
        u = by_name.get(name)
        if u is None or u.kind != "mvau":
            raise ConfigError(f"mode_major names {name!r}, which is not an MVAU layer; MVAUs: "
                              f"{sorted(v.name for v in df.units if v.kind == 'mvau')}")
        if u.params.get("mode_major") is None:
            raise ConfigError(f"layer {name!r} (mvau {u.params['K']}×{u.params['C']}): no mode-major order (its "
                              "weights are not block-diagonal under a transpose of their rows and columns)")
    streams = dict(df.streams)
    units = []
    for u in df.units:
        if u.name not in names:
            units.append(u)
            continue
        p = u.params
        mm: ModeMajor = p["mode_major"]
        src, dst = u.inputs[0], u.outputs[0]
        if mm.in_split is not None:
            s = f"{src}_{u.name}{IN_SUFFIX}"
            streams[s] = Stream(s, df.streams[src].type, df.streams[src].numel)
            units.append(Unit(u.name + IN_SUFFIX, "transpose", [src], [s],
                              {"R": mm.in_split[0], "C": mm.in_split[1]}))
            src = s
        out = dst
        if mm.out_split is not None:
            out = f"{dst}{OUT_SUFFIX}"
            streams[out] = Stream(out, df.streams[dst].type, df.streams[dst].numel)
        units.append(replace(u, inputs=[src], outputs=[out], params=mode_major_params(p)))
        if mm.out_split is not None:  # the MVAU emits [C', R'] of the output's [R', C'] view: back
            units.append(Unit(u.name + OUT_SUFFIX, "transpose", [out], [dst],
                              {"R": mm.out_split[1], "C": mm.out_split[0]}))
    return Dataflow(streams, units, df.input, df.output)


def mode_major_params(params: dict) -> dict:
    """permuted_params, computed once per MVAU."""
    mm: ModeMajor = params["mode_major"]
    if "_params" not in mm.__dict__:
        mm._params = permuted_params(params)
    return mm._params


def transposer_names(df, name: str) -> list[str]:
    """The transposer layers a mode-major MVAU `name` adds (its folding entries)."""
    mm = df.unit(name).params["mode_major"]
    return ([name + IN_SUFFIX] if mm.in_split is not None else []) + \
        ([name + OUT_SUFFIX] if mm.out_split is not None else [])


def mode_major_names(folding: dict) -> set[str]:
    """The MVAUs a folding puts in mode-major order: those whose transposers it names."""
    return {n[: -len(sfx)] for n in folding for sfx in (IN_SUFFIX, OUT_SUFFIX) if n.endswith(sfx)}


def apply(df, folding: dict):
    """The Dataflow with the MVAUs the folding puts in mode-major order rewritten (a no-op for those
    already rewritten, and when there are none)."""
    have = {u.name for u in df.units}
    return rewrite(df, {n for n in mode_major_names(folding) if n + IN_SUFFIX not in have and n + OUT_SUFFIX not in have})


def add_to_folding(df, folding: dict, names, lanes: int = 1) -> dict:
    """The folding with the MVAUs `names` mode-major: their transposers at (at most) `lanes` lanes."""
    out = dict(folding)
    for name in names:
        view = rewrite(df, {name})
        for t in transposer_names(df, name):
            g = math.gcd(view.unit(t).params["R"], view.unit(t).params["C"])
            out[t] = {"lanes": max(d for d in _divisors(g) if d <= lanes)}
    return out
