"""The joined table (results.csv), report.md and plots, built from the artifacts on disk.

One row per variant × backend, with DESIGN.md's columns. Empty cells mean "not run", never 0;
`estimate` is true only when a hardware figure is a model rather than a synthesis result."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from qpde.backends import BACKENDS  # noqa: E402
from qpde.config import Variant  # noqa: E402
from qpde.layout import Layout, read_json  # noqa: E402
from qpde.quant import parse_scenario  # noqa: E402

log = logging.getLogger(__name__)

COLUMNS = [
    "variant", "dataset", "arch", "w_bits", "a_bits", "state_bits", "rounding", "resolution", "params", "macs",
    "bops", "macs_dense", "bops_dense", "nrmse", "mse", "rollout_nrmse", "backend", "tool", "tool_version", "target",
    "folding", "lut", "ff", "dsp", "bram", "carry", "latency_cycles", "ii_cycles", "fmax_mhz", "fields_per_s",
    "csim_samples", "csim_mismatches", "rtlsim_samples", "rtlsim_mismatches", "finn_exec_samples", "finn_exec_mismatches",
    "estimate", "note",
]
# Counts that are integers by definition: nullable Int64 keeps "not run" empty instead of 120.0.
INTEGER_COLUMNS = ["w_bits", "a_bits", "state_bits", "resolution", "params", "macs", "bops", "macs_dense",
                   "bops_dense", "csim_samples", "csim_mismatches", "rtlsim_samples", "rtlsim_mismatches",
                   "finn_exec_samples", "finn_exec_mismatches"]


HARDWARE_COUNTS = ["lut", "ff", "dsp", "bram", "carry", "latency_cycles", "ii_cycles"]


def variant_rows(root: Path, variant_id: str) -> list[dict]:
    """Rows of one variant from its artifacts (paths from the `Layout`): accuracy/cost, then one row
    per hardware backend run."""
    layout = Layout(root)
    variant = Variant.parse(variant_id)
    spec = parse_scenario(variant.scenario)
    metrics = read_json(layout.metrics(variant))
    failed = layout.error(variant, "metrics")
    base = {
        "variant": variant_id, "dataset": variant.dataset, "arch": variant.arch,
        "w_bits": spec.w_bits or 32, "a_bits": spec.a_bits or 32, "resolution": variant.resolution,
    }
    died = layout.error(variant, "worker")
    if died.is_file():  # its worker process died (segfault, OOM kill): one row saying so
        return [{**base, "backend": "none", "note": died.read_text().strip()}]
    if failed.is_file():  # trained, but its graph cannot be evaluated exactly: one row with the reason
        return [{**base, "backend": "none", "note": failed.read_text().strip()}]
    if metrics is None:
        return []
    base.update({k: metrics.get(k) for k in ("params", "macs", "bops", "macs_dense", "bops_dense", "nrmse", "mse",
                                               "rollout_nrmse", "state_bits", "rounding")})
    if spec.is_float:
        return [{**base, "backend": "pytorch", "tool": "torch", "note": "float reference"}]
    rows = []
    for backend, entry in BACKENDS.items():
        row = {**base, "backend": backend}
        error = layout.error(variant, backend)
        hardware = read_json(layout.row(variant, backend))
        verdict = read_json(layout.sim(variant) / entry.verdict_file) if entry.verdict_file else None
        if not (error.is_file() or hardware or verdict):
            continue
        if verdict:
            row.update({f"{entry.verdict_columns}_samples": verdict["samples"],
                        f"{entry.verdict_columns}_mismatches": verdict["mismatching_samples"]})
            if backend == "hls4ml":
                import hls4ml

                row.update(tool="hls4ml", tool_version=hls4ml.__version__, folding=_hls_folding(root, variant_id))
        if hardware and backend == "hls4ml" and all(hardware.get(k) is None for k in ("lut", "latency_cycles")):
            row["note"] = hardware.get("note")  # vendor tools not run: the row stays hls4ml's C-sim verdict
        elif hardware:
            row.update({k: v for k, v in hardware.items() if k in COLUMNS})
        elif backend == "hls4ml":
            row["note"] = "C-sim only: vendor tools (vitis-run/vitis_hls, vivado) not run"
        if error.is_file():
            row["note"] = error.read_text().strip()
        if hardware and "designs" in hardware and not error.is_file():  # the folded backend: a row per folding
            rows += [{**base, "backend": backend, **{k: v for k, v in design.items() if k in COLUMNS}}
                     for design in hardware["designs"]]
            continue
        rows.append(row)
    return rows


def _hls_folding(root: Path, variant_id: str) -> str | None:
    """The hls4ml project's per-layer Strategy/ReuseFactor in one line (qpde.backends.hls4ml.folding)."""
    from qpde.backends.hls4ml.folding import FOLDING_FILE, LayerFolding, summary

    saved = read_json(Layout(root).hls(variant_id) / FOLDING_FILE)
    if saved is None:
        return None
    return summary({name: LayerFolding(f["n_in"], f["n_out"], f["strategy"], f["reuse_factor"])
                    for name, f in saved.items()})


