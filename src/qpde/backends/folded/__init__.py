"""Folded streaming dataflow RTL backend: every layer a stream unit (MVAU with PE×SIMD folding,
add, transpose, …) in hand-written Verilog-2005, connected by valid/ready streams. See docs/folded.md.

    design = build_folded(qonnx_path, out_dir, folding)    # folding: optimize(build_dataflow(g)).layers
    verdict = folded_verdict(graph, design, x)             # Verilator with stalls == qpde.golden, II measured
"""

from qpde.backends.folded.compile import elaborate
from qpde.backends.folded.fold import Folding, cycle_model, optimize, validate
from qpde.backends.folded.graph import Dataflow, build_dataflow
from qpde.backends.folded.sim import FoldedDesign, build_folded, folded_verdict, lint, load_folded, simulate_codes

__all__ = ["Dataflow", "FoldedDesign", "Folding", "build_dataflow", "build_folded", "cycle_model", "elaborate",
           "folded_verdict", "lint", "load_folded", "optimize", "simulate_codes", "validate"]
