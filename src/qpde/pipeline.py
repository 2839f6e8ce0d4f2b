"""`qpde run`: the sweep as a list of stage functions over one config, each cached and resumable.

Each stage writes its artifact atomically next to a stamp holding the fingerprint of its inputs
(config slice, upstream fingerprints, tool versions). A rerun skips every stage whose stamp
matches, so an interrupted sweep resumes and a changed input recomputes only what depends on it.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qpde import __version__
from qpde.config import SweepConfig, Variant, fingerprint
from qpde.errors import (
    EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_MISMATCH, ConfigError, DataError, GraphError, LockError, MismatchError,
    QpdeError, ToolError, exit_code,
)
from qpde.quant import parse_scenario

log = logging.getLogger(__name__)
# HLSConfig fields that shape the hls4ml project (C-sim artifacts); the others only steer vendor runs.
PROJECT_FIELDS = ("backend", "part", "clock_period_ns", "strategy", "reuse_factor", "max_unroll", "target_fps")


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


def finite_or_none(payload):
    """payload with every NaN/±Inf float replaced by None: JSON has no NaN (json.dumps would write an
    invalid file), and an empty cell means "no value"."""
    if isinstance(payload, float):
        return payload if np.isfinite(payload) else None
    if isinstance(payload, np.floating):
        return float(payload) if np.isfinite(payload) else None
    if isinstance(payload, dict):
        return {k: finite_or_none(v) for k, v in payload.items()}
    if isinstance(payload, (list, tuple)):
        return [finite_or_none(v) for v in payload]
    return payload


def _write_json(path: Path, payload) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(finite_or_none(payload), indent=2, default=str, allow_nan=False))
    os.replace(tmp, path)
    return path


def portable(text: str, root: Path) -> str:
    """`text` with the sweep root's absolute path dropped, so notes and errors name artifacts relative
    to --out: the same sweep in two folders gives identical tables."""
    return text.replace(f"{Path(root).resolve()}/", "")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# path → ((inode, size, mtime_ns), sha256): an unchanged file is hashed once per process
_HASHED: dict[Path, tuple[tuple[int, int, int], str]] = {}


def _content_hash(path: Path) -> str:
    info = path.stat()
    identity = (info.st_ino, info.st_size, info.st_mtime_ns)
    known = _HASHED.get(path)
    if known is None or known[0] != identity:
        known = (identity, sha256_file(path))
        _HASHED[path] = known
    return known[1]


def cached(artifact: Path, key: str, make: Callable[[], object]) -> bool:
    """Run `make` unless `artifact` exists with a stamp of the same key *and* the same content hash
    (sha256). A corrupt or truncated artifact is rebuilt (said once, as a warning). The stale artifact
    and stamp are removed before `make` runs, so a failing stage never leaves an old result behind.
    True if `make` ran."""
    stamp = artifact.parent / f".{artifact.name}.stamp"
    if artifact.is_file() and stamp.is_file():
        try:
            recorded = json.loads(stamp.read_text())
        except (OSError, ValueError):
            recorded = {}
        if recorded.get("key") == key:
            if recorded.get("sha256") == _content_hash(artifact):
                return False
            log.warning("%s: content differs from its stamp (corrupt, truncated or edited): rebuilding it",
                        artifact)
    stamp.unlink(missing_ok=True)
    artifact.unlink(missing_ok=True)
    make()
    if not artifact.is_file():
        raise QpdeError(f"stage did not produce {artifact}")
    _write_json(stamp, {"key": key, "sha256": _content_hash(artifact), "bytes": artifact.stat().st_size})
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
        check_kind(path, dataset)
        return path, fingerprint(str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns)
    # The model resolutions trained on the data (and whether they may lie above its grid) are not an input of the data.
    key = fingerprint(dataset, dataclasses.replace(data_cfg, resolutions=None, allow_upsampling=False),
                      _generator_source_hash())
    path = layout.data_file(dataset, key)
    cached(path, key, lambda: generate(
        dataset, path, samples=data_cfg.samples, resolution=data_cfg.resolution, seed=data_cfg.seed,
        **data_cfg.params,
    ))
    return path, key


def check_kind(path: Path, dataset: str) -> None:
    """DataError unless the file at `path` holds `dataset` (its layout, or its `dataset` attribute)."""
    from qpde.data import open_dataset
    from qpde.data.pdebench import LAYOUTS

    with open_dataset(path) as handle:
        kind = handle.kind
    if kind != dataset:
        raise DataError(f"{path} holds {kind} data but is configured under [data.{dataset}]; a {dataset} file has "
                        f"{LAYOUTS[dataset]}")


def _generator_source_hash() -> str:
    """Hash of the data package's source: a changed solver or initial condition regenerates data."""
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

        from qpde.cost import COST_VERSION, graph_cost, total_cost
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
            # Cost: float variants count the PyTorch model; quantized ones their QONNX (quantized nonzeros)
            cost = total_cost(model, spec)
            if onnx_path is not None:
                cost.update(graph_cost(graph))
            result = {**evaluate(predict, test, variant.resolution), **cost, "evaluator": evaluator}
            if not spec.is_float:
                qspec = spec.with_options(**dataclasses.asdict(self.cfg.quant))
                result.update(rounding=qspec.rounding, state_bits=qspec.state_width)
            _write_json(path, result)
            self.times.add("evaluate", start)

        cached(path, fingerprint(self.train_key(variant), "metrics", COST_VERSION), make)
        return json.loads(path.read_text())

    # ---- hls4ml + C-sim ------------------------------------------------------------------------
    def csim(self, variant: Variant) -> dict:
        from qpde.backends.hls4ml import build_project
        from qpde.qgraph import QGraph
        from qpde.backends.hls4ml.csim import csim_verdict

        path = self.layout.sim(variant) / "csim_verdict.json"
        onnx_path = self.qonnx(variant)
        key = self._csim_key(variant)

        def make():
            start = time.perf_counter()
            graph = QGraph(onnx_path)
            # A run killed mid-compile leaves half-written objects that the next compile would link.
            shutil.rmtree(self.layout.hls(variant), ignore_errors=True)
            project = build_project(graph, self.layout.hls(variant), self.cfg.hls)
            self.times.add("hls_build", start)
            start = time.perf_counter()
            test, _ = self.split(variant.dataset, "test")
            verdict = csim_verdict(graph, project, test.step_inputs(variant.resolution))
            verdict.save(path)
            self.times.add("csim", start)

        cached(path, key, make)
        return json.loads(path.read_text())

    def exact_csim(self, variant: Variant) -> dict:
        """The C-sim verdict, required to be exact: MismatchError (naming the variant) otherwise."""
        verdict = self.csim(variant)
        if verdict["mismatching_samples"]:
            vendor = self.layout.bitstreams(variant) / "hls4ml.json"  # figures of an earlier, exact design
            vendor.unlink(missing_ok=True)
            (vendor.parent / f".{vendor.name}.stamp").unlink(missing_ok=True)
            raise MismatchError(
                f"C simulation differs from the golden on {verdict['mismatching_samples']} of {verdict['samples']} "
                f"samples (first at index {verdict['first_mismatch_index']}); not synthesized"
            )
        return verdict

    def _csim_key(self, variant: Variant) -> str:
        import hls4ml

        project = {k: v for k, v in dataclasses.asdict(self.cfg.hls).items() if k in PROJECT_FIELDS}
        return fingerprint(self.train_key(variant), project, hls4ml.__version__, "csim")

    def vendor(self, variant: Variant) -> dict:
        """csynth (+ cosim) and Vivado synthesis of the C-simulated hls4ml project when the vendor tools
        are on PATH; otherwise a row saying "not run" (the project stays written for the user's tools)."""
        from qpde.backends.hls4ml.vendor import run_vendor_build, vendor_tools

        self.exact_csim(variant)  # nothing is synthesized that was not first proven bit-exact
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
        verdict = self.exact_csim(variant)
        return self.vendor(variant) if self.cfg.hls.vendor_synth else verdict

    # ---- FINN ----------------------------------------------------------------------------------
    def finn(self, variant: Variant) -> dict:
        """FINN's build steps up to estimate reports (and its Python execution against the golden)."""
        from qpde.backends.finn.backend import finn_available, run_finn

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
        from qpde.backends.rtl import build_rtl, rtl_verdict, verilator_version
        from qpde.backends.rtl.synth import pnr_ecp5, synth_xilinx

        rcfg = self.cfg.rtl
        row_path = self.layout.bitstreams(variant) / "rtl.json"
        verdict_path = self.layout.sim(variant) / "rtlsim_verdict.json"
        onnx_path = self.qonnx(variant)
        key = fingerprint(self.train_key(variant), rcfg, da4ml.__version__, verilator_version(), "rtl")
        out = self.layout.bitstreams(variant) / "rtl"

        def make():
            verdict_path.unlink(missing_ok=True)  # no verdict of an earlier design outlives a failed build
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
            _write_json(verdict_path, verdict.to_json())
            self.times.add("rtlsim", start)
            verdict.require_exact()  # figures of an inexact design are worthless: stop here
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

    # ---- open RTL, folded: stream units with PE×SIMD → Verilator (stalls) → Yosys → nextpnr-ecp5 -------
    def folded(self, variant: Variant) -> dict:
        """Folded streaming designs, one per distinct folding of [folded] target_fps, each proven
        bit-exact by Verilator (random stalls) on the whole test set before Yosys and nextpnr-ecp5
        measure it (qpde.backends.folded.flow). Rows in bitstreams/<id>/folded.json."""
        from qpde.backends.folded.flow import run_folded
        from qpde.qgraph import QGraph
        from qpde.backends.rtl import verilator_version

        path = self.layout.bitstreams(variant) / "folded.json"
        onnx_path = self.qonnx(variant)
        key = fingerprint(self.train_key(variant), self.cfg.folded, verilator_version(), _folded_source_hash(),
                          "folded")

        def make():
            if self.cfg.folded.scenarios is not None and variant.scenario not in self.cfg.folded.scenarios:
                _write_json(path, {"designs": [{"target": "none (not built)", "note": (
                    f"not built: {variant.scenario} is not in [folded] scenarios {list(self.cfg.folded.scenarios)}")}]})
                return
            start = time.perf_counter()
            test, _ = self.split(variant.dataset, "test")
            rows = run_folded(QGraph(onnx_path), self.layout.bitstreams(variant) / "folded",
                              test.step_inputs(variant.resolution), self.cfg.folded)
            for row in rows:
                row["note"] = row["note"] and portable(row["note"], self.layout.root)
                row["bitstream"] = row.get("bitstream") and portable(str(row["bitstream"]), self.layout.root)
            _write_json(path, {"designs": rows})
            self.times.add("folded", start)

        cached(path, key, make)
        return json.loads(path.read_text())


