"""FINN backend: FINN's build steps on a variant's QONNX, up to estimate reports (and, with Vivado,
out-of-context synthesis), plus an exact check of FINN's Python execution against the golden.

FINN (the pip-installable fork finn-plus, pinned 1.6.1) lives in its own environment because its
pins conflict with qpde's (see scripts/install_finn.sh and docs/finn.md). qpde finds it as:
  1. `finn` importable in the current interpreter (a user's own FINN install), else
  2. $QPDE_FINN_PYTHON, else
  3. .venv-finn/bin/python in the current directory or in the project root,
and runs src/qpde/backends/finn/runner.py with that Python in a subprocess; the log and every FINN report
stay in the output directory. Figures FINN did not produce are None, never 0 or a guess.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from qpde.backends.tools import run_tool
from qpde.backends.verdict import compare
from qpde.errors import QpdeError, ToolError, ToolRunError

log = logging.getLogger(__name__)

TOOL = "finn-plus"
TESTED_VERSION = "1.6.1"
INSTALL_COMMAND = "scripts/install_finn.sh"
DEFAULT_PART = "xcvu13p-flga2577-2-e"  # same default part as qpde's hls4ml projects
DEFAULT_CLOCK_NS = 5.0
DEFAULT_TARGET_FPS = 1_000_000  # fields per second that FINN's folding aims for
RUNNER = Path(__file__).with_name("runner.py")
PROJECT_ROOT = Path(__file__).resolve().parents[4]
_VERSION_PROBE = (
    "import importlib.metadata as m, importlib.util as u, sys\n"
    "assert u.find_spec('finn') is not None, 'no module named finn'\n"
    "v = None\n"
    "for d in ('finn-plus', 'finn'):\n"
    "    try:\n"
    "        v = m.version(d); break\n"
    "    except m.PackageNotFoundError:\n"
    "        pass\n"
    "print(v or 'unknown')\n"
)
_probe_cache: dict[str, tuple[str | None, str]] = {}


# ---- detection ---------------------------------------------------------------------------------
def _candidates() -> list[tuple[str, Path]]:
    """(origin, python) pairs to probe, in order of preference."""
    out = []
    env = os.environ.get("QPDE_FINN_PYTHON")
    if env:
        out.append(("$QPDE_FINN_PYTHON", Path(env)))
    for base in (Path.cwd(), PROJECT_ROOT):
        path = base / ".venv-finn" / "bin" / "python"
        if all(path != p for _, p in out):
            out.append((f"{base}/.venv-finn", path))
    return out


def _probe(python: Path) -> tuple[str | None, str]:
    """(version, '') when `python` can import finn, else (None, why not)."""
    key = str(python)
    if key in _probe_cache:
        return _probe_cache[key]
    if not python.exists():
        result = (None, "not found")
    else:
        try:
            proc = subprocess.run([str(python), "-c", _VERSION_PROBE], capture_output=True, text=True,
                                  timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            result = (None, f"could not run ({exc})")
        else:
            if proc.returncode == 0:
                result = (proc.stdout.strip().splitlines()[-1], "")
            else:
                tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                result = (None, f"cannot import finn ({tail})")
    _probe_cache[key] = result
    return result


def _locate() -> tuple[str | None, str | None, list[str]]:
    """(python executable, FINN version, probe notes). The executable is None when none works."""
    notes = []
    if importlib.util.find_spec("finn") is not None:
        version, why = _probe(Path(sys.executable))
        if version:
            return sys.executable, version, notes
        notes.append(f"current interpreter {sys.executable}: {why}")
    else:
        notes.append(f"current interpreter {sys.executable}: no module named finn")
    for origin, python in _candidates():
        version, why = _probe(python)
        if version:
            return str(python), version, notes
        notes.append(f"{origin} ({python}): {why}")
    return None, None, notes


def finn_available() -> tuple[bool, str]:
    """(True, "finn-plus 1.6.1 at PYTHON") or (False, which interpreters were probed and what to run)."""
    python, version, notes = _locate()
    if python:
        return True, f"{TOOL} {version} ({python})"
    return False, ("FINN not installed: run " + INSTALL_COMMAND + " (creates .venv-finn) or set "
                   "QPDE_FINN_PYTHON to a Python that imports finn; probed: " + "; ".join(notes))


def vivado_available() -> bool:
    root = os.environ.get("XILINX_VIVADO", "")
    return bool(root) and Path(root).is_dir() and shutil.which("vivado") is not None


# ---- report parsing ----------------------------------------------------------------------------
def _num(value):
    """A JSON figure as int when integral, float otherwise; None stays None."""
    if value is None:
        return None
    value = float(value)
    return int(value) if value.is_integer() else value


def parse_ooc_report(data: dict | Path) -> dict:
    """FINN's report/ooc_synth_and_timing.json (Vivado out-of-context P&R, parsed by FINN from
    ooc_utilization.rpt / ooc_timing.rpt) → table keys. bram is counted in 18 Kb blocks
    (RAMB18 + 2 × RAMB36), like FINN's estimates."""
    if isinstance(data, Path):
        data = json.loads(data.read_text())
    bram = None
    if "BRAM_18K" in data or "BRAM_36K" in data:
        bram = int(data.get("BRAM_18K", 0)) + 2 * int(data.get("BRAM_36K", 0))
    elif "BRAM" in data:
        bram = _num(float(data["BRAM"]) * 2)
    return {"lut": _num(data.get("LUT")), "ff": _num(data.get("FF")), "dsp": _num(data.get("DSP")),
            "bram": bram, "uram": _num(data.get("URAM")), "fmax_mhz": _num(data.get("fmax_mhz")),
            "wns_ns": _num(data.get("WNS"))}


