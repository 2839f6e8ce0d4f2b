// Concatenation on channels of two channels-last streams of L points (a join): per point the NWA =
// CA/LN words of a, then the NWB = CB/LN words of b, each code sign- or zero-extended to OUT_W and
// shifted left to the output's finer binary point (ASHIFT/BSHIFT, exact: the output type is the
// union of both). One output beat per cycle: L·(NWA + NWB) cycles per field. Each input enters
// through a FIFO of a point's words (DA = NWA + 2, DB = NWB + 2 beats): a producer that delivers a
// point evenly over the whole point time keeps running while the other input is read.
module qpde_concat #(
    parameter LN = 1,
    parameter AW = 8,
    parameter A_SIGNED = 0,
    parameter BW = 8,
    parameter B_SIGNED = 0,
    parameter ASHIFT = 0,
    parameter BSHIFT = 0,
    parameter OUT_W = 8,
    parameter CA = 4,
    parameter CB = 4,
    parameter WB = 2,  // bits for 0..max(NWA, NWB)-1 (at least 1)
    parameter DA = 3,  // input FIFO depths (>= 2) and their address bits
    parameter DAB = 2,
    parameter DB = 3,
    parameter DBB = 2
) (
    input  wire               clk,
    input  wire               rst,
    input  wire               a_valid,
    output wire               a_ready,
    input  wire [LN*AW-1:0]   a_data,
    input  wire               b_valid,
    output wire               b_ready,
    input  wire [LN*BW-1:0]   b_data,
    output reg                m_valid,
    input  wire               m_ready,
    output reg  [LN*OUT_W-1:0] m_data
);
    localparam integer A_LAST_I = CA / LN - 1;
    localparam [WB-1:0] A_LAST = A_LAST_I[WB-1:0];
    localparam integer B_LAST_I = CB / LN - 1;
    localparam [WB-1:0] B_LAST = B_LAST_I[WB-1:0];
    wire qa_valid, qb_valid;
    wire [LN*AW-1:0] qa_data;
    wire [LN*BW-1:0] qb_data;
    reg [WB-1:0] w;
    reg on_b;
    wire load = !m_valid || m_ready;
    wire qa_ready = !on_b && load;
    wire qb_ready = on_b && load;
    wire fire = on_b ? qb_valid && load : qa_valid && load;
    qpde_fifo #(.W(LN * AW), .DEPTH(DA), .AW(DAB)) fa (
        .clk(clk), .rst(rst), .s_valid(a_valid), .s_ready(a_ready), .s_data(a_data),
        .m_valid(qa_valid), .m_ready(qa_ready), .m_data(qa_data));
    qpde_fifo #(.W(LN * BW), .DEPTH(DB), .AW(DBB)) fb (
        .clk(clk), .rst(rst), .s_valid(b_valid), .s_ready(b_ready), .s_data(b_data),
        .m_valid(qb_valid), .m_ready(qb_ready), .m_data(qb_data));

    wire [LN*OUT_W-1:0] y;
    genvar g;
    generate
        for (g = 0; g < LN; g = g + 1) begin : g_lane
            wire [AW-1:0] a = qa_data[g * AW +: AW];
            wire [BW-1:0] b = qb_data[g * BW +: BW];
            wire [OUT_W-1:0] ax = {{(OUT_W - AW){A_SIGNED != 0 && a[AW-1]}}, a};
            wire [OUT_W-1:0] bx = {{(OUT_W - BW){B_SIGNED != 0 && b[BW-1]}}, b};
            assign y[g * OUT_W +: OUT_W] = on_b ? bx << BSHIFT : ax << ASHIFT;
        end
    endgenerate

    always @(posedge clk) begin
        if (fire) m_data <= y;
        if (rst) begin
            m_valid <= 1'b0;
            w <= {WB{1'b0}};
            on_b <= 1'b0;
        end else begin
            if (fire) m_valid <= 1'b1;
            else if (m_ready) m_valid <= 1'b0;
            if (fire) begin
                w <= w == (on_b ? B_LAST : A_LAST) ? {WB{1'b0}} : w + 1'b1;
                if (w == (on_b ? B_LAST : A_LAST)) on_b <= !on_b;
            end
        end
    end
endmodule
