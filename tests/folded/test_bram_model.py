"""qpde's behavioural block-RAM models (qpde.backends.folded.bram_model): which configurations they
claim, and the read-only simple-dual-port ROM read exactly (iverilog)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from qpde.backends.folded.bram_model import bram_models, supported


def _instance(cell: str, **params) -> str:
    body = ",\n".join(f"    .{k}({v})" for k, v in params.items())
    return f"  {cell} #(\n{body}\n  ) mem (\n    .CLKARDCLK(clk)\n  );\n"


SDP_ROM = {"RAM_MODE": '"SDP"', "READ_WIDTH_A": "32'd72", "READ_WIDTH_B": "32'sd0", "WRITE_WIDTH_A": "32'sd0",
           "WRITE_WIDTH_B": "32'd0", "DOA_REG": "32'sd0", "DOB_REG": "32'sd0", "RAM_EXTENSION_A": '"NONE"',
           "RAM_EXTENSION_B": '"NONE"'}


def test_supported_claims_only_the_modelled_configurations():
    assert supported(_instance("RAMB36E1", **SDP_ROM))  # a wide weight ROM, as Yosys maps the MVAUs'
    assert supported(_instance("RAMB18E1", **{**SDP_ROM, "READ_WIDTH_A": "32'd36"}))
    assert supported(_instance("RAMB36E1", RAM_MODE='"TDP"', READ_WIDTH_B="32'd9", WRITE_WIDTH_A="32'd9"))
    assert not supported(_instance("RAMB36E1", **{**SDP_ROM, "WRITE_WIDTH_B": "32'd72"}))  # SDP with a write port
    assert not supported(_instance("RAMB36E1", **{**SDP_ROM, "RAM_EXTENSION_A": '"UPPER"'}))  # cascade
    assert not supported(_instance("RAMB36E1", **{**SDP_ROM, "DOA_REG": "32'sd1"}))  # output register
    assert not supported(_instance("RAMB18E1", **SDP_ROM))  # 72 bits is a RAMB36E1's SDP width only


TB = """
module tb;
  reg clk = 0; reg [15:0] addr = 0;
  wire [31:0] a, b; wire [3:0] pa, pb;
  RAMB36E1 #(.RAM_MODE("SDP"), .READ_WIDTH_A(72), .WRITE_WIDTH_B(0),
    .INIT_00(256'h0000000000000000_0000000000000000_89abcdef01234567_0011223344556677),
    .INITP_00(256'h00000000000000000000000000000000000000000000000000000000000000a5)
  ) mem (.CLKARDCLK(clk), .ENARDEN(1'b1), .RSTRAMARSTRAM(1'b0), .ADDRARDADDR(addr),
         .DOADO(a), .DOBDO(b), .DOPADOP(pa), .DOPBDOP(pb));
  initial begin
    addr = 16'd0; #1 clk = 1; #1 clk = 0;
    $display("%h %h %h %h", a, b, pa, pb);
    addr = 16'd64; #1 clk = 1; #1 clk = 0;  // word 1: bit address 64 (x72: ADDR[14:6])
    $display("%h %h %h %h", a, b, pa, pb);
    $finish;
  end
endmodule
"""


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog not installed")
def test_sdp_rom_reads_words_of_both_buses(tmp_path):
    """Word w of a 72-bit SDP read is data bits [64w, 64w+64) (low half on DOADO) and parity bits
    [8w, 8w+8) (low nibble on DOPADOP): UG473's layout, the one Yosys' mapping writes INIT_xx for."""
    (tmp_path / "models.v").write_text(bram_models())
    (tmp_path / "tb.v").write_text(TB)
    subprocess.run(["iverilog", "-g2005", "-o", "tb", "tb.v", "models.v"], cwd=tmp_path, check=True)
    lines = subprocess.run(["vvp", "-n", "tb"], cwd=tmp_path, check=True, capture_output=True,
                           text=True).stdout.split()
    assert lines[:4] == ["44556677", "00112233", "5", "a"]
    assert lines[4:8] == ["01234567", "89abcdef", "0", "0"]
