// One stream to two consumers. Each branch takes the beat once (a `taken` flag per branch), so a
// beat is accepted upstream when both branches have it, and neither stalls the other within a beat.
// Valid never depends on ready, so the fork adds no combinational loop.
module qpde_fork #(
    parameter W = 8
) (
    input  wire         clk,
    input  wire         rst,
    input  wire         s_valid,
    output wire         s_ready,
    input  wire [W-1:0] s_data,
    output wire         a_valid,
    input  wire         a_ready,
    output wire [W-1:0] a_data,
    output wire         b_valid,
    input  wire         b_ready,
    output wire [W-1:0] b_data
);
    reg a_taken, b_taken;
    wire a_done = a_taken || a_ready;
    wire b_done = b_taken || b_ready;
    assign s_ready = a_done && b_done;
    assign a_valid = s_valid && !a_taken;
    assign b_valid = s_valid && !b_taken;
    assign a_data = s_data;
    assign b_data = s_data;

    always @(posedge clk) begin
        if (rst || (s_valid && s_ready)) begin
            a_taken <= 1'b0;
            b_taken <= 1'b0;
        end else begin
            if (a_valid && a_ready) a_taken <= 1'b1;
            if (b_valid && b_ready) b_taken <= 1'b1;
        end
    end
endmodule
