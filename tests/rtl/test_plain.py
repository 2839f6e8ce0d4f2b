"""The plain `*`-multiplier baseline of the LUT-ratio benchmark computes x @ W exactly (Yosys eval)."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from qpde.qgraph import QGraph
from qpde.backends.rtl.plain import matmul_layers, plain_verilog


@pytest.mark.skipif(shutil.which("yosys") is None, reason="needs Debian yosys (apt-get install -y yosys)")
def test_plain_verilog_computes_the_layer(tiny_mlp, tmp_path):
    graph = QGraph(tiny_mlp)
    layers = matmul_layers(graph)
    assert [la.copies for la in layers] == [1, 1]
    assert not layers[1].in_type.signed  # the second layer reads an unsigned (post-ReLU) activation
    rng = np.random.default_rng(0)
    for layer in layers:
        n_in, n_out = layer.weights.shape
        t, wi, wo = layer.in_type, layer.in_type.width, layer.out_type.width
        path = tmp_path / f"{layer.name}.v"
        path.write_text(plain_verilog(layer, "plain"))
        xs = [np.full(n_in, t.lo), np.full(n_in, t.hi)] + [rng.integers(t.lo, t.hi + 1, n_in) for _ in range(30)]
        cmds = [f"read_verilog {path}", "proc"]
        for x in xs:
            packed = sum((int(v) & ((1 << wi) - 1)) << (i * wi) for i, v in enumerate(x))
            cmds.append(f"eval -set model_inp {n_in * wi}'b{packed:0{n_in * wi}b} -show model_out")
        proc = subprocess.run(["yosys", "-p", "; ".join(cmds)], capture_output=True, text=True, timeout=120)
        out = proc.stdout
        assert proc.returncode == 0, proc.stderr[-2000:]
        # Yosys prints a constant of at most 32 bits in decimal, wider ones as N'bits
        found = re.findall(r"model_out = (?:\d+'([01]+)|(-?\d+))", out)
        values = [int(bits, 2) if bits else int(dec) & ((1 << (n_out * wo)) - 1) for bits, dec in found]
        assert len(values) == len(xs)
        for x, value in zip(xs, values):
            got = [(value >> (j * wo)) & ((1 << wo) - 1) for j in range(n_out)]
            got = [g - (1 << wo) if g >> (wo - 1) else g for g in got]
            assert got == list(x @ layer.weights), layer.name
