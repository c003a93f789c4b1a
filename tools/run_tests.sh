#!/usr/bin/env bash
# Installs what the build and tests need, checks formatting, builds everything (every .cu
# file included), runs the C++ unit tests (ctest) and the Python tests (pytest).
# GPU tests run when torch and enough GPUs are present and skip otherwise.
#
#   tools/run_tests.sh            # what CI (.ci/run) runs
#   SKIP_DEPS=1 tools/run_tests.sh   # reuse installed tools (e.g. on the GPU machine)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
BUILD_DIR=${BUILD_DIR:-build/ci}
PY=${PYTHON:-python3}

if [[ -z ${SKIP_DEPS:-} ]]; then
  echo "== dependencies"
  need=()
  for pkg in libgtest-dev ninja-build libfabric-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
  done
  if [[ ${#need[@]} -gt 0 ]]; then
    SUDO=$(command -v sudo || true)
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  $PY -m pip install -q --disable-pip-version-check \
    "nanobind==3.1.0" "scikit-build-core==1.1.0" "cmake==3.31.6" \
    "clang-format==18.1.8" "ruff==0.17.6" pytest numpy
fi

echo "== format"
mapfile -t cxx < <(git ls-files '*.h' '*.cc' '*.cu' '*.cuh')
clang-format --dry-run --Werror "${cxx[@]}"
$PY -m ruff check .
$PY -m ruff format --check .

echo "== build (CUDA architectures: ${UCCL_EP_CUDA_ARCHS:-default})"
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
$PY -m pip install --no-build-isolation --no-deps -q --disable-pip-version-check \
  -Cbuild-dir="$BUILD_DIR" -Ccmake.define.UCCL_EP_BUILD_TESTS=ON \
  -Ccmake.define.UCCL_EP_BUILD_BENCH=ON \
  ${UCCL_EP_CUDA_ARCHS:+-Ccmake.define.UCCL_EP_CUDA_ARCHS="$UCCL_EP_CUDA_ARCHS"} .

echo "== C++ unit tests"
ctest --test-dir "$BUILD_DIR" --output-on-failure --no-tests=error -j 2

echo "== C++ unit tests under ThreadSanitizer (queue, proxy)"
TSAN_DIR=${TSAN_DIR:-build/tsan}
cmake -S . -B "$TSAN_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUCCL_EP_TSAN=ON \
  -DUCCL_EP_BUILD_PYTHON=OFF -DUCCL_EP_BUILD_TESTS=ON >/dev/null
cmake --build "$TSAN_DIR" --target uccl_ep_tsan_tests
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  ctest --test-dir "$TSAN_DIR" -L tsan --output-on-failure --no-tests=error -j 2

echo "== Python tests"
(cd "$(mktemp -d)" && $PY -m pytest "$OLDPWD/tests" -p no:cacheprovider -q)
