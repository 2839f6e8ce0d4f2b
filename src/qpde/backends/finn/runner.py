"""FINN build steps on one QONNX model, run INSIDE FINN's own environment (.venv-finn).

qpde's main environment cannot import FINN (finn-plus pins brevitas/onnx/onnxruntime/protobuf
versions that conflict with qpde's), so `qpde.backends.finn.backend` runs this file as a script with FINN's
Python. It is standalone on purpose: it imports only the standard library, numpy, onnx, qonnx and
finn, never qpde. Everything it learns goes to OUT/finn_result.json; its console output (FINN's
prints and logs) goes to OUT/finn_build.log via the caller.

    python runner.py --model M.qonnx.onnx --out DIR [--target-fps F] [--fpga-part P]
        [--clock-ns T] [--inputs X.npy] [--stock-thresholds] [--full-build]

What it does (docs/finn.md explains why):
  qpde pre-passes (semantics-preserving, each recorded in the result):
    - weight quantizers shared by several MatMuls are duplicated (FINN's FoldQuantWeights refuses
      forks, e.g. the FNO's DFT matrices used by every layer);
    - pure reshapes at the graph's input/output (Unsqueeze/Squeeze/Reshape/Flatten) are left to
      the host: FINN has no working HW layer for them and they would split the dataflow partition;
    - FLOOR activation quantizers get thresholds at k·scale (FINN's converter ignores the Quant's
      rounding_mode and always builds round-half-up thresholds at (k-1/2)·scale); --stock-thresholds
      keeps FINN's thresholds.
  FINN's build steps, one at a time (a failing step is recorded with FINN's message, not raised):
    step_qonnx_to_finn [→ Change3DTo4DTensors when the graph has Conv nodes] → step_tidy_up →
    step_streamline → (scale Muls moved past forks, FINN's MoveLinearPastFork + Streamline) →
    step_convert_to_hw → step_minimize_bit_width_initial → [Python execution of the HW graph on
    --inputs] → step_create_dataflow_partition → step_specialize_layers →
    step_target_fps_parallelization → step_apply_folding_config → step_minimize_bit_width →
    step_transpose_decomposition → step_generate_estimate_reports
    [--full-build with Vivado: FINN's prepare_finn (dependencies, XSI) → step_assign_ddr_weight_offsets
     → step_generate_hardware → step_create_stitched_ip → step_out_of_context_synthesis].
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import logging
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

RESULT_NAME = "finn_result.json"
SHAPE_OPS = ("Unsqueeze", "Squeeze", "Reshape", "Flatten", "Identity")
FULL_BUILD_STEPS = ("step_assign_ddr_weight_offsets", "step_generate_hardware", "step_create_stitched_ip",
                    "step_out_of_context_synthesis")


def vivado_present() -> bool:
    root = os.environ.get("XILINX_VIVADO", "")
    return bool(root) and Path(root).is_dir() and shutil.which("vivado") is not None


def prepare_environment(build_dir: Path) -> bool:
    """FINN's import-time requirements without Vivado (see docs/finn.md). True if Vivado is real."""
    build_dir.mkdir(parents=True, exist_ok=True)
    os.environ["FINN_BUILD_DIR"] = str(build_dir)
    real = vivado_present()
    if not real:
        # Only the final metadata step reads it; FINN refuses to import finn.builder without it.
        os.environ["XILINX_VIVADO"] = str(build_dir / "no-vivado")
        import finn.xsi

        finn.xsi.SimEngine = None  # the RTL-sim engine needs Vivado's XSim; the estimate flow never uses it
    return real


# ---- qpde pre-passes ---------------------------------------------------------------------------
def unshare_weight_quants(model) -> list[str]:
    """Give every consumer of a shared constant Quant its own copy. Returns the duplicated names."""
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    done = []
    for node in list(graph.node):
        if node.op_type != "Quant" or not all(name in inits for name in node.input if name):
            continue
        consumers = model.find_consumers(node.output[0]) or []
        for k, consumer in enumerate(consumers[1:], start=1):
            dup = copy.deepcopy(node)
            dup.name = f"{node.name}_copy{k}"
            dup.output[0] = f"{node.output[0]}_copy{k}"
            graph.node.insert(list(graph.node).index(node) + 1, dup)
            for j, name in enumerate(consumer.input):
                if name == node.output[0]:
                    consumer.input[j] = dup.output[0]
            model.set_tensor_shape(dup.output[0], model.get_tensor_shape(node.output[0]))
        if len(consumers) > 1:
            done.append(f"{node.name} (×{len(consumers)})")
    return done


