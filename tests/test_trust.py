"""One flow users can trust: the verification policy (exit codes, failed variants, nothing synthesized
before it is proven exact, dead workers), cache integrity (content hashes, weights-only checkpoints,
the --out lock, csim in a scratch folder) and input validation up front (issue 12, parts 4–6, 8)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from qpde import pipeline
from qpde.cli import app
from qpde.config import load_config
from qpde.errors import (
    EXIT_BAD_INPUT, EXIT_CODES, EXIT_FAILURE, EXIT_MISMATCH, ConfigError, DataError, GraphError, LockError,
    MismatchError, QpdeError, ToolError, exit_code,
)
from tests.test_flow import built, fake_steps
from tests.test_pipeline import TINY_SWEEP

runner = CliRunner()

TINY = TINY_SWEEP  # the tiny sweep of the pipeline tests, with `extra` TOML appended below


def tiny_config(tmp_path: Path, scenarios=("fp32", "w4a8"), extra: str = "") -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.format(scenarios=json.dumps(list(scenarios))) + extra)
    return path


def one_line_error(result, *needles: str) -> None:
    """The CLI said what is wrong in one line, without a traceback."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert "Traceback" not in result.output, result.output
    assert len(lines) == 1, result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# ---- exit codes ------------------------------------------------------------------------------------


def test_exit_codes_are_one_mapping():
    assert exit_code(MismatchError("x")) == EXIT_MISMATCH == 1
    for exc in (ConfigError("x"), DataError("x"), GraphError("x"), LockError("x"), FileNotFoundError("x")):
        assert exit_code(exc) == EXIT_BAD_INPUT == 2
    assert exit_code(ToolError("x")) == exit_code(QpdeError("x")) == exit_code(RuntimeError("x")) == EXIT_FAILURE == 3
    assert set(EXIT_CODES.values()) == {1, 2, 3}


def test_help_documents_exit_codes():
    for args in (["--help"], ["run", "--help"], ["csim", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0
        text = " ".join(result.output.split())
        assert "Exit codes: 0 ok; 1 a simulation differs from the golden; 2 bad input" in text, text


def test_unexpected_exception_is_one_line_exit_3(monkeypatch, tmp_path):
    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(pipeline, "run_sweep", boom)
    result = runner.invoke(app, ["run", str(tiny_config(tmp_path)), "--out", str(tmp_path / "o")])
    assert result.exit_code == 3
    one_line_error(result, "internal error: RuntimeError: disk on fire")


# ---- verification policy (fast: stages faked, the policy is what is tested) -------------------------


def test_mismatch_fails_the_run_after_the_other_variants_and_is_never_synthesized(monkeypatch, tmp_path):
    made = fake_steps(monkeypatch, csim_mismatches={"w4a8": 3})
    out = tmp_path / "out"
    config = tiny_config(tmp_path, ("fp32", "w4a8", "w8a8"))
    result = runner.invoke(app, ["run", str(config), "--out", str(out), "--executor", "serial"])
    assert result.exit_code == 1, result.output
    assert "1 of 3 variants failed" in result.output
    assert "burgers-fno-w4a8-r16 [hls4ml] mismatch: C simulation differs from the golden on 3 of 4" in result.output
    assert built(made, "vendor") == {"burgers-fno-w8a8-r16"}  # the exact one only
    df = pd.read_csv(out / "results.csv").set_index("variant")
    assert df.loc["burgers-fno-w8a8-r16", "csim_mismatches"] == 0
    assert df.loc["burgers-fno-w4a8-r16", "csim_mismatches"] == 3
    assert "not synthesized" in df.loc["burgers-fno-w4a8-r16", "note"]
    problems = json.loads((out / "sim" / "problems.json").read_text())
    assert [(p["variant"], p["status"], p["code"]) for p in problems] == [("burgers-fno-w4a8-r16", "mismatch", 1)]
    # NaN rollout nRMSE: written as null, the report and plot still build
    assert json.loads((out / "models" / "burgers-fno-w4a8-r16" / "metrics.json").read_text())["rollout_nrmse"] is None


def test_tool_failure_exits_3_and_refusal_does_not_fail(monkeypatch, tmp_path):
    fake_steps(monkeypatch, fail={("csim", "w4a8"): ToolError("hls4ml C-simulation build failed in hls/x: g++ died"),
                                  ("csim", "w8a8"): GraphError("a 70-bit accumulator cannot be exact")})
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(tiny_config(tmp_path, ("w4a8", "w8a8", "w8a16"))), "--out", str(out),
                                 "--executor", "serial"])
    assert result.exit_code == 3, result.output
    assert "burgers-fno-w4a8-r16 [hls4ml] failed: hls4ml C-simulation build failed" in result.output
    assert "refused: burgers-fno-w8a8-r16 (hls4ml): a 70-bit accumulator" in result.output
    assert "1 of 3 variants failed" in result.output


