"""Behavioural simulation models of the ECP5 cells Yosys' synth_ecp5 maps to that its ecp5/cells_sim.v
leaves without behaviour: DP16KD (declared `(* blackbox *)`: a simulated EBR would read 0) and
MULT18X18D (only in cells_bb.v: not simulable at all).

DP16KD, as Yosys' brams_map.v instantiates it for `$__ECP5_DP16KD_` (true dual port) and
`$__ECP5_PDPW16KD_` (36-bit write port A, read port B):
- 18,432 bits as 1,024 rows of 18; INITVAL_xx holds rows 16·xx … 16·xx + 15, row i in bits
  [20i, 20i + 18) (Yosys' `init_slice`);
- DATA_WIDTH 1, 2, 4, 9, 18 on either port, and 36 (PDP: port A writes {DIB, DIA}, port B reads
  {DOB, DOA}); the word of address AD at width w starts at bit AD[13:4]·18 + 9·AD[3] + 4·AD[2] +
  2·AD[1] + AD[0] with AD's low k bits cleared (k = 0, 1, 2, 3, 4, 5 for w = 1 … 36): the memlib
  rule that a word of one width is two words of the next narrower one plus any spare bits
  (an 18-bit row is two 9-bit bytes, a byte two nibbles and a spare bit). At 18 bits AD[1:0], at 36
  bits AD[3:0] are the write's byte enables (9 bits each);
- WRITEMODE NORMAL (output holds during a write), WRITETHROUGH (output = the word after the write),
  READBEFOREWRITE (output = the word before it); clock enables CEx; chip selects CSx[2:0] compared
  with CSDECODE_x ("0bXYZ"); RESETMODE SYNC (RSTx clears the output, also without CEx, and blocks
  that cycle's write: memlib `rdsrst zero ungated block_wr`); REGMODE NOREG or OUTREG (a second
  output register, enabled by OCEx, cleared by RSTx); outputs 0 until the first read.
MULT18X18D: the combinational product P = A × B of Yosys' dsp_map.v (A, B signed per SIGNEDA/SIGNEDB,
36-bit P), all REG_*_CLK "NONE".

A netlist using anything else (inverted clocks or other *MUX settings, an ASYNC reset that is driven
(synth_ecp5 writes RESETMODE "ASYNC" with RSTx tied 0 for memories without a read reset), a registered or
cascaded multiplier, dynamic init) is not simulated (`unsupported` names the cell and setting), so
no verdict rests on a guess. References: Lattice TN1264 (ECP5 memory) and TN1267 (sysDSP); Yosys'
techlibs/ecp5 brams.txt, brams_map.v, dsp_map.v for the mapping these models mirror.
"""

from __future__ import annotations

import re

CELLS = ("DP16KD", "MULT18X18D")
WIDTHS = (1, 2, 4, 9, 18)
PINS_DP = ([f"DI{p}{i}" for p in "AB" for i in range(18)] + [f"AD{p}{i}" for p in "AB" for i in range(14)]
           + [f"{s}{p}" for p in "AB" for s in ("CE", "OCE", "CLK", "WE", "RST")]
           + [f"CS{p}{i}" for p in "AB" for i in range(3)] + [f"DO{p}{i}" for p in "AB" for i in range(18)])


def _instances(netlist: str, cell: str) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """(name, parameter → value text, port → connection text) of every instance of `cell` in a
    write_verilog netlist."""
    out = []
    for match in re.finditer(rf"^\s+{cell} (?:#\((.*?)\n\s+\) )?(\\?\S+)\s+\((.*?)\n\s+\);", netlist, re.M | re.S):
        params, name, conns = match.groups()
        out.append((name, dict(re.findall(r"\.(\w+)\(([^()]*)\)", params or "")),
                    {k: v.strip() for k, v in re.findall(r"\.(\w+)\(([^()]*)\)", conns)}))
    return out


def _int(text: str) -> int:
    return int(re.sub(r".*'s?d", "", text)) if "'" in text else int(text)


def _str(text: str | None, default: str) -> str:
    return default if text is None else text.strip('"')


