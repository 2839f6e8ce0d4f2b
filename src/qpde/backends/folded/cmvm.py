"""The `cmvm` folded unit: one da4ml constant-matrix–vector kernel (fully parallel in the K inputs, a
multiplierless shift-and-add graph, pipelined) behind the folded stream interface, and the per-layer
choice between it and the MVAU by LUT estimates.

The kernel computes the exact integer sums x·W of one row (grid point) per clock: da4ml traces the
K input *codes* (interval [lo, hi], step 1) times the integer weight codes, so every output is an
exact integer of known width (`out_qint`). The generated adapter (`kernel_verilog`) adds what the
MVAU's accumulator does after the products (the product shift PSHIFT, the bias at the accumulator's
LSB) and requantizes every column with `qpde_requant`, so the unit is bit-exact with the MVAU and the
integer model (model.run_unit runs both the same way). The stream shell (hdl/qpde_cmvm.v) gathers a
row from SIMD-code beats into a double buffer, feeds the kernel, and emits the C codes PE per beat;
the kernel's registers advance on the shell's clock enable, so a stalled consumer freezes it.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from qpde.backends.folded.graph import Unit
from qpde.errors import GraphError
from qpde.qgraph import FixedType

LATENCY_CUTOFF = 4  # da4ml pipelining cutoff (adder delays per stage), as qpde.backends.rtl's default
AUTO_MAX_K = AUTO_MAX_C = 64  # the automatic choice traces only matrices up to 64×64 (da4ml's solve time)
DSP_MIN_PRODUCT_W = 9  # Yosys synth_xilinx maps a product of at least 9 bits to a DSP48 (its DSP_Y_MINWIDTH)


@functools.lru_cache(maxsize=64)
def _trace(key: bytes, shape: tuple[int, int], lo: int, hi: int):
    from da4ml.trace import FixedVariableArray, HWConfig, comb_trace

    from qpde.backends.rtl.trace import DEFAULT_SOLVER_OPTIONS, _exact_constants

    w = np.frombuffer(key, dtype=np.int64).reshape(shape)
    k = shape[0]
    with _exact_constants():
        x = FixedVariableArray.from_lhs(np.full(k, float(lo)), np.full(k, float(hi)), np.full(k, 1.0),
                                        hwconf=HWConfig(1, -1, -1), solver_options=dict(DEFAULT_SOLVER_OPTIONS))
        return comb_trace(x, x @ w.astype(np.float64), keep_dead_inputs=True)


def trace_kernel(params: dict, in_type: FixedType):
    """da4ml's CombLogic of x @ W on integer codes (x in [in_type.lo, in_type.hi]); cached per matrix."""
    w = np.asarray(params["weights"], dtype=np.int64)
    if np.abs(w).max(initial=0) >= 2**24:  # da4ml solves in float32
        raise GraphError(f"weights of {int(np.abs(w).max()).bit_length() + 1} bits; da4ml's solver works in float32 "
                         "(at most 24)")
    return _trace(np.ascontiguousarray(w).tobytes(), w.shape, int(in_type.lo), int(in_type.hi))


SHELL_CONTROL_LUTS = 40  # the shell's counters and flags (Yosys xc7, measured with the two terms below)


def cmvm_lut_estimate(params: dict, in_type: FixedType, out_w: int, simd: int, pe: int) -> float:
    """LUTs of a cmvm unit: da4ml's cost of the kernel (its adder graph's LUT model), one bias adder
    and clamp per column (≈ ACC_W LUTs each), and the shell: the 2:1 multiplexer between its two row
    banks and the load/shift multiplexer of its output row (Yosys maps each bit to a LUT3), plus its
    control. Checked on the default FNO's 1×8 and 16×1 shells: 120 and 184 estimated, 130 and 175
    xc7 LUTs measured (docs/folded.md, "cmvm")."""
    comb = trace_kernel(params, in_type)
    k, c = params["K"], params["C"]
    shell = k * in_type.width + c * out_w + SHELL_CONTROL_LUTS
    return float(comb.cost) + c * params["acc_w"] + shell


def mvau_res_type(params: dict, in_type: FixedType) -> str:
    """FINN's resType as Yosys decides it for our MVAU: products of ≥ 9 bits go to DSP48s."""
    pw = params["w_width"] + in_type.width + (0 if in_type.signed else 1)
    return "dsp" if pw >= DSP_MIN_PRODUCT_W else "lut"


