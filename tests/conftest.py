"""Shared fixtures: tiny trained-enough quantized FNOs exported to QONNX (cached per session)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from qpde.export import export_model
from qpde.models.fno import FNO1d, FNOConfig
from qpde.quant import parse_scenario

TINY = FNOConfig(width=4, modes=4, layers=2, proj=8)
TINY_N = 16


def calibrated(model: torch.nn.Module, n: int) -> torch.nn.Module:
    """Calibrate a model's activation scales (Brevitas collects stats for 30 training-mode steps)."""
    model.train()
    with torch.no_grad():
        for _ in range(32):
            model(torch.randn(8, n))
    return model.eval()


def calibrated_fno(scenario: str, seed: int = 0, n: int = TINY_N, shape: FNOConfig = TINY) -> FNO1d:
    """A tiny FNO whose activation scales are calibrated."""
    torch.manual_seed(seed)
    return calibrated(FNO1d(n, shape, parse_scenario(scenario)), n)


def assert_golden_equals_brevitas_and_qonnx(model, path, stride: int = 7) -> None:
    """Where every accumulator fits float32's 24-bit mantissa, Brevitas (float32), QONNX's executor
    (onnxruntime float32, every `stride`-th input) and the golden must agree exactly."""
    from qonnx.core.onnx_exec import execute_onnx

    from qpde import golden
    from qpde.qgraph import QGraph

    graph = QGraph(path)
    assert max(t.max_abs.bit_length() for t in graph.types.values() if t) <= 24
    x = edge_inputs(graph)
    expected = golden.run(graph, x)
    with torch.no_grad():
        brevitas = model(torch.from_numpy(x.astype(np.float32))).numpy().astype(np.float64)
    assert np.array_equal(expected, brevitas)
    qonnx_out = np.concatenate([
        execute_onnx(graph.model, {graph.input_name: x[i : i + 1].astype(np.float32)})[graph.output_name]
        for i in range(0, len(x), stride)
    ])
    assert np.array_equal(qonnx_out.astype(np.float64), expected[::stride])


def assert_csim_exact(graph, out_dir: Path, x: np.ndarray) -> np.ndarray:
    """Build the hls4ml project, C-simulate x and require every output to equal the golden's
    exactly (and not be trivially constant); returns the golden outputs."""
    from qpde import golden
    from qpde.config import HLSConfig
    from qpde.backends.hls4ml import build_project
    from qpde.backends.hls4ml.csim import csim_outputs
    from qpde.backends.verdict import compare

    project = build_project(graph, out_dir, HLSConfig())
    reference = golden.run(graph, x)
    actual = csim_outputs(graph, project, x)
    verdict = compare("csim", reference, actual)
    assert verdict.samples == len(x) and verdict.mismatching_samples == 0, verdict
    assert np.array_equal(reference, actual)
    assert len(np.unique(reference)) >= 8  # outputs are not trivially constant
    return reference


def exported_per_scenario(root: Path, make_model, n: int):
    """scenario → (Brevitas model from make_model(scenario), path of its cleaned QONNX export),
    each built once."""
    cache = {}

    def get(scenario: str):
        if scenario not in cache:
            model = make_model(scenario)
            cache[scenario] = (model, export_model(model, n, root / f"{scenario}.qonnx.onnx"))
        return cache[scenario]

    return get


@pytest.fixture(scope="session")
def tiny_qonnx(tmp_path_factory):
    return exported_per_scenario(tmp_path_factory.mktemp("qonnx"), calibrated_fno, TINY_N)


def edge_inputs(graph, n_random: int = 64, seed: int = 0) -> np.ndarray:
    """Inputs that hit the first quantizer's edges: every level, ties half an LSB above each level,
    just below each level, saturation far out, plus random fields. All float32-representable, so
    float32 consumers (Brevitas, onnxruntime) see the same values as the float64 golden."""
    from qpde.golden import run_prefix

    quant = next(n for n in graph.nodes if n.op_type == "Quant")
    params = graph.quant_params(quant, constant=False)
    levels = np.arange(params.qmin, params.qmax + 1, max(1, (params.qmax - params.qmin) // 64)) * params.scale
    n = graph.input_shape[1]
    candidates = np.concatenate([levels, levels + params.scale / 2, levels - params.scale * 2.0**-10,
                                 [params.qmin * params.scale * 4, params.qmax * params.scale * 4]])
    rng = np.random.default_rng(seed)
    rows = [rng.choice(candidates, size=n) for _ in range(32)]
    rows += [np.full(n, params.qmax * params.scale * 8), np.full(n, params.qmin * params.scale * 8)]
    rows += list(rng.normal(0, 1, size=(n_random, n)))
    run_prefix(graph, np.zeros((1, n)), quant)  # the input must reach the quantizer through shape ops only
    return np.asarray(rows, dtype=np.float32).astype(np.float64)
