// Sliding window of a 'same' convolution (KH×KW, both odd, PAD_H = (KH-1)/2, PAD_W = (KW-1)/2,
// stride 1) on a channels-last stream of H×WD points in raster order, C channels, LN lanes (NW = C/LN
// words a point). For every output point (i, j) it emits the KH·KW·C window: taps (ki, kj) in raster
// order, each the NW words of point (i-PAD_H+ki, j-PAD_W+kj), zero codes outside the grid. A 1-D
// field of L points runs as the L×1 grid (one point a row) with a K×1 window.
//
// Line buffer of S = (KH-1)·WD + KW + 1 point slots (global point g in slot g mod S): a window spans
// (KH-1)·WD + KW consecutive raster points, one slot more lets the input write while the output reads.
// D counts the points written since the output's field began; output point (i, j) waits for D above
// the raster index of (min(i+PAD_H, H-1), min(j+PAD_W, WD-1)), and the input may write while D minus
// the raster index of (max(i-PAD_H, 0), max(j-PAD_W, 0)) is below S (column 0 in the top PAD_H rows,
// where the next row's windows start at (0, 0) again). One output beat per cycle: H·WD·KH·KW·NW
// cycles a field.
module qpde_swu2d #(
    parameter W = 8,
    parameter LN = 1,
    parameter C = 4,
    parameter H = 8,
    parameter WD = 8,
    parameter KH = 3,
    parameter KW = 3,
    parameter PB = 8,  // bits for 0..H·WD+S (point counters, raster indices)
    parameter RB = 4,  // bits for 0..max(H, WD)+max(KH, KW) (rows, columns)
    parameter KB = 2,  // bits for 0..max(KH, KW)-1 (at least 1)
    parameter SB = 5,  // bits for 0..2S-1 (slots)
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
    localparam integer PAD_H = (KH - 1) / 2;
    localparam integer PAD_W = (KW - 1) / 2;
    localparam integer S = (KH - 1) * WD + KW + 1;
    localparam integer P_N_I = H * WD;
    localparam [PB-1:0] P_N = P_N_I[PB-1:0];
    localparam integer P_WD_I = WD;
    localparam [PB-1:0] P_WD = P_WD_I[PB-1:0];
    localparam integer P_S1_I = S - 1;
    localparam [PB-1:0] P_S1 = P_S1_I[PB-1:0];
    localparam integer R_PADH_I = PAD_H;
    localparam [RB-1:0] R_PADH = R_PADH_I[RB-1:0];
    localparam integer R_PADW_I = PAD_W;
    localparam [RB-1:0] R_PADW = R_PADW_I[RB-1:0];
    localparam integer R_H_I = H;
    localparam [RB-1:0] R_H = R_H_I[RB-1:0];
    localparam integer R_WD_I = WD;
    localparam [RB-1:0] R_WD = R_WD_I[RB-1:0];
    localparam integer R_HLAST_I = H - 1;
    localparam [RB-1:0] R_HLAST = R_HLAST_I[RB-1:0];
    localparam integer R_WLAST_I = WD - 1;
    localparam [RB-1:0] R_WLAST = R_WLAST_I[RB-1:0];
    localparam integer R_HPAD_I = H + PAD_H;
    localparam [RB-1:0] R_HPAD = R_HPAD_I[RB-1:0];
    localparam integer R_WPAD_I = WD + PAD_W;
    localparam [RB-1:0] R_WPAD = R_WPAD_I[RB-1:0];
    localparam integer KH_LAST_I = KH - 1;
    localparam [KB-1:0] KH_LAST = KH_LAST_I[KB-1:0];
    localparam integer KW_LAST_I = KW - 1;
    localparam [KB-1:0] KW_LAST = KW_LAST_I[KB-1:0];
    localparam integer S_S_I = S;
    localparam [SB-1:0] S_S = S_S_I[SB-1:0];
    localparam integer S_LAST_I = S - 1;
    localparam [SB-1:0] S_LAST = S_LAST_I[SB-1:0];
    localparam integer S_WD_I = WD;
    localparam [SB-1:0] S_WD = S_WD_I[SB-1:0];
    localparam integer S_FIRST_I = S - PAD_H * WD - PAD_W;  // slot of global point -(PAD_H·WD + PAD_W)
    localparam [SB-1:0] S_FIRST = S_FIRST_I[SB-1:0];
    localparam integer W_LAST_I = NW - 1;
    localparam [WB-1:0] W_LAST = W_LAST_I[WB-1:0];

    reg [LN*W-1:0] mem [0:S*(1<<WB)-1];
    reg [WB-1:0] ww, ow;
    reg [SB-1:0] wslot, pslot, rowslot, rslot;
    reg [KB-1:0] ki, kj;
    reg [RB-1:0] oi, oj;
    reg [PB-1:0] d;
    // Counters of a length-1 axis (the L×1 grid's columns, a K×1 window's taps) are written with a
    // parameter guard: a constant next value that Yosys removes with the register and its compares.

    // x + 1 > PAD for x >= PAD: lint calls x >= PAD constant where PAD is 0 (KW = 1, a 1-D window)
    wire [RB-1:0] lo_i = oi + 1'b1 > R_PADH ? oi - R_PADH : {RB{1'b0}};
    // the first point any window from here on needs: in the top PAD_H rows the next row's window
    // starts at (0, 0) again, so the column bound only counts below them
    wire [RB-1:0] lo_j = oi + 1'b1 > R_PADH && oj + 1'b1 > R_PADW ? oj - R_PADW : {RB{1'b0}};
    wire [RB-1:0] hi_i = oi + R_PADH >= R_H ? R_HLAST : oi + R_PADH;
    wire [RB-1:0] hi_j = oj + R_PADW >= R_WD ? R_WLAST : oj + R_PADW;
    wire [PB-1:0] lo = {{(PB-RB){1'b0}}, lo_i} * P_WD + {{(PB-RB){1'b0}}, lo_j};
    wire [PB-1:0] hi = {{(PB-RB){1'b0}}, hi_i} * P_WD + {{(PB-RB){1'b0}}, hi_j};
    wire [RB-1:0] ri = oi + {{(RB-KB){1'b0}}, ki};  // window row + PAD_H
    wire [RB-1:0] rj = oj + {{(RB-KB){1'b0}}, kj};
    wire outside = ri + 1'b1 <= R_PADH || ri >= R_HPAD || rj + 1'b1 <= R_PADW || rj >= R_WPAD;
    wire load = !m_valid || m_ready;
    wire emit = load && d > hi;
    assign s_ready = d - lo <= P_S1;
    wire wfire = s_valid && s_ready;
    wire point_in = wfire && ww == W_LAST;
    wire row_end = ow == W_LAST && kj == KW_LAST;
    wire last_tap = row_end && ki == KH_LAST;
    wire field_out = emit && last_tap && oi == R_HLAST && oj == R_WLAST;
    wire [SB-1:0] pslot_next = pslot == S_LAST ? {SB{1'b0}} : pslot + 1'b1;
    wire [SB-1:0] row_sum = rowslot + S_WD;
    wire [SB-1:0] rowslot_next = row_sum >= S_S ? row_sum - S_S : row_sum;
    wire [SB-1:0] rd = KW == 1 ? rowslot : rslot;  // KW = 1: every tap is a row, rslot = rowslot (removed)

    always @(posedge clk) begin
        if (wfire) mem[wslot * (1 << WB) + {{(SB-WB){1'b0}}, ww}] <= s_data;
        if (emit) m_data <= outside ? {LN*W{1'b0}} : mem[rd * (1 << WB) + {{(SB-WB){1'b0}}, ow}];
        if (rst) begin
            m_valid <= 1'b0;
            ww <= {WB{1'b0}};
            ow <= {WB{1'b0}};
            wslot <= {SB{1'b0}};
            pslot <= S_FIRST;
            rowslot <= S_FIRST;
            rslot <= S_FIRST;
            ki <= {KB{1'b0}};
            kj <= {KB{1'b0}};
            oi <= {RB{1'b0}};
            oj <= {RB{1'b0}};
            d <= {PB{1'b0}};
        end else begin
            if (emit) m_valid <= 1'b1;
            else if (m_ready) m_valid <= 1'b0;
            if (wfire) begin
                ww <= ww == W_LAST ? {WB{1'b0}} : ww + 1'b1;
                if (ww == W_LAST) wslot <= wslot == S_LAST ? {SB{1'b0}} : wslot + 1'b1;
            end
            d <= d + {{(PB-1){1'b0}}, point_in} - (field_out ? P_N : {PB{1'b0}});
            if (emit) begin
                ow <= ow == W_LAST ? {WB{1'b0}} : ow + 1'b1;
                if (ow == W_LAST) begin
                    kj <= KW == 1 || kj == KW_LAST ? {KB{1'b0}} : kj + 1'b1;
                    rslot <= rslot == S_LAST ? {SB{1'b0}} : rslot + 1'b1;
                end
                if (row_end) begin
                    ki <= KH == 1 || ki == KH_LAST ? {KB{1'b0}} : ki + 1'b1;
                    rowslot <= rowslot_next;
                    rslot <= rowslot_next;
                end
                if (last_tap) begin
                    oj <= WD == 1 || oj == R_WLAST ? {RB{1'b0}} : oj + 1'b1;
                    if (oj == R_WLAST) oi <= oi == R_HLAST ? {RB{1'b0}} : oi + 1'b1;
                    pslot <= pslot_next;
                    rowslot <= pslot_next;
                    rslot <= pslot_next;
                end
            end
        end
    end
endmodule
