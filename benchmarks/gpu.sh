#!/usr/bin/env bash
# One-shot GPU evidence for a machine with a CUDA GPU: the benchmarks with --device cuda,
# then the CUDA test module (tests/test_cuda.py).
#
#   bash benchmarks/gpu.sh [WHEEL_DIR]
#
# Needs python3 with torch (CUDA), torchvision, numpy, pluggy and pytest; limelight runs from
# src/ (no install). Optional peers (TensorFlow, shap, Captum, pytorch-grad-cam) are used when
# installed and skipped otherwise. WHEEL_DIR (or $WHEELS): wheels to install first into a
# private folder, e.g. array-api-compat where it is missing. Output goes to the terminal and
# to $LOG_DIR (default: $OUT when set, else out/gpu). Exit status: non-zero if any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
WHEELS=${1:-${WHEELS:-}}
LOG=${LOG_DIR:-${OUT:-out/gpu}}
mkdir -p "$LOG"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3

if [ -n "$WHEELS" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/limelight-site "$WHEELS"/*.whl || exit 1
    export PYTHONPATH=/tmp/limelight-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}

"$PY" - <<'EOF' || exit 1
import torch, array_api_compat, limelight
assert torch.cuda.is_available(), "no CUDA GPU visible to torch"
print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, limelight {limelight.__version__}, "
      f"array-api-compat {array_api_compat.__version__}")
EOF

status=0
"$PY" benchmarks/bench_gradcam.py --device cuda --only torch 2>&1 | tee "$LOG/bench_gradcam.md" || status=1
"$PY" benchmarks/bench_shap.py --device cuda 2>&1 | tee "$LOG/bench_shap.md" || status=1
"$PY" benchmarks/bench_gradient_free.py --device cuda --batch 16 2>&1 | tee "$LOG/bench_gradient_free.md" || status=1
"$PY" -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py 2>&1 | tee "$LOG/test_cuda.txt" || status=1
exit $status
