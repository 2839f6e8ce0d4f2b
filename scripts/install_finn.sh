#!/usr/bin/env bash
# Installs FINN (the pip-installable fork finn-plus, pinned) into its OWN venv, .venv-finn, next to
# the project's .venv. finn-plus pins brevitas==0.13.0 / onnx / onnxruntime / protobuf versions that
# conflict with qpde's pins (and brevitas 0.13.0 does not import under torch 2.13), so it can never
# share qpde's environment. qpde talks to this venv only through subprocesses
# (src/qpde/backends/finn/runner.py); see docs/finn.md. Safe to rerun. Vivado/Vitis are NOT needed for the
# estimate flow; qpde sets the placeholders FINN's imports want at run time.
#
#   scripts/install_finn.sh            # → .venv-finn (about 1–2 min with a warm pip cache)
#   FINN_VENV=/path/to/venv scripts/install_finn.sh
#   PYTHON=/path/to/python3.11 scripts/install_finn.sh
set -euo pipefail
cd "$(dirname "$0")/.."

FINN_PLUS_VERSION=1.6.1   # src/qpde/backends/finn/runner.py patches FINN internals known for this version
BREVITAS_VERSION=0.13.4   # finn-plus pins 0.13.0, which fails under torch 2.13 (Tensor.rename)
TORCH_VERSION=2.13.0
venv=${FINN_VENV:-.venv-finn}

python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 13))'; then
      python=$candidate; break
    fi
  done
fi
[ -n "$python" ] || { echo "install_finn.sh: Python 3.11 or 3.12 not found (set PYTHON=...)" >&2; exit 1; }

start=$(date +%s)
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip)
"${pip[@]}" install -q --upgrade pip

# 1. CPU torch first (a local wheel when the machine has one), so nothing later pulls a CUDA build.
if ! "$venv/bin/python" -c "import torch, sys; sys.exit(not torch.__version__.startswith('$TORCH_VERSION'))" 2>/dev/null; then
  wheel=$(ls /opt/wheels/torch-${TORCH_VERSION}+cpu-cp3*-*.whl 2>/dev/null | head -n 1 || true)
  if [ -n "$wheel" ]; then
    "${pip[@]}" install -q "$wheel"
  else
    "${pip[@]}" install -q "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu
  fi
fi
installed_torch=$("$venv/bin/python" -c 'import torch; print(torch.__version__)')

# 2. finn-plus and a brevitas that works with this torch, without finn-plus's conflicting pins.
"${pip[@]}" install -q --no-deps "finn-plus==$FINN_PLUS_VERSION" "brevitas==$BREVITAS_VERSION"

# 3. finn-plus's other requirements, read from its own metadata (brevitas left out, torch held).
mapfile -t reqs < <("$venv/bin/python" - <<'EOF'
import importlib.metadata as md
import re
out = []
for line in md.requires("finn-plus") or []:
    if "extra ==" in line:
        continue
    name = re.split(r"[ (<>=!~;\[]", line, maxsplit=1)[0].lower()
    if name in ("brevitas", "torch"):
        continue
    out.append(line.split(";")[0].replace("(", "").replace(")", "").replace(" ", ""))
print("\n".join(out))
EOF
)
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
echo "torch==$installed_torch" >"$constraints"
# brevitas 0.13.4's requirements, and psutil, which finn imports without declaring it.
"${pip[@]}" install -q -c "$constraints" "${reqs[@]}" \
  "setuptools>=77.0.3,<81" "dependencies==2.0.1" unfoldNd psutil packaging sympy "typing-extensions>=3.7.4"

echo "install_finn.sh: (pip's note that finn-plus requires brevitas==0.13.0 is expected: 0.13.0 does not run under torch $TORCH_VERSION)"

# 4. Smoke test: the builder imports with the same workarounds qpde's runner uses.
"$venv/bin/python" - <<'EOF'
import importlib.metadata as md, os, sys, tempfile
os.environ.setdefault("FINN_BUILD_DIR", tempfile.mkdtemp(prefix="finn_build_"))
os.environ.setdefault("XILINX_VIVADO", "/nonexistent/vivado")
try:
    import finn.xsi
    finn.xsi.SimEngine = None
except Exception:
    pass
import finn.builder.build_dataflow  # noqa: F401
import finn.builder.build_dataflow_config  # noqa: F401
print(f"install_finn.sh: finn-plus {md.version('finn-plus')}, brevitas {md.version('brevitas')}, "
      f"qonnx {md.version('qonnx')}, onnx {md.version('onnx')}, onnxruntime {md.version('onnxruntime')}, "
      f"torch {md.version('torch')} (python {sys.version.split()[0]})")
EOF
echo "install_finn.sh: done in $(( $(date +%s) - start )) s → $venv/bin/python (qpde finds it there; or set QPDE_FINN_PYTHON)"
