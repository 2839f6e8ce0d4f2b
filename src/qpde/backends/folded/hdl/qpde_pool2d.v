// Max pooling by 2 (stride 2) along the rows, and by PW (2, or 1) along the columns, of a
// channels-last raster stream of H×WD points (H even, PW | WD), C channels, LN lanes (NW = C/LN words
// a point). A 1-D field of L points runs as the L×1 grid (WD = 1, PW = 1).
// A row buffer holds the running maxima of the WD/PW output points of the current output row: even
// input rows write it, odd rows finish it and emit; with PW = 2 the even point of a pair waits in
// `held` for its odd twin. One input beat per cycle: H·WD·NW cycles per field.
module qpde_pool2d #(
    parameter W = 8,
    parameter SIGNED = 1,
    parameter LN = 1,
    parameter C = 4,
    parameter WD = 8,
    parameter PW = 2,
    parameter CB = 2,  // bits for 0..WD/PW-1 (at least 1)
    parameter WB = 2   // bits for 0..NW-1 (at least 1)
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
    localparam integer COLS = WD / PW;  // output points a row
    localparam integer C_LAST_I = COLS - 1;
    localparam [CB-1:0] C_LAST = C_LAST_I[CB-1:0];
    localparam integer AB = (COLS > 1 ? CB : 0) + WB;  // row buffer address: {column, word}
    reg [LN*W-1:0] rowbuf [0:(1<<AB)-1];
    reg [LN*W-1:0] held [0:(1<<WB)-1];
    reg [WB-1:0] w;
    reg [CB-1:0] pc;
    reg odd_col, odd_row;
    wire [AB-1:0] ra;
    generate
        if (COLS > 1) begin : g_cols
            assign ra = {pc, w};
        end else begin : g_col
            assign ra = w;
        end
    endgenerate
    wire load = !m_valid || m_ready;
    wire col_done = PW == 1 || odd_col;  // this point completes its row of a block
    wire last = odd_row && col_done;     // and the block
    assign s_ready = !last || load;
    wire fire = s_valid && s_ready;
    wire [LN*W-1:0] other = PW != 1 && odd_col ? held[w] : rowbuf[ra];

    wire [LN*W-1:0] y;
    genvar g;
    generate
        for (g = 0; g < LN; g = g + 1) begin : g_lane
            wire [W-1:0] a = other[g * W +: W];
            wire [W-1:0] b = s_data[g * W +: W];
            wire a_gt = SIGNED != 0 ? $signed(a) > $signed(b) : a > b;
            assign y[g * W +: W] = a_gt ? a : b;
        end
    endgenerate

    always @(posedge clk) begin
        if (fire) begin
            if (!col_done) held[w] <= odd_row ? y : s_data;
            else if (!odd_row) rowbuf[ra] <= PW == 1 ? s_data : y;
        end
        if (fire && last) m_data <= y;
        if (rst) begin
            m_valid <= 1'b0;
            w <= {WB{1'b0}};
            pc <= {CB{1'b0}};
            odd_col <= 1'b0;
            odd_row <= 1'b0;
        end else begin
            if (fire && last) m_valid <= 1'b1;
            else if (m_ready) m_valid <= 1'b0;
            if (fire) begin
                w <= w == W_LAST ? {WB{1'b0}} : w + 1'b1;
                if (w == W_LAST) begin
                    odd_col <= !odd_col;
                    if (col_done) begin
                        pc <= COLS == 1 || pc == C_LAST ? {CB{1'b0}} : pc + 1'b1;  // constant: removed
                        if (pc == C_LAST) odd_row <= !odd_row;
                    end
                end
            end
        end
    end
endmodule
