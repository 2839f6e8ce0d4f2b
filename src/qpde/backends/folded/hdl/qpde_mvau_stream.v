// Y = A B with both operands streamed (Galerkin attention's Q (K^T V)): B [K, P] arrives once per
// field in C order (L codes per beat) into one of two register banks (the next field's B loads
// while this field's rows use the other); then every row of A (M rows of K codes, L per beat) is
// multiplied by it: beat a[r][kL..kL+L-1] adds sum_l a[r][kL+l] * B[kL+l][p] to accumulator p for
// all P values of p at once (P*L multipliers), so per field M*K/L cycles on A and K*P/L on B, in
// parallel (L | K and L | P). The row's last beat writes the exact sums straight into the output
// buffer (no bubble), which is emitted L requantized codes per cycle (P/L cycles) while the next
// row accumulates; A stalls at a row's end only if that buffer is still being emitted (P > K).
module qpde_mvau_stream #(
    parameter M = 16,
    parameter K = 4,
    parameter P = 4,
    parameter L = 1,  // codes per beat on A, B and Y
    parameter AW = 8,
    parameter A_SIGNED = 1,
    parameter BW = 8,
    parameter B_SIGNED = 1,
    parameter ACC_W = 20,
    parameter signed [63:0] OFFSET = 0,  // the sums' start value (a uniform constant Add, at the LSB)
    parameter OUT_W = 8,
    parameter RSHIFT = 0,
    parameter LSHIFT = 0,
    parameter signed [63:0] QMIN = -128,
    parameter signed [63:0] QMAX = 127,
    parameter RB = 4,  // 2^RB >= M
    parameter KB = 2,  // 2^KB >= K/L (A beats per row)
    parameter PB = 2,  // 2^PB >= P/L (output beats per row)
    parameter WB = 4   // 2^WB >= K*P/L (B beats per field)
) (
    input  wire               clk,
    input  wire               rst,
    input  wire               s_valid,
    output wire               s_ready,
    input  wire [L*AW-1:0]    s_data,
    input  wire               w_valid,
    output wire               w_ready,
    input  wire [L*BW-1:0]    w_data,
    output reg                m_valid,
    input  wire               m_ready,
    output reg  [L*OUT_W-1:0] m_data
);
    localparam integer LAST_RI = M - 1, LAST_KI = K / L - 1, LAST_PI = P / L - 1, LAST_WI = K * P / L - 1;
    localparam [RB-1:0] LAST_R = LAST_RI[RB-1:0];
    localparam [KB-1:0] LAST_K = LAST_KI[KB-1:0];
    localparam [PB-1:0] LAST_P = LAST_PI[PB-1:0];
    localparam [WB-1:0] LAST_W = LAST_WI[WB-1:0];

    // ---- B, two banks of K*P codes ----
    reg [BW-1:0] b0 [0:K*P-1];
    reg [BW-1:0] b1 [0:K*P-1];
    reg [WB-1:0] wi;
    reg wwb, wrb;
    reg [1:0] wfull;
    wire w_fire = w_valid && w_ready;
    assign w_ready = !wfull[wwb];

    // ---- rows of A against the current B ----
    reg [KB-1:0] k;
    reg [RB-1:0] r;
    reg obusy;
    reg [PB-1:0] oidx;
    wire emit = obusy && (!m_valid || m_ready);
    wire ofree = !obusy || (emit && oidx == LAST_P);
    wire row_end = k == LAST_K;
    assign s_ready = wfull[wrb] && (!row_end || ofree);
    wire s_fire = s_valid && s_ready;

    wire [31:0] woff = {{(32 - WB){1'b0}}, wi} * L;  // integer-wide index arithmetic
    wire [31:0] brow = {{(32 - KB){1'b0}}, k} * (L * P);  // B[kL][0]
    wire [31:0] obase = {{(32 - PB){1'b0}}, oidx} * L;
    localparam signed [ACC_W-1:0] START = OFFSET[ACC_W-1:0];
    localparam PW = AW + BW + (A_SIGNED != 0 ? 0 : 1) + (B_SIGNED != 0 ? 0 : 1);
    reg [ACC_W-1:0] acc [0:P-1];
    reg [ACC_W-1:0] obuf [0:P-1];
    // the P sums of this A beat (L products each), combinational
    reg [P*ACC_W-1:0] sums;
    reg signed [PW-1:0] av, bv, prod;
    reg signed [ACC_W-1:0] sum;
    reg [BW-1:0] bcode;
    integer p, l;
    always @* begin
        for (p = 0; p < P; p = p + 1) begin
            sum = k == {KB{1'b0}} ? START : acc[p];
            for (l = 0; l < L; l = l + 1) begin
                av = {{(PW - AW){A_SIGNED != 0 && s_data[l * AW + AW - 1]}}, s_data[l * AW +: AW]};
                bcode = wrb ? b1[brow + l * P + p] : b0[brow + l * P + p];
                bv = {{(PW - BW){B_SIGNED != 0 && bcode[BW-1]}}, bcode};
                prod = av * bv;
                sum = sum + {{(ACC_W - PW){prod[PW-1]}}, prod};
            end
            sums[p * ACC_W +: ACC_W] = sum;
        end
    end

    always @(posedge clk) begin
        for (l = 0; l < L; l = l + 1) begin
            if (w_fire && !wwb) b0[woff + l] <= w_data[l * BW +: BW];
            if (w_fire && wwb) b1[woff + l] <= w_data[l * BW +: BW];
        end
        if (s_fire)
            for (p = 0; p < P; p = p + 1) begin
                acc[p] <= sums[p * ACC_W +: ACC_W];
                if (row_end) obuf[p] <= sums[p * ACC_W +: ACC_W];
            end
    end

    wire [L*OUT_W-1:0] y;
    genvar g;
    generate
        for (g = 0; g < L; g = g + 1) begin : g_lane
            qpde_requant #(.IN_W(ACC_W), .RSHIFT(RSHIFT), .LSHIFT(LSHIFT), .OUT_W(OUT_W), .QMIN(QMIN), .QMAX(QMAX))
                rq (.x(obuf[obase + g]), .y(y[g * OUT_W +: OUT_W]));
        end
    endgenerate

    always @(posedge clk) begin
        if (rst) begin
            wi <= {WB{1'b0}};
            wwb <= 1'b0;
            wrb <= 1'b0;
            wfull <= 2'b00;
            k <= {KB{1'b0}};
            r <= {RB{1'b0}};
            obusy <= 1'b0;
            oidx <= {PB{1'b0}};
            m_valid <= 1'b0;
        end else begin
            if (w_fire) begin
                wi <= wi == LAST_W ? {WB{1'b0}} : wi + 1'b1;
                if (wi == LAST_W) begin
                    wfull[wwb] <= 1'b1;  // the writer fills only an empty bank, the reader drains a full one
                    wwb <= !wwb;
                end
            end
            if (s_fire) begin
                k <= row_end ? {KB{1'b0}} : k + 1'b1;
                if (row_end) begin
                    r <= r == LAST_R ? {RB{1'b0}} : r + 1'b1;
                    if (r == LAST_R) begin
                        wfull[wrb] <= 1'b0;
                        wrb <= !wrb;
                    end
                end
            end
            if (emit) begin
                oidx <= oidx == LAST_P ? {PB{1'b0}} : oidx + 1'b1;
                if (oidx == LAST_P) obusy <= 1'b0;
            end
            if (s_fire && row_end) obusy <= 1'b1;
            if (!m_valid || m_ready) m_valid <= emit;
        end
        if (emit) m_data <= y;
    end
endmodule
