// Requantization as a QONNX Quant with FLOOR: scale by 2^(LSHIFT - RSHIFT) (the arithmetic right
// shift floors) and saturate to [QMIN, QMAX]. A ReLU before it is QMIN = max(qmin, 0): clipping
// commutes with the monotone floor. The input is a signed integer code; the output keeps the low
// OUT_W bits of the clipped value (two's complement, or plain binary when QMIN >= 0).
// Needs IN_W + LSHIFT < 64 and OUT_W < 64 (the compiler checks).
module qpde_requant #(
    parameter IN_W = 16,
    parameter RSHIFT = 0,
    parameter LSHIFT = 0,
    parameter OUT_W = 4,
    parameter signed [63:0] QMIN = -8,
    parameter signed [63:0] QMAX = 7
) (
    input  wire [IN_W-1:0]  x,
    output wire [OUT_W-1:0] y
);
    // TW holds the scaled input and both bounds (an unsigned QMAX needs OUT_W + 1 signed bits); one
    // spare bit keeps the sign extension's replication count positive (Verilog-2005 has no {0{..}}).
    localparam TW = (IN_W + LSHIFT > OUT_W ? IN_W + LSHIFT : OUT_W) + 1;
    localparam signed [TW-1:0] LO = QMIN[TW-1:0];
    localparam signed [TW-1:0] HI = QMAX[TW-1:0];
    wire signed [TW-1:0] wide = {{(TW - IN_W){x[IN_W-1]}}, x};
    wire signed [TW-1:0] scaled = (wide <<< LSHIFT) >>> RSHIFT;
    // scaled is an SW-bit signed value, sign-extended: in [SMIN, SMAX]. Up to 6 bits its bounds are
    // not compared as signed numbers with a constant: Yosys' cmp2lut.v (synth_ecp5, synth_ice40,
    // synth_nexus: LUT_WIDTH=4; synth_xilinx: 6) maps such a comparison of at most LUT_WIDTH bits
    // to one LUT, and a signed one with a negative constant to a wrong one (the constant is not
    // sign-extended: YosysHQ/yosys#6085). wreduce narrows `scaled < LO` to SW bits, so Yosys 0.23's
    // synth_ecp5 got y wrong whenever SW <= 4 and QMIN < 0 (IN_W 11, RSHIFT 7, QMIN -8: y the
    // constant -8; docs/folded.md, "ECP5 netlist check"). There a bound outside [SMIN, SMAX] clamps
    // never (or always), and one inside is compared on SW bits as unsigned numbers in offset binary
    // (sign bit flipped: unsigned order = signed order), which cmp2lut maps right. Wider comparisons
    // never reach cmp2lut.
    localparam SW = IN_W + LSHIFT > RSHIFT ? IN_W + LSHIFT - RSHIFT : 1;
    wire low, high;
    generate
        if (SW > 6) begin : g_signed
            assign low = scaled < LO;
            assign high = scaled > HI;
        end else begin : g_offset
            localparam signed [63:0] SMIN = -(64'sd1 <<< (SW - 1));
            localparam signed [63:0] SMAX = (64'sd1 <<< (SW - 1)) - 64'sd1;
            localparam [SW-1:0] FLIP = 1 << (SW - 1);
            localparam [SW-1:0] LO_OB = QMIN[SW-1:0] ^ FLIP;
            localparam [SW-1:0] HI_OB = QMAX[SW-1:0] ^ FLIP;
            wire [SW-1:0] s_ob = scaled[SW-1:0] ^ FLIP;
            wire unused_sign_copies = &scaled[TW-1:SW];  // copies of scaled[SW-1]
            assign low = QMIN > SMAX ? 1'b1 : QMIN > SMIN ? s_ob < LO_OB : 1'b0;
            assign high = QMAX < SMIN ? 1'b1 : QMAX < SMAX ? s_ob > HI_OB : 1'b0;
        end
    endgenerate
    assign y = low ? LO[OUT_W-1:0] : high ? HI[OUT_W-1:0] : scaled[OUT_W-1:0];
endmodule
