"""qpde's behavioural ECP5 models (qpde.backends.folded.ecp5_model): which configurations they claim,
and DP16KD/MULT18X18D behaviour checked against Yosys' own mapping: small memories synthesized with
synth_ecp5 and simulated as netlists with the models (iverilog) equal their RTL cycle for cycle,
at every data width synth_ecp5 uses (1, 2, 4, 9, 18 true dual port, 36 pseudo dual port: INITVAL
layout, writes) and with each WRITEMODE it picks. And the requantizer (qpde_requant.v) through
synth_ecp5, netlist against RTL on every input: a Yosys bug once made its netlist differ."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from qpde.backends.folded.ecp5_model import CELLS, ecp5_models, unsupported

needs_tools = pytest.mark.skipif(shutil.which("iverilog") is None or shutil.which("yosys") is None,
                                 reason="iverilog and yosys needed")


def _dp(params: dict[str, str], conns: str = "    .CLKA(clk)") -> str:
    body = ",\n".join(f"    .{k}({v})" for k, v in params.items())
    return f"  DP16KD #(\n{body}\n  ) \\mem.0.0  (\n{conns}\n  );\n"


def _mult(params: dict[str, str], conns: str) -> str:
    head = "  MULT18X18D " + (("#(\n" + ",\n".join(f"    .{k}({v})" for k, v in params.items()) + "\n  ) ")
                              if params else "")
    return head + f"\\m_0  (\n{conns}\n  );\n"


YOSYS_FIFO = {"ASYNC_RESET_RELEASE": '"ASYNC"', "CLKAMUX": '"CLKA"', "CLKBMUX": '"CLKB"', "CSDECODE_A": '"0b000"',
              "CSDECODE_B": '"0b000"', "DATA_WIDTH_A": "32'd18", "DATA_WIDTH_B": "32'd18", "GSR": '"DISABLED"',
              "REGMODE_A": '"NOREG"', "REGMODE_B": '"NOREG"', "RESETMODE": '"ASYNC"',
              "WRITEMODE_A": '"READBEFOREWRITE"', "WRITEMODE_B": '"READBEFOREWRITE"'}


def test_unsupported_claims_only_the_modelled_configurations():
    tied = "    .CLKA(clk),\n    .RSTA(1'h0),\n    .RSTB(1'h0)"
    assert unsupported(_dp(YOSYS_FIFO, tied)) == []  # a FIFO as synth_ecp5 maps it: ASYNC, resets tied 0
    assert unsupported(_dp({**YOSYS_FIFO, "DATA_WIDTH_A": "32'd36", "DATA_WIDTH_B": "32'd4"}, tied)) == []
    assert unsupported(_dp({**YOSYS_FIFO, "REGMODE_B": '"OUTREG"', "CSDECODE_B": '"0b101"'}, tied)) == []
    # an asynchronous reset that is used, an inverted clock, a width the cell does not have
    assert "RESETMODE" in unsupported(_dp(YOSYS_FIFO, "    .RSTA(rst),\n    .RSTB(1'h0)"))[0]
    assert "CLKBMUX" in unsupported(_dp({**YOSYS_FIFO, "CLKBMUX": '"INV"'}, tied))[0]
    assert "DATA_WIDTH" in unsupported(_dp({**YOSYS_FIFO, "DATA_WIDTH_B": "32'd8"}, tied))[0]
    assert "DATA_WIDTH" in unsupported(_dp({**YOSYS_FIFO, "DATA_WIDTH_B": "32'd36"}, tied))[0]  # 36: PDP only
    ports = "    .P0(p[0]),\n    .SIGNEDA(1'h1),\n    .SIGNEDB(1'h1),\n    .SOURCEA(1'h0),\n    .SOURCEB(1'h0)"
    assert unsupported(_mult({}, ports)) == []  # synth_ecp5's combinational multiplier
    assert "REG_OUTPUT_CLK" in unsupported(_mult({"REG_OUTPUT_CLK": '"CLK0"'}, ports))[0]
    assert "ROA0" in unsupported(_mult({}, ports + ",\n    .ROA0(r)"))[0]  # cascade outputs: not modelled
    assert "SOURCEA" in unsupported(_mult({}, ports.replace(".SOURCEA(1'h0)", ".SOURCEA(s)")))[0]


ROM = """
module mem #(parameter W = 4, D = 4096, AW = 12, INIT = "init.hex") (
  input clk, input we, input [AW-1:0] wa, input [W-1:0] wd, input [AW-1:0] a, output reg [W-1:0] q);
  reg [W-1:0] m [0:D-1];
  initial $readmemh(INIT, m);
  always @(posedge clk) begin
    if (we) m[wa] <= wd;
    q <= m[a];
  end
