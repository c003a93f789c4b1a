#!/usr/bin/env bash
# Builds uccl-ep on a GPU machine, runs the CPU and GPU test suites and the intranode
# benchmark on the local GPUs. Logs and JSON go to $OUT (default ./out).
#
#   tools/gpu_check.sh [MODE...]   MODE: all|test|bench|host|smoke|micro|sweep|probe|cmdpath|ab
#                                  (default: all = test bench host)
#     micro:   copy-strategy micro-benchmark (bench/micro/copy_microbench.cu, two GPUs); on one GPU
#              too: rows only 16-byte aligned (--pitch), copy warps next to a publisher-like
#              warp (--publisher), stores into another process's IPC memory (ipc_copy_bench.cu)
#     probe:   cached dispatch / combine over chunk and ring sizes (bench/probe_intranode_configs.py)
#     sweep:   warp copies over SM counts and warps per SM: push, both ways, pull
#     bench:   bench/bench_intranode.py per EP size, after the SM direct-write all-to-all bound
#              (bench/micro/direct_a2a_bound.cu) on the same GPUs
#     host:    bench/bench_host_overhead.py: host time per API call on 2 ranks (one per GPU, or
#              both on GPU 0 under CUDA MPS with one GPU)
#     smoke:   bench/bench_intranode.py --quick --share-gpus on 8 ranks over the local GPUs (CUDA
#              MPS): the 8-rank benchmark's code paths on fewer GPUs; no baselines, no figures
#     ab:      bench/bench_intranode.py --quick --share-gpus at EP 2 (ranks sharing GPU 0 under
#              CUDA MPS), alternating GPU_CHECK_BASE_WHEEL (a baseline wheel) and this build,
#              ROUNDS times (default 3): the before/after comparison of a change, in one call
#     cmdpath: GPU->CPU queue and proxy benchmarks (commands/s, push-to-execution latency) and
#              the libfabric transport against raw fi_writedata (tcp;ofi_rxm, shm; CPU only;
#              needs libfabric headers, see below)
#
# Environment: UCCL_EP_TEST_RANKS (e.g. "2,4") limits the GPU suites (default 2,4,8; a size
# above the GPU count is skipped unless GPUs are shared); UCCL_EP_TEST_SHARE_GPUS=0 keeps ranks from sharing GPUs (with fewer than 8
# GPUs the test mode otherwise starts CUDA MPS and runs suites on more ranks than GPUs,
# correctness only; see tests/gpu/README.md); BENCH_ARGS adds flags
# to bench/bench_intranode.py (e.g. "--quick"); BENCH_RANKS (e.g. "4 2") picks the EP sizes
# benchmarked (default: all local GPUs, then 2 when there are more); GPU_CHECK_CMAKE_ARGS adds
# -C options to the build. GPU_CHECK_WHEEL (a wheel from tools/build_device_wheels.sh) is
# installed instead of building here (the C++ programs of micro, sweep, cmdpath and the bench
# bound then need a build directory of their own).
set -uo pipefail
cd "$(dirname "$0")/.."
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
modes=" ${*:-all} "
for m in $modes; do
  case $m in
    all | test | bench | host | smoke | micro | sweep | probe | cmdpath | ab) ;;
    *) echo "gpu_check.sh: unknown mode '$m' (use all, test, bench, host, smoke, micro, sweep, probe, cmdpath, ab)" >&2
       exit 2 ;;
  esac
done
[[ $modes == *" all "* ]] && modes+=" test bench host "
has() { [[ $modes == *" $1 "* ]]; }
ngpu=$(python3 -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)
status=0

echo "== build ($(cmake --version | head -1), $(nproc) cores, $ngpu GPUs)"
export CMAKE_BUILD_PARALLEL_LEVEL=$(nproc)
BUILD_DIR=build/gpu
extra=()
# The GPU image has libfabric.so.1 but no headers: use the ones tools/fetch_libfabric_headers.sh
# put in .deps (carried to the machine), so the libfabric transport is built and tested there.
lib=$(ldconfig -p 2>/dev/null | awk '/libfabric\.so\.1 /{print $NF; exit}')
if [[ -f .deps/libfabric/include/rdma/fabric.h && -n $lib ]]; then
  extra+=(-Ccmake.define.UCCL_EP_FABRIC_INCLUDE_DIR="$PWD/.deps/libfabric/include"
          -Ccmake.define.UCCL_EP_FABRIC_LIBRARY="$lib")
  echo "libfabric: headers from .deps, library $lib"
