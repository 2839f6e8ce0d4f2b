// Elementwise sum of two streams of L lanes (a join: a beat pair moves when both are valid and the
// pipeline advances). Both codes are sign-extended and shifted to the finer binary point
// (ASHIFT/BSHIFT, exact), added with a constant OFFSET (in units of the finer LSB: e.g. half an LSB of
// a round-half-up Quant) in SUM_W bits, then requantized (QMIN = max(qmin, 0) for a ReLU).
// The operands are registered first: a producer's block-RAM output then feeds no adder directly.
module qpde_add #(
    parameter L = 1,
    parameter AW = 4,
    parameter A_SIGNED = 1,
    parameter BW = 4,
    parameter B_SIGNED = 1,
    parameter ASHIFT = 0,
    parameter BSHIFT = 0,
    parameter SUM_W = 8,
    parameter signed [63:0] OFFSET = 0,
    parameter OUT_W = 4,
    parameter RSHIFT = 0,
    parameter LSHIFT = 0,
    parameter signed [63:0] QMIN = -8,
    parameter signed [63:0] QMAX = 7
) (
    input  wire               clk,
    input  wire               rst,
    input  wire               a_valid,
    output wire               a_ready,
    input  wire [L*AW-1:0]    a_data,
    input  wire               b_valid,
    output wire               b_ready,
    input  wire [L*BW-1:0]    b_data,
    output reg                m_valid,
    input  wire               m_ready,
    output reg  [L*OUT_W-1:0] m_data
);
    wire load = !m_valid || m_ready;  // the two-stage pipeline advances
    wire fire = a_valid && b_valid && load;
    assign a_ready = b_valid && load;
    assign b_ready = a_valid && load;
    reg [L*AW-1:0] a_q;
    reg [L*BW-1:0] b_q;
    reg v_q;

    wire [L*OUT_W-1:0] y;
    genvar g;
    generate
        for (g = 0; g < L; g = g + 1) begin : g_lane
            wire [AW-1:0] a = a_q[g * AW +: AW];
            wire [BW-1:0] b = b_q[g * BW +: BW];
            wire signed [SUM_W-1:0] ax = {{(SUM_W - AW){A_SIGNED != 0 && a[AW-1]}}, a};
            wire signed [SUM_W-1:0] bx = {{(SUM_W - BW){B_SIGNED != 0 && b[BW-1]}}, b};
            wire signed [SUM_W-1:0] sum = (ax <<< ASHIFT) + (bx <<< BSHIFT) + OFFSET[SUM_W-1:0];
            qpde_requant #(.IN_W(SUM_W), .RSHIFT(RSHIFT), .LSHIFT(LSHIFT), .OUT_W(OUT_W), .QMIN(QMIN), .QMAX(QMAX))
                rq (.x(sum), .y(y[g * OUT_W +: OUT_W]));
        end
    endgenerate

    always @(posedge clk) begin
        if (fire) begin
            a_q <= a_data;
            b_q <= b_data;
        end
        if (load && v_q) m_data <= y;
        if (rst) begin
            v_q <= 1'b0;
            m_valid <= 1'b0;
        end else if (load) begin
            v_q <= fire;
            m_valid <= v_q;
        end
    end
endmodule
