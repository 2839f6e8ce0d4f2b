"""C simulation against the golden: the whole test set, compared bit for bit."""

from __future__ import annotations

import numpy as np

from qpde import golden
from qpde.backends.hls4ml.convert import HLSProject
from qpde.backends.verdict import Verdict, compare
from qpde.ops import SPATIAL_OPS
from qpde.qgraph import QGraph


def csim_outputs(graph: QGraph, project: HLSProject, x: np.ndarray) -> np.ndarray:
    """C-simulation outputs for raw float model inputs x [n, *input]: quantized as the model's first
    Quant does (exactly), then streamed through the compiled hls4ml model.

    hls4ml holds the tensors of a convolutional graph channels-last ([W, C], [H, W, C]; see
    `convert._hls_shape`): a channels-first input such as a user CNN's [n, C, W] is moved to that
    layout on the way in and the output back on the way out (qpde's own models stream [n, N], C = 1)."""
    xq = golden.quantized_input(graph, x)
    channels_last = any(n.op_type in SPATIAL_OPS for n in graph.nodes)
    if channels_last and xq.ndim in (3, 4):
        xq = np.moveaxis(xq, 1, -1)
    out_shape = tuple(graph.output_shape[1:])
    out = project.predict(xq)
    if channels_last and len(out_shape) in (2, 3):
        return np.moveaxis(out.reshape((x.shape[0],) + out_shape[1:] + out_shape[:1]), -1, 1)
    return out.reshape((x.shape[0],) + out_shape)


def csim_verdict(graph: QGraph, project: HLSProject, x: np.ndarray) -> Verdict:
    return compare("hls4ml-csim", golden.run(graph, x), csim_outputs(graph, project, x))
