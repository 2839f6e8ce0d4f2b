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
    assign y = scaled < LO ? LO[OUT_W-1:0] : scaled > HI ? HI[OUT_W-1:0] : scaled[OUT_W-1:0];
endmodule
