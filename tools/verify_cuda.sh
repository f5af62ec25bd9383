#!/usr/bin/env bash
# Verification of the CUDA module on a GPU machine, in one command (issue 19,
# docs/design.md "CUDA backend"):
#   1. preflight: a visible NVIDIA GPU, nvcc, and the Python modules the build
#      and the tests need (no network is used: --no-build-isolation --no-deps);
#   2. build and install: pip install --no-build-isolation --no-deps . with
#      BAYESGRAD_CUDA=ON (architectures 80 and 90, as in CI);
#   3. tests on the installed package: tests/test_cuda.py (every CUDA kernel
#      against the NumPy twin; BAYESGRAD_REQUIRE_GPU=1 turns a skip into a
#      failure, BAYESGRAD_CUDA_SYNC=1 names the kernel of an execution error),
#      the CPU tests of the shared per-element code, and, once _cuda has every
#      concept, the whole suite with BAYESGRAD_BACKEND=cuda;
#   4. bench/cuda.py (GPU benchmarks against the device's limits and PyTorch);
#   5. on success: the record python/bayesgrad/_cuda_verified.json (date,
#      device, driver, what was verified, a hash of the sources), also copied
#      into the installed package and $OUT.
# Everything it writes goes under $OUT (default ./verify_cuda_out): verify.log,
# build.log, the JUnit XML of each test run, cuda_bench.json, summary.json and
# the record, which the lead commits with the code it verified.
# Sized for about 10 minutes of device time on one GPU; each step has a
# timeout. Exit status: 0 verified, 1 a step failed, 2 the machine cannot run
# the verification (no GPU, no nvcc, a missing module): nothing is written in
# the repository then.
# The GPU machine has no network: Python modules it lacks (SciPy,
# scipy-openblas32 and pytest are not part of a CUDA + PyTorch image) are
# installed from a wheelhouse, $WHEELHOUSE (default build/wheelhouse), which
# `tools/verify_cuda.sh --fetch-wheels` fills on a machine with network
# (Python 3.12, x86-64 Linux wheels, about 45 MB; pass it to the device run
# as a carried path).
# Usage: tools/verify_cuda.sh [--preflight | --fetch-wheels]
#   --preflight: step 1 only; --fetch-wheels: fill the wheelhouse, nothing else.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WHEELHOUSE=${WHEELHOUSE:-$ROOT/build/wheelhouse}
if [ "${1:-}" = "--fetch-wheels" ]; then
  mkdir -p "$WHEELHOUSE"
  SCIPY=$(${PYTHON:-python3} -c "import scipy; print(scipy.__version__)" 2>/dev/null || echo 1.17.1)
  exec ${PYTHON:-python3} -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    -d "$WHEELHOUSE" "scipy==$SCIPY" scipy-openblas32==0.3.34.481.3 pytest pluggy iniconfig packaging pygments
