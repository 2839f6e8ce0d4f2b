// [R, C] -> [C, R] reorder buffer of one W-bit element per beat. Two banks (ping-pong): a tensor is
// written in row order into one bank while the previous one is read in column order from the
// other. The memory's synchronous read register is the output stage (block RAM friendly).
module qpde_transpose #(
    parameter W = 8,
    parameter R = 4,
    parameter C = 4,
    parameter AB = 4  // bits of a bank offset: 2^AB >= R*C
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
    localparam integer LASTI = R * C - 1, LAST_RI = R - 1, LAST_CI = C - 1, ROWI = C;
    localparam [AB-1:0] LAST = LASTI[AB-1:0];
    localparam [AB-1:0] ROW = ROWI[AB-1:0];
    localparam [AB-1:0] LAST_R = LAST_RI[AB-1:0];
    localparam [AB-1:0] LAST_C = LAST_CI[AB-1:0];

    reg [W-1:0] mem [0:(2 << AB) - 1];
    reg [AB-1:0] waddr, raddr, r, c;
    reg wbank, rbank;
    reg [1:0] full;
    wire load = !m_valid || m_ready;
    wire pop = load && full[rbank];
    wire push = s_valid && s_ready;
    wire tensor_in = push && waddr == LAST;
    wire tensor_out = pop && r == LAST_R && c == LAST_C;
    assign s_ready = !full[wbank];

    always @(posedge clk) begin
        if (push) mem[{wbank, waddr}] <= s_data;
        if (pop) m_data <= mem[{rbank, raddr}];
    end

    always @(posedge clk) begin
        if (rst) begin
            waddr <= {AB{1'b0}};
            raddr <= {AB{1'b0}};
            r <= {AB{1'b0}};
            c <= {AB{1'b0}};
            wbank <= 1'b0;
            rbank <= 1'b0;
            full <= 2'b00;
            m_valid <= 1'b0;
        end else begin
            if (push) begin
                waddr <= tensor_in ? {AB{1'b0}} : waddr + 1'b1;
                if (tensor_in) wbank <= !wbank;
            end
            if (tensor_in) full[wbank] <= 1'b1;
            if (tensor_out) full[rbank] <= 1'b0;
            if (pop) begin
                // column order: address r*C + c, walked down a column then to the next column's top
                if (r == LAST_R) begin
                    r <= {AB{1'b0}};
                    c <= c == LAST_C ? {AB{1'b0}} : c + 1'b1;
                    raddr <= c == LAST_C ? {AB{1'b0}} : c + 1'b1;
                end else begin
                    r <= r + 1'b1;
                    raddr <= raddr + ROW;
                end
                if (tensor_out) rbank <= !rbank;
            end
            if (load) m_valid <= pop;
        end
    end
endmodule