endmodule
"""
ROM_TB = """
module tb;
  reg clk = 0, we = 0; reg [AW-1:0] wa = 0, a = 0; reg [W-1:0] wd = 0;
  wire [W-1:0] q_rtl, q_net;
  mem #(.W(W), .D(D), .AW(AW)) r (.clk(clk), .we(we), .wa(wa), .wd(wd), .a(a), .q(q_rtl));
  mem_net n (.clk(clk), .we(we), .wa(wa), .wd(wd), .a(a), .q(q_net));
  integer c, bad = 0, seed = 1;
  initial begin
    for (c = 0; c < D + 3000; c = c + 1) begin
      if (c < D) a = c;  // every word of the initial contents, then random writes and reads
      else begin a = $random(seed) % 64; we = $random(seed); wa = $random(seed) % 64; wd = $random(seed); end
      #1 clk = 1; #1 clk = 0;
      if (q_rtl !== q_net) bad = bad + 1;
    end
    $display("mismatches %0d", bad);
    $finish;
  end
endmodule
"""
SP = """
module mem #(parameter MODE = 0, INIT = "init.hex") (input clk, input en, input we, input [10:0] a, input [8:0] wd,
  output reg [8:0] q);
  reg [8:0] m [0:2047];
  initial $readmemh(INIT, m);
  always @(posedge clk) if (en) begin
    if (MODE == 0) begin if (we) m[a] <= wd; q <= m[a]; end                          // old data
    else if (MODE == 1) begin if (we) begin m[a] <= wd; q <= wd; end else q <= m[a]; end  // new data
    else begin if (we) m[a] <= wd; else q <= m[a]; end                                  // output holds
  end
endmodule
"""
SP_TB = """
module tb;
  reg clk = 0, we = 0, en = 1; reg [10:0] a = 0; reg [8:0] wd = 0;
  wire [8:0] q_rtl, q_net;
  mem #(.MODE(MODE)) r (.clk(clk), .en(en), .we(we), .a(a), .wd(wd), .q(q_rtl));
  mem_net n (.clk(clk), .en(en), .we(we), .a(a), .wd(wd), .q(q_net));
  integer c, bad = 0, seed = 3;
  initial begin
    for (c = 0; c < 6000; c = c + 1) begin
      a = $random(seed) % 32; we = $random(seed); wd = $random(seed); en = ($random(seed) % 4) != 0;
      #1 clk = 1; #1 clk = 0;
      if (q_rtl !== q_net) bad = bad + 1;
    end
    $display("mismatches %0d", bad);
    $finish;
  end