def results_table(root: Path, variant_ids: list[str] | None = None) -> pd.DataFrame:
    if variant_ids is None:
        variant_ids = Layout(root).variant_ids()
    rows = [row for vid in variant_ids for row in variant_rows(root, vid)]
    df = pd.DataFrame(rows, columns=COLUMNS)
    df = df.astype({col: "Int64" for col in INTEGER_COLUMNS})
    # Resource and cycle counts are integers wherever a tool reports them so (FINN's estimates may not be)
    for col in HARDWARE_COUNTS:
        values = pd.to_numeric(df[col], errors="coerce")
        if values.dropna().mod(1).eq(0).all():
            df[col] = values.astype("Int64")
    return df


def pareto_front(df: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Rows not dominated in (x, y), both minimised."""
    data = df.dropna(subset=[x, y]).sort_values([x, y])
    front, best = [], float("inf")
    for _, row in data.iterrows():
        if row[y] < best:
            front.append(row)
            best = row[y]
    return pd.DataFrame(front)


def _scenario_label(row) -> str:
    return "fp32" if row["w_bits"] == 32 and row["a_bits"] == 32 else f"w{row['w_bits']}a{row['a_bits']}"


MARKERS = {"fp32": "*", "w4a4": "v", "w4a8": "<", "w8a8": "o", "w8a16": "s", "w8a32": "D"}


def _save_loglog(fig, ax, path: Path, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_pareto(df: pd.DataFrame, path: Path) -> Path:
    """nRMSE vs BOPs: colour = resolution series, marker = quantization scenario, dashed = the
    Pareto front of each dataset × architecture."""
    points = df.drop_duplicates("variant").dropna(subset=["bops", "nrmse"]).copy()
    x, y = (pd.to_numeric(points[c], errors="coerce").astype(float) for c in ("bops", "nrmse"))
    points = points[x.gt(0) & y.gt(0) & x.lt(float("inf")) & y.lt(float("inf"))]  # a log plot of finite values
    points["scenario"] = points.apply(_scenario_label, axis=1) if len(points) else []
    fig, ax = plt.subplots(figsize=(8, 5))
    if len(points):  # explicit limits: one point (or one value per axis) leaves log autoscaling empty
        for setter, col in ((ax.set_xlim, "bops"), (ax.set_ylim, "nrmse")):
            values = points[col].astype(float)
            setter(values.min() / 2, values.max() * 2)
    else:
        ax.set_xlim(1, 10)
        ax.set_ylim(0.1, 1)
        ax.text(0.5, 0.5, "no finite nRMSE / BOPs to plot", transform=ax.transAxes, ha="center")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    series = list(points.groupby(["dataset", "arch", "resolution"]))
    for index, ((dataset, arch, resolution), group) in enumerate(series):
        colour = colours[index % len(colours)]
        for _, row in group.iterrows():
            ax.scatter(row["bops"], row["nrmse"], color=colour, marker=MARKERS.get(row["scenario"], "o"), s=45)
            ax.annotate(row["scenario"], (row["bops"], row["nrmse"]), textcoords="offset points", xytext=(4, 4),
                        fontsize=7)
        ax.plot([], [], color=colour, marker="o", ls="", label=f"{dataset} {arch}, resolution {resolution}")
    for (dataset, arch), group in points.groupby(["dataset", "arch"]):
        front = pareto_front(group, "bops", "nrmse")
        if len(front) > 1:
            ax.plot(front["bops"], front["nrmse"], "k--", lw=1)
    ax.plot([], [], "k--", lw=1, label="Pareto front (per dataset × arch)")
    _save_loglog(fig, ax, path, "BOPs per solved field (bit operations, log scale)",
                 "one-step nRMSE (test set, reference grid, log scale)",
                 "Accuracy vs integer cost (marker = quantization scenario)")
    return path


def _series_label(row) -> str:
    """A hardware series: one backend at one resolution and folding. Not the tool string, which
    differs within a series (e.g. "yosys + nextpnr-ecp5" only for the points that were placed)."""
    folding = f", {row['folding']}" if isinstance(row.get("folding"), str) and row["folding"] else ""
    return f"{row['backend']}, r{row['resolution']}{folding}"


def hardware_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows with synthesis (or estimated) figures, labelled by scenario and series."""
    hw = df.dropna(subset=["lut"]).copy()
    if hw.empty:
        return hw
    hw["scenario"] = hw.apply(_scenario_label, axis=1)
    hw["series"] = hw.apply(_series_label, axis=1)
    hw["is_estimate"] = hw["estimate"].map(lambda e: str(e).lower() == "true")
    return hw


def bit_order(group: pd.DataFrame) -> list[str]:
    """Scenarios on the x axis by weight bits, then activation bits (w4a4 < w4a8 < w8a8 < …)."""
    return [f"w{w}a{a}" for w, a in sorted(set(zip(group["w_bits"], group["a_bits"])))]


def resource_panels(group: pd.DataFrame) -> list[str]:
    """The figures some design actually has (an all-zero DSP panel says nothing)."""
    return [m for m in ("lut", "ff", "dsp", "bram") if pd.to_numeric(group[m], errors="coerce").fillna(0).gt(0).any()]


def plot_hardware(df: pd.DataFrame, root: Path) -> list[Path]:
    """Per architecture: LUT/FF/DSP/BRAM vs bit width (x in bit order, one series per backend,
    resolution and folding, estimates hollow); and LUTs vs throughput across foldings."""
    hw = hardware_rows(df)
    if hw.empty:
        return []
    paths = []
    for arch, group in hw.groupby("arch"):
        order = bit_order(group)
        position = {scenario: i for i, scenario in enumerate(order)}
        metrics = resource_panels(group)
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 4), squeeze=False)
        for ax, metric in zip(axes[0], metrics):
            for series_name, series in group.dropna(subset=[metric]).groupby("series"):
                series = series.assign(x=series["scenario"].map(position)).sort_values("x")
                line = ax.plot(series["x"], series[metric], marker="o", label=series_name)[0]
                guessed = series[series["is_estimate"]]
                ax.scatter(guessed["x"], guessed[metric], s=60, facecolors="white", edgecolors=line.get_color(),
                           zorder=3)
            ax.set_xticks(range(len(order)), order)
            ax.set_title(f"{arch}: {metric.upper()} vs bit width")
            ax.set_xlabel("quantization scenario (weight, activation bits)")
            ax.set_ylabel(f"{metric.upper()} (count)")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7, title="hollow = estimate" if group["is_estimate"].any() else None,
                      title_fontsize=7)
        fig.tight_layout()
        path = root / f"resources_{arch}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    speed = hw.dropna(subset=["fields_per_s"])
    if not speed.empty:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for (arch, backend, scenario), series in speed.groupby(["arch", "backend", "scenario"]):
            series = series.sort_values("fields_per_s")  # one line across the foldings of one design
            ax.plot(series["lut"], series["fields_per_s"], marker=MARKERS.get(scenario, "o"),
                    label=f"{arch} {scenario} ({backend})")
        path = root / "throughput_vs_lut.png"
        _save_loglog(fig, ax, path, "LUTs (count, log scale)", "throughput (solved fields per second, log scale)",
                     "Throughput vs area across foldings")
        paths.append(path)
    return paths