def _folded_source_hash() -> str:
    """Hash of the folded backend's Verilog and generators: a changed unit rebuilds its designs."""
    import qpde.backends.folded as folded

    digest = hashlib.sha256()
    root = Path(folded.__file__).parent
    for source in sorted([*root.glob("*.py"), *root.glob("hdl/*.v")]):
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


EXECUTORS = ("serial", "local", "ray")


@dataclass(frozen=True)
class Problem:
    """Why a variant did not end with every hardware design proven exact: `status` is "mismatch" (a
    simulation differs from the golden), "failed" (a tool, the worker process or qpde itself failed)
    or "refused" (the variant cannot be built exactly, e.g. a 2^-64 activation scale; its row says
    why, and it does not fail the sweep). `code` is the exit code it asks for (qpde.errors)."""

    variant: str
    stage: str
    status: str
    code: int
    reason: str

    @property
    def fails_sweep(self) -> bool:
        return self.status != "refused"


def _problem(sweep: Sweep, variant: Variant, stage: str, exc: BaseException) -> Problem:
    if isinstance(exc, MismatchError):
        status, code = "mismatch", EXIT_MISMATCH
    elif isinstance(exc, GraphError):
        status, code = "refused", EXIT_BAD_INPUT
    elif isinstance(exc, QpdeError):
        status, code = "failed", exit_code(exc)
    else:  # a bug or an unexpected library failure: the variant's row names it, the sweep goes on
        status, code = "failed", EXIT_FAILURE
    reason = str(exc) if isinstance(exc, QpdeError) else f"internal error: {type(exc).__name__}: {exc}"
    return Problem(variant.id, stage, status, code, portable(reason, sweep.layout.root))