def strip_io_reshapes(model) -> tuple[list[str], list[int], list[int]]:
    """Remove pure reshapes between the graph input and its first op, and before the output.

    Returns (removed node names, original input shape, original output shape). Element order is
    unchanged by these ops, so the host reshapes the stream; FINN sees the inner shapes."""
    from onnx import helper

    graph = model.graph
    in_shape = list(model.get_tensor_shape(graph.input[0].name))
    out_shape = list(model.get_tensor_shape(graph.output[0].name))
    removed = []
    while True:
        name = graph.input[0].name
        consumers = model.find_consumers(name) or []
        if len(consumers) != 1 or consumers[0].op_type not in SHAPE_OPS:
            break
        node = consumers[0]
        new_name, shape = node.output[0], model.get_tensor_shape(node.output[0])
        dtype = graph.input[0].type.tensor_type.elem_type
        graph.node.remove(node)
        graph.input.remove(graph.input[0])
        graph.input.insert(0, helper.make_tensor_value_info(new_name, dtype, shape))
        _drop_value_info(graph, new_name)
        removed.append(node.name)
    while True:
        name = graph.output[0].name
        node = model.find_producer(name)
        if node is None or node.op_type not in SHAPE_OPS:
            break
        if len(model.find_consumers(node.input[0]) or []) != 1:
            break
        new_name, shape = node.input[0], model.get_tensor_shape(node.input[0])
        dtype = graph.output[0].type.tensor_type.elem_type
        graph.node.remove(node)
        graph.output.remove(graph.output[0])
        graph.output.insert(0, helper.make_tensor_value_info(new_name, dtype, shape))
        _drop_value_info(graph, new_name)
        removed.append(node.name)
    return removed, in_shape, out_shape


def _drop_value_info(graph, name: str) -> None:
    for vi in list(graph.value_info):
        if vi.name == name:
            graph.value_info.remove(vi)


def install_floor_thresholds(record: list[str]) -> None:
    """Make FINN's Quant→MultiThreshold conversion honour rounding_mode=FLOOR.

    FINN builds thresholds at (k - 1/2)·scale for every activation Quant (round half up). FLOOR
    needs them at k·scale: out = #{k : x >= k·scale} + bias = floor(x/scale), clipped. The shift is
    exact: scales are powers of two and thresholds are k·2^e."""
    import numpy as np
    from finn.transformation.qonnx import qonnx_activation_handlers as handlers
    from qonnx.util.basic import get_by_name

    for cls in (handlers.QuantReluHandler, handlers.QuantIdentityHandler):
        original = cls._calculate_thresholds
        if getattr(original, "_qpde_floor", False):
            continue

        def patched(self, _original=original):
            thresholds = _original(self)
            node = self._q_node
            if node.op_type != "Quant":
                return thresholds
            mode = get_by_name(node.attribute, "rounding_mode")
            mode = mode.s.decode().upper() if mode is not None else "ROUND"
            bits = float(np.asarray(self._model.get_initializer(node.input[3])).ravel()[0])
            if mode != "FLOOR" or bits <= 1:
                return thresholds
            scale = np.asarray(self._model.get_initializer(node.input[1]), dtype=np.float64)
            step = np.abs(scale).reshape(-1, 1)
            shifted = thresholds.astype(np.float64) + step / 2.0
            record.append(node.name)
            return shifted.astype(thresholds.dtype)

        patched._qpde_floor = True
        cls._calculate_thresholds = patched


