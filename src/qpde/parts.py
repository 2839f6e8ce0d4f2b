"""FPGA parts a design can be asked to fit (`qpde search --part NAME`): their logic, DSP and block-RAM
capacities from the vendors' product tables, and the Yosys flow whose counts are compared with them.

Counts are the units Yosys reports for the family: LUT4s (a CCU2C carry counts two) for ECP5, LUT6s
for Xilinx; DSP = MULT18X18D (ECP5), DSP48E1 (7-series), DSP48E2 (UltraScale+); BRAM in 18-kbit EBRs
(ECP5) or 36-kbit blocks (Xilinx, a RAMB18 counts ½). A Xilinx fit is judged on Yosys synthesis
counts (Vivado usually packs tighter, so the check is conservative); an ECP5 fit is nextpnr's
placement on the part itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from qpde.errors import ConfigError


@dataclass(frozen=True)
class Part:
    name: str
    family: str  # Yosys target: "ecp5", or synth_xilinx -family (xc7, xcup)
    lut: int
    ff: int
    dsp: int
    bram: float
    uram: int = 0
    ecp5_device: str | None = None  # nextpnr-ecp5 --25k/--45k/--85k
    ecp5_package: str | None = None

    @property
    def is_ecp5(self) -> bool:
        return self.family == "ecp5"


PARTS = {p.name.lower(): p for p in (
    Part("LFE5U-25F", "ecp5", 24_288, 24_288, 28, 56, ecp5_device="25k", ecp5_package="CABGA381"),
    Part("LFE5U-45F", "ecp5", 43_848, 43_848, 72, 108, ecp5_device="45k", ecp5_package="CABGA381"),
    Part("LFE5U-85F", "ecp5", 83_640, 83_640, 156, 208, ecp5_device="85k", ecp5_package="CABGA381"),
    Part("xc7a35t", "xc7", 20_800, 41_600, 90, 50),
    Part("xc7a100t", "xc7", 63_400, 126_800, 240, 135),
    Part("xc7a200t", "xc7", 134_600, 269_200, 740, 365),
    Part("xc7z020", "xc7", 53_200, 106_400, 220, 140),
    Part("xczu9eg", "xcup", 274_080, 548_160, 2_520, 912),
    Part("xcvu9p", "xcup", 1_182_240, 2_364_480, 6_840, 2_160, uram=960),
    Part("xcvu13p", "xcup", 1_728_000, 3_456_000, 12_288, 2_688, uram=1_280),
)}


def get_part(name: str) -> Part:
    """The part named, case-insensitive; what follows the device (package, speed grade, as in
    xcvu13p-flga2577-2-e or xc7a200tfbg484-1) is ignored."""
    key = name.strip().lower()
    matches = [p for k, p in PARTS.items() if key.startswith(k)]
    if not matches:
        raise ConfigError(f"unknown part {name!r}; known parts: {', '.join(p.name for p in PARTS.values())} "
                          "(add one to qpde.parts.PARTS with its vendor figures)")
    return max(matches, key=lambda p: len(p.name))


def fit(part: Part, row: dict) -> str | None:
    """None when the design row's counts fit the part, else why not (or why it cannot be judged).
    Xilinx parts read the row's Yosys counts (lut, ff, dsp, bram, uram); ECP5 parts the placed
    figures (ecp5_lut, …), which exist only when nextpnr placed the design on that part."""
    if part.is_ecp5:
        if row.get("fmax_mhz") is None or row.get("ecp5_lut") is None:
            return f"not placed on {part.name} ({row.get('note') or 'no P&R result'})"
        used = {"LUT4": row["ecp5_lut"], "FF": row.get("ecp5_ff"), "MULT18X18D": row.get("ecp5_dsp"),
                "EBR": row.get("ecp5_bram")}
        have = {"LUT4": part.lut, "FF": part.ff, "MULT18X18D": part.dsp, "EBR": part.bram}
    else:
        if row.get("lut") is None:
            return f"no synthesis counts ({row.get('note') or 'not built'})"
        if row.get("target") and not str(row["target"]).startswith(f"xilinx-{part.family}"):
            return f"counts are for {row['target']}, not {part.family} ({part.name})"
        used = {"LUT": row["lut"], "FF": row.get("ff"), "DSP": row.get("dsp"), "BRAM36": row.get("bram"),
                "URAM": row.get("uram")}
        have = {"LUT": part.lut, "FF": part.ff, "DSP": part.dsp, "BRAM36": part.bram, "URAM": part.uram}
    over = [f"{name} {used[name]:,} > {have[name]:,}" for name in used if (used[name] or 0) > have[name]]
    return f"does not fit {part.name}: " + ", ".join(over) if over else None
