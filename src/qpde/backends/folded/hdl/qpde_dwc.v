// Data-width converter between LIN and LOUT lanes of W bits, one a multiple of the other (the
// compiler chains two through their gcd otherwise). Lane 0 is the least significant and the
// earliest element of the stream, so a wide beat is its narrow beats concatenated, first lowest.
module qpde_dwc #(
    parameter W = 8,
    parameter LIN = 1,
    parameter LOUT = 2,
    parameter CW = 1  // counter bits: 2^CW > max(LIN, LOUT) / min(LIN, LOUT)
) (
    input  wire                clk,
    input  wire                rst,
    input  wire                s_valid,
    output wire                s_ready,
    input  wire [LIN*W-1:0]    s_data,
    output wire                m_valid,
    input  wire                m_ready,
    output wire [LOUT*W-1:0]   m_data
);
    generate
        if (LOUT > LIN) begin : g_up
            localparam integer LASTI = LOUT / LIN - 1;
            localparam [CW-1:0] LASTN = LASTI[CW-1:0];
            reg [LOUT*W-1:0] buffer;
            reg [CW-1:0] n;
            reg full;
            assign s_ready = !full || m_ready;
            assign m_valid = full;
            assign m_data = buffer;
            always @(posedge clk) begin
                if (s_valid && s_ready) buffer <= {s_data, buffer[LOUT*W-1:LIN*W]};
                if (rst) begin
                    n <= {CW{1'b0}};
                    full <= 1'b0;
                end else begin
                    if (m_ready) full <= 1'b0;
                    if (s_valid && s_ready) begin
                        n <= n == LASTN ? {CW{1'b0}} : n + 1'b1;
                        if (n == LASTN) full <= 1'b1;
                    end
                end
            end
        end else if (LOUT < LIN) begin : g_down
            localparam integer LASTI = LIN / LOUT - 1;
            localparam [CW-1:0] LASTN = LASTI[CW-1:0];
            reg [LIN*W-1:0] buffer;
            reg [CW-1:0] n;
            reg full;
            assign s_ready = !full || (m_ready && n == LASTN);
            assign m_valid = full;
            assign m_data = buffer[LOUT*W-1:0];
            always @(posedge clk) begin
                if (s_valid && s_ready) buffer <= s_data;
                else if (m_ready && full) buffer <= buffer >> (LOUT * W);
                if (rst) begin
                    n <= {CW{1'b0}};
                    full <= 1'b0;
                end else if (s_valid && s_ready) begin
                    n <= {CW{1'b0}};
                    full <= 1'b1;
                end else if (m_ready && full) begin
                    n <= n + 1'b1;
                    if (n == LASTN) full <= 1'b0;
                end
            end
        end else begin : g_same  // the compiler never places one; kept so any LIN = LOUT elaborates
            wire unused_clk_rst = &{clk, rst};
            assign s_ready = m_ready;
            assign m_valid = s_valid;
            assign m_data = s_data;
        end
    endgenerate
endmodule