def _short(items: list[str], limit: int = 6) -> str:
    return ", ".join(items[:limit]) + (f", … (+{len(items) - limit})" if len(items) > limit else "")


def summarize(result: dict, *, part: str) -> dict:
    """The runner's finn_result.json → the joined table's keys plus per-layer and per-node detail."""
    reports = result.get("reports") or {}
    row = {"tool": TOOL, "tool_version": result.get("finn_version"), "target": part, "lut": None,
           "ff": None, "dsp": None, "bram": None, "uram": None, "latency_cycles": None, "ii_cycles": None,
           "fmax_mhz": None, "fields_per_s": None, "estimate": True, "per_layer": [], "not_converted": [],
           "finn_nodes": None, "finn_hw_nodes": None, "finn_partitioned": bool(result.get("partitioned"))}
    cov = result.get("coverage")
    if cov:
        row.update(finn_nodes=cov["nodes"], finn_hw_nodes=cov["hw_nodes"], not_converted=cov["not_converted"])
    full = reports.get("estimate_layer_resources.json")
    partial = reports.get("partial_estimate_layer_resources.json")
    resources = full or partial or {}
    cycles = (reports.get("estimate_layer_cycles.json") or reports.get("partial_estimate_layer_cycles.json")
              or {})
    folding = reports.get("auto_folding_config.json") or {}
    for name, res in resources.items():
        if name == "total":
            continue
        fold = folding.get(name, {}) if isinstance(folding.get(name), dict) else {}
        row["per_layer"].append({
            "layer": name, "op_type": name.rsplit("_", 1)[0], "lut": _num(res.get("LUT")),
            "bram": _num(res.get("BRAM_18K")), "uram": _num(res.get("URAM")), "dsp": _num(res.get("DSP")),
            "cycles": _num(cycles.get(name)), "pe": fold.get("PE"), "simd": fold.get("SIMD"),
            "float32": name in (result.get("float_layers") or []),
        })
    perf = reports.get("estimate_network_performance.json")
    if full and result.get("partitioned"):
        total = full.get("total", {})
        row.update(lut=_num(total.get("LUT")), bram=_num(total.get("BRAM_18K")), dsp=_num(total.get("DSP")),
                   uram=_num(total.get("URAM")))
    if perf and result.get("partitioned"):
        row.update(latency_cycles=_num(perf.get("critical_path_cycles")),
                   ii_cycles=_num(perf.get("max_cycles")),
                   fields_per_s=_num(perf.get("estimated_throughput_fps")))
    ooc = reports.get("ooc_synth_and_timing.json")
    if ooc:
        synth = parse_ooc_report(ooc)
        row.update({k: synth[k] for k in ("lut", "ff", "dsp", "bram", "uram", "fmax_mhz")})
        row["estimate"] = False
        if row["ii_cycles"] and synth["fmax_mhz"]:
            row["fields_per_s"] = synth["fmax_mhz"] * 1e6 / row["ii_cycles"]
    row["note"] = _note(result, row, ooc is not None)
    return row


