"""`qpde run`: the sweep as a list of stage functions over one config, each cached and resumable.

Each stage writes its artifact atomically next to a stamp holding the fingerprint of its inputs
(config slice, upstream fingerprints, tool versions). A rerun skips every stage whose stamp
matches, so an interrupted sweep resumes and a changed input recomputes only what depends on it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qpde import __version__
from qpde.config import SweepConfig, Variant, fingerprint
from qpde.errors import ConfigError, DataError, GraphError, MismatchError, QpdeError, ToolError
from qpde.quant import parse_scenario

log = logging.getLogger(__name__)
# HLSConfig fields that shape the hls4ml project (C-sim artifacts); the others only steer vendor runs.
PROJECT_FIELDS = ("backend", "part", "clock_period_ns", "strategy", "reuse_factor")


@dataclass(frozen=True)
class Layout:
    """Where artifacts live: the design card's top-level folders, one entry per variant id."""

    root: Path

    def data_file(self, dataset: str, key: str) -> Path:
        return self.root / "data" / f"{dataset}-{key}.h5"

    def models(self, variant: Variant) -> Path:
        return self.root / "models" / variant.id

    def hls(self, variant: Variant) -> Path:
        return self.root / "hls" / variant.id

    def sim(self, variant: Variant) -> Path:
        return self.root / "sim" / variant.id

    def bitstreams(self, variant: Variant) -> Path:
        return self.root / "bitstreams" / variant.id


def _write_json(path: Path, payload) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)
    return path


def portable(text: str, root: Path) -> str:
    """`text` with the sweep root's absolute path dropped, so notes and errors name artifacts relative
    to --out: the same sweep in two folders gives identical tables."""
    return text.replace(f"{Path(root).resolve()}/", "")


def cached(artifact: Path, key: str, make: Callable[[], object]) -> bool:
    """Run `make` unless `artifact` exists with a stamp of the same key. True if it ran."""
    stamp = artifact.parent / f".{artifact.name}.stamp"
    if artifact.exists() and stamp.exists() and json.loads(stamp.read_text()).get("key") == key:
        return False
    make()
    if not artifact.exists():
        raise QpdeError(f"stage did not produce {artifact}")
    _write_json(stamp, {"key": key})
    return True


