#!/usr/bin/env bash
# Installs what the build and tests need, checks formatting, builds everything (every .cu
# file included), compiles the kernels of the wait-profile diagnostic build, runs the C++ unit
# tests (ctest), again under ThreadSanitizer (queue, proxy, transport, bootstrap) and under
# AddressSanitizer + UndefinedBehaviorSanitizer (every CPU test), installs the C++ package into a
# temporary prefix and builds examples/cpp against it, then runs the Python tests (pytest).
# GPU tests run when torch and enough GPUs are present and skip otherwise. Each sanitizer and
# the diagnostic build has its own build directory (build/tsan, build/asan, build/wait-profile)
# and builds only what it runs. One CUDA architecture, 90a, unless UCCL_EP_CUDA_ARCHS says
# otherwise (the library's default adds 100a).
#
#   tools/run_tests.sh            # what CI (.ci/run) runs
#   SKIP_DEPS=1 tools/run_tests.sh   # reuse installed tools (e.g. on the GPU machine)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
BUILD_DIR=${BUILD_DIR:-build/ci}
PY=${PYTHON:-python3}
UCCL_EP_CUDA_ARCHS=${UCCL_EP_CUDA_ARCHS:-90a}

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
# The bindings speak only the public API (include/uccl_ep/); testing/ reaches inside on purpose.
if grep -nE '#include "(bootstrap|common|device|kernels|protocol|proxy|queue|runtime|transport)/' \
  python/bindings/*.cc python/bindings/*.h; then
  echo "python/bindings/ includes internal headers above (only python/bindings/testing/ may)"
  exit 1
fi

echo "== build (CUDA architectures: $UCCL_EP_CUDA_ARCHS)"
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
$PY -m pip install --no-build-isolation --no-deps -q --disable-pip-version-check \
  -Cbuild-dir="$BUILD_DIR" -Ccmake.define.UCCL_EP_BUILD_TESTS=ON \
  -Ccmake.define.UCCL_EP_BUILD_BENCH=ON -Ccmake.define.UCCL_EP_INSTALL_CPP=ON \
  ${UCCL_EP_CUDA_ARCHS:+-Ccmake.define.UCCL_EP_CUDA_ARCHS="$UCCL_EP_CUDA_ARCHS"} .

echo "== kernels of the wait-profile diagnostic build (compile only)"
PROFILE_DIR=${PROFILE_DIR:-build/wait-profile}
cmake -S . -B "$PROFILE_DIR" -G Ninja -DUCCL_EP_WAIT_PROFILE=ON -DUCCL_EP_BUILD_PYTHON=OFF \
  ${UCCL_EP_CUDA_ARCHS:+-DUCCL_EP_CUDA_ARCHS="$UCCL_EP_CUDA_ARCHS"} >/dev/null
cmake --build "$PROFILE_DIR" --target uccl_ep_kernels

echo "== C++ unit tests"
ctest --test-dir "$BUILD_DIR" --output-on-failure --no-tests=error -j 2

echo "== C++ unit tests under ThreadSanitizer (queue, proxy)"
TSAN_DIR=${TSAN_DIR:-build/tsan}
cmake -S . -B "$TSAN_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUCCL_EP_TSAN=ON \
  -DUCCL_EP_BUILD_PYTHON=OFF -DUCCL_EP_BUILD_TESTS=ON >/dev/null
cmake --build "$TSAN_DIR" --target uccl_ep_tsan_tests
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  ctest --test-dir "$TSAN_DIR" -L tsan --output-on-failure --no-tests=error -j 2

echo "== C++ unit tests under AddressSanitizer + UndefinedBehaviorSanitizer (every CPU test)"
# Debug (-O0): compiles ~4x faster than -O2 here, and the tests still take well under a minute.
# protect_shadow_gap=0: the CUDA driver maps memory in ASan's shadow gap (CUDA calls fail with
# "out of memory" otherwise); it matters only where a GPU driver is installed.
ASAN_DIR=${ASAN_DIR:-build/asan}
cmake -S . -B "$ASAN_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DUCCL_EP_SANITIZE=ON \
  -DUCCL_EP_BUILD_PYTHON=OFF -DUCCL_EP_BUILD_TESTS=ON >/dev/null
cmake --build "$ASAN_DIR" --target uccl_ep_cpu_test_programs
ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:protect_shadow_gap=0" \
  UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
  ctest --test-dir "$ASAN_DIR" --output-on-failure --no-tests=error -j 2

echo "== C++ package: install into a temporary prefix, build examples/cpp against it"
# The build above made libuccl_ep.so (UCCL_EP_INSTALL_CPP; the wheel installs only the component
# "python"): this installs without building. The example runs on GPU machines only
# (tools/run_cpp_example.sh).
cpp_tmp=$(mktemp -d)
cmake --install "$BUILD_DIR" --prefix "$cpp_tmp/prefix" --component cpp >/dev/null
cmake -S examples/cpp -B "$cpp_tmp/build" -G Ninja -DCMAKE_PREFIX_PATH="$cpp_tmp/prefix" >/dev/null
cmake --build "$cpp_tmp/build"
rm -rf "$cpp_tmp"

echo "== Python tests"
(cd "$(mktemp -d)" && $PY -m pytest "$OLDPWD/tests" -p no:cacheprovider -q)