def run_variant(sweep: Sweep, variant: Variant, backends: tuple[str, ...], announce=None) -> dict:
    """One variant's own stages: training/QAT, export and accuracy, then each hardware backend.

    A failing stage is recorded (models/<id>/metrics.error, sim/<id>/<backend>.error) for its row,
    the variant's other backends go on, and the failure comes back in "problems" (see `Problem`).
    Returns {"times": seconds per stage, "problems": [Problem as dict]}."""
    problems: list[Problem] = []
    (sweep.layout.models(variant) / "worker.error").unlink(missing_ok=True)
    if announce:
        announce(variant, "train")
    error = sweep.layout.models(variant) / "metrics.error"
    try:
        sweep.metrics(variant)
        error.unlink(missing_ok=True)
    except Exception as exc:  # noqa: BLE001 - recorded as the variant's row; the sweep goes on
        problem = _problem(sweep, variant, "metrics", exc)
        log.error("%s: %s", variant.id, problem.reason)
        error.parent.mkdir(parents=True, exist_ok=True)
        error.write_text(problem.reason)
        if announce:
            announce(variant, "done")
        return {"times": dict(sweep.times.seconds), "problems": [dataclasses.asdict(problem)]}
    if not parse_scenario(variant.scenario).is_float:
        stages = {"hls4ml": sweep.hls4ml, "rtl": sweep.rtl, "folded": sweep.folded, "finn": sweep.finn}
        for backend in backends:
            if announce:
                announce(variant, backend)
            error = sweep.layout.sim(variant) / f"{backend}.error"
            try:
                stages[backend](variant)
                error.unlink(missing_ok=True)
            except Exception as exc:  # noqa: BLE001 - recorded in the backend's row; the others go on
                problem = _problem(sweep, variant, backend, exc)
                log.error("%s: %s", variant.id, problem.reason)
                error.parent.mkdir(parents=True, exist_ok=True)
                error.write_text(problem.reason)
                problems.append(problem)
    if announce:
        announce(variant, "done")
    return {"times": dict(sweep.times.seconds), "problems": [dataclasses.asdict(p) for p in problems]}


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


