// [R, C] -> [C, R] reorder buffer of L W-bit elements per beat (L divides R and C). In: rows in
// order, a beat = L consecutive elements of a row; out: columns in order, a beat = L consecutive
// elements of a column. L banks with skewed addressing: element (r, c) lives in bank (r + c) mod L
// at offset r*(C/L) + c/L, so the L elements of a row beat (same r, c = kL..kL+L-1) and those of a
// column beat (r = jL..jL+L-1, same c) each sit in L distinct banks: one write and one read per
// bank per cycle. Each bank holds two tensors (ping-pong): a tensor is written into one half while
// the previous one is read from the other. The banks' synchronous read registers are the output
// stage (block RAM friendly); the lane rotation after them is combinational from registers only.
module qpde_transpose #(
    parameter W = 8,
    parameter L = 1,
    parameter R = 4,
    parameter C = 4,
    parameter AB = 4,  // bits of a bank offset: 2^AB >= R*C/L
    parameter LB = 1   // bits of a lane index: 2^LB >= L, at least 1
) (
    input  wire           clk,
    input  wire           rst,
    input  wire           s_valid,
    output wire           s_ready,
    input  wire [L*W-1:0] s_data,
    output reg            m_valid,
    input  wire           m_ready,
    output wire [L*W-1:0] m_data
);
    localparam integer CL = C / L, RL = R / L;  // beats per input row, per output column
    localparam integer LASTI = R * CL - 1, LAST_KI = CL - 1, LAST_RBI = RL - 1, LAST_CI = C - 1, LAST_LI = L - 1;
    localparam [AB-1:0] LAST = LASTI[AB-1:0];
    localparam [AB-1:0] LAST_K = LAST_KI[AB-1:0];
    localparam [AB-1:0] LAST_RB = LAST_RBI[AB-1:0];
    localparam [AB-1:0] LAST_C = LAST_CI[AB-1:0];
    localparam [AB-1:0] STEP = CL[AB-1:0];  // offset between rows r and r+1 in a bank
    localparam [AB-1:0] COLS = C[AB-1:0];  // offset between rows r and r+L in a bank
    localparam [LB-1:0] LAST_L = LAST_LI[LB-1:0];
    localparam integer LI = L;
    localparam [LB:0] LL = LI[LB:0];

    // write side: beat counter = bank offset; wrot = r mod L (row r's lane j goes to bank (r + j) mod L)
    reg [AB-1:0] waddr, wk;
    reg [LB-1:0] wrot;
    // read side: column c (cq = c / L, rrot = c mod L), row block rb; rbase = rb*C + cq is the offset of
    // row rb*L; the element of lane i = (b - c) mod L, in bank b, is at rbase + i*(C/L)
    reg [AB-1:0] rbase, cbase, rb, c;
    reg [LB-1:0] rrot, orot;
    reg wbank, rbank;
    reg [1:0] full;
    wire load = !m_valid || m_ready;
    wire pop = load && full[rbank];
    wire push = s_valid && s_ready;
    wire tensor_in = push && waddr == LAST;
    wire tensor_out = pop && rb == LAST_RB && c == LAST_C;
    assign s_ready = !full[wbank];

    wire [L*W-1:0] rd;  // the banks' read registers, bank b in lanes b
    genvar b;
    generate
        for (b = 0; b < L; b = b + 1) begin : g_bank
            localparam [LB:0] BI = b;
            reg [W-1:0] mem [0:(2 << AB) - 1];
            reg [W-1:0] q;
            // input lane written here: (b - wrot) mod L; output lane read here: (b - rrot) mod L
            wire [LB:0] wd = BI + LL - {1'b0, wrot}, rd_ = BI + LL - {1'b0, rrot};
            wire [LB:0] wl = wd >= LL ? wd - LL : wd, rl = rd_ >= LL ? rd_ - LL : rd_;
            wire [AB+LB:0] roff_unused_hi = {{AB{1'b0}}, rl} * {{(LB + 1){1'b0}}, STEP};  // < R*C/L: fits AB bits
            wire [AB-1:0] roff = roff_unused_hi[AB-1:0];
            always @(posedge clk) begin
                if (push) mem[{wbank, waddr}] <= s_data[wl * W +: W];
                if (pop) q <= mem[{rbank, rbase + roff}];
            end
            assign rd[b * W +: W] = q;
        end
        // output lane i comes from bank (orot + i) mod L, orot = c mod L of the beat in the registers
        for (b = 0; b < L; b = b + 1) begin : g_lane
            localparam [LB:0] IB = b;
            wire [LB:0] sum = IB + {1'b0, orot};
            wire [LB:0] bank = sum >= LL ? sum - LL : sum;
            assign m_data[b * W +: W] = rd[bank * W +: W];
        end
    endgenerate

    always @(posedge clk) begin
        if (rst) begin
            waddr <= {AB{1'b0}};
            wk <= {AB{1'b0}};
            wrot <= {LB{1'b0}};
            rbase <= {AB{1'b0}};
            cbase <= {AB{1'b0}};
            rb <= {AB{1'b0}};
            c <= {AB{1'b0}};
            rrot <= {LB{1'b0}};
            orot <= {LB{1'b0}};
            wbank <= 1'b0;
            rbank <= 1'b0;
            full <= 2'b00;
            m_valid <= 1'b0;
        end else begin
            if (push) begin
                waddr <= tensor_in ? {AB{1'b0}} : waddr + 1'b1;
                if (wk == LAST_K) begin
                    wk <= {AB{1'b0}};
                    wrot <= tensor_in || wrot == LAST_L ? {LB{1'b0}} : wrot + 1'b1;
                end else begin
                    wk <= wk + 1'b1;
                end
                if (tensor_in) wbank <= !wbank;
            end
            if (tensor_in) full[wbank] <= 1'b1;
            if (tensor_out) full[rbank] <= 1'b0;
            if (pop) begin
                orot <= rrot;
                // column order: down a column in blocks of L rows, then the next column's top
                if (rb == LAST_RB) begin
                    rb <= {AB{1'b0}};
                    c <= c == LAST_C ? {AB{1'b0}} : c + 1'b1;
                    if (c == LAST_C || rrot == LAST_L) begin
                        rrot <= {LB{1'b0}};
                        cbase <= c == LAST_C ? {AB{1'b0}} : cbase + 1'b1;
                        rbase <= c == LAST_C ? {AB{1'b0}} : cbase + 1'b1;
                    end else begin
                        rrot <= rrot + 1'b1;
                        rbase <= cbase;
                    end
                end else begin
                    rb <= rb + 1'b1;
                    rbase <= rbase + COLS;
                end
                if (tensor_out) rbank <= !rbank;
            end
            if (load) m_valid <= pop;
        end
    end
endmodule