def _crashing_job(cfg, root, variant_id, stages=None):
    """A worker job (importable by spawned workers) whose w4a8 variant segfaults."""
    if "-w4a8-" in variant_id:
        os.kill(os.getpid(), signal.SIGSEGV)
    return {"times": {"train": 1.0}, "problems": []}


@pytest.mark.slow  # ~40 s on 2 busy cores: five spawned interpreters import torch
def test_dead_worker_becomes_its_variants_row_and_the_sweep_goes_on(tmp_path):
    from qpde.config import Variant

    cfg = load_config(tiny_config(tmp_path, ("w4a4", "w4a8", "w8a8")))
    variants = cfg.variants()
    results = pipeline._run_parallel(cfg, tmp_path, variants, "local", 2, None, None, job=_crashing_job)
    assert set(results) == {v.id for v in variants}
    dead = results["burgers-fno-w4a8-r16"]["problems"]
    assert [(p["stage"], p["status"], p["code"]) for p in dead] == [("worker", "failed", 3)]
    assert "SIGSEGV" in dead[0]["reason"]
    assert all(results[v.id] == {"times": {"train": 1.0}, "problems": []} for v in variants
               if v.scenario != "w4a8")
    assert "SIGSEGV" in (tmp_path / "models" / "burgers-fno-w4a8-r16" / "worker.error").read_text()
    from qpde.report import variant_rows

    assert variant_rows(tmp_path, Variant.parse("burgers-fno-w4a8-r16").id)[0]["note"].startswith(
        "worker process died of SIGSEGV")


# ---- cache integrity ----------------------------------------------------------------------------------


def test_corrupt_artifact_is_rebuilt_once_with_a_warning(tmp_path, caplog):
    artifact = tmp_path / "a.bin"
    runs = []

    def make():
        runs.append(1)
        artifact.write_bytes(b"x" * 1000)

    assert pipeline.cached(artifact, "k", make) and not pipeline.cached(artifact, "k", make)
    stamp = json.loads((tmp_path / ".a.bin.stamp").read_text())
    assert stamp["key"] == "k" and stamp["bytes"] == 1000 and len(stamp["sha256"]) == 64
    artifact.write_bytes(b"x" * 10)  # truncated
    with caplog.at_level(logging.WARNING, logger="qpde.pipeline"):
        assert pipeline.cached(artifact, "k", make)
        assert not pipeline.cached(artifact, "k", make)
    assert len(runs) == 2  # built, then rebuilt once
    assert artifact.read_bytes() == b"x" * 1000
    warnings = [r for r in caplog.records if "corrupt" in r.getMessage()]
    assert len(warnings) == 1 and "a.bin" in warnings[0].getMessage()


def test_failing_stage_leaves_no_stale_artifact(tmp_path):
    artifact = tmp_path / "verdict.json"
    pipeline.cached(artifact, "old", lambda: artifact.write_text("{}"))

    def fail():
        raise ToolError("build failed")

    with pytest.raises(ToolError):
        pipeline.cached(artifact, "new", fail)
    assert not artifact.exists()  # no "0 mismatches" row next to "build failed"