def _note(result: dict, row: dict, synthesized: bool) -> str:
    parts = []
    steps = result.get("steps", [])
    failed = [s for s in steps if not s.get("ok")]
    pre = result.get("prepasses", {})
    cov = result.get("coverage")
    if cov is None:
        step = failed[0] if failed else {"step": "?", "error": "no step ran"}
        where = ("qpde could not load/prepare the model for FINN" if step["step"].startswith("qpde_")
                 else f"FINN failed in {step['step']}")
        parts.append(f"{where}: {step.get('error', '')}; no estimates")
    else:
        if cov["not_converted"]:
            groups: dict[str, list[dict]] = {}
            for node in cov["not_converted"]:
                groups.setdefault(node["op_type"], []).append(node)
            nodes = [f"{op} ×{len(g)} ({_short([n['name'] for n in g], 3)}: {g[0]['reason']})"
                     for op, g in groups.items()]
            parts.append(f"FINN covered {cov['hw_nodes']} of {cov['nodes']} nodes; "
                         f"not converted: {'; '.join(nodes)}")
        else:
            parts.append(f"FINN covered all {cov['nodes']} nodes of its graph")
        if not result.get("partitioned"):
            error = next((s.get("error", "") for s in steps
                          if s["step"] == "step_create_dataflow_partition"), "")
            error = error.split(". Complete list")[0][:300]
            parts.append(f"no single dataflow partition ({error}); no totals, per-layer estimates of the "
                         "converted layers only")
        else:
            later = [s for s in failed if s["step"] != "step_create_dataflow_partition"]
            if later:
                parts.append(f"FINN failed in {later[0]['step']}: {later[0].get('error', '')[:300]}")
            perf = (result.get("reports") or {}).get("estimate_network_performance.json") or {}
            target = result.get("target_fps")
            if target and row["fields_per_s"] and row["fields_per_s"] < 0.99 * target:
                parts.append(f"folding reached {row['fields_per_s']:.4g} of the target {target:.4g} fields/s "
                             f"(slowest layer {perf.get('max_cycles_node_name')}, {row['ii_cycles']} cycles)")
            zero = [p["layer"] for p in row["per_layer"]
                    if not any(p.get(k) for k in ("lut", "bram", "uram", "dsp"))]
            if zero and not synthesized:
                parts.append(f"no resource model in FINN (reported 0, excluded from totals): {_short(zero)}")
        if result.get("float_layers"):
            parts.append(f"FLOAT32 HW layers (float scale/bias ops FINN could not absorb): "
                         f"{_short(result['float_layers'])}")
    if pre.get("host_reshapes"):
        parts.append(f"left to the host: {', '.join(pre['host_reshapes'])}")
    if pre.get("unshared_weight_quants"):
        parts.append(f"shared weights duplicated: {', '.join(pre['unshared_weight_quants'])}")
    floor = pre.get("floor_thresholds")
    if isinstance(floor, list) and floor:
        parts.append(f"FLOOR thresholds at k·scale for {len(floor)} quantizers")
    elif isinstance(floor, str):
        parts.append(f"thresholds: {floor}")
    if pre.get("unsupported_rounding"):
        parts.append(f"rounding FINN ignores: {', '.join(pre['unsupported_rounding'])}")
    if synthesized:
        parts.append("resources and fmax from Vivado out-of-context P&R; cycles are FINN estimates")
    if result.get("full_build"):
        parts.append(str(result["full_build"]))
    version = result.get("finn_version")
    if version and version != TESTED_VERSION:
        parts.append(f"qpde's FINN workarounds are tested with {TESTED_VERSION}, found {version}")
    return "; ".join(parts)


