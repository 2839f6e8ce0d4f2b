"""Verilog-2005 of an elaborated Dataflow: a top module wiring the hand-written stream units of hdl/,
ROM images for $readmemh, and the C++ Verilator testbench.

Top ports: clk, rst (synchronous, active high), s_valid/s_ready/s_data (input stream),
m_valid/m_ready/m_data (output stream). A beat carries `lanes` element codes, lane 0 in the least
significant bits and first in C order.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from qpde.backends.folded.fold import mvau_tiles
from qpde.backends.folded.graph import Dataflow, Stream, Unit
from qpde.backends.folded.model import SPATIAL_KINDS, grid2d

HDL_DIR = Path(__file__).parent / "hdl"
UNIT_FILES = ("qpde_requant.v", "qpde_fifo.v", "qpde_fork.v", "qpde_dwc.v", "qpde_mvau.v", "qpde_add.v",
              "qpde_map.v", "qpde_transpose.v", "qpde_outer.v", "qpde_mvau_stream.v")
UNIT_FILES += ("qpde_swu2d.v", "qpde_pool2d.v", "qpde_upsample2d.v", "qpde_concat.v")  # spatial units
UNIT_FILES += ("qpde_cmvm.v",)  # the shell of a da4ml constant-matrix kernel (cmvm.py writes the kernel)
# 1-D spatial units run on the 2-D modules as an L×1 grid (model.grid2d)
MODULES = {"swu": "qpde_swu2d", "pool": "qpde_pool2d", "upsample": "qpde_upsample2d"}
MEM_DIR = Path("src") / "memfiles"  # relative to out_dir; qpde.backends.rtl.synth copies it beside the Verilog


def clog2(n: int) -> int:
    """Bits to count 0..n-1, at least 1."""
    return max(1, (n - 1).bit_length())


def ident(name: str) -> str:
    return re.sub(r"\W", "_", name)


def _signed64(v: int) -> str:
    return f"-64'sd{-v}" if v < 0 else f"64'sd{v}"


def _hex_word(codes, width: int) -> str:
    """Concatenate codes (two's complement, `width` bits each, first in the LSBs) as hex."""
    word = 0
    for k, c in enumerate(codes):
        word |= (int(c) & ((1 << width) - 1)) << (k * width)
    return f"{word:0{max(1, (len(codes) * width + 3) // 4)}x}"


def mvau_roms(unit: Unit, simd: int, pe: int) -> tuple[list[str], list[str] | None, list[str] | None]:
    """ROM images. Weights: the stored tiles (fold.mvau_tiles) fold by fold, tile (f, s) one word
    holding W[s·SIMD + j][f·PE + p] at lane p·SIMD + j. Index (None when no tile is skipped: the
    dense schedule needs none): per stored word, its input word s, with bit SB set on a fold's last
    word. Bias word f holds bias[f·PE + p] at lane p."""
    p = unit.params
    w, k, c = p["weights"], p["K"], p["C"]
    tiles = mvau_tiles(p, simd, pe)
    sb = clog2(k // simd)
    words, index = [], []
    for f, cols in enumerate(tiles):
        cols = cols or [0]  # a fold without nonzero tiles: one zero word, so its outputs still come
        for i, s in enumerate(cols):
            words.append(_hex_word([w[s * simd + j][f * pe + q] for q in range(pe) for j in range(simd)],
                                   p["w_width"]))
            index.append(f"{(int(i == len(cols) - 1) << sb) | s:0{(sb + 4) // 4}x}")
    biases = None
    if p["bias"] is not None:
        biases = [_hex_word([p["bias"][f * pe + q] for q in range(pe)], p["acc_w"]) for f in range(c // pe)]
    return words, biases, (index if len(words) < (k // simd) * (c // pe) else None)


def _requant_params(rq, out: Stream) -> list[tuple[str, object]]:
    return [("OUT_W", out.type.width), ("RSHIFT", rq.rshift), ("LSHIFT", rq.lshift),
            ("QMIN", _signed64(rq.lo)), ("QMAX", _signed64(rq.hi))]


def _instance(df: Dataflow, unit: Unit, mem_files: dict[str, list[str]], kernels: dict[str, str]) -> str:
    s = {n: df.streams[n] for n in unit.inputs + unit.outputs}
    ins = [s[n] for n in unit.inputs]
    outs = [s[n] for n in unit.outputs]
    p = unit.params
    if unit.kind == "mvau":
        x, y = ins[0], outs[0]
        ns, nf = p["K"] // x.lanes, p["C"] // y.lanes
        words, biases, index = mvau_roms(unit, x.lanes, y.lanes)
        wfile, bfile, ifile = (f"{ident(unit.name)}_{t}.mem" for t in "wbi")
        mem_files[wfile] = words
        if biases is not None:
            mem_files[bfile] = biases
        if index is not None:
            mem_files[ifile] = index
        params = [("K", p["K"]), ("C", p["C"]), ("SIMD", x.lanes), ("PE", y.lanes), ("IN_W", x.type.width),
                  ("IN_SIGNED", int(x.type.signed)), ("WW", p["w_width"]), ("PSHIFT", p["pshift"]),
                  ("ACC_W", p["acc_w"]), ("HAS_BIAS", int(biases is not None))] + _requant_params(p["requant"], y) + \
                 [("WEIGHTS", f'"{wfile}"'), ("BIASES", f'"{bfile}"'), ("SB", clog2(ns)), ("FB", clog2(nf)),
                  ("NT", len(words)), ("SPARSE", int(index is not None))] + \
                 ([("INDEX", f'"{ifile}"')] if index is not None else []) + [("AB", clog2(len(words)))]
        ports = [("s", ins[0]), ("m", y)]
    elif unit.kind == "cmvm":
        return _cmvm_instance(unit, ins[0], outs[0], kernels)
    elif unit.kind == "add":
        a, b, y = ins[0], ins[1], outs[0]
        params = [("L", y.lanes), ("AW", a.type.width), ("A_SIGNED", int(a.type.signed)), ("BW", b.type.width),
                  ("B_SIGNED", int(b.type.signed)), ("ASHIFT", p["ashift"]), ("BSHIFT", p["bshift"]),
                  ("SUM_W", p["sum_w"]), ("OFFSET", _signed64(p.get("offset", 0)))] + _requant_params(p["requant"], y)
        ports = [("a", a), ("b", b), ("m", y)]
    elif unit.kind == "map":
        x, y = ins[0], outs[0]
        params = [("L", y.lanes), ("IN_W", x.type.width), ("IN_SIGNED", int(x.type.signed))] + \
            _requant_params(p["requant"], y)
        ports = [("s", x), ("m", y)]
    elif unit.kind == "transpose":
        x, y = ins[0], outs[0]
        params = [("W", x.type.width), ("L", x.lanes), ("R", p["R"]), ("C", p["C"]),
                  ("AB", clog2(p["R"] * p["C"] // x.lanes)), ("LB", clog2(x.lanes))]
        ports = [("s", x), ("m", y)]
    elif unit.kind in ("outer", "mvau_stream"):
        params, ports = _matmul_aa_instance(unit, ins, outs)
    elif unit.kind == "fork":
        x = ins[0]
        params = [("W", x.lanes * x.type.width)]
        ports = [("s", x), ("a", outs[0]), ("b", outs[1])]
    elif unit.kind == "fifo":
        x = ins[0]
        params = [("W", x.lanes * x.type.width), ("DEPTH", p["depth"]), ("AW", clog2(p["depth"]))]
        ports = [("s", x), ("m", outs[0])]
    elif unit.kind == "dwc":
        x, y = ins[0], outs[0]
        ratio = max(x.lanes, y.lanes) // min(x.lanes, y.lanes)
        params = [("W", x.type.width), ("LIN", x.lanes), ("LOUT", y.lanes), ("CW", clog2(ratio))]
        ports = [("s", x), ("m", y)]
    elif unit.kind in SPATIAL_KINDS:
        params, ports = _spatial_instance(unit, ins, outs)
    else:
        raise ValueError(f"no Verilog for unit kind {unit.kind!r}")
    plist = ",\n".join(f"        .{k}({v})" for k, v in params)
    conns = ["        .clk(clk)", "        .rst(rst)"]
    for prefix, st in ports:
        w = wire(st.name)
        conns += [f"        .{prefix}_valid({w}_valid)", f"        .{prefix}_ready({w}_ready)",
                  f"        .{prefix}_data({w}_data)"]
    module = MODULES.get(unit.kind, f"qpde_{unit.kind}")
    return (f"    // {unit.kind} {unit.name}" + (f" ({', '.join(unit.nodes)})" if unit.nodes else "") + "\n"
            f"    {module} #(\n{plist}\n    ) u_{ident(unit.name)} (\n" + ",\n".join(conns) + "\n    );\n")


def _cmvm_instance(unit: Unit, x: Stream, y: Stream, kernels: dict[str, str]) -> str:
    """The qpde_cmvm shell and its generated da4ml kernel (cmvm.kernel_verilog, added to `kernels`)."""
    from qpde.backends.folded.cmvm import kernel_verilog

    p, u = unit.params, ident(unit.name)
    prefix = f"qpde_cmvm_{u}"
    files, latency = kernel_verilog(unit, prefix, x.type, y.type)
    kernels.update(files)
    params = [("K", p["K"]), ("C", p["C"]), ("SIMD", x.lanes), ("PE", y.lanes), ("IN_W", x.type.width),
              ("OUT_W", y.type.width), ("LAT", latency), ("SB", clog2(p["K"] // x.lanes)), ("FB", clog2(p["C"] // y.lanes))]
    plist = ",\n".join(f"        .{k}({v})" for k, v in params)
    wx, wy = wire(x.name), wire(y.name)
    return (f"    // cmvm {unit.name} ({', '.join(unit.nodes)}): da4ml kernel {prefix}, latency {latency}\n"
            f"    wire k_{u}_ce;\n    wire [{p['K'] * x.type.width - 1}:0] k_{u}_x;\n"
            f"    wire [{p['C'] * y.type.width - 1}:0] k_{u}_y;\n"
            f"    qpde_cmvm #(\n{plist}\n    ) u_{u} (\n        .clk(clk),\n        .rst(rst),\n"
            f"        .s_valid({wx}_valid),\n        .s_ready({wx}_ready),\n        .s_data({wx}_data),\n"
            f"        .m_valid({wy}_valid),\n        .m_ready({wy}_ready),\n        .m_data({wy}_data),\n"
            f"        .k_ce(k_{u}_ce),\n        .k_x(k_{u}_x),\n        .k_y(k_{u}_y)\n    );\n"
            f"    {prefix} u_{u}_kernel (.clk(clk), .ce(k_{u}_ce), .x(k_{u}_x), .y(k_{u}_y));\n")


def _matmul_aa_instance(unit: Unit, ins: list[Stream], outs: list[Stream]) -> tuple[list, list]:
    """Parameters and ports of hdl/qpde_outer.v (A token-major, Aᵀ B) and hdl/qpde_mvau_stream.v (A B)."""
    p, (a, b), y = unit.params, ins, outs[0]
    m, k, c, ln = p["M"], p["K"], p["P"], y.lanes  # both inputs arrive at the output's lanes (compile)
    params = [("M", m), ("K", k), ("P", c), ("L", ln), ("AW", a.type.width), ("A_SIGNED", int(a.type.signed)),
              ("BW", b.type.width), ("B_SIGNED", int(b.type.signed)), ("ACC_W", p["acc_w"]),
              ("OFFSET", _signed64(p["offset"]))] + \
        _requant_params(p["requant"], y)
    if unit.kind == "outer":
        params += [("MB", clog2(m // ln)), ("KB", clog2(k)), ("PB", clog2(c // ln)),
                   ("OB", clog2(m * c // ln))]
        return params, [("a", a), ("b", b), ("m", y)]
    params += [("RB", clog2(m)), ("KB", clog2(k // ln)), ("PB", clog2(c // ln)), ("WB", clog2(k * c // ln))]
    return params, [("s", a), ("w", b), ("m", y)]


def _spatial_instance(unit: Unit, ins: list[Stream], outs: list[Stream]) -> tuple[list, list]:
    """Parameters and ports of the spatial units (hdl/qpde_swu2d.v, _pool2d, _upsample2d on the grid
    of model.grid2d, and _concat)."""
    p, x, y = unit.params, ins[0], outs[0]
    ln = y.lanes
    if unit.kind != "concat":
        h, wd, fh, fw = grid2d(unit)
        nw = p["C"] // ln
    if unit.kind in ("swu", "swu2d"):
        slots = (fh - 1) * wd + fw + 1
        kb, wb = clog2(max(fh, fw)), clog2(nw)
        rb = max(clog2(max(h, wd) + max(fh, fw) + 1), kb) + 1
        params = [("W", x.type.width), ("LN", ln), ("C", p["C"]), ("H", h), ("WD", wd), ("KH", fh),
                  ("KW", fw), ("PB", max(clog2(h * wd + slots + 1), rb) + 1), ("RB", rb), ("KB", kb),
                  ("SB", max(clog2(2 * slots), wb + 1)), ("WB", wb)]
        return params, [("s", x), ("m", y)]
    if unit.kind in ("pool", "pool2d"):
        return [("W", x.type.width), ("SIGNED", int(x.type.signed)), ("LN", ln), ("C", p["C"]), ("WD", wd),
                ("PW", fw), ("CB", clog2(wd // fw)), ("WB", clog2(nw))], [("s", x), ("m", y)]
    if unit.kind in ("upsample", "upsample2d"):
        return [("W", x.type.width), ("LN", ln), ("C", p["C"]), ("WD", wd), ("UW", fw), ("CB", clog2(wd)),
                ("WB", clog2(nw))], [("s", x), ("m", y)]
    a, b = ins
    params = [("LN", ln), ("AW", a.type.width), ("A_SIGNED", int(a.type.signed)), ("BW", b.type.width),
              ("B_SIGNED", int(b.type.signed)), ("ASHIFT", p["ashift"]), ("BSHIFT", p["bshift"]),
              ("OUT_W", y.type.width), ("CA", p["CA"]), ("CB", p["CB"]), ("WB", clog2(max(p["CA"], p["CB"]) // ln)),
              ("DA", p["CA"] // ln + 2), ("DAB", clog2(p["CA"] // ln + 2)), ("DB", p["CB"] // ln + 2),
              ("DBB", clog2(p["CB"] // ln + 2))]
    return params, [("a", a), ("b", b), ("m", y)]


def wire(stream: str) -> str:
    return f"st_{ident(stream)}"


def top_verilog(df: Dataflow, name: str, mem_files: dict[str, list[str]], kernels: dict[str, str] | None = None) -> str:
    """The top module; `kernels` collects the generated modules of cmvm units (module name → Verilog)."""
    kernels = {} if kernels is None else kernels
    s_in, s_out = df.streams[df.input], df.streams[df.output]
    w_in, w_out = s_in.lanes * s_in.type.width, s_out.lanes * s_out.type.width
    lines = [f"// Generated by qpde's folded backend: {len(df.units)} stream units. Input {s_in.lanes} lane(s) of "
             f"{s_in.type}, output {s_out.lanes} lane(s) of {s_out.type}.",
             f"module {name} (",
             "    input  wire clk,", "    input  wire rst,",
             "    input  wire s_valid,", "    output wire s_ready,", f"    input  wire [{w_in - 1}:0] s_data,",
             "    output wire m_valid,", "    input  wire m_ready,", f"    output wire [{w_out - 1}:0] m_data", ");"]
    for st in df.streams.values():
        if any(st.name in u.inputs or st.name in u.outputs for u in df.units):
            w = wire(st.name)
            lines.append(f"    wire {w}_valid, {w}_ready;\n    wire [{st.lanes * st.type.width - 1}:0] {w}_data;")
    wi, wo = wire(df.input), wire(df.output)
    lines += [f"    assign {wi}_valid = s_valid;", f"    assign s_ready = {wi}_ready;",
              f"    assign {wi}_data = s_data;", f"    assign m_valid = {wo}_valid;",
              f"    assign {wo}_ready = m_ready;", f"    assign m_data = {wo}_data;",
              ""]
    lines += [_instance(df, u, mem_files, kernels) for u in df.units]
    lines.append("endmodule\n")
    return "\n".join(lines)


def write_project(df: Dataflow, out_dir: Path, name: str) -> list[Path]:
    """Write the top, copy the unit library and the ROM images; return the Verilog files."""
    src = out_dir / "src"
    mem = out_dir / MEM_DIR
    shutil.rmtree(src, ignore_errors=True)
    mem.mkdir(parents=True)
    mem_files: dict[str, list[str]] = {}
    kernels: dict[str, str] = {}
    top = src / f"{name}.v"
    top.write_text(top_verilog(df, name, mem_files, kernels))
    for fname, words in mem_files.items():
        (mem / fname).write_text("\n".join(words) + "\n")
    files = [top]
    for f in UNIT_FILES:
        shutil.copy2(HDL_DIR / f, src / f)
        files.append(src / f)
    if kernels:  # cmvm units: their da4ml kernels and da4ml's cells
        from qpde.backends.folded.cmvm import da4ml_static_sources

        for module, text in kernels.items():
            (src / f"{module}.v").write_text(text)
            files.append(src / f"{module}.v")
        used = "\n".join(kernels.values())
        for f in da4ml_static_sources():  # the cells the kernels use, without their `timescale (no other module has one)
            if re.search(rf"\b{f.stem} #\(", used):
                text = "".join(line for line in f.read_text().splitlines(True) if not line.startswith("`timescale"))
                (src / f.name).write_text(text)
                files.append(src / f.name)
    return [f.resolve() for f in files]


def _port_setter(port: str, bits: int, read: bool) -> str:
    """C++ statements moving a beat between `uint32_t w[]` and a Verilator port of `bits` bits."""
    if bits <= 64:
        if read:
            return f"uint64_t v = (uint64_t)top->{port}; w[0] = (uint32_t)v; w[1] = (uint32_t)(v >> 32);"
        return f"top->{port} = ((uint64_t)w[1] << 32) | w[0];"
    n = (bits + 31) // 32
    if read:
        return f"for (int i = 0; i < {n}; ++i) w[i] = top->{port}[i];"
    return f"for (int i = 0; i < {n}; ++i) top->{port}[i] = w[i];"


def testbench_cpp(df: Dataflow, name: str) -> str:
    s_in, s_out = df.streams[df.input], df.streams[df.output]
    w_in, w_out = s_in.lanes * s_in.type.width, s_out.lanes * s_out.type.width
    n_words = max((w_in + 31) // 32, (w_out + 31) // 32, 2)
    return TB_TEMPLATE.format(
        top=f"V{name}", n_words=n_words, in_lanes=s_in.lanes, in_w=s_in.type.width, out_lanes=s_out.lanes,
        out_w=s_out.type.width, in_beats=s_in.numel // s_in.lanes, out_beats=s_out.numel // s_out.lanes,
        set_in=_port_setter("s_data", w_in, read=False), get_out=_port_setter("m_data", w_out, read=True))


# Doubled braces: str.format. Reads `fields` fields of element codes (unsigned, one per token, C order)
# from the input file; writes output codes (unsigned) and, per field, the cycle of its first input
# beat and of its last output beat. Valid is held until accepted (AXI-Stream), with random gaps before
# each beat; ready toggles freely. A run without progress for STALL_LIMIT cycles is a deadlock (exit 3).
TB_TEMPLATE = r"""// Generated by qpde's folded backend: Verilator testbench of {top}.
#include "{top}.h"
#include "verilated.h"
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

static const int IN_LANES = {in_lanes}, IN_W = {in_w}, OUT_LANES = {out_lanes}, OUT_W = {out_w};
static const long IN_BEATS = {in_beats}, OUT_BEATS = {out_beats};
static const long STALL_LIMIT = 1000000;

static void set_in({top}* top, const uint32_t* w) {{ {set_in} }}
static void get_out({top}* top, uint32_t* w) {{ {get_out} }}

static uint64_t field_of(const uint32_t* w, int lane, int width) {{
    uint64_t v = 0;
    for (int b = 0; b < width; ++b) {{
        int bit = lane * width + b;
        v |= (uint64_t)((w[bit / 32] >> (bit % 32)) & 1u) << b;
    }}
    return v;
}}

static void put_field(uint32_t* w, int lane, int width, uint64_t v) {{
    for (int b = 0; b < width; ++b) {{
        int bit = lane * width + b;
        w[bit / 32] |= (uint32_t)((v >> b) & 1u) << (bit % 32);
    }}
}}

int main(int argc, char** argv) {{
    if (argc != 8) {{
        std::fprintf(stderr, "usage: %s IN OUT STATS FIELDS SEED GAP_PERCENT STALL_PERCENT\n", argv[0]);
        return 2;
    }}
    const long fields = std::atol(argv[4]);
    std::mt19937_64 rng(std::strtoull(argv[5], nullptr, 10));
    const int gap = std::atoi(argv[6]), stall = std::atoi(argv[7]);
    std::FILE* fin = std::fopen(argv[1], "r");
    if (!fin) return 2;
    std::vector<uint64_t> in(fields * IN_BEATS * IN_LANES);
    for (auto& v : in)
        if (std::fscanf(fin, "%lu", &v) != 1) return 2;
    std::fclose(fin);

    Verilated::commandArgs(argc, argv);
    {top}* top = new {top};
    top->clk = 0;
    top->rst = 1;
    top->s_valid = 0;
    top->m_ready = 0;
    for (int i = 0; i < 4; ++i) {{
        top->clk = 0; top->eval(); top->clk = 1; top->eval();
    }}
    top->clk = 0;
    top->rst = 0;

    std::vector<uint64_t> out;
    std::vector<long> first_in(fields, -1), last_out(fields, -1);
    long ib = 0, ob = 0, cycle = 0, idle = 0;
    bool offering = false;
    uint32_t w[{n_words}];
    while (ob < fields * OUT_BEATS) {{
        if (!offering && ib < fields * IN_BEATS) offering = (long)(rng() % 100) >= gap;
        if (offering) {{
            for (auto& x : w) x = 0;
            for (int l = 0; l < IN_LANES; ++l) put_field(w, l, IN_W, in[ib * IN_LANES + l]);
            set_in(top, w);
        }}
        top->s_valid = offering;
        top->m_ready = (long)(rng() % 100) >= stall;
        top->eval();
        bool in_fire = top->s_valid && top->s_ready, out_fire = top->m_valid && top->m_ready;
        if (in_fire) {{
            if (ib % IN_BEATS == 0) first_in[ib / IN_BEATS] = cycle;
            ++ib;
            offering = false;
        }}
        if (out_fire) {{
            get_out(top, w);
            for (int l = 0; l < OUT_LANES; ++l) out.push_back(field_of(w, l, OUT_W));
            if (ob % OUT_BEATS == OUT_BEATS - 1) last_out[ob / OUT_BEATS] = cycle;
            ++ob;
        }}
        idle = in_fire || out_fire ? 0 : idle + 1;
        if (idle > STALL_LIMIT) {{
            std::fprintf(stderr, "deadlock: no beat for %ld cycles (input beat %ld, output beat %ld)\n", idle, ib, ob);
            return 3;
        }}
        top->clk = 1; top->eval(); top->clk = 0;
        ++cycle;
    }}
    top->final();
    delete top;

    std::FILE* fout = std::fopen(argv[2], "w");
    for (auto v : out) std::fprintf(fout, "%lu\n", v);
    std::fclose(fout);
    std::FILE* fst = std::fopen(argv[3], "w");
    for (long f = 0; f < fields; ++f) std::fprintf(fst, "%ld %ld\n", first_in[f], last_out[f]);
    std::fclose(fst);
    return 0;
}}
"""