endmodule
"""


def _netlist_vs_rtl(tmp_path: Path, rtl: str, tb: str, params: dict[str, int | str], words: int, width: int) -> tuple[str, int]:
    """synth_ecp5 of `rtl` with `params`, its netlist simulated with Yosys' ECP5 cells and qpde's
    models beside the RTL; returns (the netlist, mismatching cycles)."""
    from qpde.backends.folded.synth import _ecp5_cells

    rng = random.Random(width)
    (tmp_path / "init.hex").write_text("\n".join(f"{rng.getrandbits(width):x}" for _ in range(words)) + "\n")
    (tmp_path / "mem.v").write_text(rtl)
    chparam = " ".join(f"-set {k} {v}" for k, v in params.items())
    subprocess.run(["yosys", "-q", "-p", f"read_verilog mem.v; chparam {chparam} mem; synth_ecp5 -top mem; "
                    "write_verilog -noattr net.v"], cwd=tmp_path, check=True)
    netlist = (tmp_path / "net.v").read_text()
    (tmp_path / "net_renamed.v").write_text(netlist.replace("module mem(", "module mem_net("))
    (tmp_path / "cells.v").write_text(_ecp5_cells(Path("/usr/share/yosys/ecp5/cells_sim.v"), CELLS))
    (tmp_path / "models.v").write_text(ecp5_models())
    header = "".join(f"  localparam {k} = {v};\n" for k, v in params.items())
    (tmp_path / "tb.v").write_text(tb.replace("module tb;\n", "module tb;\n" + header, 1))
    subprocess.run(["iverilog", "-g2005", "-o", "sim", "tb.v", "mem.v", "net_renamed.v", "cells.v", "models.v"],
                   cwd=tmp_path, check=True)
    out = subprocess.run(["vvp", "-n", "sim"], cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    return netlist, int(out.split("mismatches")[-1].split()[0])


@needs_tools
@pytest.mark.skipif(not Path("/usr/share/yosys/ecp5/cells_sim.v").is_file(), reason="Debian's yosys needed")
@pytest.mark.parametrize("width, words", [(1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512)])
def test_dp16kd_reads_and_writes_as_yosys_maps_it(tmp_path, width, words):
    """One memory filling one EBR at each width: Yosys picks that DATA_WIDTH (36: the pseudo dual
    port), writes INITVAL_xx its way; the model must read back every initial word and every write."""
    netlist, bad = _netlist_vs_rtl(tmp_path, ROM, ROM_TB, {"W": width, "D": words, "AW": words.bit_length() - 1},
                                   words, width)
    assert netlist.count("DP16KD #(") == 1 and f"DATA_WIDTH_B(32'd{width})" in netlist
    assert bad == 0


@needs_tools
@pytest.mark.skipif(not Path("/usr/share/yosys/ecp5/cells_sim.v").is_file(), reason="Debian's yosys needed")
@pytest.mark.parametrize("mode, writemode", [(0, "READBEFOREWRITE"), (1, "WRITETHROUGH"), (2, "NORMAL")])
def test_dp16kd_write_modes_with_clock_enable(tmp_path, mode, writemode):
    netlist, bad = _netlist_vs_rtl(tmp_path, SP, SP_TB, {"MODE": mode}, 2048, 9)
    assert f'WRITEMODE_A("{writemode}")' in netlist
    assert bad == 0


CELL_TB = """
module tb;
  reg clk = 0, ceb = 1, oceb = 1, rstb = 0; reg [2:0] csb = 3'b101; reg [13:0] adb = 0;
  wire [17:0] doa, dob;
  DP16KD #(.DATA_WIDTH_A(9), .DATA_WIDTH_B(9), .REGMODE_B("OUTREG"), .CSDECODE_B("0b101"),
    .INITVAL_00(320'h00000_00000_00000_00000_00000_00000_00000_00000_00000_00000_00000_00000_00000_00000_0abcd_00123)
  ) ram (.CLKB(clk), .CEB(ceb), .OCEB(oceb), .RSTB(rstb), .WEB(1'b0), .CSB2(csb[2]), .CSB1(csb[1]), .CSB0(csb[0]),
    .ADB13(adb[13]), .ADB12(adb[12]), .ADB11(adb[11]), .ADB10(adb[10]), .ADB9(adb[9]), .ADB8(adb[8]),
    .ADB7(adb[7]), .ADB6(adb[6]), .ADB5(adb[5]), .ADB4(adb[4]), .ADB3(adb[3]), .ADB2(adb[2]), .ADB1(adb[1]),
    .ADB0(adb[0]), .DOB8(dob[8]), .DOB7(dob[7]), .DOB6(dob[6]), .DOB5(dob[5]), .DOB4(dob[4]), .DOB3(dob[3]),
    .DOB2(dob[2]), .DOB1(dob[1]), .DOB0(dob[0]));
  reg [17:0] a, b; reg sa, sb; wire [35:0] p;
  MULT18X18D mul (.A17(a[17]), .A16(a[16]), .A15(a[15]), .A14(a[14]), .A13(a[13]), .A12(a[12]), .A11(a[11]),
    .A10(a[10]), .A9(a[9]), .A8(a[8]), .A7(a[7]), .A6(a[6]), .A5(a[5]), .A4(a[4]), .A3(a[3]), .A2(a[2]), .A1(a[1]),
    .A0(a[0]), .B17(b[17]), .B16(b[16]), .B15(b[15]), .B14(b[14]), .B13(b[13]), .B12(b[12]), .B11(b[11]),
    .B10(b[10]), .B9(b[9]), .B8(b[8]), .B7(b[7]), .B6(b[6]), .B5(b[5]), .B4(b[4]), .B3(b[3]), .B2(b[2]), .B1(b[1]),
    .B0(b[0]), .SIGNEDA(sa), .SIGNEDB(sb), .SOURCEA(1'b0), .SOURCEB(1'b0),
    .P35(p[35]), .P34(p[34]), .P33(p[33]), .P32(p[32]), .P31(p[31]), .P30(p[30]), .P29(p[29]), .P28(p[28]),
    .P27(p[27]), .P26(p[26]), .P25(p[25]), .P24(p[24]), .P23(p[23]), .P22(p[22]), .P21(p[21]), .P20(p[20]),
    .P19(p[19]), .P18(p[18]), .P17(p[17]), .P16(p[16]), .P15(p[15]), .P14(p[14]), .P13(p[13]), .P12(p[12]),
    .P11(p[11]), .P10(p[10]), .P9(p[9]), .P8(p[8]), .P7(p[7]), .P6(p[6]), .P5(p[5]), .P4(p[4]), .P3(p[3]),
    .P2(p[2]), .P1(p[1]), .P0(p[0]));
  task tick; begin #1 clk = 1; #1 clk = 0; end endtask
  initial begin
    adb = 14'd0; tick; $display("%h", dob[8:0]);            // OUTREG: the read of word 0 not out yet
    adb = 14'd8; tick; $display("%h", dob[8:0]);            // word 0 (row 0, bits 0..8)
    tick; $display("%h", dob[8:0]);                         // word 1 (row 0, bits 9..17) at x9: AD[3] = 1
    csb = 3'b000; adb = 14'd16; tick; tick; $display("%h", dob[8:0]);  // deselected: no read, holds word 1
    csb = 3'b101; oceb = 0; tick; tick; $display("%h", dob[8:0]);      // OCE low: the output register holds
    oceb = 1; rstb = 1; tick; $display("%h", dob[8:0]);                // reset clears it
    a = 18'h3ffff; b = 18'h00005; sa = 1; sb = 1; #1 $display("%h", p);  // -1 * 5
    sa = 0; #1 $display("%h", p);                                        // 262143 * 5
    a = 18'h20000; b = 18'h20000; sa = 1; sb = 1; #1 $display("%h", p);  // (-2^17)^2
    $finish;
  end
endmodule
"""


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog not installed")
def test_dp16kd_outreg_csdecode_and_mult18x18d(tmp_path):
    """What synth_ecp5 does not exercise: the output register (REGMODE OUTREG, OCE), chip-select
    decoding, reset; and the multiplier's signed/unsigned operand modes."""
    (tmp_path / "models.v").write_text(ecp5_models())
    (tmp_path / "tb.v").write_text(CELL_TB)
    subprocess.run(["iverilog", "-g2005", "-o", "tb", "tb.v", "models.v"], cwd=tmp_path, check=True)
    lines = subprocess.run(["vvp", "-n", "tb"], cwd=tmp_path, check=True, capture_output=True,
                           text=True).stdout.split()
    word0, word1 = 0x00123 & 0x1ff, (0x00123 >> 9) & 0x1ff  # INITVAL_00 bits [0, 18): row 0 = 0x00123
    assert lines[:6] == ["000", f"{word0:03x}", f"{word1:03x}", f"{word1:03x}", f"{word1:03x}", "000"]
    assert lines[6:] == [f"{(-5) & (2**36 - 1):09x}", f"{262143 * 5:09x}", f"{2**34:09x}"]


REQUANT_TB = """
module tb;
  reg [IN_W-1:0] x; wire [OUT_W-1:0] y_rtl, y_net; integer i, bad = 0;
  qpde_requant #(.IN_W(IN_W), .RSHIFT(RSHIFT), .LSHIFT(LSHIFT), .OUT_W(OUT_W), .QMIN(QMIN), .QMAX(QMAX)) r (.x(x), .y(y_rtl));
  top n (.x(x), .y(y_net));
  initial begin
    for (i = 0; i < (1 << IN_W); i = i + 1) begin x = i; #1 if (y_rtl !== y_net) bad = bad + 1; end
    $display("mismatches %0d", bad);
  end
endmodule
"""


@needs_tools
@pytest.mark.skipif(not Path("/usr/share/yosys/ecp5/cells_sim.v").is_file(), reason="Debian's yosys needed")
@pytest.mark.parametrize("in_w, rshift, lshift, out_w, qmin, qmax", [
    (11, 7, 0, 4, -8, 7),    # the tiny Burgers FNO w4a4's MatMul_2: 4 significant bits, y was the constant -8
    (10, 6, 0, 4, -7, 7),    # a narrower range: 896 of 1,024 outputs were wrong
    (9, 6, 0, 3, -3, 2),     # both bounds inside the 3 significant bits
    (5, 0, 2, 4, -8, 7),     # LSHIFT
    (7, 3, 0, 3, 0, 3),      # after a ReLU: unsigned bounds
    (12, 5, 0, 4, -8, 7),    # 7 significant bits: signed comparisons, never LUT-mapped by cmp2lut
])
def test_requant_synth_ecp5_netlist_equals_rtl(tmp_path, in_w, rshift, lshift, out_w, qmin, qmax):
    """synth_ecp5 runs Yosys' cmp2lut.v (LUT_WIDTH=4), which maps a signed comparison of at most 4
    bits with a negative constant to a wrong LUT (YosysHQ/yosys#6085). qpde_requant's `scaled < QMIN`
    narrowed to that: Yosys 0.23's netlist of the tiny Burgers FNO differed from the golden on every
    field, so the sweep placed nothing. The bounds of a narrow value are now compared in offset
    binary; netlist (Yosys' ECP5 cells) and RTL must agree on every input."""
    from qpde.backends.folded.codegen import HDL_DIR
    from qpde.backends.folded.synth import _ecp5_cells

    lit = {v: f"-64'sd{-v}" if v < 0 else f"64'sd{v}" for v in (qmin, qmax)}
    params = {"IN_W": in_w, "RSHIFT": rshift, "LSHIFT": lshift, "OUT_W": out_w, "QMIN": lit[qmin], "QMAX": lit[qmax]}
    inst = ", ".join(f".{k}({v})" for k, v in params.items())
    shutil.copy(HDL_DIR / "qpde_requant.v", tmp_path / "qpde_requant.v")
    (tmp_path / "top.v").write_text(f"module top(input [{in_w - 1}:0] x, output [{out_w - 1}:0] y);\n"
                                    f"  qpde_requant #({inst}) u (.x(x), .y(y));\nendmodule\n")
    subprocess.run(["yosys", "-q", "-p", "read_verilog top.v qpde_requant.v; synth_ecp5 -top top; "
                    "write_verilog -noattr net.v"], cwd=tmp_path, check=True)
    (tmp_path / "cells.v").write_text(_ecp5_cells(Path("/usr/share/yosys/ecp5/cells_sim.v"), CELLS))
    header = "".join(f"  localparam {k} = {v};\n" for k, v in params.items())
    (tmp_path / "tb.v").write_text(REQUANT_TB.replace("module tb;\n", "module tb;\n" + header, 1))
    subprocess.run(["iverilog", "-g2005", "-o", "sim", "tb.v", "qpde_requant.v", "net.v", "cells.v"], cwd=tmp_path,
                   check=True)
    out = subprocess.run(["vvp", "-n", "sim"], cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    assert int(out.split("mismatches")[-1].split()[0]) == 0