# ---- running -----------------------------------------------------------------------------------
def run_finn(qonnx_path: Path, out_dir: Path, *, target_fps: int = DEFAULT_TARGET_FPS,
             x_test: np.ndarray | None = None, fpga_part: str = DEFAULT_PART,
             clock_period_ns: float = DEFAULT_CLOCK_NS, floor_thresholds: bool = True,
             full_build: bool | None = None, timeout_s: float = 3600) -> dict:
    """FINN's build steps on one QONNX model (up to estimate reports; with Vivado and
    full_build ≠ False also HW generation and out-of-context synthesis).

    Returns the joined-table keys (tool, tool_version, target, lut, bram, dsp, ff, latency_cycles,
    ii_cycles, fields_per_s, fmax_mhz, estimate, note) plus per_layer, not_converted and, with
    x_test, finn_exec_samples / finn_exec_mismatches (FINN's Python execution of the HW graph vs
    qpde.golden, np.array_equal per sample). A FINN failure on a step is reported in `note`; a
    missing FINN raises ToolError."""
    qonnx_path, out_dir = Path(qonnx_path).resolve(), Path(out_dir).resolve()
    python, version, notes = _locate()
    if python is None:
        raise ToolError("FINN not installed: run " + INSTALL_COMMAND + " (or set QPDE_FINN_PYTHON); probed: "
                        + "; ".join(notes))
    if not qonnx_path.is_file():
        raise QpdeError(f"FINN: model file not found: {qonnx_path}")
    out_dir.mkdir(parents=True, exist_ok=True)
    result_path = out_dir / "finn_result.json"
    result_path.unlink(missing_ok=True)
    (out_dir / "finn_exec_out.npy").unlink(missing_ok=True)
    if full_build is None:
        full_build = vivado_available()
    cmd = [python, str(RUNNER), "--model", str(qonnx_path), "--out", str(out_dir),
           "--target-fps", str(int(target_fps)), "--fpga-part", fpga_part, "--clock-ns", str(clock_period_ns)]
    x32 = None
    if x_test is not None:
        x32 = np.asarray(x_test, dtype=np.float64).astype(np.float32)  # what FINN's execution receives
        np.save(out_dir / "finn_inputs.npy", x32)
        cmd += ["--inputs", str(out_dir / "finn_inputs.npy")]
    if not floor_thresholds:
        cmd.append("--stock-thresholds")
    if full_build:
        cmd.append("--full-build")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    log_path = out_dir / "finn_build.log"
    timed_out, rc = False, 0
    start = time.perf_counter()
    try:
        run_tool(cmd, out_dir, log_path, timeout_s, "FINN runner", env=env)
    except ToolRunError as exc:  # a failed or timed-out build may still have written partial results
        if not result_path.is_file():
            raise
        timed_out, rc = exc.timed_out, exc.returncode
    seconds = time.perf_counter() - start
    result = json.loads(result_path.read_text())
    row = summarize(result, part=fpga_part)
    if timed_out:
        row["note"] = f"FINN timed out after {timeout_s:.0f} s (partial results); " + row["note"]
    elif rc != 0:
        row["note"] = f"FINN runner exited {rc} (see {log_path.name}); " + row["note"]
    row.update(finn_seconds=round(seconds, 2), log=str(log_path), out_dir=str(out_dir),
               finn_exec_samples=None, finn_exec_mismatches=None)
    if x32 is not None:
        row.update(_compare_exec(qonnx_path, x32, out_dir, result))
    (out_dir / "finn.json").write_text(json.dumps(row, indent=2, default=str))
    return row


def _compare_exec(qonnx_path: Path, x32: np.ndarray, out_dir: Path, result: dict) -> dict:
    """FINN's Python execution vs the exact golden, on the float32 inputs FINN received."""
    exec_info = result.get("exec") or {}
    if not exec_info.get("ok"):
        why = exec_info.get("error") or "FINN's Python execution did not run (conversion failed before it)"
        return {"finn_exec_note": why}
    from qpde import golden
    from qpde.qgraph import QGraph

    try:
        graph = QGraph(qonnx_path)
        reference = golden.run(graph, x32.astype(np.float64))
    except QpdeError as exc:
        return {"finn_exec_note": f"no golden for this graph: {exc}"}
    outputs = np.load(out_dir / exec_info["outputs"]).reshape(x32.shape[0], -1)
    verdict = compare("finn-exec", reference, outputs, graph=exec_info.get("graph"))
    verdict.save(out_dir / "finn_exec_verdict.json")
    return {"finn_exec_samples": verdict.samples, "finn_exec_mismatches": verdict.mismatching_samples,
            "finn_exec_graph": exec_info.get("graph"), "finn_exec_first_mismatch": verdict.first_mismatch_index,
            "finn_exec_mismatching_values": verdict.mismatching_values,
            "finn_exec_max_abs_diff": verdict.max_abs_difference}
