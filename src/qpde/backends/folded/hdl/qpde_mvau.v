// Matrix-vector unit (FINN's MVAU folding): for every row x[0:K] of the input tensor, y = x @ W
// with the constant K x C matrix W, SIMD inputs and PE outputs in parallel, (C/PE)(K/SIMD) cycles
// per row. The input row is double-buffered (one row is written while the other is reused for
// every output fold). Weights live in a synchronous ROM of NT words of PE*SIMD codes, so Yosys can
// map it to block RAM. Dense (SPARSE = 0): NT = NF*NS, word f*NS + s holds W[s*SIMD + j][f*PE + p]
// at lane p*SIMD + j. Zero-tile skipping (SPARSE = 1): only the tiles with a nonzero weight are
// stored, fold by fold (a fold with none keeps one zero tile), and a small index ROM gives each
// word's input word s and whether it ends its fold; a row then takes max(NT, NS) cycles (NS: the
// row still comes in whole).
// The accumulator is exact (ACC_W from the compiler's bound), starts at the bias (already at the
// accumulator LSB) and is requantized like the next Quant.
//
// Pipeline: issue (ROM and row-buffer reads) -> memory outputs registered -> products registered
// -> accumulate -> requantized output register. The whole pipeline advances when the output
// register is free (adv), so a stalled consumer freezes it without losing a beat.
module qpde_mvau #(
    parameter K = 4,
    parameter C = 4,
    parameter SIMD = 1,
    parameter PE = 1,
    parameter IN_W = 4,
    parameter IN_SIGNED = 1,
    parameter WW = 4,           // weight code bits (signed)
    parameter PSHIFT = 0,       // product LSB above the accumulator LSB
    parameter ACC_W = 16,
    parameter HAS_BIAS = 0,
    parameter OUT_W = 4,
    parameter RSHIFT = 0,
    parameter LSHIFT = 0,
    parameter signed [63:0] QMIN = -8,
    parameter signed [63:0] QMAX = 7,
    parameter WEIGHTS = "weights.mem",
    parameter BIASES = "biases.mem",
    parameter SB = 1,           // bits of the input-word counter: 2^SB >= K/SIMD
    parameter FB = 1,           // bits of the output-fold counter: 2^FB >= C/PE
    parameter NT = (K / SIMD) * (C / PE),  // stored weight words
    parameter SPARSE = 0,       // 1: the index ROM lists the stored tiles (zero tiles skipped)
    parameter INDEX = "index.mem",  // per word: {last of its fold, input word s} (SB + 1 bits)
    parameter AB = 1            // bits of the ROM address: 2^AB >= NT
) (
    input  wire                 clk,
    input  wire                 rst,
    input  wire                 s_valid,
    output wire                 s_ready,
    input  wire [SIMD*IN_W-1:0] s_data,
    output reg                  m_valid,
    input  wire                 m_ready,
    output reg  [PE*OUT_W-1:0]  m_data
);
    localparam NS = K / SIMD;
    localparam NF = C / PE;
    localparam integer LAST_SI = NS - 1, LAST_TI = NT - 1;
    localparam [SB-1:0] LAST_S = LAST_SI[SB-1:0];
    localparam [AB-1:0] LAST_T = LAST_TI[AB-1:0];

    reg [PE*SIMD*WW-1:0] rom [0:NT-1];
    initial $readmemh(WEIGHTS, rom);

    // ---- input row, double-buffered ----
    reg [SIMD*IN_W-1:0] rowbuf [0:(2 << SB) - 1];
    reg [SB-1:0] widx;
    reg [FB-1:0] f;
    reg [AB-1:0] waddr;
    reg wbank, rbank, first;
    reg [1:0] full;
    wire adv = !m_valid || m_ready;
    wire issue = adv && full[rbank];
    wire row_in = s_valid && s_ready && widx == LAST_S;
    wire row_done = issue && waddr == LAST_T;
    assign s_ready = !full[wbank];

    // the input word of the current weight word, and whether it is its fold's last
    wire [SB-1:0] s;
    wire last;
    generate
        if (SPARSE) begin : g_sparse
            reg [SB:0] index [0:NT-1];
            initial $readmemh(INDEX, index);
            wire [SB:0] entry = index[waddr];
            assign s = entry[SB-1:0];
            assign last = entry[SB];
        end else begin : g_dense
            reg [SB-1:0] sc;
            always @(posedge clk)
                if (rst) sc <= {SB{1'b0}};
                else if (issue) sc <= sc == LAST_S ? {SB{1'b0}} : sc + 1'b1;
            assign s = sc;
            assign last = sc == LAST_S;
        end
    endgenerate

    // ---- stage 1: weights, inputs and bias for one (fold, input word) step ----
    reg [PE*SIMD*WW-1:0] wq;
    reg [SIMD*IN_W-1:0] xq;
    reg [PE*ACC_W-1:0] bq;
    reg v1, first1, last1;
    always @(posedge clk) begin
        if (s_valid && s_ready) rowbuf[{wbank, widx}] <= s_data;
        if (issue) begin
            wq <= rom[waddr];
            xq <= rowbuf[{rbank, s}];
        end
    end

    generate
        if (HAS_BIAS) begin : g_bias
            reg [PE*ACC_W-1:0] brom [0:NF-1];
            initial $readmemh(BIASES, brom);
            always @(posedge clk) if (issue) bq <= brom[f];
        end else begin : g_nobias
            always @(posedge clk) bq <= {PE*ACC_W{1'b0}};
        end
    endgenerate

    always @(posedge clk) begin
        if (rst) begin
            widx <= {SB{1'b0}};
            f <= {FB{1'b0}};
            first <= 1'b1;
            waddr <= {AB{1'b0}};
            wbank <= 1'b0;
            rbank <= 1'b0;
            full <= 2'b00;
            v1 <= 1'b0;
            first1 <= 1'b0;
            last1 <= 1'b0;
        end else begin
            if (s_valid && s_ready) begin
                widx <= widx == LAST_S ? {SB{1'b0}} : widx + 1'b1;
                if (widx == LAST_S) wbank <= !wbank;
            end
            // A bank is set full by the write side and emptied by the read side (never both at once:
            // the writer only fills an empty bank, the reader only drains a full one).
            if (row_in) full[wbank] <= 1'b1;
            if (row_done) full[rbank] <= 1'b0;
            if (issue) begin
                if (last) f <= row_done ? {FB{1'b0}} : f + 1'b1;
                first <= last;
                waddr <= row_done ? {AB{1'b0}} : waddr + 1'b1;
                if (row_done) rbank <= !rbank;
            end
            if (adv) begin
                v1 <= issue;
                first1 <= first;
                last1 <= last;
            end
        end
    end

    // ---- stage 2: memory outputs re-registered (a block RAM's clock-to-out is slow) ----
    reg [PE*SIMD*WW-1:0] wq2;
    reg [SIMD*IN_W-1:0] xq2;
    reg [PE*ACC_W-1:0] bq2, bq3;
    reg v2, first2, last2, v3, first3, last3, v4;
    always @(posedge clk) begin
        if (adv) begin
            wq2 <= wq;
            xq2 <= xq;
            bq2 <= bq;
            bq3 <= bq2;
            first2 <= first1;
            last2 <= last1;
            first3 <= first2;
            last3 <= last2;
        end
        if (rst) begin
            v2 <= 1'b0;
            v3 <= 1'b0;
            v4 <= 1'b0;
        end else if (adv) begin
            v2 <= v1;
            v3 <= v2;
            v4 <= v3 && last3;
        end
    end

    // ---- stage 3: the PE x SIMD products, registered at their exact width PW: WW + IN_W bits for
    // signed inputs, one more for unsigned ones (zero-extended to signed). Not wider: Yosys 0.23's
    // xilinx_dsp, folding this register into the DSP48's PREG, left a redundant sign bit of the
    // product in a fabric flip-flop fed by a net it had disconnected (x), and opt then removed most of
    // the datapath (docs/folded.md, "Post-synthesis check"). ----
    localparam PW = WW + IN_W + (IN_SIGNED != 0 ? 0 : 1);
    reg [PE*SIMD*PW-1:0] prods, products;
    reg signed [PW-1:0] wcode, xcode;
    integer p, j;
    always @* begin
        for (p = 0; p < PE; p = p + 1)
            for (j = 0; j < SIMD; j = j + 1) begin
                wcode = {{(PW - WW){wq2[(p * SIMD + j) * WW + WW - 1]}}, wq2[(p * SIMD + j) * WW +: WW]};
                xcode = {{(PW - IN_W){IN_SIGNED != 0 && xq2[j * IN_W + IN_W - 1]}}, xq2[j * IN_W +: IN_W]};
                products[(p * SIMD + j) * PW +: PW] = wcode * xcode;
            end
    end
    always @(posedge clk) if (adv) prods <= products;

    // ---- stage 4: PE sums of SIMD products, accumulated exactly (ACC_W bounds every partial sum) ----
    reg [PE*ACC_W-1:0] dots;
    reg signed [ACC_W-1:0] sum;
    integer r, k;
    always @* begin
        for (r = 0; r < PE; r = r + 1) begin
            sum = {ACC_W{1'b0}};
            for (k = 0; k < SIMD; k = k + 1)
                sum = sum + {{(ACC_W - PW){prods[(r * SIMD + k) * PW + PW - 1]}}, prods[(r * SIMD + k) * PW +: PW]};
            dots[r * ACC_W +: ACC_W] = sum <<< PSHIFT;
        end
    end

    reg [PE*ACC_W-1:0] acc;
    integer q;
    always @(posedge clk)
        if (adv && v3)
            for (q = 0; q < PE; q = q + 1)
                acc[q * ACC_W +: ACC_W] <= (first3 ? bq3[q * ACC_W +: ACC_W] : acc[q * ACC_W +: ACC_W])
                                           + dots[q * ACC_W +: ACC_W];

    // ---- stage 5: requantize the finished folds into the output register ----
    wire [PE*OUT_W-1:0] y;
    genvar g;
    generate
        for (g = 0; g < PE; g = g + 1) begin : g_rq
            qpde_requant #(.IN_W(ACC_W), .RSHIFT(RSHIFT), .LSHIFT(LSHIFT), .OUT_W(OUT_W), .QMIN(QMIN), .QMAX(QMAX))
                rq (.x(acc[g * ACC_W +: ACC_W]), .y(y[g * OUT_W +: OUT_W]));
        end
    endgenerate

    always @(posedge clk) begin
        if (rst) m_valid <= 1'b0;
        else if (adv) m_valid <= v4;
        if (adv && v4) m_data <= y;
    end
endmodule
