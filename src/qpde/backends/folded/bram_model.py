"""Behavioural simulation models of the Xilinx block RAMs Yosys maps memories to (RAMB18E1, RAMB36E1):
Yosys' xilinx/cells_sim.v declares them with timing only, so a simulated netlist would read 0.

Covers what the folded units' memories map to and nothing else: true dual port (RAM_MODE "TDP"),
port widths 1, 2, 4, 9, 18 (and 36 on RAMB36E1), unregistered outputs (DOx_REG 0), READ_FIRST,
WRITE_FIRST and NO_CHANGE, byte write enables, INIT_xx/INITP_xx contents, INIT_x/SRVAL_x; and the
read-only simple dual port of a wide ROM (RAM_MODE "SDP", READ_WIDTH_A 72 on RAMB36E1 / 36 on
RAMB18E1, no write port: port A's address, clock and enable; DOADO/DOPADOP the low half of the word,
DOBDO/DOPBDOP the high half). A netlist
using anything else is not simulated (`supported`), so no verdict rests on a guess (UG473 is the
reference for the behaviour).
"""

from __future__ import annotations

import re

# cell → (data bits, parity bits, address bits, write-enable bits per port, widths supported)
CELLS = {"RAMB18E1": (16384, 2048, 14, (2, 4), (0, 1, 2, 4, 9, 18)),
         "RAMB36E1": (32768, 4096, 15, (4, 8), (0, 1, 2, 4, 9, 18, 36))}
SDP_READ_WIDTH = {"RAMB18E1": 36, "RAMB36E1": 72}  # both data buses: a word of twice the TDP width


def supported(netlist: str) -> bool:
    """True when every block RAM of the netlist uses only what the models cover."""
    for cell, (_, _, _, _, widths) in CELLS.items():
        for params in re.findall(rf"^\s+{cell} #\((.*?)\n\s+\) ", netlist, re.M | re.S):
            values = dict(re.findall(r"\.(\w+)\(([^)]*)\)", params))
            width = {k: int(re.sub(r".*'s?d", "", values.get(k, "0")))
                     for k in ("READ_WIDTH_A", "READ_WIDTH_B", "WRITE_WIDTH_A", "WRITE_WIDTH_B")}
            mode = values.get("RAM_MODE", '"TDP"')
            if mode == '"SDP"':  # only a read-only wide ROM
                if width != {"READ_WIDTH_A": SDP_READ_WIDTH[cell], "READ_WIDTH_B": 0, "WRITE_WIDTH_A": 0,
                             "WRITE_WIDTH_B": 0}:
                    return False
            elif mode != '"TDP"' or any(w not in widths for w in width.values()):
                return False
            if any(values.get(k, '"NONE"') != '"NONE"' for k in ("RAM_EXTENSION_A", "RAM_EXTENSION_B")):
                return False
            for key in ("DOA_REG", "DOB_REG"):
                if int(re.sub(r".*'s?[dh]", "", values.get(key, "0")) or 0) != 0:
                    return False
            if any(k.startswith("IS_") and not re.fullmatch(r"1'h0|1'b0|0", v) for k, v in values.items()):
                return False
    return True


def _pad(bits: int) -> str:
    return f"{{{bits}'b0, " if bits else ""


