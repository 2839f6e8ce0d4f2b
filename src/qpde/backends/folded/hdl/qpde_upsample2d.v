// Nearest upsampling by 2 along the rows and by UW (2, or 1) along the columns of a channels-last
// raster stream (rows of WD points, C channels, NW = C/LN words a point): every input row leaves
// twice, each of its points UW times in a row. A 1-D field of L points runs as the L×1 grid (WD = 1,
// UW = 1). Two row slots: a row leaves once fully stored while the next one is written, so one output
// beat per cycle: 2·UW·H·WD·NW cycles per field.
module qpde_upsample2d #(
    parameter W = 8,
    parameter LN = 1,
    parameter C = 4,
    parameter WD = 8,
    parameter UW = 2,
    parameter CB = 3,  // bits for 0..WD-1 (at least 1)
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
    localparam integer C_LAST_I = WD - 1;
    localparam [CB-1:0] C_LAST = C_LAST_I[CB-1:0];
    localparam integer AB = (WD > 1 ? CB : 0) + WB;  // a slot's address: {column, word}
    reg [LN*W-1:0] mem [0:(2<<AB)-1];  // slot s at {s, column, word}
    reg [WB-1:0] ww, ow;
    reg [CB-1:0] wc, oc;
    reg wslot, rslot, copy, pass;
    reg [1:0] full;  // rows stored and not yet emitted twice
    wire [AB-1:0] wa, ra;
    generate
        if (WD > 1) begin : g_cols
            assign wa = {wc, ww};
            assign ra = {oc, ow};
        end else begin : g_col
            assign wa = ww;
            assign ra = ow;
        end
    endgenerate
    wire load = !m_valid || m_ready;
    assign s_ready = full != 2'd2;
    wire wfire = s_valid && s_ready;
    wire emit = load && full != 2'd0;
    wire row_in = wfire && ww == W_LAST && wc == C_LAST;
    wire point_done = ow == W_LAST && (UW == 1 || copy);
    wire row_out = emit && point_done && oc == C_LAST && pass;

    always @(posedge clk) begin
        if (wfire) mem[{wslot, wa}] <= s_data;
        if (emit) m_data <= mem[{rslot, ra}];
        if (rst) begin
            m_valid <= 1'b0;
            ww <= {WB{1'b0}};
            ow <= {WB{1'b0}};
            wc <= {CB{1'b0}};
            oc <= {CB{1'b0}};
            wslot <= 1'b0;
            rslot <= 1'b0;
            copy <= 1'b0;
            pass <= 1'b0;
            full <= 2'd0;
        end else begin
            if (emit) m_valid <= 1'b1;
            else if (m_ready) m_valid <= 1'b0;
            if (wfire) begin
                ww <= ww == W_LAST ? {WB{1'b0}} : ww + 1'b1;
                if (ww == W_LAST) begin
                    wc <= WD == 1 || wc == C_LAST ? {CB{1'b0}} : wc + 1'b1;  // WD = 1: constant, removed
                    if (wc == C_LAST) wslot <= !wslot;
                end
            end
            if (emit) begin
                ow <= ow == W_LAST ? {WB{1'b0}} : ow + 1'b1;
                if (ow == W_LAST) copy <= !copy;
                if (point_done) begin
                    oc <= WD == 1 || oc == C_LAST ? {CB{1'b0}} : oc + 1'b1;
                    if (oc == C_LAST) pass <= !pass;
                end
                if (row_out) rslot <= !rslot;
            end
            full <= full + {1'b0, row_in} - {1'b0, row_out};
        end
    end
endmodule
