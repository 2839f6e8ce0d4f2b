// First-word-fall-through FIFO of DEPTH+1 beats. The memory has a synchronous, enabled read port
// whose register is the output stage, so Yosys can map a deep FIFO to block RAM and a shallow one
// to LUT RAM or flip-flops from the same code.
module qpde_fifo #(
    parameter W = 8,
    parameter DEPTH = 2,  // >= 2
    parameter AW = 1  // address bits: 2^AW >= DEPTH
) (
    input  wire         clk,
    input  wire         rst,
    input  wire         s_valid,
    output wire         s_ready,
    input  wire [W-1:0] s_data,
    output reg          m_valid,
    input  wire         m_ready,
    output reg  [W-1:0] m_data
);
    reg [W-1:0] mem [0:DEPTH-1];
    reg [AW-1:0] wptr, rptr;
    reg [AW:0] count;  // beats in mem (the output register not included)
    wire push = s_valid && s_ready;
    wire load = !m_valid || m_ready;  // the output register is free this cycle
    wire pop = load && count != 0;
    localparam integer FULLI = DEPTH, LASTI = DEPTH - 1;
    localparam [AW:0] FULL = FULLI[AW:0];
    localparam [AW-1:0] LAST = LASTI[AW-1:0];
    assign s_ready = count != FULL;

    always @(posedge clk) begin
        if (push) mem[wptr] <= s_data;
        if (pop) m_data <= mem[rptr];
    end

    always @(posedge clk) begin
        if (rst) begin
            wptr <= {AW{1'b0}};
            rptr <= {AW{1'b0}};
            count <= {(AW + 1){1'b0}};
            m_valid <= 1'b0;
        end else begin
            if (push) wptr <= wptr == LAST ? {AW{1'b0}} : wptr + 1'b1;
            if (pop) rptr <= rptr == LAST ? {AW{1'b0}} : rptr + 1'b1;
            count <= count + {{AW{1'b0}}, push} - {{AW{1'b0}}, pop};
            if (load) m_valid <= count != 0;
        end
    end
endmodule