def _port(p: str, abits: int, dbus: int, pbus: int) -> str:
    clk, en, rst = (("CLKARDCLK", "ENARDEN", "RSTRAMARSTRAM") if p == "A" else ("CLKBWRCLK", "ENBWREN", "RSTRAMB"))
    addr, di, dip, do, dop = (("ADDRARDADDR", "DIADI", "DIPADIP", "DOADO", "DOPADOP") if p == "A" else
                              ("ADDRBWRADDR", "DIBDI", "DIPBDIP", "DOBDO", "DOPBDOP"))
    we = "WEA" if p == "A" else "WEBWE"
    dw = f"(WRITE_WIDTH_{p} >= 9 ? WRITE_WIDTH_{p} / 9 * 8 : WRITE_WIDTH_{p})"
    rw = f"(READ_WIDTH_{p} >= 9 ? READ_WIDTH_{p} / 9 * 8 : READ_WIDTH_{p})"
    return f"""
    // ---- port {p} ----
    reg [31:0] do_{p} = {_pad(32 - dbus)}INIT_{p}[{dbus - 1}:0]{"}" if dbus < 32 else ""};
    reg [3:0] dop_{p} = {_pad(4 - pbus)}INIT_{p}[{dbus + pbus - 1}:{dbus}]{"}" if pbus < 4 else ""};
    integer i_{p}, wd_{p}, wp_{p}, rd_{p}, rp_{p};
    always @(posedge {clk}) if ({en}) begin
        wd_{p} = {dw};
        wp_{p} = WRITE_WIDTH_{p} >= 9 ? WRITE_WIDTH_{p} / 9 : 0;
        rd_{p} = {rw};
        rp_{p} = READ_WIDTH_{p} >= 9 ? READ_WIDTH_{p} / 9 : 0;
        if (RAM_MODE == "TDP" && READ_WIDTH_{p} != 0 && !(WRITE_MODE_{p} == "NO_CHANGE" && |{we})) begin
            for (i_{p} = 0; i_{p} < 32; i_{p} = i_{p} + 1)
                do_{p}[i_{p}] <= i_{p} < rd_{p} ? data[{addr}[{abits - 1}:0] / rd_{p} * rd_{p} + i_{p}] : 1'b0;
            for (i_{p} = 0; i_{p} < 4; i_{p} = i_{p} + 1)
                dop_{p}[i_{p}] <= i_{p} < rp_{p} ? parity[{addr}[{abits - 1}:0] / rd_{p} * rp_{p} + i_{p}] : 1'b0;
        end
        if (WRITE_WIDTH_{p} != 0) begin
            for (i_{p} = 0; i_{p} < wd_{p}; i_{p} = i_{p} + 1)
                if ({we}[wd_{p} > 8 ? i_{p} / 8 : 0]) begin
                    if (WRITE_MODE_{p} == "WRITE_FIRST" && i_{p} < rd_{p}) do_{p}[i_{p}] <= {di}[i_{p}];
                    data[{addr}[{abits - 1}:0] / wd_{p} * wd_{p} + i_{p}] <= {di}[i_{p}];
                end
            for (i_{p} = 0; i_{p} < wp_{p}; i_{p} = i_{p} + 1)
                if ({we}[i_{p}]) begin
                    if (WRITE_MODE_{p} == "WRITE_FIRST" && i_{p} < rp_{p}) dop_{p}[i_{p}] <= {dip}[i_{p}];
                    parity[{addr}[{abits - 1}:0] / wd_{p} * wp_{p} + i_{p}] <= {dip}[i_{p}];
                end
        end
        if ({rst}) begin
            do_{p}[{dbus - 1}:0] <= SRVAL_{p}[{dbus - 1}:0];
            dop_{p}[{pbus - 1}:0] <= SRVAL_{p}[{dbus + pbus - 1}:{dbus}];
        end
    end
"""


