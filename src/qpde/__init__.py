"""qpde: neural PDE solvers -> QAT (Brevitas) -> QONNX -> verified FPGA accelerators."""

__version__ = "0.1.0"