def unsupported(netlist: str) -> list[str]:
    """One line per DP16KD/MULT18X18D instance whose configuration the models do not cover (empty: all
    covered)."""
    problems = []
    for name, p, conns in _instances(netlist, "DP16KD"):
        wa, wb = (_int(p.get(f"DATA_WIDTH_{x}", "18")) for x in "AB")
        if wa not in WIDTHS + (36,) or wb not in WIDTHS + (36,) or (wb == 36 and wa != 36):
            # 36 bits only as the pseudo dual port: A writes, B reads (a 36-bit read drives DOA too)
            problems.append(f"DP16KD {name}: DATA_WIDTH_A {wa}, DATA_WIDTH_B {wb}")
        for x in "AB":
            if _str(p.get(f"REGMODE_{x}"), "NOREG") not in ("NOREG", "OUTREG"):
                problems.append(f"DP16KD {name}: REGMODE_{x} {p[f'REGMODE_{x}']}")
            if _str(p.get(f"WRITEMODE_{x}"), "NORMAL") not in ("NORMAL", "WRITETHROUGH", "READBEFOREWRITE"):
                problems.append(f"DP16KD {name}: WRITEMODE_{x} {p[f'WRITEMODE_{x}']}")
            if not re.fullmatch(r"0b[01]{3}", _str(p.get(f"CSDECODE_{x}"), "0b000")):
                problems.append(f"DP16KD {name}: CSDECODE_{x} {p[f'CSDECODE_{x}']}")
        resets = [conns.get(f"RST{x}", "") for x in "AB"]
        if _str(p.get("RESETMODE"), "SYNC") != "SYNC" and any(r not in ("1'h0", "1'b0", "") for r in resets):
            # Yosys picks ASYNC for memories without a read reset too: the same cell while RST is 0
            problems.append(f"DP16KD {name}: RESETMODE {p['RESETMODE']} with a reset (only SYNC is modelled)")
        if _str(p.get("INIT_DATA"), "STATIC") != "STATIC":
            problems.append(f"DP16KD {name}: INIT_DATA {p['INIT_DATA']}")
        for key, value in p.items():  # pin muxes: only the plain pin (no inversion, no constant)
            if key.endswith("MUX") and _str(value, key[:-3]) != key[:-3]:
                problems.append(f"DP16KD {name}: {key} {value}")
    for name, p, conns in _instances(netlist, "MULT18X18D"):
        for key, value in p.items():
            if key.startswith("REG_") and key.endswith("_CLK") and _str(value, "NONE") != "NONE":
                problems.append(f"MULT18X18D {name}: {key} {value} (registers are not modelled)")
            elif key in ("MULT_BYPASS", "CAS_MATCH_REG") and _str(value, "") not in ("DISABLED", "FALSE"):
                problems.append(f"MULT18X18D {name}: {key} {value}")
        used = [k for k, v in conns.items() if re.match(r"(SRO[AB]|RO[ABC])\d+$|SIGNEDP$", k) and v]
        fixed = [k for k in ("SOURCEA", "SOURCEB") if conns.get(k, "1'h0") not in ("1'h0", "1'b0", "")]
        if used or fixed:
            problems.append(f"MULT18X18D {name}: {', '.join(used + fixed)} used (only P = A × B is modelled)")
    return problems


def _bus(prefix: str, n: int) -> str:
    return "{" + ", ".join(f"{prefix}{i}" for i in reversed(range(n))) + "}"


