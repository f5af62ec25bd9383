#!/usr/bin/env bash
# Build the native core with AddressSanitizer + UndefinedBehaviorSanitizer in its
# own build directory and run the tests that reach native code (the cpu backend)
# against it. Run it whenever cpp/ changes. Prints one summary line; exit status
# 0 only when every test passed and no sanitizer reported anything.
#
#   tools/sanitize.sh                 # whole suite on the cpu backend
#   tools/sanitize.sh tests/test_vi.py -k epoch   # a subset (pytest arguments)
#
# The sanitized _core never touches python/bayesgrad/: the Python sources are
# mirrored into $BUILD_DIR/pkg with the sanitized extension beside them.
# Environment: BUILD_DIR (default build/sanitize), JOBS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD_DIR=${BUILD_DIR:-build/sanitize}
JOBS=${JOBS:-2}
SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -g"
mkdir -p "$BUILD_DIR"
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBAYESGRAD_INPLACE=OFF -DBAYESGRAD_CUDA=OFF \
  -DCMAKE_CXX_FLAGS="$SAN" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DCMAKE_MODULE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -Dpybind11_DIR="$(python -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
  > "$BUILD_DIR/configure.log" 2>&1 || { cat "$BUILD_DIR/configure.log"; exit 1; }
cmake --build "$BUILD_DIR" -j "$JOBS" --target _core > "$BUILD_DIR/build.log" 2>&1 || { tail -50 "$BUILD_DIR/build.log"; exit 1; }

# The package as the tests import it: sources from the working tree, the sanitized _core.
PKG="$BUILD_DIR/pkg"
rm -rf "$PKG" && mkdir -p "$PKG"
cp -r python/bayesgrad "$PKG/"
rm -f "$PKG"/bayesgrad/_core*.so "$PKG"/bayesgrad/_cuda*.so
cp "$BUILD_DIR"/_core*.so "$PKG/bayesgrad/"

LOGS="$ROOT/$BUILD_DIR/logs"
rm -rf "$LOGS" && mkdir -p "$LOGS"
# The interpreter is not instrumented: libasan must be loaded first, and libstdc++ with
# it (else ASan's __cxa_throw interceptor finds no real __cxa_throw and aborts at the
# first C++ exception, e.g. a kernel's std::invalid_argument). Leak checking is
# off (CPython keeps its allocations to exit); allocator_may_return_null makes a huge
# request a MemoryError as without ASan; reports go to one file per process.
LIBASAN=$(g++ -print-file-name=libasan.so)
LIBSTDCXX=$(g++ -print-file-name=libstdc++.so.6)
export LD_PRELOAD="$LIBASAN $LIBSTDCXX"
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:log_path=$LOGS/asan:handle_segv=1"
export UBSAN_OPTIONS="print_stacktrace=1:log_path=$LOGS/ubsan"
export BAYESGRAD_BACKEND=cpu
set +e
PYTHONPATH="$PKG" python -m pytest -q -n "$JOBS" -p no:cacheprovider "${@:-tests}" > "$LOGS/pytest.log" 2>&1
rc=$?
set -e
unset LD_PRELOAD
n_asan=$(cat "$LOGS"/asan.* 2>/dev/null | grep -c "ERROR: AddressSanitizer" || true)
n_ubsan=$(cat "$LOGS"/ubsan.* "$LOGS"/asan.* 2>/dev/null | grep -c "runtime error:" || true)
tests=$(grep -E "[0-9]+ (passed|failed)" "$LOGS/pytest.log" | tail -1)
echo "sanitize.sh: ASan reports: $n_asan, UBSan reports: $n_ubsan; pytest (cpu backend, sanitized core): ${tests:-no summary} (exit $rc); logs in $BUILD_DIR/logs"
[ "$rc" -eq 0 ] && [ "$n_asan" -eq 0 ] && [ "$n_ubsan" -eq 0 ]
