#!/usr/bin/env bash
# bf16 DPO on the embedded SmolLM2-135M, one epoch over a few thousand pairs, on one GPU (< 10 minutes):
# tokens/s, peak GPU memory, test-split reward accuracy before and after. See benchmarks/train_gpu.py.
#   benchmarks/train_gpu.sh [RUN_DIR] [--prompts N] [--batch-size B] [--out FILE]
# Needs the project's environment with the train extra and a CUDA torch (pip install -e ".[local,train]").
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false DO_NOT_TRACK=1 LITELLM_LOCAL_MODEL_COST_MAP=True
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
exec "$PY" -m benchmarks.train_gpu "$@"
