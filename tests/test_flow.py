"""The flow of named steps (qpde.flow): one registry, a generic cache key that changes exactly when a
step's config slice, an upstream artifact or one of its tools changes, --from/--to selection, and the
step-level CLI. Steps are replaced by fakes that write small files (the flow is what is tested)."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from qpde import flow, pipeline
from qpde.cli import app
from qpde.config import Variant, load_config
from qpde.errors import ConfigError
from qpde.flow import STEPS, Flow, Plan
from qpde.layout import write_json
from tests.test_pipeline import TINY_SWEEP

runner = CliRunner()
W4A8 = Variant("burgers", "fno", "w4a8", 16)


def tiny(tmp_path: Path, scenarios=("fp32", "w4a8"), extra: str = "") -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SWEEP.format(scenarios=json.dumps(list(scenarios))) + extra)
    return path


def fake_steps(monkeypatch, csim_mismatches: dict[str, int] | None = None, fail: dict | None = None) -> Counter:
    """Replace every step's `make` by one writing a small artifact; returns a Counter of (step, variant id)
    built. `csim_mismatches`: scenario → mismatching samples of its C-sim verdict; `fail`: (step,
    scenario) → exception raised instead of building."""
    made: Counter = Counter()
    mismatches = csim_mismatches or {}
    fail = fail or {}

    def fake(name):
        def make(flow_, variant, inputs, out):
            made[(name, variant.dataset if STEPS[name].per_dataset else variant.id)] += 1
            if (name, variant.scenario) in fail:
                raise fail[(name, variant.scenario)]
            if name == "metrics":
                write_json(out, {"params": 1, "macs": 1, "bops": 1, "nrmse": 0.5, "mse": 0.1,
                                 "rollout_nrmse": float("nan")})
            elif name == "csim":
                bad = mismatches.get(variant.scenario, 0)
                write_json(out, {"backend": "hls4ml-csim", "samples": 4, "mismatching_samples": bad,
                                 "mismatching_values": bad, "first_mismatch_index": 0 if bad else None,
                                 "max_abs_difference": float(bad)})
            elif name in ("vendor", "finn", "pnr", "folded"):
                write_json(out, {"designs": []} if name == "folded" else {"note": f"fake {name}"})
            else:  # the content depends on the inputs: a changed upstream changes it
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(f"{name} {variant.id} " + " ".join(sorted(p.read_text()[:40] for p in inputs.values())))
        return make

    for name, step in STEPS.items():
        monkeypatch.setitem(STEPS, name, dataclasses.replace(step, make=fake(name), external=None))
    monkeypatch.setattr(pipeline, "check_inputs", lambda cfg, sweep: None)
    return made


def built(made: Counter, name: str) -> set[str]:
    return {scope for (step, scope) in made if step == name}


# ---- the registry ------------------------------------------------------------------------------------


def test_registry_is_in_flow_order_and_names_every_input():
    order = list(STEPS)
    assert order == ["data", "train", "export", "metrics", "csim", "vendor", "finn", "rtl", "rtlsim", "synth", "pnr",
                     "folded"]
    for step in STEPS.values():
        assert all(order.index(up) <= order.index(step.name) for up in step.after), step.name
        assert set(step.tools) <= set(flow.TOOLS), step.name
    cfg = load_config("quick")
    for step in STEPS.values():  # the static graph covers what each step actually reads
        if step.applies(W4A8):
            assert {up for up, _ in step.needs(cfg, W4A8).values()} <= set(step.after), step.name
    assert flow.downstream("rtl") == ["rtl", "rtlsim", "synth", "pnr"]
    assert flow.downstream("csim") == ["csim", "vendor"]
    assert set(flow.downstream("export")) == set(order) - {"data", "train"}


# ---- the cache key -----------------------------------------------------------------------------------


def test_cache_key_changes_exactly_with_slice_upstream_artifact_and_tools(tmp_path, monkeypatch):
    made = fake_steps(monkeypatch)
    cfg = load_config(tiny(tmp_path))
    root = tmp_path / "out"

    def rebuild(cfg, **tools) -> set[str]:
        for tool, version in tools.items():
            monkeypatch.setitem(flow.TOOLS, tool, lambda version=version: version)
        made.clear()
        Flow(cfg, root).get("csim", W4A8)
        return {step for step, _ in made}

    assert rebuild(cfg) == {"data", "train", "export", "csim"}
    key = Flow(cfg, root).key("csim", W4A8)
    # Not otherwise: the same inputs, or a change outside each step's slice, rebuild nothing.
    assert rebuild(cfg) == set()
    assert rebuild(dataclasses.replace(cfg, hls=dataclasses.replace(cfg.hls, vendor_timeout_s=60.0, cosim=True))) == set()
    assert rebuild(dataclasses.replace(cfg, rtl=dataclasses.replace(cfg.rtl, max_lut=10))) == set()
    assert rebuild(dataclasses.replace(cfg, resolutions=(16, 8))) == set()  # another variant, not an input
    assert rebuild(cfg, yosys="Yosys 99.0", verilator="9.9") == set()  # tools csim does not run
    assert Flow(cfg, root).key("csim", W4A8) == key
    # The step's config slice: csim reruns, nothing upstream does.
    wider = dataclasses.replace(cfg, hls=dataclasses.replace(cfg.hls, reuse_factor=4))
    assert rebuild(wider) == {"csim"}
    assert Flow(wider, root).key("csim", W4A8) != key
    assert rebuild(cfg) == {"csim"}  # and back
    # One of its tools: csim only; an upstream step's tool: that step and everything after it.
    assert rebuild(cfg, hls4ml="0.0-test") == {"csim"}
    assert rebuild(cfg, qonnx="0.0-test") == {"export", "csim"}
    assert rebuild(cfg, brevitas="0.0-test") == {"train", "export", "csim"}
    assert built(made, "train") == {"burgers-fno-fp32-r16", W4A8.id}  # QAT starts from the float checkpoint
    # An upstream step's slice (training epochs): retrained, re-exported, re-simulated; the data kept.
    longer = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=3))
    assert rebuild(longer) == {"train", "export", "csim"}
    assert rebuild(dataclasses.replace(longer, data={"burgers": dataclasses.replace(
        longer.data["burgers"], seed=2)})) == {"data", "train", "export", "csim"}


def test_cache_key_follows_the_upstream_artifact_content(tmp_path, monkeypatch):
    """An upstream artifact replaced by another with a valid stamp (another process rebuilt it) changes the
    key of everything made from it; the same content keeps it."""
    fake_steps(monkeypatch)
    cfg = load_config(tiny(tmp_path))
    root = tmp_path / "out"
    key = Flow(cfg, root).key("csim", W4A8)
    qonnx = Flow(cfg, root).layout.qonnx(W4A8)
    stamp = flow.read_stamp(qonnx)
    original = qonnx.read_text()

    def replace(text: str) -> str:
        qonnx.write_text(text)
        write_json(flow.stamp_path(qonnx), {**stamp, "sha256": flow.sha256_file(qonnx)})
        return Flow(cfg, root).key("csim", W4A8)

    assert replace(original + " edited") != key
    assert replace(original) == key
    assert flow.step_key("csim", "v", {"a": 1}, {"export": ("k", "s1")}, {"hls4ml": "1"}) != flow.step_key(
        "csim", "v", {"a": 1}, {"export": ("k", "s2")}, {"hls4ml": "1"})


# ---- --from / --to -------------------------------------------------------------------------------------


def test_from_reruns_the_step_and_everything_downstream_and_to_stops_after_it(tmp_path, monkeypatch):
    made = fake_steps(monkeypatch)
    cfg = load_config(tiny(tmp_path, ("fp32", "w4a8", "w8a8")))
    root = tmp_path / "out"
    quantized = {"burgers-fno-w4a8-r16", "burgers-fno-w8a8-r16"}

    pipeline.run_sweep(cfg, root, plan=Plan(stop="export"))
    assert {step for step, _ in made} == {"data", "train", "export"}
    assert not (root / "sim" / "burgers-fno-w4a8-r16").exists()
    assert (pd.read_csv(root / "results.csv")["backend"] != "hls4ml").all()  # no metrics or C-sim yet: no rows

    made.clear()
    pipeline.run_sweep(cfg, root)  # the rest, from the cache
    assert {step for step, _ in made} == {"metrics", "csim", "vendor"}

    made.clear()
    pipeline.run_sweep(cfg, root)
    assert not made  # everything cached

    made.clear()
    pipeline.run_sweep(cfg, root, plan=Plan(start="csim"))
    assert {step for step, _ in made} == {"csim", "vendor"}
    assert built(made, "csim") == built(made, "vendor") == quantized
    assert all(count == 1 for count in made.values())  # once per run

    made.clear()
    pipeline.run_sweep(cfg, root, plan=Plan(start="export", stop="export"))
    assert {step for step, _ in made} == {"export"}
    for vid in quantized:  # made from the old export: stale, removed (the report shows no old verdict)
        assert not (root / "sim" / vid / "csim_verdict.json").exists()
        assert not (root / "models" / vid / "metrics.json").exists()
    assert (root / "models" / "burgers-fno-fp32-r16" / "metrics.json").is_file()

    made.clear()
    pipeline.run_sweep(cfg, root, plan=Plan(start="train"))
    assert {step for step, _ in made} == {"train", "export", "metrics", "csim", "vendor"}
    assert all(count == 1 for count in made.values())  # the float model once, in the driver
    table = pd.read_csv(root / "results.csv")
    assert len(table) == 3 and (table[table["backend"] == "hls4ml"]["csim_mismatches"] == 0).all()


def test_plan_names_are_checked():
    with pytest.raises(ConfigError, match="--from: unknown step 'hls'; steps: data, train"):
        Plan(start="hls")
    with pytest.raises(ConfigError, match="--from csim comes after --to export"):
        Plan(start="csim", stop="export")
    assert Plan(start="rtlsim").rerun == {"rtlsim", "synth", "pnr"}
    assert Plan(stop="csim").selected("metrics") and not Plan(stop="csim").selected("vendor")


def test_run_from_to_on_the_command_line(tmp_path, monkeypatch):
    made = fake_steps(monkeypatch)
    config = tiny(tmp_path)
    out = tmp_path / "out"
    first = runner.invoke(app, ["run", str(config), "--out", str(out), "--executor", "serial", "--to", "metrics"])
    assert first.exit_code == 0, first.output
    assert {step for step, _ in made} == {"data", "train", "export", "metrics"}
    made.clear()
    again = runner.invoke(app, ["run", str(config), "--out", str(out), "--executor", "serial", "--from", "metrics"])
    assert again.exit_code == 0, again.output
    assert {step for step, _ in made} == {"metrics", "csim", "vendor"}
    bad = runner.invoke(app, ["run", str(config), "--out", str(out), "--from", "hls"])
    assert bad.exit_code == 2 and "unknown step 'hls'" in bad.output and "Traceback" not in bad.output


# ---- gates: nothing downstream of an inexact simulation ------------------------------------------------


def test_a_failed_gate_removes_what_was_made_downstream(tmp_path, monkeypatch):
    made = fake_steps(monkeypatch)
    cfg = load_config(tiny(tmp_path))
    root = tmp_path / "out"
    Flow(cfg, root).hls4ml(W4A8)
    vendor_row = Flow(cfg, root).layout.row(W4A8, "hls4ml")
    assert vendor_row.is_file()
    made2 = fake_steps(monkeypatch, csim_mismatches={"w4a8": 2})
    wider = dataclasses.replace(cfg, hls=dataclasses.replace(cfg.hls, reuse_factor=2))
    with pytest.raises(flow.MismatchError, match="on 2 of 4 samples .* not synthesized"):
        Flow(wider, root).hls4ml(W4A8)
    assert not vendor_row.exists() and not built(made2, "vendor")
    with pytest.raises(flow.MismatchError):  # a cached inexact verdict fails its gate again
        Flow(wider, root).get("vendor", W4A8)
    assert made2[("csim", W4A8.id)] == 1
    del made


# ---- step-level CLI ------------------------------------------------------------------------------------


def test_qpde_step_runs_one_step_with_what_it_needs(tmp_path, monkeypatch):
    made = fake_steps(monkeypatch, csim_mismatches={"w8a8": 1})
    config = tiny(tmp_path, ("fp32", "w4a8", "w8a8"))
    out = tmp_path / "out"
    result = runner.invoke(app, ["export", W4A8.id, "--config", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{W4A8.id}: models/{W4A8.id}/{W4A8.id}.qonnx.onnx"
    assert set(made) == {("data", "burgers"), ("train", "burgers-fno-fp32-r16"), ("train", W4A8.id),
                         ("export", W4A8.id)}
    made.clear()
    again = runner.invoke(app, ["step", "export", W4A8.id, "--config", str(config), "--out", str(out)])
    assert again.exit_code == 0 and not made  # cached
    forced = runner.invoke(app, ["step", "export", W4A8.id, "--config", str(config), "--out", str(out), "--force"])
    assert forced.exit_code == 0 and set(made) == {("export", W4A8.id)}
    # Every variant of the sweep the step applies to; a C-sim mismatch exits 1 naming it.
    made.clear()
    csim = runner.invoke(app, ["step", "csim", "--config", str(config), "--out", str(out)])
    assert csim.exit_code == 1, csim.output
    assert f"{W4A8.id}: sim/{W4A8.id}/csim_verdict.json" in csim.output
    assert "burgers-fno-w8a8-r16 [csim] mismatch: C simulation differs" in csim.output
    data = runner.invoke(app, ["step", "data", "--config", str(config), "--out", str(out)])
    assert data.exit_code == 0 and data.output.startswith("burgers: data/burgers-")
    float_csim = runner.invoke(app, ["step", "csim", "burgers-fno-fp32-r16", "--config", str(config), "--out",
                                     str(out)])
    assert float_csim.exit_code == 2 and "does not apply" in float_csim.output
    unknown = runner.invoke(app, ["step", "hls", "--config", str(config), "--out", str(out)])
    assert unknown.exit_code == 2 and "unknown step 'hls'" in unknown.output


def test_qpde_steps_lists_the_registry():
    result = runner.invoke(app, ["steps"])
    assert result.exit_code == 0
    for name in STEPS:
        assert name in result.output
    assert "models/<id>/checkpoint.pt" in result.output