def _variant_job(cfg: SweepConfig, root: str, variant_id: str, stages=None, token: str | None = None) -> dict:
    """Entry point of a worker process or Ray task: one variant, one thread (workers share cores).
    `stages`, when given, is a queue that receives (variant id, stage) as each stage starts; `token`
    (Ray) must match the driver's marker in --out."""
    import torch

    _check_shared_root(root, token)
    torch.set_num_threads(1)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    if stages is not None:  # the parent shows a live display: keep this worker's own bars off the terminal
        os.environ["TTY_COMPATIBLE"] = "0"
    announce = None if stages is None else (lambda variant, stage: stages.put((variant.id, stage)))
    return run_variant(Sweep(cfg, Path(root)), Variant.parse(variant_id), cfg.backends, announce)


@contextmanager
def locked(root: Path, *, wait: bool = False) -> Iterator[Path]:
    """Hold the sweep folder `root` for this process (an fcntl lock on root/.qpde.lock holding our pid):
    two runs into one folder would race on its artifacts. A second holder is refused with LockError
    naming the folder and the holder's pid, or (wait=True) waits for it."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / ".qpde.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = path.read_text().strip() or "unknown"
            if not wait:
                raise LockError(f"{root} is in use by another qpde process (pid {holder}); wait for it to "
                                "finish, pass --wait, or choose another --out") from None
            log.warning("%s is in use by pid %s: waiting for it", root, holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        os.close(fd)  # releases the lock


def check_inputs(cfg: SweepConfig, sweep: Sweep) -> None:
    """Up-front checks that need the data: every split of every dataset is generated or opened,
    matched against its dataset and checked finite (DataError naming file, key and sample), and no
    model resolution lies above the data grid unless [data.D] allow_upsampling is set."""
    from qpde.data import check_memory, open_dataset

    for dataset in cfg.datasets:  # every dataset's memory before generating any of them
        data = cfg.data_for(dataset)
        if data.file is None:
            check_memory(dataset, data.samples, data.resolution, **data.params)
    for dataset in cfg.datasets:
        for name in ("train", "val", "test"):
            sweep.split(dataset, name)
        path, _ = ensure_data(cfg, dataset, sweep.layout)
        with open_dataset(path) as handle:
            grid = min(handle.spatial_shape)
        above = [r for r in cfg.resolutions_for(dataset) if r > grid]
        if above and not cfg.data_for(dataset).allow_upsampling:
            raise ConfigError(
                f"{dataset}: model resolution(s) {above} above the data grid of {path} ({grid} points per axis); "
                f"a model would train on interpolated data. Lower the resolution or set "
                f"[data.{dataset}] allow_upsampling = true"
            )


def run_sweep(
    cfg: SweepConfig,
    root: Path,
    *,
    executor: str = "serial",
    workers: int | None = None,
    ray_address: str | None = None,
    on_variant: Callable[[Variant, str], None] | None = None,
    problems: list[Problem] | None = None,
) -> Path:
    """Every stage for every variant, then the report.

    Shared upstream work (datasets, float checkpoints that QAT starts from) runs first in this
    process; then each variant's own stages run serially, in a local process pool, or as Ray tasks.
    Every stage is cached, so the executors produce the same artifacts and a rerun resumes.
    A variant that fails (mismatch, tool failure, a dead worker) gets its row and the others go on;
    its `Problem` is appended to `problems` for the caller's verdict (the CLI's exit code)."""
    from qpde.report import write_report

    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
    root = Path(root)
    if executor != "ray":  # `--device cuda` without a GPU fails here, before any training (Ray: on the worker)
        from qpde.train import resolve_device

        resolve_device(cfg.train.device)
    sweep = Sweep(cfg, root)
    variants = cfg.variants()
    check_inputs(cfg, sweep)
    for variant in sorted({Variant(v.dataset, v.arch, "fp32", v.resolution) for v in variants}):
        if on_variant:
            on_variant(variant, "train float")
        sweep.checkpoint(variant)
    if executor == "serial":
        results = {v.id: run_variant(sweep, v, cfg.backends, on_variant) for v in variants}
    else:
        results = _run_parallel(cfg, root, variants, executor, workers, ray_address, on_variant)
        for result in results.values():
            for stage, seconds in result["times"].items():
                sweep.times.seconds[stage] = sweep.times.seconds.get(stage, 0.0) + seconds
    found = [Problem(**p) for v in variants for p in results[v.id]["problems"]]
    if problems is not None:
        problems.extend(found)
    _write_json(root / "sim" / "stage_times.json", sweep.times.seconds)
    listed = root / "sim" / "problems.json"
    payload = [dataclasses.asdict(p) for p in found]
    if not listed.is_file() or json.loads(listed.read_text()) != payload:  # unchanged: left as it was
        _write_json(listed, payload)
    return write_report(root, [v.id for v in variants])


def sweep_exit_code(problems: list[Problem]) -> int:
    """0 unless a variant failed: 1 if any simulation differs from the golden (a wrong design is the
    worst outcome), else the code of the failures (3 tool/internal, 2 bad input)."""
    failing = [p for p in problems if p.fails_sweep]
    if not failing:
        return 0
    if any(p.code == EXIT_MISMATCH for p in failing):
        return EXIT_MISMATCH
    return max(p.code for p in failing)


def _died(variant_id: str, why: str) -> dict:
    return {"times": {}, "problems": [dataclasses.asdict(Problem(variant_id, "worker", "failed", EXIT_FAILURE, why))]}


def _exit_reason(exitcode: int | None) -> str:
    import signal

    if exitcode is None:
        return "worker process died"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (killed: out of memory?)" if name == "SIGKILL" else ""
        return f"worker process died of {name}{hint}"
    return f"worker process died with exit status {exitcode}"


def _isolated(cfg, root: str, variant_id: str, job) -> dict:
    """Run one variant alone in a fresh process, so that a crash is known to be its own."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_send_result, args=(send, job, cfg, root, variant_id))
    process.start()
    send.close()
    try:
        result = receive.recv()
    except EOFError:
        result = None
    process.join()
    if result is None:
        return _died(variant_id, _exit_reason(process.exitcode))
    return result