def install_mvau_exec_fix(record: list[str]) -> None:
    """FINN's MVAU Python execution thresholds 3D results [N, W, C] along axis 1 (it only moves the
    channel axis for 4D NHWC), so per-channel thresholds fail or, when W == C, apply to the wrong
    axis. HW activations are channels-last (FINN's Thresholding layer executes that way), so qpde
    thresholds 3D MVAU results along the last axis. This touches only Python execution, not the
    hardware or the estimates."""
    import finn.custom_op.fpgadataflow.matrixvectoractivation as mvau
    from qonnx.custom_op.general.multithreshold import multithreshold

    if getattr(mvau.multithreshold, "_qpde_fix", False):
        return

    def channels_last_3d(v, thresholds, out_scale=None, out_bias=None, channels_last=False):
        return multithreshold(v, thresholds, out_scale, out_bias, channels_last=channels_last or v.ndim == 3)

    channels_last_3d._qpde_fix = True
    mvau.multithreshold = channels_last_3d
    record.append("MVAU Python execution thresholds 3D tensors channels-last")


def check_quant_rounding(model) -> list[str]:
    """Activation Quant nodes whose rounding FINN cannot reproduce (only ROUND/FLOOR are handled)."""
    from qonnx.util.basic import get_by_name

    inits = {i.name for i in model.graph.initializer}
    odd = []
    for node in model.graph.node:
        if node.op_type == "Quant" and node.input[0] not in inits:
            mode = get_by_name(node.attribute, "rounding_mode")
            mode = mode.s.decode().upper() if mode is not None else "ROUND"
            if mode not in ("ROUND", "FLOOR"):
                odd.append(f"{node.name} ({mode})")
    return odd


# ---- coverage ----------------------------------------------------------------------------------
def is_hw(node) -> bool:
    return node.domain.startswith("finn.custom_op.fpgadataflow")


def unconverted_reason(model, node, log_text: str) -> str:
    """Why step_convert_to_hw left this node alone, in terms of FINN's conversion conditions."""
    inits = {i.name for i in model.graph.initializer}
    dyn = [n for n in node.input if n and n not in inits]
    dts = {n: model.get_tensor_datatype(n) for n in node.input if n}
    non_int = [f"{n}:{dts[n].name}" for n in dyn if not dts[n].is_integer()]
    op = node.op_type
    if op == "MatMul":
        if len(dyn) == 2:
            base = "MatMul of two activations"
        else:
            base = "MatMul not converted to MVAU"
        if non_int:
            sources = []
            for n in dyn:
                if not dts[n].is_integer():
                    producer = model.find_producer(n)
                    sources.append(f"{n}:{dts[n].name}" + (f" from {producer.name} ({producer.op_type})"
                                                             if producer is not None else " (graph input)"))
            base += (f"; input {', '.join(sources)} is not an integer datatype (a float Quant, scale or bias "
                     "that streamlining did not absorb); InferQuantizedMatrixVectorActivation needs integer "
                     "input and weight datatypes")
    elif op in ("Mul", "Add", "Sub", "Div"):
        base = f"float {op} left by streamlining" if non_int else f"{op} not converted"
        if non_int:
            base += f" (inputs {', '.join(non_int)}); FINN's elementwise layers need typed inputs"
    elif op in SHAPE_OPS or op == "Transpose":
        base = f"{op} inside the graph: step_convert_to_hw has no layer for it here"
    elif op == "MultiThreshold":
        base = "MultiThreshold not absorbed or converted to Thresholding (input " + \
               ", ".join(f"{n}:{dts[n].name}" for n in dyn) + ")"
    elif op == "Quant":
        bits = model.get_initializer(node.input[3]) if len(node.input) > 3 else None
        bits = f"{float(bits):g}-bit " if bits is not None else ""
        base = (f"{bits}activation Quant kept as a float Quant: FINN turns activation quantizers into "
                "thresholds only up to max_multithreshold_bit_width (8) bits, and InferRequantLayer did not "
                "take it (input " + ", ".join(f"{n}:{dts[n].name}" for n in dyn) + ")")
    else:
        base = f"FINN has no HW layer for {op} in step_convert_to_hw"
    hints = [line.strip() for line in log_text.splitlines()
             if f" {node.name} " in f" {line} " or f"({node.name})" in line or f"{node.name}:" in line]
    if hints:
        base += f"; FINN said: {hints[-1][:300]}"
    return base


