// Stream shell of a constant-matrix kernel (the folded `cmvm` unit): the kernel (generated per
// layer from da4ml, instantiated beside this module by the top) takes a whole input row x[0:K] at
// once and returns the C requantized codes LAT enabled cycles later, one row per cycle at most.
// The shell gathers a row from K/SIMD input beats into one of two banks (the next row is written
// while the other waits for the kernel, as in qpde_mvau), issues it to the kernel, and emits the
// kernel's C codes as C/PE beats of PE codes from an output row register. A row therefore takes
// max(K/SIMD, C/PE) cycles in steady state (1 with SIMD = K, PE = C).
//
// The kernel's registers and the valid bits beside them (vpipe) advance together on k_ce = adv.
// adv is low only when the kernel's last stage holds a row that the output register cannot take
// (still emitting the previous one): bubbles move on, a stalled consumer freezes the pipeline
// without losing a row. s_ready and m_valid come from registers only.
module qpde_cmvm #(
    parameter K = 4,
    parameter C = 4,
    parameter SIMD = 1,
    parameter PE = 1,
    parameter IN_W = 4,
    parameter OUT_W = 4,
    parameter LAT = 2,   // kernel latency: enabled cycles from a row at k_x to its codes at k_y
    parameter SB = 1,    // bits of the input-word counter: 2^SB >= K/SIMD
    parameter FB = 1     // bits of the output-word counter: 2^FB >= C/PE
) (
    input  wire                 clk,
    input  wire                 rst,
    input  wire                 s_valid,
    output wire                 s_ready,
    input  wire [SIMD*IN_W-1:0] s_data,
    output wire                 m_valid,
    input  wire                 m_ready,
    output wire [PE*OUT_W-1:0]  m_data,
    output wire                 k_ce,
    output wire [K*IN_W-1:0]    k_x,
    input  wire [C*OUT_W-1:0]   k_y
);
    localparam NS = K / SIMD;
    localparam NF = C / PE;
    localparam integer LAST_SI = NS - 1, LAST_FI = NF - 1;
    localparam [SB-1:0] LAST_S = LAST_SI[SB-1:0];
    localparam [FB-1:0] LAST_F = LAST_FI[FB-1:0];

    // ---- input rows, double-buffered ----
    reg [K*IN_W-1:0] bank0, bank1;
    reg [SB-1:0] widx;
    reg wbank, rbank;
    reg [1:0] full;
    wire s_fire = s_valid && s_ready;
    assign s_ready = !full[wbank];

    // ---- output row register ----
    reg [C*OUT_W-1:0] obuf;
    reg ovalid;
    reg [FB-1:0] oidx;
    wire m_fire = ovalid && m_ready;
    wire ofree = !ovalid || (m_fire && oidx == LAST_F);

    reg [LAT-1:0] vpipe;  // vpipe[i]: the kernel's register level i holds a row
    wire adv = !vpipe[LAT-1] || ofree;
    wire issue = adv && full[rbank];
    assign k_ce = adv;
    assign k_x = rbank ? bank1 : bank0;

    // Both row banks and the output row are shift registers, not addressed words: a variable
    // part-select write or read made Yosys build barrel shifters (measured: ~880 xc7 LUTs for the
    // shell of a 16×1 kernel at SIMD 2). A beat enters a bank at the top, so after NS beats word 0 is
    // at the bottom; the output row leaves PE codes a beat from the bottom.
    generate
        if (NS == 1) begin : g_row
            always @(posedge clk) begin
                if (s_fire && !wbank) bank0 <= s_data;
                if (s_fire && wbank) bank1 <= s_data;
            end
        end else begin : g_words
            always @(posedge clk) begin
                if (s_fire && !wbank) bank0 <= {s_data, bank0[K*IN_W-1:SIMD*IN_W]};
                if (s_fire && wbank) bank1 <= {s_data, bank1[K*IN_W-1:SIMD*IN_W]};
            end
        end
    endgenerate

    always @(posedge clk)
        if (adv && vpipe[LAT-1]) obuf <= k_y;
        else if (m_fire) obuf <= obuf >> (PE * OUT_W);

    always @(posedge clk) begin
        if (rst) begin
            widx <= {SB{1'b0}};
            wbank <= 1'b0;
            rbank <= 1'b0;
            full <= 2'b00;
            vpipe <= {LAT{1'b0}};
            ovalid <= 1'b0;
            oidx <= {FB{1'b0}};
        end else begin
            if (s_fire) begin
                widx <= widx == LAST_S ? {SB{1'b0}} : widx + 1'b1;
                if (widx == LAST_S) begin
                    full[wbank] <= 1'b1;
                    wbank <= !wbank;
                end
            end
            // the writer fills only an empty bank, the reader drains only a full one: never the same bank
            if (issue) begin
                full[rbank] <= 1'b0;
                rbank <= !rbank;
            end
            if (adv) vpipe <= {vpipe[LAT-2:0], issue};
            if (m_fire) oidx <= oidx == LAST_F ? {FB{1'b0}} : oidx + 1'b1;
            if (adv && vpipe[LAT-1]) ovalid <= 1'b1;
            else if (ofree) ovalid <= 1'b0;
        end
    end

    assign m_valid = ovalid;
    assign m_data = obuf[PE*OUT_W-1:0];
endmodule