def _send_result(send, job, cfg, root, variant_id) -> None:
    send.send(job(cfg, root, variant_id))
    send.close()


def _record_deaths(root: Path, results: dict) -> None:
    """A variant whose worker died gets models/<id>/worker.error: its row in the table says why."""
    for variant_id, result in results.items():
        for problem in result["problems"]:
            if problem["stage"] == "worker":
                path = root / "models" / variant_id / "worker.error"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(problem["reason"])
                log.error("%s: %s", variant_id, problem["reason"])


def _run_parallel(cfg, root, variants, executor, workers, ray_address, on_variant, job=None) -> dict[str, dict]:
    ids = [v.id for v in variants]
    job = job or _variant_job
    if executor == "local":
        results = _run_local(cfg, root, ids, workers, on_variant, job)
    else:
        results = _run_ray(cfg, root, ids, ray_address, job)
        if on_variant:
            for vid in ids:
                on_variant(Variant.parse(vid), "done")
    _record_deaths(Path(root), results)
    return results


def _run_local(cfg, root, ids, workers, on_variant, job) -> dict[str, dict]:
    """A process pool; a worker that dies (segfault, OOM kill) breaks the pool, so the variants it
    took down are rerun one per fresh process (still `workers` at a time): the one that dies again
    is recorded as such, the others finish from their cached stages."""
    import multiprocessing
    import threading
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter per worker (fork after torch can hang)
    manager = queue = None
    if on_variant and job is _variant_job:
        manager = ctx.Manager()
        queue = manager.Queue()

        def relay():
            while (item := queue.get()) is not None:
                on_variant(Variant.parse(item[0]), item[1])

        relay_thread = threading.Thread(target=relay, daemon=True)
        relay_thread.start()
    results: dict[str, dict] = {}
    broken: list[str] = []
    try:
        with ProcessPoolExecutor(workers or os.cpu_count(), mp_context=ctx) as pool:
            args = (queue,) if queue is not None else ()
            futures = {pool.submit(job, cfg, str(root), vid, *args): vid for vid in ids}
            for future in as_completed(futures):
                vid = futures[future]
                try:
                    results[vid] = future.result()
                except BrokenProcessPool:
                    broken.append(vid)
                    continue
                except Exception as exc:  # noqa: BLE001 - e.g. a result that cannot be pickled
                    results[vid] = _died(vid, f"worker failed: {type(exc).__name__}: {exc}")
                if on_variant and queue is None:
                    on_variant(Variant.parse(vid), "done")
        broken.sort(key=ids.index)
        if broken:
            log.warning("a worker died and broke the pool; rerunning %s one per process", ", ".join(broken))
        with ThreadPoolExecutor(workers or os.cpu_count()) as threads:  # each thread waits on its own process
            for vid, result in zip(broken, threads.map(lambda v: _isolated(cfg, str(root), v, job), broken)):
                results[vid] = result
                if on_variant:
                    on_variant(Variant.parse(vid), "done")
    finally:
        if manager is not None:
            queue.put(None)
            relay_thread.join(timeout=5)
            manager.shutdown()
    return results


def _run_ray(cfg, root, ids, ray_address, job) -> dict[str, dict]:
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
    remote = ray.remote(num_cpus=1, num_gpus=GPU_SHARE_PER_TASK if gpus else 0)(job)
    # Ray workers must see the same artifact folder: a shared file system on a real cluster. The
    # marker proves it (a worker that cannot read it refuses with a clear error).
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    (root / MARKER).write_text(token)
    refs = {vid: remote.remote(cfg, str(root), vid, None, token) for vid in ids}
    results = {}
    for vid, ref in refs.items():
        try:
            results[vid] = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - WorkerCrashedError, OOM kill, …: this variant's row
            results[vid] = _died(vid, f"worker failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    return results