def _tables(df: pd.DataFrame) -> str:
    """One table per dataset × architecture, as a person reads them."""
    return "\n".join(f"## {dataset} / {arch}\n\n{_markdown(group)}" for (dataset, arch), group in
                     df.groupby(["dataset", "arch"], sort=True))


def _markdown(df: pd.DataFrame) -> str:
    shown = ["variant", "backend", "bops", "bops_dense", "nrmse", "rollout_nrmse", "csim_samples",
             "csim_mismatches", "lut", "ff", "dsp", "latency_cycles", "fmax_mhz", "note"]
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
    layout = Layout(root)
    df = results_table(root, variant_ids)
    csv = layout.results
    df.to_csv(csv, index=False)
    plot_pareto(df, root / "pareto.png")
    hardware_plots = plot_hardware(df, root)
    exact = df.dropna(subset=["csim_samples"])
    lines = [
        "# qpde report\n",
        f"{df['variant'].nunique()} variants, {len(df)} rows. Accuracy of quantized variants is measured "
        "with the exact golden (what the accelerator computes); empty hardware cells mean not run.\n",
        f"C simulation: {int(exact['csim_samples'].sum()) if not exact.empty else 0} test fields simulated, "
        f"{int(exact['csim_mismatches'].sum()) if not exact.empty else 0} mismatching the golden.\n",
        "![Pareto](pareto.png)\n",
        *(f"![{p.stem}]({p.name})\n" for p in hardware_plots),
        "" if hardware_plots else "No hardware figures yet (LUT/FF/DSP come from synthesis backends).\n",
        _tables(df),
    ]
    layout.report.write_text("\n".join(lines))
    log.info("report written to %s", root)
    return csv