def float_layers(model) -> list[str]:
    """HW layers with an internal FLOAT32 input or output: float scale/bias ops FINN would build in
    floating point. The graph's own float input (into the input quantizer) and float output (after
    the output scale) are the expected interface and not counted."""
    io_names = {t.name for t in model.graph.input} | {t.name for t in model.graph.output}
    names = []
    for node in model.graph.node:
        if is_hw(node):
            tensors = [n for n in list(node.input) + list(node.output)
                       if n and n not in io_names and model.get_initializer(n) is None]
            if any(model.get_tensor_datatype(n).name == "FLOAT32" for n in tensors):
                names.append(node.name)
    return names


def coverage(model, log_text: str) -> dict:
    nodes = list(model.graph.node)
    hw = [n for n in nodes if is_hw(n)]
    return {
        "nodes": len(nodes),
        "hw_nodes": len(hw),
        "hw": [{"name": n.name, "op_type": n.op_type} for n in hw],
        "not_converted": [
            {"name": n.name, "op_type": n.op_type, "reason": unconverted_reason(model, n, log_text)}
            for n in nodes if not is_hw(n)
        ],
    }


# ---- running steps -----------------------------------------------------------------------------
class StepRunner:
    """Runs FINN step functions one by one, recording time, console text and the first failure."""

    def __init__(self, result: dict, cfg, out: Path, models: Path):
        self.result, self.cfg, self.out, self.models = result, cfg, out, models
        self.failed: str | None = None
        self.text: dict[str, str] = {}
        models.mkdir(parents=True, exist_ok=True)

    def run(self, name: str, fn, model, *, save: bool = True):
        buffer = io.StringIO()
        handler = logging.StreamHandler(buffer)
        handler.setLevel(logging.INFO)
        root = logging.getLogger()
        root.addHandler(handler)
        start = time.perf_counter()
        entry = {"step": name}
        try:
            with contextlib.redirect_stdout(buffer):
                model = fn(model, self.cfg)
            entry["ok"] = True
        except BaseException as exc:  # a FINN failure is data, not a crash of the runner
            if isinstance(exc, KeyboardInterrupt):
                raise
            entry["ok"] = False
            entry["error"] = f"{type(exc).__name__}: {exc}"[:2000]
            buffer.write(traceback.format_exc())
            self.failed = self.failed or name
        finally:
            root.removeHandler(handler)
            entry["seconds"] = round(time.perf_counter() - start, 3)
            text = buffer.getvalue()
            self.text[name] = text
            status = "ok" if entry.get("ok") else "FAILED"
            sys.stdout.write(f"==== {name} ({entry['seconds']} s, {status})\n{text}")
            sys.stdout.flush()
            self.result["steps"].append(entry)
            write_result(self.out, self.result)
        if entry["ok"] and save:
            model.save(str(self.models / f"{name}.onnx"))
        return model, entry["ok"]


def write_result(out: Path, result: dict) -> None:
    tmp = out / (RESULT_NAME + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str))
    os.replace(tmp, out / RESULT_NAME)


def python_exec(model, inputs_path: Path, out: Path, in_shape_finn: list[int], result: dict) -> None:
    """Execute the HW graph with FINN's Python execution (per sample), save outputs to finn_exec_out.npy."""
    import numpy as np
    from finn.core.onnx_exec import execute_onnx

    fixes: list[str] = []
    install_mvau_exec_fix(fixes)
    x = np.load(inputs_path)
    in_name, out_name = model.graph.input[0].name, model.graph.output[0].name
    outputs = []
    start = time.perf_counter()
    try:
        for i in range(x.shape[0]):
            sample = x[i:i + 1].astype(np.float32).reshape(in_shape_finn)
            outputs.append(np.asarray(execute_onnx(model, {in_name: sample})[out_name], dtype=np.float64))
    except Exception as exc:
        result["exec"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000],
                          "samples_done": len(outputs)}
        traceback.print_exc()
        return
    y = np.stack([o.reshape(-1) for o in outputs])
    np.save(out / "finn_exec_out.npy", y)
    result["exec"] = {"ok": True, "samples": int(x.shape[0]),
                      "graph": "after step_minimize_bit_width_initial",
                      "exec_fixes": fixes,
                      "seconds": round(time.perf_counter() - start, 3), "outputs": "finn_exec_out.npy"}


