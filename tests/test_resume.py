"""A sweep killed at any point and rerun finishes without redoing finished work and with the same
results as an uninterrupted run."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.test_pipeline import _write


def _run(config, out, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "qpde.cli", "run", str(config), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)


@pytest.mark.slow
def test_killed_sweep_resumes_to_identical_results(tmp_path):
    config = _write(tmp_path, ["fp32", "w4a4", "w8a8"])
    straight = _run(config, tmp_path / "a")
    assert straight.wait(timeout=900) == 0, straight.stderr.read().decode()

    out = tmp_path / "b"
    victim = _run(config, out)
    marker = out / "models" / "burgers-fno-w4a4-r16" / "checkpoint.pt"
    deadline = time.time() + 600
    while not marker.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert victim.poll() is None, "the sweep finished before it could be killed"
    victim.send_signal(signal.SIGKILL)  # no clean-up handlers run: the harshest interruption
    victim.wait()
    finished_before = {p: p.stat().st_mtime_ns for p in out.rglob("checkpoint.pt")}
    assert len(finished_before) >= 2  # float and the first QAT variant were done

    resumed = _run(config, out)
    assert resumed.wait(timeout=900) == 0, resumed.stderr.read().decode()
    # finished work was not redone ...
    assert {p: p.stat().st_mtime_ns for p in finished_before} == finished_before
    assert json.loads((out / "sim" / "stage_times.json").read_text()).get("train", 0) == 0
    # ... no temporary or half-written artifact is left ...
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    # ... and the results equal the uninterrupted run's, exactly.
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a" / "results.csv"), pd.read_csv(out / "results.csv"))


@pytest.mark.slow
def test_process_pool_equals_serial(tmp_path):
    """Training runs on one thread with fixed seeds, so the executor cannot change any result."""
    from qpde.config import load_config
    from qpde.pipeline import run_sweep

    cfg = load_config(_write(tmp_path, ["fp32", "w4a8", "w8a8"]))
    serial = run_sweep(cfg, tmp_path / "serial", executor="serial")
    pooled = run_sweep(cfg, tmp_path / "pool", executor="local", workers=2)
    pd.testing.assert_frame_equal(pd.read_csv(serial), pd.read_csv(pooled))
    assert (pd.read_csv(pooled)["csim_mismatches"].dropna() == 0).all()


def test_unknown_executor_is_refused(tmp_path):
    from typer.testing import CliRunner

    from qpde.cli import app

    result = CliRunner().invoke(app, ["run", str(_write(tmp_path, ["fp32"])), "--executor", "slurm", "--out",
                                      str(tmp_path / "o")])
    assert result.exit_code == 2 and "slurm" in result.output


@pytest.fixture
def ray_cluster(tmp_path):
    """A real Ray head on loopback, started and stopped by the test."""
    ray = pytest.importorskip("ray", reason="Ray not installed: pip install -e '.[ray]'")
    port = 6391
    ray_bin = Path(sys.executable).parent / "ray"
    start = subprocess.run([str(ray_bin), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                            "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"],
                           capture_output=True, text=True, timeout=180)
    assert start.returncode == 0, start.stdout + start.stderr
    try:
        yield f"127.0.0.1:{port}"
    finally:
        ray.shutdown()
        subprocess.run([str(ray_bin), "stop", "--force"], capture_output=True, timeout=120)


@pytest.mark.slow
def test_ray_executor_equals_local(tmp_path, ray_cluster):
    from qpde.config import load_config
    from qpde.pipeline import run_sweep

    cfg = load_config(_write(tmp_path, ["fp32", "w4a8", "w8a8"]))
    local = run_sweep(cfg, tmp_path / "local", executor="local", workers=2)
    on_ray = run_sweep(cfg, tmp_path / "ray", executor="ray", ray_address=ray_cluster)
    pd.testing.assert_frame_equal(pd.read_csv(local), pd.read_csv(on_ray))
