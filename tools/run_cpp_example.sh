#!/usr/bin/env bash
# Builds the C++ library, installs it into a prefix, builds examples/cpp against the installed
# package (find_package(uccl_ep)) and runs the example on NUM_RANKS ranks (default 2) over the
# local GPUs. With fewer GPUs than ranks, the ranks share GPUs: the CUDA MPS daemon is started
# for the run and stopped after it.
#
#   tools/run_cpp_example.sh [NUM_RANKS]    # on a GPU machine; exit code 0 = PASS
#
# UCCL_EP_CUDA_ARCHS: the architectures to build (default: GPU 0's, e.g. 90a on H100/H200).
# BUILD_DIR (default build/cpp-example): the library's build, the prefix and the example's build.
set -euo pipefail
cd "$(dirname "$0")/.."
num_ranks=${1:-2}
BUILD_DIR=${BUILD_DIR:-build/cpp-example}
prefix=$PWD/$BUILD_DIR/prefix
ngpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | wc -l)
[[ $ngpu -ge 1 ]] || { echo "no GPU found (nvidia-smi)" >&2; exit 1; }
if [[ -z ${UCCL_EP_CUDA_ARCHS:-} ]]; then
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1)
  UCCL_EP_CUDA_ARCHS="${cap/./}a"
fi
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}

echo "== library (CUDA architectures $UCCL_EP_CUDA_ARCHS), installed into $prefix"
cmake -S . -B "$BUILD_DIR/lib" "${generator[@]}" -DUCCL_EP_BUILD_PYTHON=OFF \
  -DUCCL_EP_CUDA_ARCHS="$UCCL_EP_CUDA_ARCHS" >/dev/null
cmake --build "$BUILD_DIR/lib" --target uccl_ep
cmake --install "$BUILD_DIR/lib" --prefix "$prefix" --component cpp >/dev/null

echo "== examples/cpp against the installed package"
cmake -S examples/cpp -B "$BUILD_DIR/example" "${generator[@]}" -DCMAKE_PREFIX_PATH="$prefix" \
  >/dev/null
cmake --build "$BUILD_DIR/example"

echo "== intranode_example on $num_ranks ranks, $ngpu GPUs"
mps_dir=""
if [[ $ngpu -lt $num_ranks ]]; then
  command -v nvidia-cuda-mps-control >/dev/null ||
    { echo "$num_ranks ranks on $ngpu GPUs need CUDA MPS (nvidia-cuda-mps-control)" >&2; exit 1; }
  mps_dir=$(mktemp -d)
  export CUDA_MPS_PIPE_DIRECTORY=$mps_dir/pipe CUDA_MPS_LOG_DIRECTORY=$mps_dir/log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  nvidia-cuda-mps-control -d
  trap 'echo quit | nvidia-cuda-mps-control; rm -rf "$mps_dir"' EXIT
  echo "CUDA MPS started (ranks share GPUs)"
fi
timeout 300 "$BUILD_DIR/example/intranode_example" "$num_ranks"
