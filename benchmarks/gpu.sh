#!/usr/bin/env bash
# The GPU benchmark, for when a GPU is lent (never run by CI): the chapter's code against
# nin's fast path on the first GPU, every backend whose GPU build is installed, at 224 and 96,
# batch 128. Budget: under 5 minutes. Writes bench-gpu.json and gpu-name.txt to $OUT (or .).
#   PyTorch: `pip install torch==2.13.0` takes the CUDA build on a GPU machine.
#   TensorFlow: needs `tensorflow[and-cuda]==2.15.1`; MXNet: an `mxnet-cuXXX` build.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-.}"
python="${PYTHON:-.venv/bin/python}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu-name.txt"
backends=$("$python" - <<'PY'
import importlib
found = []
for name, probe in (("torch", "import torch; assert torch.cuda.is_available()"),
                    ("tensorflow", "import tensorflow as tf; assert tf.config.list_physical_devices('GPU')"),
                    ("mxnet", "import mxnet as mx; assert mx.context.num_gpus() > 0")):
    try:
        exec(probe)
        found.append(name)
    except Exception:
        pass
print(",".join(found))
PY
)
echo "backends with a GPU build: ${backends:-none}"
[ -n "$backends" ] || exit 1
timeout 290 "$python" -m benchmarks.train --device gpu --backend "$backends" \
  --size 224 96 --batch-size 128 --steps 10 --json > "$out/bench-gpu.json"
echo "wrote $out/bench-gpu.json"
