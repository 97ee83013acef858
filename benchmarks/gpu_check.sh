#!/usr/bin/env bash
# One GPU check of every CUDA path (see benchmarks/gpu_check.py for the steps): CUDA-marked tests,
# a 1-process NCCL torchrun training with --norm syncbatch, the train-step ratio at batch 1 and 16,
# FCN-8s images/s at 1024x2048, peak memory; one table on stdout, the same as JSON (--json).
#
#   bash benchmarks/gpu_check.sh                      # on a machine with one CUDA GPU (under 8 minutes)
#   bash benchmarks/gpu_check.sh --dry-run            # the whole script on the CPU with tiny sizes
#   bash benchmarks/gpu_check.sh --json out/gpu.json  # where the JSON goes (default ./gpu_check.json)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python}"
if [ -x "$here/../.venv/bin/python" ] && [ -z "${PYTHON:-}" ]; then
    python="$here/../.venv/bin/python"
fi
exec "$python" "$here/gpu_check.py" "$@"
