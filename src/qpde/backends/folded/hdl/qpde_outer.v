// Y = A^T B summed over K tokens (Galerkin attention's K^T V): A streams K rows of M codes, B K rows
// of P codes (token-major, L codes per beat each, L | M and L | P so a beat never straddles two
// tokens); Y [M, P] leaves in C order once per field, L requantized codes per beat. A's rows are
// double-buffered (row t+1 loads while row t is used); every B beat b[t][jL..jL+L-1] adds
// A[t][i] * b[t][jL+l] to accumulator (i, jL+l) for all M values of i and L of l at once (M*L
// multipliers), so per field K*P/L cycles on B, K*M/L on A, in parallel. The accumulators are exact
// (ACC_W from the compiler's bound). The field's last B beat writes the finished sums straight into
// the output buffer (no bubble), which is emitted L codes per cycle (M*P/L cycles) while the next
// field accumulates; B stalls at a field's end only if that buffer is still being emitted.
module qpde_outer #(
    parameter M = 4,
    parameter K = 16,
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
    parameter MB = 2,  // 2^MB >= M/L (A beats per token)
    parameter KB = 4,  // 2^KB >= K
    parameter PB = 2,  // 2^PB >= P/L (B beats per token)
    parameter OB = 4   // 2^OB >= M*P/L (output beats per field)
) (
    input  wire               clk,
    input  wire               rst,
    input  wire               a_valid,
    output wire               a_ready,
    input  wire [L*AW-1:0]    a_data,
    input  wire               b_valid,
    output wire               b_ready,
    input  wire [L*BW-1:0]    b_data,
    output reg                m_valid,
    input  wire               m_ready,
    output reg  [L*OUT_W-1:0] m_data
);
    localparam integer LAST_MI = M / L - 1, LAST_KI = K - 1, LAST_PI = P / L - 1, LAST_OI = M * P / L - 1;
    localparam [MB-1:0] LAST_M = LAST_MI[MB-1:0];
    localparam [KB-1:0] LAST_K = LAST_KI[KB-1:0];
    localparam [PB-1:0] LAST_P = LAST_PI[PB-1:0];
    localparam [OB-1:0] LAST_O = LAST_OI[OB-1:0];

    // ---- A rows, two banks ----
    reg [M*AW-1:0] arow0, arow1;
    wire [M*AW-1:0] arow = arb ? arow1 : arow0;
    reg [MB-1:0] ai;
    reg awb, arb;
    reg [1:0] afull;
    wire a_fire = a_valid && a_ready;
    assign a_ready = !afull[awb];

    // ---- B beats against the current A row ----
    reg [PB-1:0] bj;
    reg [KB-1:0] bt;
    reg obusy;
    reg [OB-1:0] oidx;
    wire emit = obusy && (!m_valid || m_ready);
    wire ofree = !obusy || (emit && oidx == LAST_O);
    wire field_end = bj == LAST_P && bt == LAST_K;
    assign b_ready = afull[arb] && (!field_end || ofree);
    wire b_fire = b_valid && b_ready;

    wire [31:0] col = {{(32 - PB){1'b0}}, bj} * L;  // first column of this beat, integer-wide
    wire [31:0] obase = {{(32 - OB){1'b0}}, oidx} * L;
    reg [ACC_W-1:0] acc [0:M*P-1];
    reg [ACC_W-1:0] obuf [0:M*P-1];
    // products at their exact width PW (an unsigned operand gains a zero sign bit)
    localparam signed [ACC_W-1:0] START = OFFSET[ACC_W-1:0];
    localparam PW = AW + BW + (A_SIGNED != 0 ? 0 : 1) + (B_SIGNED != 0 ? 0 : 1);
    // the M*L sums of this B beat (columns col..col+L-1), combinational; sum (i, l) at i*L + l
    reg [M*L*ACC_W-1:0] sums;
    reg signed [PW-1:0] av, bv, prod;
    reg signed [ACC_W-1:0] base;
    integer i, j, l;
    always @* begin
        for (l = 0; l < L; l = l + 1) begin
            bv = {{(PW - BW){B_SIGNED != 0 && b_data[l * BW + BW - 1]}}, b_data[l * BW +: BW]};
            for (i = 0; i < M; i = i + 1) begin
                av = {{(PW - AW){A_SIGNED != 0 && arow[i * AW + AW - 1]}}, arow[i * AW +: AW]};
                prod = av * bv;
                base = bt == {KB{1'b0}} ? START : acc[i * P + col + l];
                sums[(i * L + l) * ACC_W +: ACC_W] = base + {{(ACC_W - PW){prod[PW-1]}}, prod};
            end
        end
    end

    always @(posedge clk) begin
        if (a_fire && !awb) arow0[ai * (L * AW) +: L*AW] <= a_data;
        if (a_fire && awb) arow1[ai * (L * AW) +: L*AW] <= a_data;
        if (b_fire) begin
            for (i = 0; i < M; i = i + 1)
                for (l = 0; l < L; l = l + 1) begin
                    acc[i * P + col + l] <= sums[(i * L + l) * ACC_W +: ACC_W];
                    if (field_end) obuf[i * P + col + l] <= sums[(i * L + l) * ACC_W +: ACC_W];
                end
            if (field_end)  // the other columns are final already
                for (i = 0; i < M; i = i + 1)
                    for (j = 0; j < P - L; j = j + 1)
                        obuf[i * P + j] <= acc[i * P + j];
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
            ai <= {MB{1'b0}};
            awb <= 1'b0;
            arb <= 1'b0;
            afull <= 2'b00;
            bj <= {PB{1'b0}};
            bt <= {KB{1'b0}};
            obusy <= 1'b0;
            oidx <= {OB{1'b0}};
            m_valid <= 1'b0;
        end else begin
            if (a_fire) begin
                ai <= ai == LAST_M ? {MB{1'b0}} : ai + 1'b1;
                if (ai == LAST_M) begin
                    afull[awb] <= 1'b1;  // the writer fills only an empty bank, the reader drains a full one
                    awb <= !awb;
                end
            end
            if (b_fire) begin
                bj <= bj == LAST_P ? {PB{1'b0}} : bj + 1'b1;
                if (bj == LAST_P) begin
                    bt <= bt == LAST_K ? {KB{1'b0}} : bt + 1'b1;
                    afull[arb] <= 1'b0;
                    arb <= !arb;
                end
            end
            if (emit) begin
                oidx <= oidx == LAST_O ? {OB{1'b0}} : oidx + 1'b1;
                if (oidx == LAST_O) obusy <= 1'b0;
            end
            if (b_fire && field_end) obusy <= 1'b1;
            if (!m_valid || m_ready) m_valid <= emit;
        end
        if (emit) m_data <= y;
    end
endmodule
