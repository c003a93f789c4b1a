#!/usr/bin/env bash
# Installs uccl-ep and runs the intranode benchmark on all local GPUs (EP = GPU count).
#
#   tools/run_bench.sh [extra bench_intranode.py flags, e.g. --quick or --num-sms 24]
#
# Writes bench_intranode_ep<N>.json in the current directory (see bench/README.md).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
if ! $PY -c 'import nanobind, scikit_build_core' 2>/dev/null; then
  $PY -m pip install -q "nanobind>=2.4" "scikit-build-core>=0.10"
fi
CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) $PY -m pip install --no-build-isolation --no-deps -q "$repo"
ngpu=$($PY -c 'import torch; print(torch.cuda.device_count())')
if [[ $ngpu -lt 2 ]]; then
  echo "bench_intranode needs at least 2 GPUs of one host; found $ngpu" >&2
  exit 1
fi
exec torchrun --standalone --nproc_per_node="$ngpu" "$repo/bench/bench_intranode.py" "$@"
