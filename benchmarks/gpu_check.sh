#!/usr/bin/env bash
# The prepared GPU check (benchmarks/gpu_check.py): under 5 minutes on one GPU, one line per figure;
# on a machine without CUDA one "no CUDA device" line and exit status 0.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" benchmarks/gpu_check.py "$@"
