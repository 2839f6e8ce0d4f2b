"""Hardware backends that turn a checked QGraph into an accelerator, one subpackage each:

- `hls4ml`: hls4ml project (io_stream, exact precisions), C simulation, the Vitis/Vivado flow;
- `rtl`: fully parallel Verilog through da4ml, Verilator emulation, Yosys/nextpnr synthesis;
- `folded`: folded streaming dataflow RTL (PE×SIMD units, valid/ready streams);
- `finn`: FINN's build steps, run in FINN's own Python environment.

Shared by all: `tools.run_tool` (running an external tool: log, timeout, process-group kill, log tail
in the error) and `verdict.Verdict` (a simulation compared with the golden, sample by sample).

`BACKENDS` is the registry the config, the pipeline and the report enumerate: adding a backend is a
subpackage here, one `Backend(...)` entry below, its config section (qpde.config) and its pipeline
stage (named after it).
"""

from __future__ import annotations

from dataclasses import dataclass

from qpde.registry import Registry


@dataclass(frozen=True)
class Backend:
    name: str  # as in the config's `backends` list and the joined table's `backend` column
    summary: str
    config_section: str  # its section of the sweep config ([hls], [rtl], …)
    verdict_file: str | None = None  # its whole-test-set Verdict in sim/<variant>/, when it simulates
    verdict_columns: str | None = None  # joined-table prefix of that verdict: <prefix>_samples, <prefix>_mismatches


BACKENDS: Registry = Registry("backend")
register = BACKENDS.register


register(Backend("hls4ml", "hls4ml project, C simulation, Vitis/Vivado synthesis when installed", "hls",
                 "csim_verdict.json", "csim"))
register(Backend("rtl", "fully parallel Verilog (da4ml), Verilator, Yosys + nextpnr-ecp5", "rtl",
                 "rtlsim_verdict.json", "rtlsim"))
register(Backend("folded", "folded streaming RTL (PE×SIMD), Verilator with stalls, Yosys", "folded"))
register(Backend("finn", "FINN build steps (estimates; out-of-context synthesis with Vivado)", "finn"))