fi
# GPU_CHECK_CMAKE_ARGS: extra -C options, e.g. -Ccmake.define.UCCL_EP_WAIT_PROFILE=ON. They build
# in a directory of their own: CMake caches options, so a later default run in build/gpu would keep
# them.
read -r -a more <<<"${GPU_CHECK_CMAKE_ARGS:-}"
if [[ ${#more[@]} -gt 0 ]]; then
  BUILD_DIR=build/gpu-$(printf '%s' "${GPU_CHECK_CMAKE_ARGS}" | md5sum | cut -c1-8)
  extra+=("${more[@]}")
fi
if [[ -n ${GPU_CHECK_WHEEL:-} ]]; then
  echo "installing $GPU_CHECK_WHEEL (no build)"
  python3 -m pip install --no-deps --force-reinstall -q "$GPU_CHECK_WHEEL" >"$OUT/build.log" 2>&1 ||
    { tail -20 "$OUT/build.log"; echo "INSTALL FAILED"; exit 1; }
elif ! python3 -m pip install --no-build-isolation --no-deps -v -Cbuild-dir=$BUILD_DIR \
  -Ccmake.define.UCCL_EP_BUILD_BENCH=ON "${extra[@]}" . >"$OUT/build.log" 2>&1; then
  tail -60 "$OUT/build.log"
  echo "BUILD FAILED"
  exit 1
fi
grep -E "warning|error" "$OUT/build.log" | grep -v "^WARNING: Running pip" | head -20

# With fewer than 8 GPUs, the suites also run on more ranks than GPUs, ranks sharing GPUs
# (tests/gpu/_dist.py): that needs the CUDA MPS daemon, started here for the tests only.
mps_dir=""
start_mps() {
  [[ ${UCCL_EP_TEST_SHARE_GPUS:-1} == 1 && $ngpu -ge 1 && $ngpu -lt 8 ]] || return 0
  command -v nvidia-cuda-mps-control >/dev/null || { echo "no CUDA MPS: GPUs are not shared"; return 0; }
  mps_dir=$(mktemp -d)
  export CUDA_MPS_PIPE_DIRECTORY=$mps_dir/pipe CUDA_MPS_LOG_DIRECTORY=$mps_dir/log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  if nvidia-cuda-mps-control -d; then
    export UCCL_EP_TEST_SHARE_GPUS=1
    echo "CUDA MPS started; suites on ${UCCL_EP_TEST_RANKS:-2,4,8} ranks (GPUs shared where needed)"
  else
    echo "CUDA MPS did not start: GPUs are not shared"
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
    mps_dir=""
  fi
}
stop_mps() {
  [[ -n $mps_dir ]] || return 0
  echo quit | nvidia-cuda-mps-control
  unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY UCCL_EP_TEST_SHARE_GPUS
  rm -rf "$mps_dir"
  mps_dir=""
}

if has test; then
  echo "== tests"
  start_mps
  # -s: each multi-GPU suite prints its per-check table (the log keeps it; shown: the counts).
  timeout 1500 python3 -m pytest tests -v -s -p no:cacheprovider 2>&1 | tee "$OUT/tests.log" | \
    grep -E "PASSED|FAILED|ERROR|SKIPPED|suite '|passed|failed" | tail -60
  [[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
  stop_mps
fi

if has smoke && [[ $ngpu -ge 1 && $ngpu -lt 8 ]]; then
  echo "== bench smoke run: 8 ranks sharing $ngpu GPUs"
  start_mps
  if [[ -n $mps_dir ]]; then
    timeout 600 torchrun --standalone --nproc_per_node=8 bench/bench_intranode.py --quick \
      --share-gpus --json "$OUT/bench_smoke_ep8.json" >"$OUT/bench_smoke_ep8.log" 2>&1 || status=1
    tail -30 "$OUT/bench_smoke_ep8.log"
  else
    echo "smoke: needs CUDA MPS"; status=1
  fi
  stop_mps
fi

if has micro && [[ $ngpu -ge 2 ]]; then
  echo "== copy micro-benchmark (GPU 0 -> 1 and GPU 0 -> 0, 24 SMs)"
  $BUILD_DIR/uccl_ep_copy_microbench --sms 24 --dst 1 --json "$OUT/copy_peer.json" || status=1
  $BUILD_DIR/uccl_ep_copy_microbench --sms 24 --dst 0 --json "$OUT/copy_local.json" || status=1
fi
if has micro && [[ $ngpu -ge 1 ]]; then
  # Rows 16-byte aligned (a 14416-byte pitch: a BF16 row with its top-8 metadata) vs 128-byte.
  for d in $(seq 0 $(( ngpu < 2 ? 0 : 1 ))); do
    echo "== row pitch 14416 vs 14336, 8 SMs, GPU 0 -> $d"
    $BUILD_DIR/uccl_ep_copy_microbench --sms 8 --dst "$d" --pitch 14416 \
      --json "$OUT/copy_pitch_$d.json" || status=1
  done
  # Stores into memory another process exported (how ranks sharing a GPU reach each other's rings).
  echo "== copies into own vs another process's (IPC) memory, GPU 0"
  $BUILD_DIR/uccl_ep_ipc_copy_bench --json "$OUT/ipc_copy.json" || status=1
  # Copy warps next to a warp that polls or releases with system scope (the publisher's pattern).
  echo "== 23 copy warps per SM and a publisher-like warp, 8 SMs, GPU 0 -> 0"
  $BUILD_DIR/uccl_ep_copy_microbench --sms 8 --dst 0 --publisher 1 || status=1
fi

if has sweep && [[ $ngpu -ge 2 ]]; then
  echo "== copy sweep (GPU 0 <-> 1)"
  $BUILD_DIR/uccl_ep_copy_microbench --sweep 1 --dst 1 --json "$OUT/copy_sweep.json" || status=1
fi

if has probe && [[ $ngpu -ge 2 ]]; then
  for r in ${BENCH_RANKS:-2}; do
    echo "== probe EP$r"
    CUDA_VISIBLE_DEVICES=$(seq -s, 0 $((r - 1))) timeout 600 torchrun --standalone \
      --nproc_per_node="$r" bench/probe_intranode_configs.py 2>&1 | grep "^rank 0" || status=1
  done
fi

if has cmdpath && [[ $ngpu -ge 1 ]]; then
  echo "== command path: queue and proxy GPU benchmarks"
  $BUILD_DIR/src/queue/uccl_ep_queue_gpu_bench --json "$OUT/queue_gpu.json" || status=1
  $BUILD_DIR/src/proxy/uccl_ep_proxy_gpu_bench --json "$OUT/proxy_gpu.json" || status=1
  if [[ -x $BUILD_DIR/src/transport/uccl_ep_transport_bench ]]; then
    for prov in "tcp;ofi_rxm" shm; do
      echo "== transport vs raw fi_writedata: $prov"
      timeout 300 $BUILD_DIR/src/transport/uccl_ep_transport_bench --provider="$prov" --repeat=5 \
        --json="$OUT/transport_${prov%%;*}.json" || status=1
    done
  fi
fi

if has bench && [[ $ngpu -ge 2 ]]; then
  ranks=${BENCH_RANKS:-$ngpu}
  [[ -z ${BENCH_RANKS:-} && $ngpu -gt 2 ]] && ranks="$ngpu 2"
  for r in $ranks; do
    echo "== bench EP$r"
    devices=$(seq -s, 0 $((r - 1)))
    # The SM direct-write all-to-all bound on the same GPUs (bench/micro/direct_a2a_bound.cu).
    rm -f "$OUT/direct_a2a_ep$r.json"
    CUDA_VISIBLE_DEVICES=$devices timeout 300 $BUILD_DIR/uccl_ep_direct_a2a_bound --gpus "$r" \
      --json "$OUT/direct_a2a_ep$r.json" || status=1
    CUDA_VISIBLE_DEVICES=$devices timeout 900 torchrun --standalone --nproc_per_node="$r" \
      bench/bench_intranode.py --json "$OUT/bench_ep$r.json" ${BENCH_ARGS:-} \
      $([[ -f $OUT/direct_a2a_ep$r.json ]] && echo --bound-json "$OUT/direct_a2a_ep$r.json") \
      >"$OUT/bench_ep$r.log" 2>&1 || status=1
    tail -46 "$OUT/bench_ep$r.log"
  done
fi
if has ab && [[ $ngpu -ge 1 ]]; then
  echo "== A/B: bench_intranode.py --quick --share-gpus, EP 2, baseline vs this build"
  if [[ -z ${GPU_CHECK_BASE_WHEEL:-} ]]; then
    echo "ab: needs GPU_CHECK_BASE_WHEEL (tools/build_device_wheels.sh REF)"; status=1
  else
    rm -rf /tmp/uccl_ep_base
    python3 -m pip install -q --no-deps --target /tmp/uccl_ep_base "$GPU_CHECK_BASE_WHEEL" >/dev/null
    start_mps
    for round in $(seq 1 "${ROUNDS:-3}"); do
      for side in base new; do
        path=""; [[ $side == base ]] && path=/tmp/uccl_ep_base
        PYTHONPATH=$path CUDA_VISIBLE_DEVICES=0 timeout 300 torchrun --standalone --nproc_per_node=2 \
          bench/bench_intranode.py --quick --share-gpus --json "$OUT/ab_${side}_$round.json" \
          >"$OUT/ab_${side}_$round.log" 2>&1 || status=1
        echo "-- $side, round $round"
        grep -v "^W[0-9]" "$OUT/ab_${side}_$round.log" | tail -12
      done
    done
    stop_mps
  fi
fi
if has host && [[ $ngpu -ge 1 ]]; then
  echo "== host time per API call (2 ranks)"
  share=()
  if [[ $ngpu -lt 2 ]]; then
    start_mps
    share=(--share-gpus)
  fi
  CUDA_VISIBLE_DEVICES=$(seq -s, 0 $(( (ngpu < 2 ? ngpu : 2) - 1 ))) timeout 300 torchrun \
    --standalone --nproc_per_node=2 bench/bench_host_overhead.py "${share[@]}" \
    --json "$OUT/host_overhead.json" >"$OUT/host_overhead.log" 2>&1 || status=1
  grep -v "^W[0-9]" "$OUT/host_overhead.log" | tail -12
  stop_mps
fi
echo "== gpu_check done: status $status"
exit $status