@dataclass
class StageTimes:
    """Seconds spent per stage (only work actually done; cache hits cost ~0)."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, start: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


def ensure_data(cfg: SweepConfig, dataset: str, layout: Layout) -> tuple[Path, str]:
    from qpde.data import generate

    data_cfg = cfg.data_for(dataset)
    if data_cfg.file:
        path = Path(data_cfg.file)
        if not path.is_file():
            raise DataError(f"[data.{dataset}] file not found: {path}; generate it with `qpde data {dataset} --out {path}`")
        return path, fingerprint(str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns)
    # The model resolutions trained on the data are not an input of the data.
    key = fingerprint(dataset, dataclasses.replace(data_cfg, resolutions=None), _generator_source_hash())
    path = layout.data_file(dataset, key)
    cached(path, key, lambda: generate(
        dataset, path, samples=data_cfg.samples, resolution=data_cfg.resolution, seed=data_cfg.seed,
        **data_cfg.params,
    ))
    return path, key


def _generator_source_hash() -> str:
    """Hash of the data package's source: a changed solver or initial condition regenerates data."""
    import hashlib

    import qpde.data

    digest = hashlib.sha256()
    for source in sorted(Path(qpde.data.__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


class Sweep:
    """Runs the stages of a sweep for every variant, recording per-stage times."""

    def __init__(self, cfg: SweepConfig, root: Path):
        self.cfg, self.layout, self.times = cfg, Layout(Path(root)), StageTimes()
        self._splits: dict = {}

    # ---- data ------------------------------------------------------------------------------
    def split(self, dataset: str, name: str):
        from qpde.data import open_dataset
        from qpde.task import load_split

        if (dataset, name) not in self._splits:
            start = time.perf_counter()
            path, key = ensure_data(self.cfg, dataset, self.layout)
            self.times.add("data", start)
            with open_dataset(path) as handle:
                self._splits[(dataset, name)] = (load_split(handle, name, self.cfg.data_for(dataset).seed), key)
        return self._splits[(dataset, name)]

    # ---- training ----------------------------------------------------------------------------
    def shape(self, variant: Variant) -> dict:
        """The architecture's shape section; `residual` (add u(t) back) only where there is a u(t):
        a steady task such as Darcy maps a coefficient to a solution."""
        from qpde.task import STEADY
        from qpde.train import shape_of

        shape = shape_of(variant.arch, self.cfg)
        if variant.dataset in STEADY and "residual" in shape:
            shape["residual"] = False
        return shape

    def train_key(self, variant: Variant) -> str:
        _, data_key = self.split(variant.dataset, "train")
        base = fingerprint(data_key, variant.arch, variant.resolution, self.shape(variant), self.cfg.train,
                           __version__)
        if parse_scenario(variant.scenario).is_float:
            return base
        return fingerprint(base, variant.scenario, self.cfg.quant)

    def checkpoint(self, variant: Variant) -> Path:
        from qpde.task import SPATIAL_NDIM
        from qpde.train import train_variant

        path = self.layout.models(variant) / "checkpoint.pt"
        float_variant = Variant(variant.dataset, variant.arch, "fp32", variant.resolution)
        float_ckpt = None if variant == float_variant else self.checkpoint(float_variant)
        train, _ = self.split(variant.dataset, "train")
        val, _ = self.split(variant.dataset, "val")

        def make():
            start = time.perf_counter()
            train_variant(
                variant, self.shape(variant), self.cfg.train, train.pairs(variant.resolution),
                val.pairs(variant.resolution), path, float_ckpt, ndim=SPATIAL_NDIM[variant.dataset],
                quant=dataclasses.asdict(self.cfg.quant),
            )
            self.times.add("train" if float_ckpt is None else "qat", start)

        cached(path, self.train_key(variant), make)
        return path

    # ---- export, accuracy, cost --------------------------------------------------------------
    def qonnx(self, variant: Variant) -> Path:
        from qpde.export import export_model
        from qpde.train import load_checkpoint

        path = self.layout.models(variant) / f"{variant.id}.qonnx.onnx"
        ckpt = self.checkpoint(variant)

        def make():
            start = time.perf_counter()
            model = load_checkpoint(ckpt)
            export_model(model, model.points, path)
            self.times.add("export", start)

        cached(path, fingerprint(self.train_key(variant), "export"), make)
        return path

    def metrics(self, variant: Variant) -> dict:
        """Test-set accuracy and cost; quantized models are evaluated with the exact golden, i.e.
        exactly as the accelerator computes."""
        import torch

        from qpde.cost import total_cost
        from qpde.task import evaluate
        from qpde.train import load_checkpoint

        path = self.layout.models(variant) / "metrics.json"
        spec = parse_scenario(variant.scenario)
        ckpt = self.checkpoint(variant)
        onnx_path = None if spec.is_float else self.qonnx(variant)

        def make():
            start = time.perf_counter()
            model = load_checkpoint(ckpt)
            test, _ = self.split(variant.dataset, "test")
            if onnx_path is None:
                def predict(x):
                    with torch.no_grad():
                        return model(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy().astype(np.float64)
                evaluator = "pytorch-float32"
            else:
                from qpde import golden
                from qpde.qgraph import QGraph

                graph = QGraph(onnx_path)
                predict = lambda x: golden.run(graph, x)  # noqa: E731
                evaluator = "golden-exact"
            result = {**evaluate(predict, test, variant.resolution), **total_cost(model, spec), "evaluator": evaluator}
            if not spec.is_float:
                qspec = spec.with_options(**dataclasses.asdict(self.cfg.quant))
                result.update(rounding=qspec.rounding, state_bits=qspec.state_width)
            _write_json(path, result)
            self.times.add("evaluate", start)

        cached(path, fingerprint(self.train_key(variant), "metrics"), make)
        return json.loads(path.read_text())

    # ---- hls4ml + C-sim ------------------------------------------------------------------------
    def csim(self, variant: Variant) -> dict:
        from qpde.hls import build_project
        from qpde.qgraph import QGraph
        from qpde.sim import csim_verdict

        path = self.layout.sim(variant) / "csim_verdict.json"
        onnx_path = self.qonnx(variant)
        key = self._csim_key(variant)

        def make():
            start = time.perf_counter()
            graph = QGraph(onnx_path)
            project = build_project(graph, self.layout.hls(variant), self.cfg.hls)
            self.times.add("hls_build", start)
            start = time.perf_counter()
            test, _ = self.split(variant.dataset, "test")
            verdict = csim_verdict(graph, project, test.step_inputs(variant.resolution))
            verdict.save(path)
            self.times.add("csim", start)

        cached(path, key, make)
        return json.loads(path.read_text())

    def _csim_key(self, variant: Variant) -> str:
        import hls4ml

        project = {k: v for k, v in dataclasses.asdict(self.cfg.hls).items() if k in PROJECT_FIELDS}
        return fingerprint(self.train_key(variant), project, hls4ml.__version__, "csim")

    def vendor(self, variant: Variant) -> dict:
        """csynth (+ cosim) and Vivado synthesis of the C-simulated hls4ml project when the vendor tools
        are on PATH; otherwise a row saying "not run" (the project stays written for the user's tools)."""
        from qpde.vendor import run_vendor_build, vendor_tools

        self.csim(variant)  # the project exists and is bit-exact before anyone synthesizes it
        hls = self.cfg.hls
        path = self.layout.bitstreams(variant) / "hls4ml.json"
        tools = vendor_tools()
        found = "none" if tools is None else (sorted(tools.hls.items()), tools.vivado)
        key = fingerprint(self._csim_key(variant), hls.cosim, found, "vendor")

        def make():
            start = time.perf_counter()
            row = run_vendor_build(self.layout.hls(variant), cosim=hls.cosim, timeout_s=hls.vendor_timeout_s)
            row["note"] = row["note"] and portable(row["note"], self.layout.root)
            _write_json(path, row)
            self.times.add("vendor", start)

        cached(path, key, make)
        return json.loads(path.read_text())

    def hls4ml(self, variant: Variant) -> dict:
        """The hls4ml backend: bit-exact C simulation, then vendor synthesis when configured."""
        verdict = self.csim(variant)
        return self.vendor(variant) if self.cfg.hls.vendor_synth else verdict

    # ---- FINN ----------------------------------------------------------------------------------
    def finn(self, variant: Variant) -> dict:
        """FINN's build steps up to estimate reports (and its Python execution against the golden)."""
        from qpde.finn_backend import finn_available, run_finn

        path = self.layout.bitstreams(variant) / "finn.json"
        onnx_path = self.qonnx(variant)
        available, version = finn_available()
        if not available:
            raise ToolError(version)
        key = fingerprint(self.train_key(variant), self.cfg.finn, self.cfg.hls.part, self.cfg.hls.clock_period_ns,
                          version, "finn")

        def make():
            start = time.perf_counter()
            test, _ = self.split(variant.dataset, "test")
            row = run_finn(onnx_path, self.layout.bitstreams(variant) / "finn", target_fps=self.cfg.finn.target_fps,
                           x_test=test.step_inputs(variant.resolution), fpga_part=self.cfg.hls.part,
                           clock_period_ns=self.cfg.hls.clock_period_ns)
            _write_json(path, row)
            self.times.add("finn", start)

        cached(path, key, make)
        return json.loads(path.read_text())


    # ---- open RTL: da4ml → Verilator → Yosys → nextpnr-ecp5 ----------------------------------------
    def rtl(self, variant: Variant) -> dict:
        """Fully parallel Verilog from da4ml, proven bit-exact by Verilator on the whole test set,
        then Yosys synth_xilinx (LUT/FF/CARRY/DSP counts) and synth_ecp5 + nextpnr-ecp5 + ecppack
        (Fmax, placed LUTs, bitstream). A design over [rtl] max_lut gets a row with the reason."""
        import da4ml

        from qpde.errors import DesignTooLargeError
        from qpde.qgraph import QGraph
        from qpde.rtl import build_rtl, require_match, rtl_verdict, verilator_version
        from qpde.synth import pnr_ecp5, synth_xilinx

        rcfg = self.cfg.rtl
        row_path = self.layout.bitstreams(variant) / "rtl.json"
        verdict_path = self.layout.sim(variant) / "rtlsim_verdict.json"
        onnx_path = self.qonnx(variant)
        key = fingerprint(self.train_key(variant), rcfg, da4ml.__version__, verilator_version(), "rtl")
        out = self.layout.bitstreams(variant) / "rtl"

        def make():
            start = time.perf_counter()
            graph = QGraph(onnx_path)
            try:
                design = build_rtl(onnx_path, out, latency_cutoff=rcfg.latency_cutoff, max_lut=rcfg.max_lut)
            except DesignTooLargeError as exc:
                verdict_path.unlink(missing_ok=True)
                _write_json(row_path, {"tool": "da4ml cost model", "tool_version": da4ml.__version__,
                                       "target": "none (not built)", "lut": round(exc.estimate), "estimate": True,
                                       "note": str(exc)})
                return
            self.times.add("rtl_build", start)
            start = time.perf_counter()
            test, _ = self.split(variant.dataset, "test")
            verdict = rtl_verdict(graph, design, test.step_inputs(variant.resolution))
            _write_json(verdict_path, verdict)
            self.times.add("rtlsim", start)
            require_match(verdict)  # figures of an inexact design are worthless: stop here
            start = time.perf_counter()
            row = synth_xilinx(design, out / "synth_xilinx", family=rcfg.xilinx_family)
            self.times.add("synth", start)
            row = {k: v for k, v in row.items() if k not in ("cells", "tool_version_full")}
            if rcfg.pnr and row["lut"] > rcfg.pnr_max_lut:
                row["note"] = (f"P&R not run: {row['lut']} xc7 LUTs > [rtl] pnr_max_lut {rcfg.pnr_max_lut} (synth_ecp5 "
                               "+ nextpnr-ecp5 take minutes per 10k LUTs on 2 cores; raise it to place and route)")
            elif rcfg.pnr:
                start = time.perf_counter()
                placed = pnr_ecp5(design, out / "pnr_ecp5", device=rcfg.ecp5_device, package=rcfg.ecp5_package,
                                  freq_mhz=rcfg.freq_mhz)
                self.times.add("pnr", start)
                row.update(
                    tool=f"{row['tool']} + nextpnr-ecp5", tool_version=placed["tool_version"],
                    target=f"{row['target']} (LUT/FF/CARRY/DSP); {placed['target']} (Fmax, bitstream)",
                    fmax_mhz=placed["fmax_mhz"], fields_per_s=placed["fields_per_s"], bitstream=placed["bitstream"],
                    ecp5_lut=placed["lut"], ecp5_ff=placed["ff"], ecp5_synth_lut4=placed.get("synth_lut4"),
                    note=placed["note"], seconds={"synth_xilinx": row["seconds"], **placed["seconds"]},
                )
            _write_json(row_path, row)

        cached(row_path, key, make)
        return json.loads(row_path.read_text())


EXECUTORS = ("serial", "local", "ray")


def run_variant(sweep: Sweep, variant: Variant, backends: tuple[str, ...], announce=None) -> dict[str, float]:
    """One variant's own stages: training/QAT, export and accuracy, then each hardware backend. A
    failing backend is recorded (sim/<id>/<backend>.error) for its row and the others go on."""
    if announce:
        announce(variant, "train")
    error = sweep.layout.models(variant) / "metrics.error"
    try:
        sweep.metrics(variant)
        error.unlink(missing_ok=True)
    except (GraphError, MismatchError) as exc:  # this variant's graph cannot be made exact: its row says why
        log.error("%s: %s", variant.id, exc)
        error.parent.mkdir(parents=True, exist_ok=True)
        error.write_text(portable(str(exc), sweep.layout.root))
        return sweep.times.seconds
    if not parse_scenario(variant.scenario).is_float:
        stages = {"hls4ml": sweep.hls4ml, "rtl": sweep.rtl, "finn": sweep.finn}
        for backend in backends:
            if announce:
                announce(variant, backend)
            error = sweep.layout.sim(variant) / f"{backend}.error"
            try:
                stages[backend](variant)
                error.unlink(missing_ok=True)
            except QpdeError as exc:
                log.error("%s: %s", variant.id, exc)
                error.parent.mkdir(parents=True, exist_ok=True)
                error.write_text(portable(str(exc), sweep.layout.root))
    return sweep.times.seconds


MARKER = ".qpde-out-marker"  # written by the driver in --out; a Ray worker must see it (shared file system)
# A Ray task trains, exports and simulates one variant; while training on CUDA it asks Ray for this
# share of a GPU, so a few QAT jobs share one GPU (Brevitas' calibration steps are heavy on it).
GPU_SHARE_PER_TASK = 0.25


def _check_shared_root(root: str, token: str | None) -> None:
    """Refuse to run when this worker does not see the driver's --out folder (Ray on a cluster
    without a file system shared at the same path): artifacts would land on the wrong machine."""
    if token is None:
        return
    marker = Path(root) / MARKER
    seen = marker.read_text().strip() if marker.is_file() else None
    if seen != token:
        import socket

        raise ConfigError(f"Ray worker on {socket.gethostname()} does not see the driver's --out folder {root} "
                          f"({MARKER} {'differs' if seen else 'missing'}): --executor ray needs --out on a file "
                          "system shared at the same path on every node")


def _variant_job(cfg: SweepConfig, root: str, variant_id: str, token: str | None = None) -> dict[str, float]:
    """Entry point of a worker process or Ray task: one variant, one thread (workers share cores)."""
    import torch

    _check_shared_root(root, token)
    torch.set_num_threads(1)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    return run_variant(Sweep(cfg, Path(root)), Variant.parse(variant_id), cfg.backends)


def run_sweep(
    cfg: SweepConfig,
    root: Path,
    *,
    executor: str = "serial",
    workers: int | None = None,
    ray_address: str | None = None,
    on_variant: Callable[[Variant, str], None] | None = None,
) -> Path:
    """Every stage for every variant, then the report.

    Shared upstream work (datasets, float checkpoints that QAT starts from) runs first in this
    process; then each variant's own stages run serially, in a local process pool, or as Ray tasks.
    Every stage is cached, so the executors produce the same artifacts and a rerun resumes."""
    from qpde.report import write_report

    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
    root = Path(root)
    if executor != "ray":  # `--device cuda` without a GPU fails here, before any training (Ray: on the worker)
        from qpde.train import resolve_device

        resolve_device(cfg.train.device)
    sweep = Sweep(cfg, root)
    variants = cfg.variants()
    for variant in sorted({Variant(v.dataset, v.arch, "fp32", v.resolution) for v in variants}):
        if on_variant:
            on_variant(variant, "train float")
        sweep.checkpoint(variant)
    if executor == "serial":
        for variant in variants:
            run_variant(sweep, variant, cfg.backends, on_variant)
    else:
        times = _run_parallel(cfg, root, variants, executor, workers, ray_address, on_variant)
        for part in times:
            for stage, seconds in part.items():
                sweep.times.seconds[stage] = sweep.times.seconds.get(stage, 0.0) + seconds
    _write_json(root / "sim" / "stage_times.json", sweep.times.seconds)
    return write_report(root, [v.id for v in variants])


def _run_parallel(cfg, root, variants, executor, workers, ray_address, on_variant) -> list[dict]:
    ids = [v.id for v in variants]
    if executor == "local":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn: a fresh interpreter per worker (fork after torch/OpenMP initialisation can hang).
        with ProcessPoolExecutor(workers or os.cpu_count(), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_variant_job, cfg, str(root), vid): vid for vid in ids}
            results = []
            for future in as_completed(futures):
                results.append(future.result())
                if on_variant:
                    on_variant(Variant.parse(futures[future]), "done")
            return results
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("--executor ray needs Ray: pip install -e '.[ray]'") from exc
    import secrets

    ray.init(address=ray_address, ignore_reinit_error=True, log_to_driver=False)
    # Training on CUDA ("cuda", or "auto" on a cluster with GPUs): each task asks for a GPU share.
    gpus = ray.cluster_resources().get("GPU", 0) if cfg.train.device != "cpu" else 0
    if cfg.train.device == "cuda" and not gpus:
        raise ConfigError("--device cuda: the Ray cluster has no GPU resources")
    job = ray.remote(num_cpus=1, num_gpus=GPU_SHARE_PER_TASK if gpus else 0)(_variant_job)
    # Ray workers must see the same artifact folder: a shared file system on a real cluster. The
    # marker proves it (a worker that cannot read it refuses with a clear error).
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    (root / MARKER).write_text(token)
    return ray.get([job.remote(cfg, str(root), vid, token) for vid in ids])