def mvau_lut_estimate(params: dict, in_type: FixedType, simd: int, pe: int, stored_words: int,
                      res_type: str | None = None) -> float:
    """FINN's MVAU LUT estimate (finn-plus 1.6.1, finn/custom_op/fpgadataflow/hls/
    matrixvectoractivation_hls.py, MVAU_hls.lut_estimation, after FINN-R, Blott et al. 2018):
    c0 + c1·P·(mult + adder tree + accumulator [+ thresholds]) + c2 with c0 = 300, c1 = 1.1,
    mult = Q·(2⌈(W+A)/6⌉ − 1)·(W+A) (0 for resType dsp), adder tree = (W+A)(2Q − 1), accumulator =
    min(ACC bits, ⌈α + log2(1 + 2^−α) + 1⌉) with α = log2(MW) + W + A − 1 − signed(A), and c2 =
    P·Q·W·⌈WMEM/64⌉ for weights in LUT memory (mem_mode internal_embedded, WMEM ≤ 128 words). P = PE,
    Q = SIMD, MW = K, W/A = weight/input bits, WMEM = our stored weight words. Thresholds: 0 (noActivation:
    our requantizer is a shift and one clamp, not 2^B − 1 threshold comparators)."""
    p_, q = pe, simd
    w, a = params["w_width"], in_type.width
    res_type = res_type or mvau_res_type(params, in_type)
    c0, c1 = 300, 1.1
    c2 = p_ * q * w * math.ceil(stored_words / 64) if stored_words <= 128 else 0
    mult = 0 if res_type == "dsp" else q * (2 * math.ceil((w + a) / 6) - 1) * (w + a)
    adder_tree = (w + a) * (2 * q - 1)
    alpha = math.log2(params["K"]) + w + a - 1 - int(in_type.signed)
    acc = min(params["acc_w"], math.ceil(alpha + math.log2(1 + 2.0**-alpha) + 1))
    return c0 + c1 * (p_ * (mult + adder_tree + acc)) + c2


def auto_candidate(params: dict) -> bool:
    """Matrices the automatic choice considers (a forced {"kind": "cmvm"} takes any size)."""
    return params["K"] <= AUTO_MAX_K and params["C"] <= AUTO_MAX_C


# ---- Verilog -----------------------------------------------------------------------------------------
def _kif_bits(q) -> tuple[int, int, int]:
    from da4ml.types import minimal_kif

    k, i, f = (int(v) for v in minimal_kif(q))
    return k, i, f