def _dp16kd_port(x: str) -> str:
    """Port x's clocked process: read into q_x (36 bits: a 36-bit read of port B fills DOA too), write."""
    other = "B" if x == "A" else "A"
    return f"""
    // ---- port {x} ----
    wire [13:0] ad_{x} = {_bus(f"AD{x}", 14)};
    wire sel_{x} = {{CS{x}2, CS{x}1, CS{x}0}} == cs_{x};
    integer i_{x}, b_{x}, wbase_{x};
    reg [35:0] old_{x}, new_{x}, q_{x} = 36'd0, oreg_{x} = 36'd0;
    always @(posedge CLK{x}) begin
        b_{x} = base(ad_{x}, DATA_WIDTH_{x});
        for (i_{x} = 0; i_{x} < 36; i_{x} = i_{x} + 1)
            old_{x}[i_{x}] = i_{x} < DATA_WIDTH_{x} && b_{x} + i_{x} < 18432 ? data[b_{x} + i_{x}] : 1'b0;
        new_{x} = old_{x};
        if (RST{x}) q_{x} <= 36'd0;  // synchronous, not gated by CE{x}; it blocks the write
        else if (CE{x} && sel_{x}) begin
            if (WE{x} && {"DATA_WIDTH_B != 36" if x == "B" else "1'b1"}) begin  // a 36-bit port B only reads
                for (i_{x} = 0; i_{x} < DATA_WIDTH_{x}; i_{x} = i_{x} + 1)
                    if (DATA_WIDTH_{x} < 18 || ad_{x}[i_{x} / 9]) begin  // x18/x36: AD[1:0]/AD[3:0] byte enables
                        new_{x}[i_{x}] = di_{x}[i_{x}];
                        data[b_{x} + i_{x}] <= di_{x}[i_{x}];
                    end
                if (WRITEMODE_{x} == "WRITETHROUGH") q_{x} <= new_{x};
                else if (WRITEMODE_{x} == "READBEFOREWRITE") q_{x} <= old_{x};
            end else if ({"DATA_WIDTH_A != 36" if x == "A" else "1'b1"})  // a 36-bit port A only writes
                q_{x} <= old_{x};
        end
        if (RST{x}) oreg_{x} <= 36'd0;
        else if (OCE{x}) oreg_{x} <= q_{x};
    end
    wire [35:0] out_{x} = REGMODE_{x} == "OUTREG" ? oreg_{x} : q_{x};"""


def dp16kd_model() -> str:
    muxes = "\n".join(f'    parameter {pin}MUX = "{pin}";' for pin in PINS_DP)
    initval = "\n".join(f"    parameter [319:0] INITVAL_{i:02X} = 320'h0;" for i in range(64))
    load = "\n".join(f"        for (k = 0; k < 288; k = k + 1) data[{i * 288} + k] = INITVAL_{i:02X}[k / 18 * 20 + k % 18];"
                     for i in range(64))
    ports = ",\n".join(f"    input {', '.join(f'{s}{x}{i}' for i in reversed(range(n)))}" for x in "AB"
                       for s, n in (("DI", 18), ("AD", 14), ("CS", 3)))
    outs = ",\n".join(f"    output {', '.join(f'DO{x}{i}' for i in reversed(range(18)))}" for x in "AB")
    return f"""module DP16KD (
{ports},
    input CEA, OCEA, CLKA, WEA, RSTA, CEB, OCEB, CLKB, WEB, RSTB,
{outs}
);
    parameter DATA_WIDTH_A = 18;
    parameter DATA_WIDTH_B = 18;
    parameter REGMODE_A = "NOREG";
    parameter REGMODE_B = "NOREG";
    parameter RESETMODE = "SYNC";
    parameter ASYNC_RESET_RELEASE = "SYNC";
    parameter CSDECODE_A = "0b000";
    parameter CSDECODE_B = "0b000";
    parameter WRITEMODE_A = "NORMAL";
    parameter WRITEMODE_B = "NORMAL";
    parameter WID = 0;
    parameter GSR = "ENABLED";
    parameter INIT_DATA = "STATIC";
{muxes}
{initval}
    // CSDECODE "0bXYZ": the last three characters, X the select of CS2
    localparam [2:0] cs_A = {{CSDECODE_A[23:16] == "1", CSDECODE_A[15:8] == "1", CSDECODE_A[7:0] == "1"}};
    localparam [2:0] cs_B = {{CSDECODE_B[23:16] == "1", CSDECODE_B[15:8] == "1", CSDECODE_B[7:0] == "1"}};
    reg data [0:18431];
    integer k;
    initial begin
{load}
    end
    // first bit of the word at address ad, width w (the module doc's layout)
    function integer base(input [13:0] ad, input integer w);
        reg [13:0] a;
        begin
            a = ad & ~((14'd1 << (w == 1 ? 0 : w == 2 ? 1 : w == 4 ? 2 : w == 9 ? 3 : w == 18 ? 4 : 5)) - 14'd1);
            base = a[13:4] * 18 + (a[3] ? 9 : 0) + (a[2] ? 4 : 0) + (a[1] ? 2 : 0) + (a[0] ? 1 : 0);
        end
    endfunction
    wire [17:0] dia = {_bus("DIA", 18)}, dib = {_bus("DIB", 18)};
    wire [35:0] di_A = DATA_WIDTH_A == 36 ? {{dib, dia}} : {{18'd0, dia}};
    wire [35:0] di_B = {{18'd0, dib}};
{_dp16kd_port("A")}
{_dp16kd_port("B")}
    wire [17:0] doa = DATA_WIDTH_B == 36 ? out_B[17:0] : out_A[17:0];
    wire [17:0] dob = DATA_WIDTH_B == 36 ? out_B[35:18] : out_B[17:0];
    assign {_bus("DOA", 18)} = doa;
    assign {_bus("DOB", 18)} = dob;
endmodule
"""


