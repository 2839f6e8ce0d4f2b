"""End to end: `qpde run` on a tiny sweep, bit-exact C-sim on the whole test set, resumable."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from qpde.cli import app

TINY_SWEEP = """
name = "tiny"
datasets = ["burgers"]
archs = ["fno"]
scenarios = {scenarios}
resolutions = [16]
backends = ["hls4ml"]

[data.burgers]
samples = 10
resolution = 32
seed = 1
params = {{ nu = 0.05, n_times = 5 }}

[fno]
width = 4
modes = 4
layers = 1
proj = 8

[train]
epochs = 2
qat_epochs = 2
batch_size = 8
"""

runner = CliRunner()


def _write(tmp_path, scenarios):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SWEEP.format(scenarios=json.dumps(scenarios)))
    return path


@pytest.mark.slow
def test_run_then_rerun_reuses_everything(tmp_path):
    config = _write(tmp_path, ["fp32", "w4a4", "w8a32"])
    out = tmp_path / "out"
    first = runner.invoke(app, ["run", str(config), "--out", str(out)])
    assert first.exit_code == 0, first.output
    df = pd.read_csv(out / "results.csv")
    assert set(df["variant"]) == {f"burgers-fno-{s}-r16" for s in ("fp32", "w4a4", "w8a32")}
    hw = df[df["backend"] == "hls4ml"]
    assert len(hw) == 2
    # 1 test trajectory × 4 steps = 4 fields per variant, every one identical to the golden.
    assert (hw["csim_samples"] == 4).all() and (hw["csim_mismatches"] == 0).all()
    assert df["lut"].isna().all()  # no synthesis ran: empty, never 0
    from qpde.cost import graph_cost
    from qpde.qgraph import QGraph

    for _, row in hw.iterrows():  # quantized: counted on the QONNX (nonzero quantized weights), dense beside
        counts = graph_cost(QGraph(out / "models" / row["variant"] / f"{row['variant']}.qonnx.onnx"))
        assert [row[k] for k in counts] == list(counts.values()) and row["macs"] <= row["macs_dense"]
    from qpde.backends.hls4ml.vendor import vendor_tools

    if vendor_tools() is None:  # the project is written for the user's tools, and the row says so
        assert hw["note"].str.startswith("not run: vitis_hls").all(), hw["note"].tolist()
        assert (out / "hls" / "burgers-fno-w4a4-r16" / "build_prj.tcl").is_file()
    assert (out / "report.md").is_file() and (out / "pareto.png").stat().st_size > 1000
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.suffix in (".pt", ".onnx", ".json")
              and p.name != "stage_times.json"}
    second = runner.invoke(app, ["run", str(config), "--out", str(out)])
    assert second.exit_code == 0, second.output
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing recomputed
    assert json.loads((out / "sim" / "stage_times.json").read_text()).get("train", 0) == 0

    # --from/--to in a process pool (the driver's plan travels to the workers): C-sim reruns, nothing else
    verdicts = {p: p.stat().st_mtime_ns for p in out.rglob("csim_verdict.json")}
    third = runner.invoke(app, ["run", str(config), "--out", str(out), "--from", "csim", "--to", "csim",
                                "--workers", "2"])
    assert third.exit_code == 0, third.output
    assert len(verdicts) == 2 and all(p.stat().st_mtime_ns != t for p, t in verdicts.items())
    upstream = {p: t for p, t in stamps.items() if p.suffix in (".pt", ".onnx") or p.name == "metrics.json"}
    assert {p: p.stat().st_mtime_ns for p in upstream} == upstream
    times = json.loads((out / "sim" / "stage_times.json").read_text())
    assert {step for step, seconds in times.items() if seconds > 0} == {"csim"}
    assert pd.read_csv(out / "results.csv")["csim_mismatches"].dropna().tolist() == [0, 0]

    # qpde csim on the variant: test-set verdict, and arbitrary inputs → outputs
    verdict = runner.invoke(app, ["csim", "burgers-fno-w4a4-r16", "--root", str(out), "--config", str(config)])
    assert verdict.exit_code == 0, verdict.output
    assert "4 samples, 0 mismatching" in verdict.output
    x = np.random.default_rng(0).normal(size=(5, 16))
    np.save(tmp_path / "x.npy", x)
    given = runner.invoke(app, ["csim", "burgers-fno-w8a32-r16", "--root", str(out), "--config", str(config),
                                "--inputs", str(tmp_path / "x.npy"), "--out", str(tmp_path / "y.npy")])
    assert given.exit_code == 0, given.output
    assert np.load(tmp_path / "y.npy").shape == (5, 16)


def test_unknown_scenario_in_config_is_one_line_error(tmp_path):
    config = _write(tmp_path, ["fp32", "w3a99"])
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "w3a99" in result.output and "Traceback" not in result.output


def test_unknown_config_key_is_refused(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("scenarioz = ['w4a4']\n")
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 2 and "scenarioz" in result.output


def test_csim_of_malformed_file_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.qonnx.onnx"
    bad.write_bytes(b"not onnx")
    np.save(tmp_path / "x.npy", np.zeros((1, 16)))
    result = runner.invoke(app, ["csim", str(bad), "--inputs", str(tmp_path / "x.npy")])
    assert result.exit_code == 2 and "bad.qonnx.onnx" in result.output


def test_csim_of_onnx_with_inputs(tiny_qonnx, tmp_path):
    _, path = tiny_qonnx("w4a8")
    x = np.random.default_rng(1).normal(size=(3, 16))
    np.save(tmp_path / "x.npy", x)
    result = runner.invoke(app, ["csim", str(path), "--inputs", str(tmp_path / "x.npy"),
                                 "--out", str(tmp_path / "y.npy"), "--root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    from qpde import golden
    from qpde.qgraph import QGraph

    assert np.array_equal(np.load(tmp_path / "y.npy"), golden.run(QGraph(path), x))


def test_run_override_with_bad_resolution(tmp_path):
    result = runner.invoke(app, ["run", "--resolutions", "sixty"])
    assert result.exit_code == 2 and "resolutions" in result.output


def test_missing_data_file_is_one_line_error(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('scenarios = ["fp32"]\n[data.burgers]\nfile = "/nonexistent/burgers.h5"\n')
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "/nonexistent/burgers.h5" in result.output and "qpde data burgers" in result.output


@pytest.mark.slow
def test_run_with_finn_backend(tmp_path):
    from qpde.backends.finn.backend import finn_available

    available, why = finn_available()
    if not available:
        pytest.skip(f"FINN not installed: run scripts/install_finn.sh ({why})")
    config = _write(tmp_path, ["fp32", "w4a4"])
    # FINN makes thresholds only of FLOOR quantizers of ≤ 8 bits: no round-half-up, no 16-bit state.
    config.write_text(config.read_text() + '\n[quant]\nrounding = "floor"\nstate_bits = 0\n')
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(config), "--out", str(out), "--backends", "hls4ml,finn",
                                 "--executor", "serial"])
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out / "results.csv")
    finn = df[df["backend"] == "finn"].iloc[0]
    assert finn["tool"] == "finn-plus" and bool(finn["estimate"]) and finn["lut"] > 0
    assert finn["finn_exec_samples"] == 4 and finn["finn_exec_mismatches"] == 0


@pytest.mark.slow
def test_run_with_rtl_backend_builds_verifies_synthesizes_and_places(tmp_path):
    """w4a4 (≈3k LUT): Verilator on the whole test set, Yosys xc7 counts, ECP5 P&R and a bitstream.
    w8a16 is over the size cap and w8a32 needs a 33-bit saturation: rows with the reason."""
    config = tmp_path / "rtl.toml"
    config.write_text(TINY_SWEEP.format(scenarios=json.dumps(["fp32", "w4a4", "w8a16", "w8a32"]))
                      .replace("width = 4", "width = 2").replace("modes = 4", "modes = 2").replace("proj = 8", "proj = 4")
                      + "\n[rtl]\nmax_lut = 10000\n"
                      # the widths the size claims below were measured with (FLOOR, state at aY)
                      + "\n[quant]\nrounding = \"floor\"\nstate_bits = 0\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(config), "--out", str(out), "--backends", "rtl", "--executor", "serial"])
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out / "results.csv").set_index("variant")
    built = df.loc["burgers-fno-w4a4-r16"]
    assert built["backend"] == "rtl" and built["rtlsim_samples"] == 4 and built["rtlsim_mismatches"] == 0
    assert built["lut"] > 100 and built["ff"] > 0 and built["dsp"] == 0 and built["carry"] > 0
    assert built["ii_cycles"] == 1 and built["latency_cycles"] >= 2 and built["fmax_mhz"] > 10
    assert built["fields_per_s"] == pytest.approx(built["fmax_mhz"] * 1e6)
    assert not bool(built["estimate"]) and "nextpnr" in built["tool"]
    row = json.loads((out / "bitstreams" / "burgers-fno-w4a4-r16" / "rtl.json").read_text())
    assert open(row["bitstream"], "rb").read(64).find(b"LFE5U-85F") >= 0  # ecppack's header names the part
    too_large = df.loc["burgers-fno-w8a16-r16"]
    assert bool(too_large["estimate"]) and too_large["note"].startswith("not built: da4ml estimates")
    assert "33-bit" in df.loc["burgers-fno-w8a32-r16"]["note"] and pd.isna(df.loc["burgers-fno-w8a32-r16"]["lut"])


@pytest.mark.slow
def test_run_with_folded_backend_two_foldings_verified_synthesized_placed(tmp_path):
    """The folded backend in a sweep: one design per distinct folding of [folded] target_fps, each
    bit-exact in Verilator (with stalls) on the whole test set, with measured II, Yosys xc7 counts,
    ECP5 Fmax and a bitstream; fields/s = Fmax / measured II; one results.csv row per folding."""
    config = tmp_path / "folded.toml"
    config.write_text(TINY_SWEEP.format(scenarios=json.dumps(["fp32", "w4a4"]))
                      + "\n[folded]\ntarget_fps = [100000.0, 1000000.0]\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(config), "--out", str(out), "--backends", "folded", "--executor", "serial"])
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out / "results.csv")
    rows = df[df["backend"] == "folded"].sort_values("ii_cycles")
    assert len(rows) == 2 and (rows["variant"] == "burgers-fno-w4a4-r16").all()
    assert (rows["rtlsim_samples"] == 4).all() and (rows["rtlsim_mismatches"] == 0).all()
    assert rows["ii_cycles"].tolist()[0] < rows["ii_cycles"].tolist()[1]  # the faster folding
    assert (rows["lut"] > 100).all() and (rows["fmax_mhz"] > 10).all() and not rows["estimate"].astype(bool).any()
    assert np.allclose(rows["fields_per_s"], rows["fmax_mhz"] * 1e6 / rows["ii_cycles"])
    assert rows["folding"].str.contains("ΣPE·SIMD").all() and rows["note"].str.contains("measured").all()
    designs = json.loads((out / "bitstreams" / "burgers-fno-w4a4-r16" / "folded.json").read_text())["designs"]
    for design in designs:
        assert open(out / design["bitstream"], "rb").read(64).find(b"LFE5U-85F") >= 0

def test_every_embedded_config_loads_and_validates():
    from qpde.config import embedded_configs, load_config

    names = embedded_configs()
    assert {"quick", "hardware", "paper"} <= set(names)
    for name in names:
        cfg = load_config(name)
        assert cfg.variants(), name
    paper = load_config("paper")
    assert paper.fno.modes == 12 and paper.unet.features == 32
    # The paper's grid: four datasets × three archs × five scenarios + float × ≥ 3 resolutions each.
    assert set(paper.datasets) == {"burgers", "diffusion-sorption", "darcy", "navier-stokes"}
    assert set(paper.archs) == {"fno", "unet", "transformer"}
    assert {"w4a4", "w4a8", "w8a8", "w8a16", "w8a32", "fp32"} == set(paper.scenarios)
    assert all(len(paper.resolutions_for(d)) >= 3 for d in paper.datasets)


def test_notes_name_artifacts_relative_to_the_sweep_root(tmp_path):
    """Found by the pool==serial test: an absolute project path in the vendor note made two roots differ."""
    from qpde.pipeline import portable

    root = tmp_path / "out"
    note = f"not run: vitis_hls not on PATH (the HLS project is written at {root.resolve()}/hls/v; run it there)"
    assert portable(note, root) == "not run: vitis_hls not on PATH (the HLS project is written at hls/v; run it there)"
