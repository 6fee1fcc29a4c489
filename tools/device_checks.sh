#!/usr/bin/env bash
# The GPU checks (docs/gpu.md), in one run on a machine with an NVIDIA GPU, from the
# repository root: CUDA parity tests, the service on CUDA, `poolops bench serve` for
# effnet-lite0-imagenet at 224x224, `poolops bench ops --device cuda`. Each step has its
# own time bound and writes its output under $OUT (default /tmp/poolops-gpu).
#
# Needs python3 with torch (CUDA) and the NVIDIA CUDA 13 / cuDNN 9 wheels, onnxruntime-gpu
# importable (e.g. PYTHONPATH=/tmp/site), the service's wheels in .gpu2/whl when they
# are not installed, and models/zoo/effnet-lite0-imagenet built (`poolops export`).
# DEVICE=cpu QUICK=--quick runs the same steps on a machine without a GPU (a dry run).
set -u
OUT=${OUT:-/tmp/poolops-gpu}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CUDA_MODULE_LOADING=LAZY
if ls .gpu2/whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site2 .gpu2/whl/*.whl
  export PYTHONPATH=/tmp/site2:${PYTHONPATH:-}
fi
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/tmp/poolops-install.txt 2>&1 || tail -5 /tmp/poolops-install.txt
# ONNX Runtime's CUDA provider finds cuBLAS, cuRAND, cuDNN by soname: the NVIDIA wheels' lib folders
NV=$(python3 -c "import nvidia, os; print(list(nvidia.__path__)[0])" 2>/dev/null)
[ -n "$NV" ] && export LD_LIBRARY_PATH=$(find "$NV" -name 'lib*.so*' -printf '%h\n' | sort -u | paste -sd:):${LD_LIBRARY_PATH:-}

{
  [ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv
  python3 - <<'EOF'
import platform, onnxruntime as ort, torch
print("python", platform.python_version(), "| onnxruntime", ort.__version__, ort.get_available_providers(),
      "| torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name())
EOF
  nproc; grep -m1 "model name" /proc/cpuinfo
} 2>&1 | tee "$OUT/device.txt"

step() {  # step NAME SECONDS CMD...: bounded, output to $OUT/NAME.txt and the log
  local name=$1 secs=$2; shift 2
  echo "=== $name (bound ${secs}s) ==="
  local t0=$SECONDS
  timeout -k 5 "$secs" "$@" >"$OUT/$name.txt" 2>&1
  local rc=$?
  tail -n 25 "$OUT/$name.txt"
  echo "=== $name: rc=$rc in $((SECONDS - t0))s ==="
}

# two runs, so that a run cut at its bound still leaves the other's failure summary
PYTEST="python3 -m pytest tests/poolops/test_cuda_parity.py tests/poolops/onnx/test_cuda_kernels.py -q -rfE --tb=short -p no:cacheprovider"
step parity_fixed 60 $PYTEST -k "not drawn"
POOLOPS_CUDA_EXAMPLES=${POOLOPS_CUDA_EXAMPLES:-5} step parity_drawn 90 $PYTEST -k drawn

POOLOPS_UI=false POOLOPS_BUILD_MISSING=false poolops serve --device "$DEVICE" --host 127.0.0.1 --port 8765 \
  >"$OUT/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 45); do curl -sf localhost:8765/readyz >/dev/null && break; sleep 1; done
step service 45 python3 -m poolops_service.device_check http://127.0.0.1:8765
kill $SERVER; wait $SERVER 2>/dev/null

POOLOPS_DEVICE=$DEVICE step bench_serve 100 poolops bench serve --model effnet-lite0-imagenet --size 224 \
  --concurrency 1 32 --requests 200 --markdown $QUICK
step bench_ops 120 poolops bench ops --device "$DEVICE" --markdown $QUICK