def mult18x18d_model() -> str:
    ins = ",\n".join(f"    input {', '.join(f'{s}{i}' for i in reversed(range(18)))}" for s in ("A", "B", "C", "SRIA", "SRIB"))
    outs = ",\n".join(f"    output {', '.join(f'{s}{i}' for i in reversed(range(n)))}"
                      for s, n in (("SROA", 18), ("SROB", 18), ("ROA", 18), ("ROB", 18), ("ROC", 18), ("P", 36)))
    params = "\n".join(f'    parameter REG_{r}_{s} = "{d}";' for r in ("INPUTA", "INPUTB", "INPUTC", "PIPELINE", "OUTPUT")
                       for s, d in (("CLK", "NONE"), ("CE", "CE0"), ("RST", "RST0")))
    return f"""module MULT18X18D (
{ins},
    input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
    input CLK0, CLK1, CLK2, CLK3, CE0, CE1, CE2, CE3, RST0, RST1, RST2, RST3,
{outs},
    output SIGNEDP
);
{params}
    parameter [127:0] CLK0_DIV = "ENABLED";
    parameter [127:0] CLK1_DIV = "ENABLED";
    parameter [127:0] CLK2_DIV = "ENABLED";
    parameter [127:0] CLK3_DIV = "ENABLED";
    parameter HIGHSPEED_CLK = "NONE";
    parameter [127:0] GSR = "ENABLED";
    parameter CAS_MATCH_REG = "FALSE";
    parameter [127:0] SOURCEB_MODE = "B_SHIFT";
    parameter [127:0] MULT_BYPASS = "DISABLED";
    parameter [127:0] RESETMODE = "SYNC";
    // combinational multiplier (every REG_*_CLK "NONE": `unsupported` refuses the rest)
    wire [17:0] a = {_bus("A", 18)}, b = {_bus("B", 18)};
    wire [36:0] ax = {{{{19{{SIGNEDA & a[17]}}}}, a}}, bx = {{{{19{{SIGNEDB & b[17]}}}}, b}};
    wire [73:0] p = {{{{37{{ax[36]}}}}, ax}} * {{{{37{{bx[36]}}}}, bx}};
    assign {_bus("P", 36)} = p[35:0];
    assign {_bus("SROA", 18)} = 18'd0;  // not modelled: `unsupported` refuses netlists that read these
    assign {_bus("SROB", 18)} = 18'd0;
    assign {_bus("ROA", 18)} = 18'd0;
    assign {_bus("ROB", 18)} = 18'd0;
    assign {_bus("ROC", 18)} = 18'd0;
    assign SIGNEDP = 1'b0;
endmodule
"""


def ecp5_models() -> str:
    """Verilog of DP16KD (replacing cells_sim.v's black box) and MULT18X18D."""
    return dp16kd_model() + "\n" + mult18x18d_model()