fi
OUT=${OUT:-$ROOT/verify_cuda_out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/verify.log") 2>&1
PY=${PYTHON:-python3}
T0=$(date +%s)
STEPS=()
say() { echo "[verify_cuda +$(( $(date +%s) - T0 ))s] $*"; }
summary() {  # status, message
  "$PY" - "$OUT/summary.json" "$1" "$2" ${STEPS[@]+"${STEPS[@]}"} <<'EOF'
import json, sys
path, status, message, *steps = sys.argv[1:]
json.dump({"status": status, "message": message, "steps": steps}, open(path, "w"), indent=1)
EOF
}
stop() {  # exit status, message
  say "STOPPED: $2"
  say "the verification record was NOT written"
  summary "$([ "$1" = 2 ] && echo unavailable || echo failed)" "$2"
  exit "$1"
}
step() {  # name, timeout seconds, command...
  local name=$1 limit=$2
  shift 2
  say "step $name (limit ${limit}s): $*"
  local t=$(date +%s)
  timeout "$limit" "$@"
  local rc=$?
  STEPS+=("$name: rc=$rc in $(( $(date +%s) - t ))s")
  [ $rc -eq 124 ] && say "step $name timed out after ${limit}s"
  return $rc
}

# ---------------------------------------------------------------- 1. preflight
unset PYTHONPATH  # the tests must import the installed package, not python/
command -v "$PY" >/dev/null || stop 2 "no Python interpreter ($PY)"
if ! command -v nvidia-smi >/dev/null; then
  stop 2 "no NVIDIA driver on this machine (nvidia-smi not found): no GPU to verify on"
fi
GPUS=$(nvidia-smi -L 2>&1) || stop 2 "nvidia-smi failed: $GPUS"
echo "$GPUS" | grep -q "^GPU " || stop 2 "nvidia-smi lists no GPU: $GPUS"
say "GPUs: $GPUS"
if ! command -v nvcc >/dev/null; then
  for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do
    [ -x "$d/nvcc" ] && { export PATH="$d:$PATH"; break; }
  done
fi
command -v nvcc >/dev/null || stop 2 "nvcc not found (PATH, /usr/local/cuda/bin): cannot build the CUDA module"
say "nvcc: $(nvcc --version | tail -1)"
missing_modules() {
  "$PY" - <<'EOF'
import importlib
need = ["numpy", "scipy", "scipy_openblas32", "pybind11", "scikit_build_core", "pytest", "cupy"]
missing = []
for m in need:
    try:
        importlib.import_module(m)
    except Exception:  # absent, or present but broken (an incompatible NumPy, say)
        missing.append(m)
print(" ".join(missing))
EOF
}
pip_install() {  # PEP 668 images refuse plain installs; this machine is ours for the run
  "$PY" -m pip install "$@" || "$PY" -m pip install "$@" --break-system-packages
}
MISSING=$(missing_modules)
if [ -n "$MISSING" ] && [ -d "$WHEELHOUSE" ]; then
  WHEELS=()
  for m in $MISSING; do
    case $m in
      scipy) WHEELS+=(scipy) ;;
      scipy_openblas32) WHEELS+=(scipy-openblas32) ;;
      pytest) WHEELS+=(pytest pluggy iniconfig packaging pygments) ;;
    esac
  done
  if [ ${#WHEELS[@]} -gt 0 ]; then
    say "installing from the wheelhouse $WHEELHOUSE (no network): ${WHEELS[*]}"
    for w in "${WHEELS[@]}"; do  # one at a time: a wheel that does not fit must not block the others
      pip_install --no-index --no-deps --find-links "$WHEELHOUSE" "$w" >>"$OUT/wheelhouse.log" 2>&1 \
        || say "wheelhouse: $w did not install (wheelhouse.log)"
    done
    MISSING=$(missing_modules)
  fi
fi
[ -n "$MISSING" ] && stop 2 "missing Python modules (no network here; wheelhouse: $WHEELHOUSE): $MISSING"
DEVICE=$("$PY" -c "import cupy; p = cupy.cuda.runtime.getDeviceProperties(0); n = p['name']; print(n.decode() if isinstance(n, bytes) else n)" 2>&1) \
  || stop 2 "CuPy cannot use the GPU: $DEVICE"
say "device 0 (CuPy): $DEVICE; Python $("$PY" -c 'import sys; print(sys.version.split()[0])')"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null \
  && say "PyTorch CUDA: available (benchmark baseline)" || say "PyTorch CUDA: not available (benchmark without it)"
STEPS+=("preflight: ok")
[ "${1:-}" = "--preflight" ] && { summary preflight "preflight passed"; say "preflight passed"; exit 0; }

# ---------------------------------------------------------------- 2. build
export BAYESGRAD_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
PIP=("$PY" -m pip install --no-build-isolation --no-deps -v -Ccmake.define.BAYESGRAD_CUDA=ON .)
if ! step build 420 "${PIP[@]}" >"$OUT/build.log" 2>&1; then
  if grep -q "externally-managed-environment" "$OUT/build.log"; then
    step build-retry 420 "${PIP[@]}" --break-system-packages >"$OUT/build.log" 2>&1 \
      || { tail -40 "$OUT/build.log"; stop 1 "build failed (build.log)"; }
  else
    tail -40 "$OUT/build.log"
    stop 1 "build failed (build.log)"
  fi
fi
grep "bayesgrad: CUDA" "$OUT/build.log" | tail -1
PKG=$(cd / && "$PY" -c "import bayesgrad, os; print(os.path.dirname(bayesgrad.__file__))") || stop 1 "the installed package does not import"
STATUS=$(cd / && "$PY" -c "
import bayesgrad._cuda as c
assert c.device_count() > 0, 'the CUDA module sees no device'
print(c.build_status)" 2>&1) || stop 1 "bayesgrad._cuda does not import or sees no device: $(echo "$STATUS" | tail -1)"
say "installed $PKG; _cuda: $STATUS"
case "$STATUS" in built*"sm 80,90"*) ;; *) stop 1 "the CUDA module was not built for sm 80 and 90: $STATUS" ;; esac

# ---------------------------------------------------------------- 3. tests
XDIST=()
"$PY" -c "import xdist" 2>/dev/null && XDIST=(-n 8)
PYTEST=("$PY" -m pytest -q -rs -p no:cacheprovider)
# A failing test does not stop the run before the benchmarks (the device time
# is scarce and their figures are worth having); it stops it before the record.
FAILED=""
BAYESGRAD_REQUIRE_GPU=1 BAYESGRAD_CUDA_SYNC=1 step test_cuda 180 "${PYTEST[@]}" tests/test_cuda.py \
  --junitxml="$OUT/test_cuda.xml" || FAILED="tests/test_cuda.py failed (test_cuda.xml)"
step test_shared_cpu 240 "${PYTEST[@]}" ${XDIST[@]+"${XDIST[@]}"} tests/test_random.py tests/test_distributions.py \
  tests/test_estimators.py tests/test_uncertainty.py tests/test_acquisition.py tests/test_nn.py tests/test_backend.py \
  tests/test_simd.py \
  --junitxml="$OUT/test_shared_cpu.xml" || FAILED="${FAILED:+$FAILED; }the CPU tests of the shared code failed"
FULL=$(cd / && "$PY" -c "from bayesgrad import _backend as b; print(int(b._cuda_has_kernels()), ','.join(b._cuda_concepts()))")
CONCEPTS=${FULL#* }
if [ "${FULL%% *}" = 1 ] && [ -z "$FAILED" ]; then
  BAYESGRAD_BACKEND=cuda BAYESGRAD_CUDA_VERIFYING=1 step suite_on_cuda 420 "${PYTEST[@]}" ${XDIST[@]+"${XDIST[@]}"} tests \
    --junitxml="$OUT/suite_on_cuda.xml" || stop 1 "the suite failed on BAYESGRAD_BACKEND=cuda"
  SCOPE=full
elif [ -n "$FAILED" ]; then
  say "whole suite on BAYESGRAD_BACKEND=cuda: not run, earlier tests failed"
  STEPS+=("suite_on_cuda: not run (earlier failures)")
  SCOPE=none
else
  say "whole suite on BAYESGRAD_BACKEND=cuda: not run, _cuda implements only $CONCEPTS (the public API cannot run on it yet)"
  STEPS+=("suite_on_cuda: not run (partial module)")
  SCOPE=kernels
fi

# ---------------------------------------------------------------- 4. benchmarks
BENCH=ok
if step bench 180 "$PY" bench/cuda.py --out "$OUT/cuda_bench.json"; then
  mkdir -p bench/results && cp "$OUT/cuda_bench.json" bench/results/cuda.json
else
  BENCH=failed  # recorded; correctness is what the record certifies
fi
[ -n "$FAILED" ] && stop 1 "$FAILED (benchmarks: $BENCH)"

# ---------------------------------------------------------------- 5. record
"$PY" - "$ROOT" "$OUT" "$PKG" "$DEVICE" "$SCOPE" "$CONCEPTS" "$BENCH" "$STATUS" ${STEPS[@]+"${STEPS[@]}"} <<'EOF'
import datetime, hashlib, json, os, pathlib, subprocess, sys
root, out, pkg, device, scope, concepts, bench, status, *steps = sys.argv[1:]
h = hashlib.sha256()
files = sorted(p for d in ("cuda", "cpp/include") for p in pathlib.Path(root, d).rglob("*") if p.is_file())
for p in files:
    h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
try:
    commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
except Exception:  # a copy of the working tree without .git
    commit = None
try:
    smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                         text=True)
    driver = smi.stdout.strip().splitlines()[0] if smi.returncode == 0 and smi.stdout.strip() else None
except OSError:
    driver = None
bench_path = os.path.join(out, "cuda_bench.json")
targets = json.load(open(bench_path)).get("targets") if bench == "ok" and os.path.exists(bench_path) else None
rec = {
    "passed": True,
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "device": device,
    "driver": driver,
    "build_status": status,
    "scope": scope,  # "kernels": tests/test_cuda.py on the listed concepts; "full": also the whole suite on cuda
    "concepts": concepts.split(",") if concepts else [],
    "git_commit": commit,
    "sources_sha256": h.hexdigest(),  # cuda/ and cpp/include/ as verified
    "steps": steps,
    "bench": bench,
    "bench_targets": targets,
}
text = json.dumps(rec, indent=1) + "\n"
for path in (os.path.join(root, "python", "bayesgrad", "_cuda_verified.json"), os.path.join(pkg, "_cuda_verified.json"),
             os.path.join(out, "_cuda_verified.json")):
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
print(text)
EOF
[ $? -eq 0 ] || stop 1 "writing the record failed"
summary verified "verified on $DEVICE (scope: $SCOPE; bench: $BENCH)"
say "VERIFIED on $DEVICE (scope: $SCOPE; bench: $BENCH); commit $OUT/_cuda_verified.json as python/bayesgrad/_cuda_verified.json"