def bram_models() -> str:
    """Verilog of RAMB18E1 and RAMB36E1 (replacing cells_sim.v's timing-only declarations)."""
    out = []
    for cell, (bits, pbits, abits, (wa, wb), _) in CELLS.items():
        big = cell == "RAMB36E1"
        dbus, pbus, abus = (32, 4, 16) if big else (16, 2, 14)
        init = "\n".join(f"    parameter [255:0] INIT_{i:02X} = 256'h0;" for i in range(bits // 256))
        initp = "\n".join(f"    parameter [255:0] INITP_{i:02X} = 256'h0;" for i in range(pbits // 256))
        load = "\n".join(f"        for (k = 0; k < 256; k = k + 1) data[{i * 256} + k] = INIT_{i:02X}[k];"
                         for i in range(bits // 256))
        loadp = "\n".join(f"        for (k = 0; k < 256; k = k + 1) parity[{i * 256} + k] = INITP_{i:02X}[k];"
                          for i in range(pbits // 256))
        extra = ("    output CASCADEOUTA, CASCADEOUTB, SBITERR, DBITERR,\n    output [7:0] ECCPARITY,\n"
                 "    output [8:0] RDADDRECC,\n    input CASCADEINA, CASCADEINB, INJECTDBITERR, INJECTSBITERR,\n"
                 if big else "")
        ports = _port("A", abits, dbus, pbus) + _port("B", abits, dbus, pbus)
        out.append(f"""module {cell} (
{extra}    input CLKARDCLK, CLKBWRCLK, ENARDEN, ENBWREN, REGCEAREGCE, REGCEB,
    input RSTRAMARSTRAM, RSTRAMB, RSTREGARSTREG, RSTREGB,
    input [{abus - 1}:0] ADDRARDADDR, ADDRBWRADDR,
    input [{dbus - 1}:0] DIADI, DIBDI,
    input [{pbus - 1}:0] DIPADIP, DIPBDIP,
    input [{wa - 1}:0] WEA,
    input [{wb - 1}:0] WEBWE,
    output [{dbus - 1}:0] DOADO, DOBDO,
    output [{pbus - 1}:0] DOPADOP, DOPBDOP
);
    parameter integer DOA_REG = 0;
    parameter integer DOB_REG = 0;
    parameter [71:0] INIT_A = 72'h0;
    parameter [71:0] INIT_B = 72'h0;
    parameter [71:0] SRVAL_A = 72'h0;
    parameter [71:0] SRVAL_B = 72'h0;
    parameter RAM_MODE = "TDP";
    parameter RAM_EXTENSION_A = "NONE";  // cascades are not modelled (`supported`)
    parameter RAM_EXTENSION_B = "NONE";
    parameter integer READ_WIDTH_A = 0;
    parameter integer READ_WIDTH_B = 0;
    parameter integer WRITE_WIDTH_A = 0;
    parameter integer WRITE_WIDTH_B = 0;
    parameter WRITE_MODE_A = "WRITE_FIRST";
    parameter WRITE_MODE_B = "WRITE_FIRST";
{init}
{initp}
    reg data [0:{bits - 1}];
    reg parity [0:{pbits - 1}];
    integer k;
    initial begin
{load}
{loadp}
    end
{ports}
    // ---- simple dual port, read only: one word of both buses' width on port A's address ----
    reg [{2 * dbus - 1}:0] sdp_do = {{INIT_B[{dbus - 1}:0], INIT_A[{dbus - 1}:0]}};
    reg [{2 * pbus - 1}:0] sdp_dop = {{INIT_B[{dbus + pbus - 1}:{dbus}], INIT_A[{dbus + pbus - 1}:{dbus}]}};
    integer i_s;
    always @(posedge CLKARDCLK) if (RAM_MODE == "SDP" && ENARDEN) begin
        for (i_s = 0; i_s < {2 * dbus}; i_s = i_s + 1)
            sdp_do[i_s] <= data[ADDRARDADDR[{abits - 1}:0] / {2 * dbus} * {2 * dbus} + i_s];
        for (i_s = 0; i_s < {2 * pbus}; i_s = i_s + 1)
            sdp_dop[i_s] <= parity[ADDRARDADDR[{abits - 1}:0] / {2 * dbus} * {2 * pbus} + i_s];
        if (RSTRAMARSTRAM) begin
            sdp_do <= {{SRVAL_B[{dbus - 1}:0], SRVAL_A[{dbus - 1}:0]}};
            sdp_dop <= {{SRVAL_B[{dbus + pbus - 1}:{dbus}], SRVAL_A[{dbus + pbus - 1}:{dbus}]}};
        end
    end
    assign DOADO = RAM_MODE == "SDP" ? sdp_do[{dbus - 1}:0] : do_A[{dbus - 1}:0];
    assign DOPADOP = RAM_MODE == "SDP" ? sdp_dop[{pbus - 1}:0] : dop_A[{pbus - 1}:0];
    assign DOBDO = RAM_MODE == "SDP" ? sdp_do[{2 * dbus - 1}:{dbus}] : do_B[{dbus - 1}:0];
    assign DOPBDOP = RAM_MODE == "SDP" ? sdp_dop[{2 * pbus - 1}:{pbus}] : dop_B[{pbus - 1}:0];
endmodule
""")
    return "\n".join(out)
