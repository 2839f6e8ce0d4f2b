"""The joined table (results.csv), report.md and plots, built from the artifacts on disk.

One row per variant × backend, with DESIGN.md's columns. Empty cells mean "not run", never 0;
`estimate` is true only when a hardware figure is a model rather than a synthesis result."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from qpde.config import Variant  # noqa: E402
from qpde.quant import parse_scenario  # noqa: E402

log = logging.getLogger(__name__)

COLUMNS = [
    "variant", "dataset", "arch", "w_bits", "a_bits", "resolution", "params", "macs", "bops", "nrmse",
    "mse", "rollout_nrmse", "backend", "tool", "tool_version", "target", "lut", "ff", "dsp", "bram",
    "carry", "latency_cycles", "ii_cycles", "fmax_mhz", "fields_per_s", "csim_samples",
    "csim_mismatches", "rtlsim_samples", "rtlsim_mismatches", "estimate", "note",
]
HARDWARE_BACKENDS = ("hls4ml", "rtl", "finn")
# Counts that are integers by definition: nullable Int64 keeps "not run" empty instead of 120.0.
INTEGER_COLUMNS = ["w_bits", "a_bits", "resolution", "params", "macs", "bops", "csim_samples", "csim_mismatches",
                   "rtlsim_samples", "rtlsim_mismatches"]


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def variant_rows(root: Path, variant_id: str) -> list[dict]:
    """Rows of one variant from its artifacts: accuracy/cost, then one row per hardware backend run."""
    variant = Variant.parse(variant_id)
    spec = parse_scenario(variant.scenario)
    metrics = _read_json(root / "models" / variant_id / "metrics.json")
    if metrics is None:
        return []
    base = {
        "variant": variant_id, "dataset": variant.dataset, "arch": variant.arch,
        "w_bits": spec.w_bits or 32, "a_bits": spec.a_bits or 32, "resolution": variant.resolution,
        **{k: metrics.get(k) for k in ("params", "macs", "bops", "nrmse", "mse", "rollout_nrmse")},
    }
    if spec.is_float:
        return [{**base, "backend": "pytorch", "tool": "torch", "note": "float reference"}]
    rows = []
    sim, bits = root / "sim" / variant_id, root / "bitstreams" / variant_id
    for backend in HARDWARE_BACKENDS:
        row = {**base, "backend": backend}
        error = sim / f"{backend}.error"
        hardware = _read_json(bits / f"{backend}.json")
        csim = _read_json(sim / "csim_verdict.json") if backend == "hls4ml" else None
        rtlsim = _read_json(sim / "rtlsim_verdict.json") if backend == "rtl" else None
        if not (error.is_file() or hardware or csim or rtlsim):
            continue
        if csim:
            row.update(csim_samples=csim["samples"], csim_mismatches=csim["mismatching_samples"])
            if backend == "hls4ml":
                import hls4ml

                row.update(tool="hls4ml", tool_version=hls4ml.__version__)
        if rtlsim:
            row.update(rtlsim_samples=rtlsim["samples"], rtlsim_mismatches=rtlsim["mismatching_samples"])
        if hardware:
            row.update({k: v for k, v in hardware.items() if k in COLUMNS})
        elif backend == "hls4ml":
            row["note"] = "C-sim only: vendor tools (vitis-run/vitis_hls, vivado) not run"
        if error.is_file():
            row["note"] = error.read_text().strip()
        rows.append(row)
    return rows


def results_table(root: Path, variant_ids: list[str] | None = None) -> pd.DataFrame:
    if variant_ids is None:
        models = root / "models"
        variant_ids = sorted(p.name for p in models.iterdir() if p.is_dir()) if models.is_dir() else []
    rows = [row for vid in variant_ids for row in variant_rows(root, vid)]
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.astype({col: "Int64" for col in INTEGER_COLUMNS})


def pareto_front(df: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Rows not dominated in (x, y), both minimised."""
    data = df.dropna(subset=[x, y]).sort_values([x, y])
    front, best = [], float("inf")
    for _, row in data.iterrows():
        if row[y] < best:
            front.append(row)
            best = row[y]
    return pd.DataFrame(front)


def plot_pareto(df: pd.DataFrame, path: Path) -> Path:
    points = df.drop_duplicates("variant").dropna(subset=["bops", "nrmse"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (dataset, arch, resolution), group in points.groupby(["dataset", "arch", "resolution"]):
        ax.scatter(group["bops"], group["nrmse"], label=f"{dataset} {arch} r{resolution}")
        for _, row in group.iterrows():
            label = "fp32" if row["w_bits"] == 32 and row["a_bits"] == 32 else f"w{row['w_bits']}a{row['a_bits']}"
            ax.annotate(label, (row["bops"], row["nrmse"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    front = pareto_front(points, "bops", "nrmse")
    if not front.empty:
        ax.plot(front["bops"], front["nrmse"], "k--", lw=1, label="Pareto front")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("BOPs per solved field (bit operations, log scale)")
    ax.set_ylabel("one-step nRMSE (test set, reference grid, log scale)")
    ax.set_title("Accuracy vs integer cost")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _markdown(df: pd.DataFrame) -> str:
    shown = ["variant", "backend", "bops", "nrmse", "rollout_nrmse", "csim_samples", "csim_mismatches",
             "lut", "ff", "dsp", "latency_cycles", "fmax_mhz", "note"]
    table = df[shown].copy()
    table["nrmse"] = table["nrmse"].map(lambda v: f"{v:.4f}" if pd.notna(v) else "")
    table["rollout_nrmse"] = table["rollout_nrmse"].map(lambda v: f"{v:.4f}" if pd.notna(v) else "")
    table = table.astype(object).where(table.notna(), "")
    header = "| " + " | ".join(shown) + " |\n|" + "---|" * len(shown) + "\n"
    body = "".join("| " + " | ".join(str(v) for v in row) + " |\n" for row in table.itertuples(index=False))
    return header + body


def write_report(root: Path, variant_ids: list[str] | None = None) -> Path:
    """results.csv, report.md and pareto.png under root; returns the CSV path."""
    root = Path(root)
    df = results_table(root, variant_ids)
    csv = root / "results.csv"
    df.to_csv(csv, index=False)
    plot_pareto(df, root / "pareto.png")
    exact = df.dropna(subset=["csim_samples"])
    lines = [
        "# qpde report\n",
        f"{df['variant'].nunique()} variants, {len(df)} rows. Accuracy of quantized variants is measured "
        "with the exact golden (what the accelerator computes); empty hardware cells mean not run.\n",
        f"C simulation: {int(exact['csim_samples'].sum()) if not exact.empty else 0} test fields simulated, "
        f"{int(exact['csim_mismatches'].sum()) if not exact.empty else 0} mismatching the golden.\n",
        "![Pareto](pareto.png)\n",
        _markdown(df),
    ]
    (root / "report.md").write_text("\n".join(lines))
    log.info("report written to %s", root)
    return csv
