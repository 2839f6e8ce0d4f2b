// Sliding window of a 1-D 'same' convolution (kernel K odd, PAD = (K-1)/2, stride 1) on a
// channels-last stream of L points of C channels, LN lanes (LN | C: NW = C/LN words per point).
// For every output point p it emits the K·C window points p-PAD..p+PAD, tap major, channel minor,
// with zero codes (value 0 is code 0 in every FixedType) for points outside 0..L-1.
//
// Line buffer: K+1 point slots of NW words (2^WB word addresses each); global point g sits in slot g mod (K+1), so input may
// write point g while the output reads points g-K..g-1. D counts the points written since the
// output's field began; output point p waits for D > min(p+PAD, L-1), and input may write while
// D - max(p-PAD, 0) <= K (the slot it overwrites is no longer needed). Both sides cross field
// boundaries without a bubble: one output beat per cycle, L·K·NW cycles per field.
module qpde_swu #(
    parameter W = 8,
    parameter LN = 1,
    parameter C = 4,
    parameter L = 16,
    parameter K = 3,
    parameter PB = 5,  // bits for 0..L+K (point counters)
    parameter KB = 2,  // bits for 0..K (taps, slots)
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
    localparam integer PAD = (K - 1) / 2;
    localparam [PB-1:0] P_L = L[PB-1:0];
    localparam [PB-1:0] P_PAD = PAD[PB-1:0];
    localparam [PB-1:0] P_K = K[PB-1:0];
    localparam integer P_LAST_I = L - 1;
    localparam [PB-1:0] P_LAST = P_LAST_I[PB-1:0];
    localparam integer P_LPAD_I = L + PAD;
    localparam [PB-1:0] P_LPAD = P_LPAD_I[PB-1:0];
    localparam integer K_LAST_I = K - 1;
    localparam [KB-1:0] K_LAST = K_LAST_I[KB-1:0];
    localparam integer S_LAST_I = K;  // slots 0..K
    localparam [KB-1:0] S_LAST = S_LAST_I[KB-1:0];
    localparam integer S_FIRST_I = (K + 1 - PAD) % (K + 1);  // slot of global point -PAD
    localparam [KB-1:0] S_FIRST = S_FIRST_I[KB-1:0];
    localparam integer W_LAST_I = NW - 1;
    localparam [WB-1:0] W_LAST = W_LAST_I[WB-1:0];

    reg [LN*W-1:0] mem [0:(K+1)*(1<<WB)-1];  // slot s, word w at {s, w}
    reg [WB-1:0] ww, ow;
    reg [KB-1:0] wslot, pslot, rslot, ok;
    reg [PB-1:0] d, op;

    wire [PB-1:0] lo_pt = op >= P_PAD ? op - P_PAD : {PB{1'b0}};
    wire [PB-1:0] need = op + P_PAD >= P_L ? P_L : op + P_PAD + 1'b1;
    wire [PB-1:0] q = op + {{(PB-KB){1'b0}}, ok};  // window point + PAD
    wire outside = q < P_PAD || q >= P_LPAD;
    wire load = !m_valid || m_ready;
    wire emit = load && d >= need;
    assign s_ready = d - lo_pt <= P_K;
    wire wfire = s_valid && s_ready;
    wire point_in = wfire && ww == W_LAST;
    wire last_tap = ow == W_LAST && ok == K_LAST;
    wire field_out = emit && last_tap && op == P_LAST;
    wire [KB-1:0] pslot_next = pslot == S_LAST ? {KB{1'b0}} : pslot + 1'b1;

    always @(posedge clk) begin
        if (wfire) mem[{wslot, ww}] <= s_data;
        if (emit) m_data <= outside ? {LN*W{1'b0}} : mem[{rslot, ow}];
        if (rst) begin
            m_valid <= 1'b0;
            ww <= {WB{1'b0}};
            ow <= {WB{1'b0}};
            wslot <= {KB{1'b0}};
            pslot <= S_FIRST;
            rslot <= S_FIRST;
            ok <= {KB{1'b0}};
            d <= {PB{1'b0}};
            op <= {PB{1'b0}};
        end else begin
            if (emit) m_valid <= 1'b1;
            else if (m_ready) m_valid <= 1'b0;
            if (wfire) begin
                ww <= ww == W_LAST ? {WB{1'b0}} : ww + 1'b1;
                if (ww == W_LAST) wslot <= wslot == S_LAST ? {KB{1'b0}} : wslot + 1'b1;
            end
            d <= d + {{(PB-1){1'b0}}, point_in} - (field_out ? P_L : {PB{1'b0}});
            if (emit) begin
                ow <= ow == W_LAST ? {WB{1'b0}} : ow + 1'b1;
                if (ow == W_LAST) begin
                    ok <= ok == K_LAST ? {KB{1'b0}} : ok + 1'b1;
                    rslot <= rslot == S_LAST ? {KB{1'b0}} : rslot + 1'b1;
                end
                if (last_tap) begin
                    op <= op == P_LAST ? {PB{1'b0}} : op + 1'b1;
                    pslot <= pslot_next;
                    rslot <= pslot_next;
                end
            end
        end
    end
endmodule
