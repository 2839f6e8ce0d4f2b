"""FINN backend: FINN's build steps on a QONNX model, run in FINN's own Python environment.

`backend` (this environment: detection, the subprocess, report parsing, golden comparison) runs
`runner.py` as a script with FINN's interpreter; the runner imports only FINN. See docs/finn.md.
"""

from qpde.backends.finn.backend import finn_available, run_finn

__all__ = ["finn_available", "run_finn"]
