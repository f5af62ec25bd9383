#!/usr/bin/env bash
# Incremental in-tree build for development: compiles _core (and _cuda when a
# toolkit is usable) and copies them into python/bayesgrad/, so that
#   PYTHONPATH=python python -m pytest tests
# runs against the working tree. BUILD_DIR and BAYESGRAD_CUDA may be set.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build/dev}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DBAYESGRAD_INPLACE=ON \
  -Dpybind11_DIR="$(python -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
  -DBAYESGRAD_CUDA="${BAYESGRAD_CUDA:-OFF}" > "$BUILD_DIR.log" 2>&1 || { cat "$BUILD_DIR.log"; exit 1; }
cmake --build "$BUILD_DIR" -j "${JOBS:-2}"