def kernel_verilog(unit: Unit, prefix: str, in_type: FixedType, out_type: FixedType) -> tuple[dict[str, str], int]:
    """Verilog of one cmvm kernel: {module name: text} (da4ml's pipeline stages, a pipeline top with a
    clock enable, and the adapter `<prefix>`), and its latency in enabled cycles (row at `x` with ce →
    its codes at `y`). Adapter ports: clk, ce, x [K·IN_W] (codes, lane 0 in the LSBs), y [C·OUT_W]."""
    from da4ml.codegen.rtl.verilog import comb_logic_gen
    from da4ml.trace.pipeline import to_pipeline

    from qpde.backends.folded.codegen import _signed64

    p = unit.params
    k, c, acc_w = p["K"], p["C"], p["acc_w"]
    in_w, out_w = in_type.width, out_type.width
    comb = trace_kernel(p, in_type)
    pipe = to_pipeline(comb, LATENCY_CUTOFF, verbose=False)
    stages = len(pipe.solutions)
    files = {}
    for i, sol in enumerate(pipe.solutions):
        name = f"{prefix}_stage{i}"
        files[name] = comb_logic_gen(sol, name, print_latency=False, timescale=None)
    in_bits = [sum(sum(_kif_bits(q)) for q in sol.inp_qint) for sol in pipe.solutions]
    out_bits = in_bits[1:] + [sum(sum(_kif_bits(q)) for q in pipe.out_qint)]
    lines = [f"// da4ml's pipeline of {prefix} with a clock enable (da4ml 0.6 writes free-running stages)",
             f"module {prefix}_pipe (", "    input wire clk,", "    input wire ce,",
             f"    input wire [{in_bits[0] - 1}:0] model_inp,", f"    output reg [{out_bits[-1] - 1}:0] model_out", ");"]
    lines += [f"    reg [{w - 1}:0] stage{i}_inp;" for i, w in enumerate(in_bits)]
    lines += [f"    wire [{w - 1}:0] stage{i}_out;" for i, w in enumerate(out_bits)]
    lines += [f"    {prefix}_stage{i} stage{i} (.model_inp(stage{i}_inp), .model_out(stage{i}_out));" for i in range(stages)]
    lines += ["    always @(posedge clk) if (ce) begin", "        stage0_inp <= model_inp;"]
    lines += [f"        stage{i}_inp <= stage{i - 1}_out;" for i in range(1, stages)]
    lines += [f"        model_out <= stage{stages - 1}_out;", "    end", "endmodule", ""]
    files[f"{prefix}_pipe"] = "\n".join(lines)

    # adapter: codes → da4ml's packed input (per input its minimal k+i+f bits, f = 0: integer codes);
    # packed output → exact sums (sign-extended, shifted by −f) → << PSHIFT, + bias → requantized codes
    pack = []
    for j, q in enumerate(pipe.inp_qint):
        kk, ii, ff = _kif_bits(q)
        bits = kk + ii + ff
        if ff != 0 or bits > in_w:
            raise GraphError(f"{unit.name}: da4ml input {j} has format {(kk, ii, ff)}, not an integer code of {in_w} bits")
        if bits:  # the code's low bits: its value fits them (two's complement, or plain when unsigned)
            pack.append(f"x[{j * in_w + bits - 1}:{j * in_w}]")
    rq = p["requant"]
    bias = p["bias"]
    body = [f"// cmvm {unit.name}: {k}×{c} constant matrix (da4ml adder graph, {stages} stage(s)), bias, requantization",
            f"module {prefix} (", "    input wire clk,", "    input wire ce,",
            f"    // verilator lint_off UNUSEDSIGNAL", f"    input wire [{k * in_w - 1}:0] x,",
            f"    output wire [{c * out_w - 1}:0] y", ");", "    // the sums' top bits beyond ACC_W are copies of its sign",
            f"    wire [{out_bits[-1] - 1}:0] packed_out;",
            f"    {prefix}_pipe pipe (.clk(clk), .ce(ce), .model_inp({{{', '.join(reversed(pack))}}}), .model_out(packed_out));"]
    pos = 0
    for j, q in enumerate(pipe.out_qint):
        kk, ii, ff = _kif_bits(q)
        bits = kk + ii + ff
        if ff > 0:
            raise GraphError(f"{unit.name}: da4ml output {j} has {ff} fraction bits; integer codes have none")
        b = int(bias[j]) if bias is not None else 0
        if bits == 0:  # an all-zero column: the sum is 0
            body.append(f"    wire signed [{acc_w - 1}:0] s{j} = {acc_w}'sd0;")
        else:
            # da4ml's interval can be a bit wider than the compiler's exact bound (ACC_W holds every sum,
            # shifted, plus the bias): the low ACC_W bits of the wider two's complement are the same value
            wide = max(acc_w, bits - ff + p["pshift"])
            field_ = f"packed_out[{pos + bits - 1}:{pos}]"
            sign = f"packed_out[{pos + bits - 1}]" if kk else "1'b0"
            ext = f"{{{wide - bits}{{{sign}}}}}" if wide > bits else ""
            parts = ", ".join(v for v in (ext, field_) if v)
            body.append(f"    wire signed [{wide - 1}:0] t{j} = $signed({{{parts}}}) <<< {-ff + p['pshift']};")
            body.append(f"    wire signed [{acc_w - 1}:0] s{j} = t{j}[{acc_w - 1}:0];")
        body.append(f"    wire signed [{acc_w - 1}:0] a{j} = s{j} + {acc_w}'sd{b}" if b >= 0
                    else f"    wire signed [{acc_w - 1}:0] a{j} = s{j} - {acc_w}'sd{-b}")
        body[-1] += ";"
        body.append(f"    qpde_requant #(.IN_W({acc_w}), .RSHIFT({rq.rshift}), .LSHIFT({rq.lshift}), .OUT_W({out_w}), "
                    f".QMIN({_signed64(rq.lo)}), .QMAX({_signed64(rq.hi)})) rq{j} (.x(a{j}), .y(y[{(j + 1) * out_w - 1}:{j * out_w}]));")
        pos += bits
    body += ["    // verilator lint_on UNUSEDSIGNAL", "endmodule", ""]
    files[prefix] = "\n".join(body)
    return files, stages + 1


def da4ml_static_sources() -> list:
    """da4ml's Verilog cells (shift_adder, …) that its stage modules instantiate."""
    from pathlib import Path

    import da4ml.codegen.rtl as rtl

    return sorted((Path(rtl.__file__).parent / "verilog" / "source").glob("*.v"))
