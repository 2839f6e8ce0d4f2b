"""`qpde run`: the flow's steps (qpde.flow) for every variant of a sweep, then the report.

Shared upstream work (the data, the float checkpoints QAT starts from) runs first in the driver; each
variant's own steps then run serially, in a process pool or as Ray tasks. Every step is cached by its
key (qpde.flow.step_key), so an interrupted sweep resumes and a changed input recomputes only what
depends on it. A failing variant gets its row and the others go on (`Problem`, `sweep_exit_code`).
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from qpde.config import SweepConfig, Variant
from qpde.errors import (
    EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_MISMATCH, ConfigError, GraphError, LockError, MismatchError, QpdeError,
    exit_code,
)
from qpde.flow import (  # noqa: F401 - re-exported: the sweep's building blocks, as before
    PROJECT_FIELDS, VARIANT_STEPS, Flow, Plan, StageTimes, cached, check_kind, dataset_scope, sha256_file,
)
from qpde.layout import Layout, finite_or_none, portable, write_json  # noqa: F401 - re-exported
from qpde.quant import parse_scenario

log = logging.getLogger(__name__)
Sweep = Flow  # the name Python callers (search, benchmarks) use
_write_json = write_json


def ensure_data(cfg: SweepConfig, dataset: str, layout: Layout) -> tuple[Path, str]:
    """The dataset's file and key (the `data` step: generated, or the user's file checked)."""
    data = Flow(cfg, layout.root).data(dataset)
    return data.path, data.key


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


def _record(flow: Flow, variant: Variant, stage: str, exc: BaseException) -> Problem:
    problem = _problem(flow, variant, stage, exc)
    log.error("%s: %s", variant.id, problem.reason)
    error = flow.layout.error(variant, stage)
    error.parent.mkdir(parents=True, exist_ok=True)
    error.write_text(problem.reason)
    return problem


def run_variant(sweep: Flow, variant: Variant, backends: tuple[str, ...], announce=None) -> dict:
    """One variant's own steps (train, export, metrics: qpde.flow.VARIANT_STEPS), then each hardware
    backend's steps, as far as the plan's --to allows.

    A failing step is recorded (models/<id>/metrics.error, sim/<id>/<backend>.error) for its row,
    the variant's other backends go on, and the failure comes back in "problems" (see `Problem`).
    Returns {"times": seconds per step, "problems": [Problem as dict]}."""
    from qpde.flow import STEPS

    problems: list[Problem] = []
    sweep.layout.error(variant, "worker").unlink(missing_ok=True)
    if announce:
        announce(variant, "train")
    try:
        for name in VARIANT_STEPS:
            if sweep.selected(name) and STEPS[name].applies(variant):
                sweep.get(name, variant)
        sweep.layout.error(variant, "metrics").unlink(missing_ok=True)
    except Exception as exc:  # noqa: BLE001 - recorded as the variant's row; the sweep goes on
        problem = _record(sweep, variant, "metrics", exc)
        if announce:
            announce(variant, "done")
        return {"times": dict(sweep.times.seconds), "problems": [dataclasses.asdict(problem)]}
    if not parse_scenario(variant.scenario).is_float:
        for backend in backends:
            if not sweep.selected(sweep.backend_steps(backend)[0]):
                continue
            if announce:
                announce(variant, backend)
            try:
                sweep.backend(backend, variant)
                sweep.layout.error(variant, backend).unlink(missing_ok=True)
            except Exception as exc:  # noqa: BLE001 - recorded in the backend's row; the others go on
                problems.append(_record(sweep, variant, backend, exc))
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


def _variant_job(cfg: SweepConfig, root: str, variant_id: str, stages=None, token: str | None = None,
                 plan: Plan | None = None) -> dict:
    """Entry point of a worker process or Ray task: one variant, one thread (workers share cores).
    `stages`, when given, is a queue that receives (variant id, stage) as each stage starts; `token`
    (Ray) must match the driver's marker in --out; `plan` is the driver's (--from/--to, run id)."""
    import torch

    _check_shared_root(root, token)
    torch.set_num_threads(1)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    if stages is not None:  # the parent shows a live display: keep this worker's own bars off the terminal
        os.environ["TTY_COMPATIBLE"] = "0"
    announce = None if stages is None else (lambda variant, stage: stages.put((variant.id, stage)))
    return run_variant(Flow(cfg, Path(root), plan), Variant.parse(variant_id), cfg.backends, announce)


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
        path = sweep.data(dataset).path
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
    plan: Plan | None = None,
) -> Path:
    """Every step for every variant (as far as `plan` selects: --from/--to), then the report.

    Shared upstream work (datasets, float checkpoints that QAT starts from) runs first in this
    process; then each variant's own steps run serially, in a local process pool, or as Ray tasks.
    Every step is cached, so the executors produce the same artifacts and a rerun resumes.
    A variant that fails (mismatch, tool failure, a dead worker) gets its row and the others go on;
    its `Problem` is appended to `problems` for the caller's verdict (the CLI's exit code)."""
    from qpde.report import write_report

    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
    root = Path(root)
    if executor != "ray":  # `--device cuda` without a GPU fails here, before any training (Ray: on the worker)
        from qpde.train import resolve_device

        resolve_device(cfg.train.device)
    plan = plan or Plan()
    sweep = Flow(cfg, root, plan)
    variants = cfg.variants()
    check_inputs(cfg, sweep)
    if plan.selected("train"):
        for variant in sorted({Variant(v.dataset, v.arch, "fp32", v.resolution) for v in variants}):
            if on_variant:
                on_variant(variant, "train float")
            sweep.checkpoint(variant)
    if executor == "serial":
        results = {v.id: run_variant(sweep, v, cfg.backends, on_variant) for v in variants}
    else:
        results = _run_parallel(cfg, root, variants, executor, workers, ray_address, on_variant, plan=plan)
        for result in results.values():
            for stage, seconds in result["times"].items():
                sweep.times.seconds[stage] = sweep.times.seconds.get(stage, 0.0) + seconds
    found = [Problem(**p) for v in variants for p in results[v.id]["problems"]]
    if problems is not None:
        problems.extend(found)
    write_json(sweep.layout.stage_times, sweep.times.seconds)
    listed = sweep.layout.problems
    payload = [dataclasses.asdict(p) for p in found]
    if not listed.is_file() or json.loads(listed.read_text()) != payload:  # unchanged: left as it was
        write_json(listed, payload)
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
                path = Layout(root).error(variant_id, "worker")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(problem["reason"])
                log.error("%s: %s", variant_id, problem["reason"])


def _run_parallel(cfg, root, variants, executor, workers, ray_address, on_variant, job=None,
                  plan: Plan | None = None) -> dict[str, dict]:
    ids = [v.id for v in variants]
    job = job or functools.partial(_variant_job, plan=plan)
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
    if on_variant and getattr(job, "func", job) is _variant_job:
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
    # Ray takes functions, not partials: the plan travels as a keyword argument
    func, extra = (job.func, job.keywords) if isinstance(job, functools.partial) else (job, {})
    remote = ray.remote(num_cpus=1, num_gpus=GPU_SHARE_PER_TASK if gpus else 0)(func)
    # Ray workers must see the same artifact folder: a shared file system on a real cluster. The
    # marker proves it (a worker that cannot read it refuses with a clear error).
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    (root / MARKER).write_text(token)
    refs = {vid: remote.remote(cfg, str(root), vid, None, token, **extra) for vid in ids}
    results = {}
    for vid, ref in refs.items():
        try:
            results[vid] = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - WorkerCrashedError, OOM kill, …: this variant's row
            results[vid] = _died(vid, f"worker failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    return results