def read_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def partial_estimates(model, cfg, report: Path) -> None:
    """FINN's per-layer analyses on a graph that could not become one dataflow partition."""
    from finn.analysis.fpgadataflow.exp_cycles_per_layer import exp_cycles_per_layer
    from finn.analysis.fpgadataflow.res_estimation import res_estimation

    resources = model.analysis(lambda m: res_estimation(m, cfg._resolve_fpga_part()))
    (report / "partial_estimate_layer_resources.json").write_text(json.dumps(resources, indent=2))
    cycles = model.analysis(exp_cycles_per_layer)
    (report / "partial_estimate_layer_cycles.json").write_text(json.dumps(cycles, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--target-fps", type=int, default=1_000_000)
    parser.add_argument("--fpga-part", default="xcvu13p-flga2577-2-e")
    parser.add_argument("--clock-ns", type=float, default=5.0)
    parser.add_argument("--inputs", type=Path, default=None, help="raw model inputs [n, ...] (.npy)")
    parser.add_argument("--stock-thresholds", action="store_true",
                        help="keep FINN's round-half-up thresholds for FLOOR quantizers")
    parser.add_argument("--full-build", action="store_true",
                        help="with Vivado present: HW generation, stitched IP and out-of-context synthesis")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("build", "finn_build_dir"):  # reports of an earlier run must not be read as this run's
        shutil.rmtree(out / stale, ignore_errors=True)
    real_vivado = prepare_environment(out / "finn_build_dir")

    import importlib.metadata as md

    import finn.builder.build_dataflow_config as C
    import finn.builder.build_dataflow_steps as S
    from qonnx.core.modelwrapper import ModelWrapper

    versions = {}
    for pkg in ("finn-plus", "qonnx", "brevitas", "onnx", "onnxruntime", "numpy"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    result: dict = {"finn_version": versions["finn-plus"], "versions": versions, "fpga_part": args.fpga_part,
                    "clock_ns": args.clock_ns, "target_fps": args.target_fps, "vivado": real_vivado,
                    "prepasses": {}, "steps": [], "python": sys.executable}
    write_result(out, result)

    outputs = [C.DataflowOutputType.ESTIMATE_REPORTS]
    full = args.full_build and real_vivado
    if full:
        outputs += [C.DataflowOutputType.STITCHED_IP, C.DataflowOutputType.OOC_SYNTH]
    cfg = C.DataflowBuildConfig(output_dir=str(out / "build"), synth_clk_period_ns=args.clock_ns,
                                target_fps=args.target_fps, fpga_part=args.fpga_part,
                                generate_outputs=outputs, save_intermediate_models=True)
    report = cfg.get_report_directory()
    runner = StepRunner(result, cfg, out, cfg.get_intermediate_models_directory())

    try:
        model = ModelWrapper(str(args.model))
        odd = check_quant_rounding(model)
        if odd:
            result["prepasses"]["unsupported_rounding"] = odd
        result["prepasses"]["unshared_weight_quants"] = unshare_weight_quants(model)
        removed, in_shape, out_shape = strip_io_reshapes(model)
        result["prepasses"]["host_reshapes"] = removed
        result["io"] = {"input_shape": in_shape, "output_shape": out_shape,
                        "finn_input_shape": list(model.get_tensor_shape(model.graph.input[0].name)),
                        "finn_output_shape": list(model.get_tensor_shape(model.graph.output[0].name))}
    except Exception as exc:
        traceback.print_exc()
        result["steps"].append({"step": "qpde_load_and_prepasses", "ok": False,
                                "error": f"{type(exc).__name__}: {exc}"[:2000]})
        result["failed_step"] = "qpde_load_and_prepasses"
        write_result(out, result)
        return 0
    floor_fixed: list[str] = []
    if not args.stock_thresholds:
        install_floor_thresholds(floor_fixed)
    result["prepasses"]["floor_thresholds"] = (
        "stock (round half up)" if args.stock_thresholds else floor_fixed)

    def step(name):
        return getattr(S, name)

    model, ok = runner.run("step_qonnx_to_finn", step("step_qonnx_to_finn"), model)
    if ok and model.get_nodes_by_op_type("Conv"):
        from qonnx.transformation.change_3d_tensors_to_4d import Change3DTo4DTensors

        model, ok = runner.run("Change3DTo4DTensors", lambda m, c: m.transform(Change3DTo4DTensors()), model)
    for name in ("step_tidy_up", "step_streamline"):
        if ok:
            model, ok = runner.run(name, step(name), model)
    if ok:
        model, ok = runner.run("qpde_streamline_forks", _streamline_forks, model)
    for name in ("step_convert_to_hw", "step_minimize_bit_width_initial"):
        if ok:
            model, ok = runner.run(name, step(name), model)
    converted = ok
    if converted:
        log_text = "".join(runner.text.values())
        result["coverage"] = coverage(model, log_text)
        write_result(out, result)
        if args.inputs is not None:
            python_exec(model, args.inputs, out, result["io"]["finn_input_shape"], result)
            write_result(out, result)

    partitioned = False
    if converted:
        model_before_partition = model
        name = "step_create_dataflow_partition"
        model, partitioned = runner.run(name, step(name), model)
        if not partitioned:
            model = model_before_partition  # go on with the covered layers in place
        ok = True
        for name in ("step_specialize_layers", "step_target_fps_parallelization", "step_apply_folding_config",
                     "step_minimize_bit_width", "step_transpose_decomposition"):
            if ok:
                model, ok = runner.run(name, step(name), model)
                # Without one partition FINN's steps meet non-HW nodes and some fail; go on with the
                # last good model so the converted layers still get FINN's per-layer estimates.
                ok = ok or not partitioned
        if ok and partitioned:
            name = "step_generate_estimate_reports"
            model, ok = runner.run(name, step(name), model)
        elif ok:
            def estimate_partial(m, c):
                partial_estimates(m, c, report)
                return m

            model, ok = runner.run("partial_estimates", estimate_partial, model, save=False)
        if ok and full and partitioned:
            model, ok = runner.run("finn_prepare", _prepare_full_build, model, save=False)
            for name in FULL_BUILD_STEPS:
                if ok:
                    model, ok = runner.run(name, step(name), model)
        elif args.full_build and not real_vivado:
            result["full_build"] = "full build skipped: no Vivado (XILINX_VIVADO and vivado on PATH)"
        elif args.full_build and not partitioned:
            result["full_build"] = "full build skipped: the model is not one FINN dataflow partition"
    result["partitioned"] = partitioned
    if converted:
        result["float_layers"] = float_layers(model)
    result["failed_step"] = runner.failed
    result["reports"] = {name: read_json(report / name) for name in (
        "estimate_layer_resources.json", "estimate_layer_cycles.json", "estimate_network_performance.json",
        "op_and_param_counts.json", "auto_folding_config.json", "partial_estimate_layer_resources.json",
        "partial_estimate_layer_cycles.json", "ooc_synth_and_timing.json")}
    result["report_dir"] = str(report)
    write_result(out, result)
    return 0


def _prepare_full_build(model, cfg):
    """What `finn build` does before a hardware build: FINN's dependencies (finn-hlslib, …; fetched
    by FINN's DependencyUpdater), XSI for the installed Vivado, the tool paths. Untested here: no
    Vivado on the machines qpde was developed on (docs/finn.md)."""
    from finn.interface.run_finn import prepare_finn
    from finn.util.settings import get_settings

    prepare_finn(get_settings(), accept_defaults=True, batch=True, create_build_dir=True)
    return model


def _streamline_forks(model, cfg):
    """Move scale Muls past forks (FINN's own MoveLinearPastFork), then FINN's Streamline again, so
    both branches of a fork get integer inputs (FINN's Streamline skips fork nodes)."""
    from finn.transformation.streamline import Streamline
    from finn.transformation.streamline.reorder import MoveLinearPastFork
    from qonnx.transformation.general import RemoveUnusedTensors
    from qonnx.transformation.infer_data_layouts import InferDataLayouts

    for _ in range(4):
        before = len(model.graph.node), [n.op_type for n in model.graph.node]
        model = model.transform(MoveLinearPastFork())
        model = model.transform(Streamline())
        if (len(model.graph.node), [n.op_type for n in model.graph.node]) == before:
            break
    model = model.transform(InferDataLayouts())
    return model.transform(RemoveUnusedTensors())


if __name__ == "__main__":
    sys.exit(main())
