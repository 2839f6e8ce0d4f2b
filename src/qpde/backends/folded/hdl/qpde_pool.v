// Max pooling by 2 (stride 2) of a channels-last stream of L points (L even) of C channels, LN
// lanes (NW = C/LN words per point): the words of an even point are stored, each word of the odd
// point that follows leaves as the lane-wise maximum with its stored twin. One input beat per
// cycle: 2·(L/2)·NW = L·NW cycles per field.
module qpde_pool #(
    parameter W = 8,
    parameter SIGNED = 1,
    parameter LN = 1,
    parameter C = 4,
    parameter WB = 2  // bits for 0..NW-1 (at least 1)
) (
    input  wire              clk,
    input  wire              rst,
    input  wire              s_valid,
    output wire              s_ready,
    input  wire [LN*W-1:0]   s_data,
    output reg               m_valid,
    input  wire              m_ready,
    output reg  [LN*W-1:0]   m_data
);
    localparam integer NW = C / LN;
    localparam integer W_LAST_I = NW - 1;
    localparam [WB-1:0] W_LAST = W_LAST_I[WB-1:0];
    reg [LN*W-1:0] held [0:NW-1];
    reg [WB-1:0] w;
    reg odd;
    wire load = !m_valid || m_ready;
    assign s_ready = !odd || load;
    wire fire = s_valid && s_ready;
    wire [LN*W-1:0] twin = held[w];

    wire [LN*W-1:0] y;
    genvar g;
    generate
        for (g = 0; g < LN; g = g + 1) begin : g_lane
            wire [W-1:0] a = twin[g * W +: W];
            wire [W-1:0] b = s_data[g * W +: W];
            wire a_gt = SIGNED != 0 ? $signed(a) > $signed(b) : a > b;
            assign y[g * W +: W] = a_gt ? a : b;
        end
    endgenerate

    always @(posedge clk) begin
        if (fire && !odd) held[w] <= s_data;
        if (fire && odd) m_data <= y;
        if (rst) begin
            m_valid <= 1'b0;
            w <= {WB{1'b0}};
            odd <= 1'b0;
        end else begin
            if (fire && odd) m_valid <= 1'b1;
            else if (m_ready) m_valid <= 1'b0;
            if (fire) begin
                w <= w == W_LAST ? {WB{1'b0}} : w + 1'b1;
                if (w == W_LAST) odd <= !odd;
            end
        end
    end
endmodule
