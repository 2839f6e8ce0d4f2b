// Nearest ×2 upsampling of a channels-last stream (each point of C channels, NW = C/LN words,
// emitted twice). Two point slots: the input writes one while the output reads the other twice
// (a point leaves once fully stored), so one output beat per cycle: 2·L·NW cycles per field.
module qpde_upsample #(
    parameter W = 8,
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
    reg [LN*W-1:0] mem [0:(2<<WB)-1];  // slot s, word w at {s, w}
    reg [WB-1:0] ww, ow;
    reg wslot, rslot, copy;
    reg [1:0] full;  // points stored and not yet emitted twice
    wire load = !m_valid || m_ready;
    assign s_ready = full != 2'd2;
    wire wfire = s_valid && s_ready;
    wire emit = load && full != 2'd0;
    wire point_in = wfire && ww == W_LAST;
    wire point_out = emit && ow == W_LAST && copy;

    always @(posedge clk) begin
        if (wfire) mem[{wslot, ww}] <= s_data;
        if (emit) m_data <= mem[{rslot, ow}];
        if (rst) begin
            m_valid <= 1'b0;
            ww <= {WB{1'b0}};
            ow <= {WB{1'b0}};
            wslot <= 1'b0;
            rslot <= 1'b0;
            copy <= 1'b0;
            full <= 2'd0;
        end else begin
            if (emit) m_valid <= 1'b1;
            else if (m_ready) m_valid <= 1'b0;
            if (wfire) begin
                ww <= ww == W_LAST ? {WB{1'b0}} : ww + 1'b1;
                if (ww == W_LAST) wslot <= !wslot;
            end
            if (emit) begin
                ow <= ow == W_LAST ? {WB{1'b0}} : ow + 1'b1;
                if (ow == W_LAST) copy <= !copy;
                if (point_out) rslot <= !rslot;
            end
            full <= full + {1'b0, point_in} - {1'b0, point_out};
        end
    end
endmodule
