// A Quant (optionally after a ReLU: QMIN = max(qmin, 0)) that no MVAU or add absorbed: the L
// lanes are registered, then requantized independently into an output register.
module qpde_map #(
    parameter L = 1,
    parameter IN_W = 8,
    parameter IN_SIGNED = 1,
    parameter OUT_W = 4,
    parameter RSHIFT = 0,
    parameter LSHIFT = 0,
    parameter signed [63:0] QMIN = -8,
    parameter signed [63:0] QMAX = 7
) (
    input  wire               clk,
    input  wire               rst,
    input  wire               s_valid,
    output wire               s_ready,
    input  wire [L*IN_W-1:0]  s_data,
    output reg                m_valid,
    input  wire               m_ready,
    output reg  [L*OUT_W-1:0] m_data
);
    wire load = !m_valid || m_ready;  // the two-stage pipeline advances
    assign s_ready = load;
    reg [L*IN_W-1:0] x_q;
    reg v_q;

    wire [L*OUT_W-1:0] y;
    genvar g;
    generate
        for (g = 0; g < L; g = g + 1) begin : g_lane
            wire [IN_W-1:0] x = x_q[g * IN_W +: IN_W];
            wire [IN_W:0] xs = {IN_SIGNED != 0 && x[IN_W-1], x};
            qpde_requant #(.IN_W(IN_W + 1), .RSHIFT(RSHIFT), .LSHIFT(LSHIFT), .OUT_W(OUT_W), .QMIN(QMIN), .QMAX(QMAX))
                rq (.x(xs), .y(y[g * OUT_W +: OUT_W]));
        end
    endgenerate

    always @(posedge clk) begin
        if (s_valid && load) x_q <= s_data;
        if (load && v_q) m_data <= y;
        if (rst) begin
            v_q <= 1'b0;
            m_valid <= 1'b0;
        end else if (load) begin
            v_q <= s_valid;
            m_valid <= v_q;
        end
    end
endmodule
