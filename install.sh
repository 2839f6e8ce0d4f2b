#!/usr/bin/env bash
# Installs everything qpde needs: .venv with qpde and its pinned dependencies (CPU torch), and the
# open EDA tools from Debian when they are missing. Safe to rerun.
# Python 3.11 or 3.12. QPDE_TORCH=keep: use the torch 2.13 already installed for that Python (e.g.
# a GPU image's CUDA build; .venv then sees the system site-packages) instead of the CPU wheel.
set -euo pipefail
cd "$(dirname "$0")"

python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 12))'; then
      python=$candidate; break
    fi
  done
fi
[ -n "$python" ] || { echo "install.sh: Python 3.11 or 3.12 not found (set PYTHON=/path/to/python3.12)" >&2; exit 1; }
torch_mode=${QPDE_TORCH:-cpu}
case "$torch_mode" in
  cpu) ;;
  keep)
    version=$("$python" -c 'import torch; print(torch.__version__)' 2>/dev/null) || {
      echo "install.sh: QPDE_TORCH=keep but $python cannot import torch" >&2; exit 1; }
    case "$version" in
      2.13.*) echo "install.sh: keeping the installed torch $version" ;;
      *) echo "install.sh: QPDE_TORCH=keep: torch $version is not supported (qpde needs torch 2.13)" >&2; exit 1 ;;
    esac ;;
  *) echo "install.sh: QPDE_TORCH must be cpu (default) or keep, got '$torch_mode'" >&2; exit 1 ;;
esac

# System packages: a C++ compiler for hls4ml's C simulation, Yosys and Icarus Verilog for RTL.
missing=()
command -v g++ >/dev/null || missing+=(g++)
command -v make >/dev/null || missing+=(make)
command -v yosys >/dev/null || missing+=(yosys)
command -v iverilog >/dev/null || missing+=(iverilog)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ -n "$sudo" ] && ! command -v sudo >/dev/null; then
    echo "install.sh: missing ${missing[*]} and no root/sudo to apt-get install them" >&2; exit 1
  fi
  echo "install.sh: apt-get install ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

if [ "$torch_mode" = keep ]; then
  [ -x .venv/bin/python ] || "$python" -m venv --system-site-packages .venv
else
  [ -x .venv/bin/python ] || "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# CPU build of torch: a local wheel when the machine has one, else PyTorch's CPU index.
tag=$(.venv/bin/python -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
if [ "$torch_mode" = cpu ] && ! .venv/bin/python -c 'import torch, sys; sys.exit(torch.__version__ != "2.13.0+cpu")' 2>/dev/null; then
  wheel=$(ls /opt/wheels/torch-2.13.0+cpu-"$tag"-*.whl 2>/dev/null | head -n 1 || true)
  if [ -n "$wheel" ]; then
    .venv/bin/python -m pip install -q "$wheel"
  else
    .venv/bin/python -m pip install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
  fi
fi
.venv/bin/python -m pip install -q -e ".[test,ray]"
.venv/bin/qpde --help >/dev/null
# FINN (finn-plus) pins versions that conflict with qpde's, so it gets its own venv (.venv-finn);
# optional: without it `--backends finn` explains how to get it and FINN's tests skip.
if [ "${QPDE_NO_FINN:-0}" != "1" ]; then
  scripts/install_finn.sh || echo "install.sh: FINN could not be installed; the finn backend stays unavailable" >&2
fi
echo "install.sh: done. Run the tests with: .venv/bin/pytest"
