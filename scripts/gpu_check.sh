#!/usr/bin/env bash
# GPU check: build morph3d with its CUDA kernels, run the CUDA tests (nvdiffrast backend against
# the CPU kernels, pixel_sample parity with grid_sample and bitwise determinism), then the
# rasterize and pixel_sample benchmarks on CUDA. Run it from anywhere on a machine with an NVIDIA
# GPU, a CUDA build of torch and nvcc:
#
#     bash scripts/gpu_check.sh
#
# Every step has its own time limit and the whole check stops starting new steps after
# GPU_CHECK_BUDGET_S seconds (default 480); a failing step does not stop the next ones. Logs and
# summary.txt (one line per step: status, seconds, what it ran) go to $OUT when it is set, else
# to build/gpu_check/. Exit status: 0 when every step passed, 1 otherwise.
set -u

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 1
PY="${PYTHON:-python}"
OUT_DIR="${OUT:-$REPO/build/gpu_check}"
BUDGET="${GPU_CHECK_BUDGET_S:-480}"
mkdir -p "$OUT_DIR"
SUMMARY="$OUT_DIR/summary.txt"
: > "$SUMMARY"
START=$SECONDS
FAILED=0
BUILT=0

# The in-place build below must win over any installed morph3d.
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export MORPH3D_FORCE_CUDA=1
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"

record() {  # record NAME STATUS SECONDS DETAIL
  printf '%-18s %-8s %5ss  %s\n' "$1" "$2" "$3" "$4" | tee -a "$SUMMARY"
  case "$2" in PASS) ;; *) FAILED=1 ;; esac
}

# step NAME LIMIT_S COMMAND...: run COMMAND with a time limit, log to $OUT_DIR/NAME.log.
step() {
  local name="$1" limit="$2"
  shift 2
  local left=$((BUDGET - (SECONDS - START) - 5))
  if ((left < 15)); then
    record "$name" SKIPPED 0 "no time left in the ${BUDGET}s budget"
    return 1
  fi
  ((limit > left)) && limit=$left
  local log="$OUT_DIR/$name.log" t0=$SECONDS rc
  echo "== $name (limit ${limit}s): $*" > "$log"
  timeout -k 10 "$limit" "$@" >> "$log" 2>&1
  rc=$?
  local took=$((SECONDS - t0)) status=PASS detail
  detail="$(grep -E '[0-9]+ (passed|failed|skipped|error)' "$log" | tail -n 1)"
  if ((rc == 124 || rc == 137)); then
    status=TIMEOUT
  elif ((rc != 0)); then
    status=FAIL
  elif grep -qE '[0-9]+ skipped' <<< "$detail"; then
    status=PARTIAL  # some checks did not run (no nvdiffrast, no device): not verified
  fi
  [[ -n $detail ]] || detail="rc=$rc: $(tail -n +2 "$log" | grep -v '^\s*$' | tail -n 1 | cut -c1-160)"
  record "$name" "$status" "$took" "$detail"
  [[ $status == PASS || $status == PARTIAL ]]
}

{
  echo "gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) in $REPO, budget ${BUDGET}s"
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -n 4
  else
    echo "nvidia-smi: not found"
  fi
  if command -v nvcc > /dev/null; then nvcc --version | tail -n 1; else echo "nvcc: not found"; fi
} | tee -a "$SUMMARY"

step environment 60 "$PY" -c '
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda)
assert torch.version.cuda, "torch is a CPU build: install a CUDA build of torch"
assert torch.cuda.is_available(), "torch.cuda.is_available() is False"
print("device", torch.cuda.get_device_name(0))
'

if step build 300 "$PY" setup.py build_ext --inplace; then
  step build_has_cuda 60 "$PY" -c '
import morph3d._ext as ext
assert ext.built_with_cuda(), "morph3d._C was built without its CUDA kernels"
print("morph3d._C built with CUDA")
' && BUILT=1
fi

if ((BUILT)); then
  # nvdiffrast: the optional backend the rasterizer tests compare against (it may JIT-compile
  # its CUDA plugin on first use, which the tests' limit allows for).
  step nvdiffrast 120 "$PY" -c 'import nvdiffrast.torch; print("nvdiffrast", nvdiffrast.__version__)'
  step cuda_tests 200 "$PY" -m pytest -q -rs -p no:cacheprovider -m cuda \
    tests/test_rasterize.py tests/test_pixel_sample.py tests/test_vertex_normals.py
  step bench_rasterize 150 "$PY" benchmarks/bench_rasterize.py --quick
  step bench_pixel_sample 120 "$PY" benchmarks/bench_pixel_sample.py --repeats 5
else
  for name in nvdiffrast cuda_tests bench_rasterize bench_pixel_sample; do
    record "$name" SKIPPED 0 "the CUDA build failed"
  done
fi

echo "total $((SECONDS - START))s; logs in $OUT_DIR" | tee -a "$SUMMARY"
exit "$FAILED"
