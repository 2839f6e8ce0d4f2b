"""The joined table from artifacts on disk: columns, empty = not run, one row per variant × backend."""

import json

import pandas as pd

from qpde.report import COLUMNS, pareto_front, write_report


def _artifacts(root):
    for scenario, nrmse, bops in (("fp32", 0.05, 5e7), ("w4a8", 0.12, 1.6e6), ("w8a8", 0.10, 3.3e6)):
        vid = f"burgers-fno-{scenario}-r64"
        (root / "models" / vid).mkdir(parents=True)
        (root / "models" / vid / "metrics.json").write_text(json.dumps(
            {"nrmse": nrmse, "mse": nrmse**2, "rollout_nrmse": 3 * nrmse, "params": 100, "macs": 1000, "bops": bops,
             "macs_dense": 1500, "bops_dense": 1.5 * bops}))
        if scenario != "fp32":
            (root / "sim" / vid).mkdir(parents=True)
            (root / "sim" / vid / "csim_verdict.json").write_text(json.dumps(
                {"backend": "hls4ml-csim", "samples": 120, "mismatching_samples": 0, "mismatching_values": 0,
                 "first_mismatch_index": None, "max_abs_difference": 0.0}))
    (root / "bitstreams" / "burgers-fno-w8a8-r64").mkdir(parents=True)
    (root / "bitstreams" / "burgers-fno-w8a8-r64" / "rtl.json").write_text(json.dumps(
        {"tool": "yosys", "tool_version": "0.23", "target": "xc7", "lut": 1234, "ff": 99, "dsp": 0,
         "fields_per_s": 1.0e8, "estimate": False}))
    (root / "hls" / "burgers-fno-w8a8-r64").mkdir(parents=True)
    (root / "hls" / "burgers-fno-w8a8-r64" / "qpde_folding.json").write_text(json.dumps(
        {"mix": {"n_in": 128, "n_out": 128, "strategy": "Resource", "reuse_factor": 4},
         "lift": {"n_in": 1, "n_out": 8, "strategy": "Latency", "reuse_factor": 1}}))
    (root / "sim" / "burgers-fno-w4a8-r64" / "rtl.error").write_text("does not fit: 90000 LUTs > 83640")


def test_joined_table_from_artifacts(tmp_path):
    _artifacts(tmp_path)
    csv = write_report(tmp_path)
    df = pd.read_csv(csv)
    assert list(df.columns) == COLUMNS
    assert (df["macs"] == 1000).all() and (df["macs_dense"] == 1500).all()  # dense counts in their own columns
    assert (df["bops_dense"] == 1.5 * df["bops"]).all() and "bops_dense" in (tmp_path / "report.md").read_text()
    assert len(df) == 5  # fp32 row, two hls4ml rows, the rtl row with figures, the rtl row with the reason
    hls = df[df["backend"] == "hls4ml"]
    assert (hls["csim_samples"] == 120).all() and (hls["csim_mismatches"] == 0).all()
    assert hls["lut"].isna().all()  # not run: empty, never 0
    folding = hls.set_index("variant")["folding"]
    assert folding["burgers-fno-w8a8-r64"] == "Latency×1, Resource×1 (RF 4), max 4096 multipliers/layer"
    assert pd.isna(folding["burgers-fno-w4a8-r64"])  # no project written: empty
    rtl = df[df["backend"] == "rtl"].set_index("variant")
    assert rtl.loc["burgers-fno-w8a8-r64", "lut"] == 1234 and not rtl.loc["burgers-fno-w8a8-r64", "estimate"]
    assert "does not fit" in rtl.loc["burgers-fno-w4a8-r64", "note"]
    assert pd.isna(rtl.loc["burgers-fno-w4a8-r64", "lut"])
    for name in ("report.md", "pareto.png", "resources_fno.png", "throughput_vs_lut.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "## burgers / fno" in (tmp_path / "report.md").read_text()


def test_pareto_front_drops_dominated_points():
    df = pd.DataFrame({"bops": [1, 2, 3, 4], "nrmse": [0.5, 0.6, 0.2, 0.3]})
    assert pareto_front(df, "bops", "nrmse")["bops"].tolist() == [1, 3]


def test_variant_whose_graph_cannot_be_exact_gets_a_row_with_the_reason(tmp_path):
    from qpde.report import results_table

    folder = tmp_path / "models" / "burgers-fno-w8a32-r16"
    folder.mkdir(parents=True)
    (folder / "metrics.error").write_text("model: node 'Add_4' (Add): accumulator needs 63 bits\n")
    df = results_table(tmp_path)
    assert len(df) == 1 and df.iloc[0]["backend"] == "none" and "63 bits" in df.iloc[0]["note"]
    assert pd.isna(df.iloc[0]["nrmse"]) and df.iloc[0]["a_bits"] == 32


def test_hardware_series_ignore_tool_labels_and_skip_empty_panels():
    """Regression: w4a4 (placed: tool "yosys + nextpnr-ecp5") and w8a8 (tool "yosys") were two series,
    and an all-zero DSP panel was drawn."""
    from qpde.report import bit_order, hardware_rows, resource_panels

    rows = [{"variant": f"burgers-fno-{s}-r16", "dataset": "burgers", "arch": "fno", "w_bits": w, "a_bits": a,
             "resolution": 16, "backend": "rtl", "tool": tool, "lut": lut, "ff": 10, "dsp": 0, "estimate": False}
            for s, w, a, tool, lut in (("w8a8", 8, 8, "yosys", 300), ("w4a4", 4, 4, "yosys + nextpnr-ecp5", 100),
                                       ("w4a8", 4, 8, "yosys", 200))]
    df = pd.DataFrame(rows, columns=COLUMNS)
    hw = hardware_rows(df)
    assert hw["series"].nunique() == 1
    assert resource_panels(hw) == ["lut", "ff"]
    assert bit_order(hw) == ["w4a4", "w4a8", "w8a8"]
