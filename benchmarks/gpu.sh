#!/usr/bin/env bash
# The GPU check, for when a GPU is lent (never run by CI): benchmarks/gpu.py runs each backend
# in its own process with its own budget and writes $OUT/bench-gpu.jsonl record by record.
# Set-up on the GPU machine: `make setup-gpu` (docs/gpu.md). Uses .venv's Python when there is
# one, else python3 (or $PYTHON). Extra arguments go to benchmarks/gpu.py.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
fi
exec "$python" -m benchmarks.gpu --out "${OUT:-.}" "$@"