def test_truncated_checkpoint_is_rebuilt_on_rerun(tmp_path, caplog):
    """A float-only tiny sweep; truncating its checkpoint makes the rerun retrain it (identically)."""
    cfg = load_config(tiny_config(tmp_path, ("fp32",)))
    out = tmp_path / "out"
    pipeline.run_sweep(cfg, out)
    ckpt = out / "models" / "burgers-fno-fp32-r16" / "checkpoint.pt"
    original = ckpt.read_bytes()
    ckpt.write_bytes(original[: len(original) // 3])
    with caplog.at_level(logging.WARNING, logger="qpde.pipeline"):
        pipeline.run_sweep(cfg, out)
    assert ckpt.read_bytes() == original  # deterministic training: the rebuilt file is the same
    assert sum("checkpoint.pt" in r.getMessage() and "corrupt" in r.getMessage() for r in caplog.records) == 1


def test_malicious_checkpoint_is_refused_without_running_code(tmp_path):
    import torch

    from qpde.train import load_checkpoint

    witness = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {witness}",))

    path = tmp_path / "checkpoint.pt"
    torch.save({"arch": "fno", "resolution": 16, "scenario": "fp32", "shape": {}, "state_dict": Evil()}, path)
    with pytest.raises(DataError) as err:
        load_checkpoint(path)
    assert not witness.exists()
    message = str(err.value)
    assert str(path) in message and "refused to load" in message and "posix.system" in message
    assert exit_code(err.value) == 2


def test_second_run_into_the_same_folder_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom qpde.pipeline import locked\n"
         f"with locked({str(out)!r}):\n    print('held', flush=True)\n    time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(Path(pipeline.__file__).parents[1])},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        result = runner.invoke(app, ["run", str(tiny_config(tmp_path)), "--out", str(out)])
        assert result.exit_code == 2
        one_line_error(result, str(out), f"pid {holder.pid}", "--wait")
        assert not (out / "data").exists()  # refused before any work
    finally:
        holder.kill()
        holder.wait()
    with pipeline.locked(out):  # released when its holder died
        pass


def test_wait_takes_the_folder_when_the_holder_is_done(tmp_path):
    got = []
    with pipeline.locked(tmp_path):
        waiter = threading.Thread(target=lambda: got.append(pipeline.locked(tmp_path, wait=True).__enter__()))
        waiter.start()
        time.sleep(0.3)
        assert not got  # still waiting
    waiter.join(timeout=10)
    assert got and (tmp_path / ".qpde.lock").read_text().strip() == str(os.getpid())


# ---- input validation up front ------------------------------------------------------------------------


@pytest.mark.parametrize("section, line, needle", [
    ("[data.burgers]", 'samples = "ten"', "[data.burgers]: samples must be an integer, got 'ten'"),
    ("[hls]", "reuse_factor = 0", "[hls]: reuse_factor must be >= 1, got 0"),
    ("[train]", "epochs = -3", "[train]: epochs must be >= 1, got -3"),
    ("[train]", "lr = 0.0", "[train]: lr must be > 0"),
    ("[train]", "epoch = 3", "unknown key(s) ['epoch']"),
    ("[hls]", 'strategy = "fast"', "strategy must be one of auto, Latency, Resource"),
    ("[data.burgers]", "params = { nu = \"high\" }", "params.nu must be like its default"),
])
def test_bad_config_values_are_one_line_errors_before_any_work(tmp_path, section, line, needle):
    config = tmp_path / "bad.toml"
    config.write_text(f"{section}\n{line}\n")
    out = tmp_path / "o"
    result = runner.invoke(app, ["run", str(config), "--out", str(out)])
    assert result.exit_code == 2, result.output
    one_line_error(result, needle, str(config))
    assert not out.exists()


def test_resolution_above_the_data_grid_is_refused_unless_allowed(tmp_path):
    config = tiny_config(tmp_path).read_text().replace("resolutions = [16]", "resolutions = [64]")
    path = tmp_path / "up.toml"
    path.write_text(config)
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    one_line_error(result, "[64] above the data grid", "allow_upsampling")
    path.write_text(config.replace("seed = 1", "seed = 1\nallow_upsampling = true"))
    assert load_config(path).data_for("burgers").allow_upsampling


def _data_file(tmp_path: Path, dataset: str, name: str, resolution: int = 8) -> Path:
    from qpde.data import generate

    return generate(dataset, tmp_path / name, samples=3, resolution=resolution, seed=0, progress=False,
                    **({"n_times": 3} if dataset == "burgers" else {}))


def test_data_file_of_another_dataset_is_refused(tmp_path):
    darcy = _data_file(tmp_path, "darcy", "darcy.h5")
    config = tmp_path / "c.toml"
    config.write_text(f'scenarios = ["fp32"]\nresolutions = [8]\n[data.burgers]\nfile = "{darcy}"\n')
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    one_line_error(result, str(darcy), "holds darcy data", "[data.burgers]", "tensor [N,T,X]")


def test_non_finite_data_is_refused_naming_file_key_and_sample(tmp_path):
    import h5py

    path = _data_file(tmp_path, "burgers", "b.h5", resolution=16)
    with h5py.File(path, "r+") as f:
        f["tensor"][2, 1, 3] = np.nan
    config = tmp_path / "c.toml"
    config.write_text(f'scenarios = ["fp32"]\nresolutions = [16]\n[data.burgers]\nfile = "{path}"\n')
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    one_line_error(result, str(path), "'tensor' sample 2 holds NaN or Inf")


def test_qpde_data_refuses_absurd_sizes_with_an_estimate(tmp_path):
    result = runner.invoke(app, ["data", "burgers", "--out", str(tmp_path / "b.h5"), "--resolution", "1000000"])
    assert result.exit_code == 2
    one_line_error(result, "generating needs about", "GiB", "available")
    assert not (tmp_path / "b.h5").exists()


def test_qpde_data_refuses_to_overwrite_without_force(tmp_path):
    target = tmp_path / "b.h5"
    target.write_bytes(b"precious")
    args = ["data", "burgers", "--out", str(target), "--samples", "3", "--resolution", "16", "-p", "n_times=3"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    one_line_error(result, str(target), "--force")
    assert target.read_bytes() == b"precious"
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0
    assert target.read_bytes() != b"precious"


@pytest.mark.parametrize("make, needle", [
    (lambda n: np.zeros((3, n)) + 1j, "complex inputs (complex128) are refused"),
    (lambda n: np.zeros((3, n + 1)), "the model takes [n, 16]"),
    (lambda n: np.where(np.arange(3 * n).reshape(3, n) == 20, np.inf, 0.0), "input 1 holds NaN or Inf"),
    (lambda n: np.array(["a"] * n), "must be real numbers"),
])
def test_csim_inputs_are_checked_before_any_build(tiny_qonnx, tmp_path, monkeypatch, make, needle):
    import qpde.backends.hls4ml

    _, path = tiny_qonnx("w4a8")
    monkeypatch.setattr(qpde.backends.hls4ml, "build_project", lambda *a, **k: pytest.fail("built before checking inputs"))
    np.save(tmp_path / "x.npy", make(16))
    result = runner.invoke(app, ["csim", str(path), "--inputs", str(tmp_path / "x.npy")])
    assert result.exit_code == 2, result.output
    one_line_error(result, str(tmp_path / "x.npy"), needle)


def test_report_and_json_stay_valid_with_nan_metrics(tmp_path):
    from qpde.report import write_report

    variant = "burgers-fno-fp32-r16"
    pipeline._write_json(tmp_path / "models" / variant / "metrics.json",
                         {"params": 10, "macs": 10, "bops": 100, "nrmse": float("nan"), "mse": float("inf"),
                          "rollout_nrmse": None})
    pipeline._write_json(tmp_path / "models" / "burgers-fno-fp32-r32" / "metrics.json",
                         {"params": 10, "macs": 10, "bops": 200, "nrmse": 0.1, "mse": 0.01, "rollout_nrmse": 0.2})
    text = (tmp_path / "models" / variant / "metrics.json").read_text()
    assert json.loads(text)["nrmse"] is None and "NaN" not in text and "Infinity" not in text
    csv = write_report(tmp_path)
    assert (tmp_path / "pareto.png").is_file() and len(pd.read_csv(csv)) == 2


# ---- progress -----------------------------------------------------------------------------------------


def test_progress_is_live_only_on_an_interactive_terminal_outside_ci(monkeypatch):
    import io

    from rich.console import Console

    from qpde.progress import SweepProgress, live_display_wanted

    tty = Console(file=io.StringIO(), force_terminal=True, force_interactive=True)
    monkeypatch.delenv("CI", raising=False)
    assert live_display_wanted(tty)
    monkeypatch.setenv("CI", "true")
    assert not live_display_wanted(tty)
    assert not live_display_wanted(Console(file=io.StringIO()))
    cfg = load_config("quick")
    variants = cfg.variants()
    with SweepProgress(tty, variants, cfg.backends, live=True) as progress:
        for v in variants:
            for stage in ("train", "hls4ml", "done"):
                progress.announce(v, stage)
    assert progress.progress.tasks[progress.total].completed == len(variants)
    plain = Console(file=io.StringIO(), width=200)
    with SweepProgress(plain, variants, cfg.backends) as progress:
        progress.announce(variants[1], "hls4ml")
    assert f"{variants[1].id}: hls4ml" in plain.file.getvalue()


# ---- end to end: a one-LSB weight fault in the generated firmware ------------------------------------


def flip_one_weight(project: Path) -> str:
    """Change the first weight of the first dense layer by one LSB of its type, in the firmware header
    and in the .txt file that hls4ml's C simulation loads at run time. Returns what was changed."""
    import re

    from qpde.backends.hls4ml.convert import PROJECT_NAME

    firmware = project / "firmware"
    cpp = (firmware / f"{PROJECT_NAME}.cpp").read_text()
    type_name, var = re.search(r'load_weights_from_txt<(\w+), \d+>\((w\d+), "w\d+\.txt"\)', cpp).groups()
    text = "\n".join(p.read_text() for p in firmware.glob("*.h"))
    unsigned, width, integer = re.search(rf"typedef ap_(u?)fixed<(\d+),\s*(-?\d+)>\s+{type_name};", text).groups()
    lsb = 2.0 ** -(int(width) - int(integer))
    top = 2.0 ** (int(integer) - (0 if unsigned else 1)) - lsb
    txt = firmware / "weights" / f"{var}.txt"
    values = txt.read_text().split(",")
    old = float(values[0])
    new = old + lsb if old + lsb <= top else old - lsb
    values[0] = f"{new:.12f}"
    txt.write_text(",".join(values))
    header = firmware / "weights" / f"{var}.h"
    header.write_text(re.sub(rf"({var}\[\d+\] = \{{)\s*[^,}}]+", rf"\g<1>{new:.12f}", header.read_text()))
    return f"{var}[0]: {old} → {new} (LSB {lsb})"


@pytest.mark.slow
def test_one_lsb_weight_fault_in_the_firmware_fails_the_run(tmp_path, monkeypatch):
    import hashlib

    import qpde.backends.hls4ml

    config = tiny_config(tmp_path, ("fp32", "w4a8", "w8a16"))
    out = tmp_path / "out"
    victim, other = "burgers-fno-w8a16-r16", "burgers-fno-w4a8-r16"
    first = runner.invoke(app, ["run", str(config), "--out", str(out), "--workers", "2"])
    assert first.exit_code == 0, first.output

    def snapshot():
        return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*") if p.is_file()}

    # `qpde csim VARIANT` builds in a scratch folder: the sweep's artifacts stay as they are.
    before = snapshot()
    csim = runner.invoke(app, ["csim", victim, "--root", str(out), "--config", str(config)])
    assert csim.exit_code == 0 and "4 samples, 0 mismatching" in csim.output, csim.output
    assert snapshot() == before

    # A truncated QONNX file is rebuilt by the next run.
    qonnx = out / "models" / other / f"{other}.qonnx.onnx"
    size = qonnx.stat().st_size
    qonnx.write_bytes(qonnx.read_bytes()[:100])

    # The fault: one weight of the victim's firmware one LSB off, then its C-sim stage reruns.
    real_build = qpde.backends.hls4ml.build_project
    changed = []

    def build_with_fault(graph, out_dir, cfg, *, compile=True):
        project = real_build(graph, out_dir, cfg, compile=False)
        if Path(out_dir).name == victim:
            changed.append(flip_one_weight(Path(out_dir)))
        project.hls_model._compile()  # compile what is on disk (compile() would rewrite it first)
        return project

    monkeypatch.setattr(qpde.backends.hls4ml, "build_project", build_with_fault)
    (out / "sim" / victim / "csim_verdict.json").unlink()
    second = runner.invoke(app, ["run", str(config), "--out", str(out), "--executor", "serial"])
    assert changed, "the victim's project was not rebuilt"
    assert second.exit_code == 1, second.output
    assert f"{victim} [hls4ml] mismatch: C simulation differs from the golden" in second.output
    assert "1 of 3 variants failed" in second.output
    df = pd.read_csv(out / "results.csv").set_index("variant")
    assert df.loc[victim, "csim_mismatches"] > 0 and "not synthesized" in df.loc[victim, "note"]
    assert df.loc[other, "csim_mismatches"] == 0 and df.loc[other, "csim_samples"] == 4
    assert not (out / "bitstreams" / victim / "hls4ml.json").exists()  # nothing synthesized from it
    assert qonnx.stat().st_size == size  # rebuilt
