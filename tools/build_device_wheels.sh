#!/usr/bin/env bash
# Builds uccl-ep wheels on this (CPU) machine for the GPU machine, so that a device call spends
# its time on tests rather than on the build: the working tree into .scratch/wheels/new and,
# given a git ref, that ref into .scratch/wheels/base (the baseline of `gpu_check.sh ab`).
# Carry .scratch to the device and pass GPU_CHECK_WHEEL / GPU_CHECK_BASE_WHEEL to gpu_check.sh.
#
#   tools/build_device_wheels.sh [BASE_REF]
#
# PY: a Python of the device's version or older (default python3.12): the extension uses the
# stable ABI from CPython 3.12 on (one cp312-abi3 wheel), one ABI per version before.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3.12}
command -v "$PY" >/dev/null || { echo "no $PY here: set PY to a Python of the device's version" >&2; exit 1; }
"$PY" -c 'import nanobind, scikit_build_core' 2>/dev/null ||
  "$PY" -m pip install -q "nanobind==3.1.0" "scikit-build-core==1.1.0"
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
build() {  # source dir, wheel dir, build dir
  rm -rf "$2" && mkdir -p "$2"
  (cd "$1" && "$PY" -m pip wheel --no-build-isolation --no-deps -q -w "$2" -Cbuild-dir="$3" .)
  ls "$2"/*.whl
}
build "$PWD" "$PWD/.scratch/wheels/new" "$PWD/build/device-wheel"
if [[ $# -ge 1 ]]; then
  src=$(mktemp -d)
  git archive "$1" | tar -x -C "$src"
  build "$src" "$PWD/.scratch/wheels/base" "$src/build"
  rm -rf "$src"
fi
