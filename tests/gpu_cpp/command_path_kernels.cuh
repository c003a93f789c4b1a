// Kernels and device/host helpers of the command-path GPU test: producers that fill a write's
// source and push WRITE / WRITE_SIGNAL / FENCE from many warps, and a target-side checker that
// waits for each signal and then reads its data. Included by command_path_scenarios.cu only.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/hd.h"
#include "device/ptx.cuh"
#include "protocol/command.h"
#include "proxy/testing/probe_transport.h"
#include "queue/producer.cuh"

namespace uccl::ep::gpu_test {

constexpr int kThreadsPerBlock = 128;
constexpr uint64_t kSlotBytes = 1024;  // each write owns a 1 KiB slot at source and target

// The plan every scenario follows: write k (k = (warp * rounds + round) * 32 + lane) copies
// size(k) bytes from source slot k of rank 0 to target slot k of rank 1; every 4th is a
// WRITE_SIGNAL adding value(k) to signal slot k / 4 (one slot per signalled write).
UCCL_HD uint64_t write_bytes(uint32_t k) {
  return 16ull * (1 + ((k * 2654435761u) >> 7) % 64);
}
UCCL_HD bool write_signalled(uint32_t k) {
  return k % 4 == 0;
}
UCCL_HD uint32_t write_value(uint32_t k) {
  return 1 + k % 255;
}
UCCL_HD uint32_t pattern_word(uint32_t k, uint32_t word) {
  uint64_t x = (uint64_t{k} << 32 | word) * 0x9E3779B97F4A7C15ull;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  return static_cast<uint32_t>(x ^ (x >> 32));
}
UCCL_HD protocol::Command write_command(uint32_t k) {
  const uint64_t off = uint64_t{k} * kSlotBytes;
  return write_signalled(k)
             ? protocol::encode_write_signal(1, off, off, write_bytes(k), k / 4, write_value(k))
             : protocol::encode_write(1, off, off, write_bytes(k));
}

struct WriteArgs {
  const queue::QueueDeviceHandle* queues;  // [num_queues]
  uint32_t num_queues, warps_per_queue, rounds;
  uint8_t* source;        // rank 0's RDMA buffer (device memory or mapped host memory)
  bool fence_each_round;  // only with one warp per queue: FENCE(round + 1) and wait, each round
  bool probe_commands;    // push probe::stamp_write instead (no data; back-pressure, deadlines)
  device::DeviceDiag diag;
  uint32_t* failures;
  bool lane_producers = false;  // one warp per queue: lane 0 owns it (queue::LaneProducer)
};

/// Fills the source slot of write k with its pattern.
__device__ __forceinline__ void fill_source(const WriteArgs& a, uint32_t k) {
  int4* dst = reinterpret_cast<int4*>(a.source + uint64_t{k} * kSlotBytes);
  for (uint32_t v = 0; v < write_bytes(k) / 16; ++v)
    dst[v] = make_int4(
        static_cast<int>(pattern_word(k, 4 * v)), static_cast<int>(pattern_word(k, 4 * v + 1)),
        static_cast<int>(pattern_word(k, 4 * v + 2)), static_cast<int>(pattern_word(k, 4 * v + 3)));
}

/// lane_producers mode: every lane fills its source slot; after a __syncwarp lane 0 pushes the
/// warp's 32 writes and a FENCE(round + 1) through its LaneProducer and waits for the fence.
/// Lane 0's fence releases the other lanes' data too (cumulativity through the __syncwarp).
__device__ void write_rounds_lane_producer(const WriteArgs& a, uint32_t warp, uint32_t lane) {
  const queue::QueueDeviceHandle q = a.queues[warp];
  queue::LaneProducer producer(q);  // constructed by every lane; only lane 0 pushes
  bool ok = true;
  for (uint32_t r = 0; r < a.rounds && ok; ++r) {
    const uint32_t first = (warp * a.rounds + r) * 32;
    fill_source(a, first + lane);
    __syncwarp();
    if (lane == 0) {
      for (uint32_t i = 0; i < 32 && ok; ++i) ok = producer.push(write_command(first + i), a.diag);
      ok = ok && producer.push(protocol::encode_fence(r + 1), a.diag) &&
           queue::wait_fence(q, r + 1, a.diag);
    }
    ok = __shfl_sync(0xffffffffu, ok, 0);
  }
  if (lane == 0) {
    producer.finish();
    if (!ok) atomicAdd(a.failures, 1);
  }
}

/// Warp w serves queue w % num_queues: each lane fills its source slot, then the warp pushes
/// its 32 commands with one reservation (push_warp), or lane 0 pushes them (lane_producers).
__global__ void __launch_bounds__(kThreadsPerBlock) write_kernel(WriteArgs a) {
  const uint32_t warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
  const uint32_t lane = threadIdx.x % 32;
  if (warp >= a.num_queues * a.warps_per_queue) return;
  if (a.lane_producers) {
    write_rounds_lane_producer(a, warp, lane);
    return;
  }
  const queue::QueueDeviceHandle q = a.queues[warp % a.num_queues];
  for (uint32_t r = 0; r < a.rounds; ++r) {
    const uint32_t k = (warp * a.rounds + r) * 32 + lane;
    protocol::Command c;
    if (a.probe_commands) {
      c = proxy::testing::stamp_write(1, k, device::global_timer_ns());
    } else {
      fill_source(a, k);
      c = write_command(k);  // push_warp fences each lane's stores before its slot is published
    }
    if (!queue::push_warp(q, c, true, a.diag)) {
      if (lane == 0) atomicAdd(a.failures, 1);
      return;
    }
    if (a.fence_each_round) {
      bool ok = true;
      if (lane == 0)
        ok = queue::push(q, protocol::encode_fence(r + 1), a.diag) &&
             queue::wait_fence(q, r + 1, a.diag);
      if (!__shfl_sync(0xffffffffu, ok, 0)) {
        if (lane == 0) atomicAdd(a.failures, 1);
        return;
      }
    }
  }
}

/// One thread per queue: FENCE(`sequence`), then wait for it (after write_kernel on the same
/// stream, so every write of the queue is before the FENCE).
__global__ void fence_kernel(const queue::QueueDeviceHandle* queues, uint32_t num_queues,
                             uint32_t sequence, device::DeviceDiag diag, uint32_t* failures) {
  const uint32_t q = blockIdx.x * blockDim.x + threadIdx.x;
  if (q >= num_queues) return;
  if (!queue::push(queues[q], protocol::encode_fence(sequence), diag) ||
      !queue::wait_fence(queues[q], sequence, diag))
    atomicAdd(failures, 1);
}

/// One lane pushes `count` commands (probe stamps) and, if `fence`, FENCE(1) and waits: the
/// deadline scenarios.
__global__ void lane_kernel(queue::QueueDeviceHandle q, uint32_t count, bool real_writes,
                            bool fence, device::DeviceDiag diag, uint32_t* failures) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  for (uint32_t i = 0; i < count; ++i) {
    const protocol::Command c = real_writes ? protocol::encode_write(1, 0, 4096ull * i, 256)
                                            : proxy::testing::stamp_write(1, i, 0);
    if (!queue::push(q, c, diag)) {
      atomicAdd(failures, 1);
      return;
    }
  }
  if (fence && !(queue::push(q, protocol::encode_fence(1), diag) && queue::wait_fence(q, 1, diag)))
    atomicAdd(failures, 1);
}

struct CheckArgs {
  const int64_t* signals;      // rank 1's signal region (device alias of host memory)
  const uint8_t* rdma_buffer;  // rank 1's RDMA buffer (device memory)
  uint32_t num_signalled;      // signalled writes (k = 4 j)
  uint64_t timeout_ns;
  uint32_t* counters;  // [0] signals seen, [1] wrong values, [2] data before signal, [3] timeouts
};

/// Target side: thread j waits for signal slot j, then checks its value and every byte of
/// write 4 j: a signal must never be visible before its data.
__global__ void check_kernel(CheckArgs a) {
  const uint32_t j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= a.num_signalled) return;
  const uint32_t k = 4 * j;
  const uint64_t start = device::global_timer_ns();
  int64_t v = 0;
  while ((v = device::ld_acquire_sys(a.signals + j)) == 0) {
    if (device::global_timer_ns() - start > a.timeout_ns) {
      atomicAdd(a.counters + 3, 1);
      return;
    }
    __nanosleep(256);  // thousands of threads poll host memory: keep PCIe reads modest
  }
  atomicAdd(a.counters, 1);
  if (v != write_value(k)) atomicAdd(a.counters + 1, 1);
  const int4* src = reinterpret_cast<const int4*>(a.rdma_buffer + uint64_t{k} * kSlotBytes);
  for (uint32_t w = 0; w < write_bytes(k) / 16; ++w) {
    const int4 d = device::ld_v4(src + w);
    if (static_cast<uint32_t>(d.x) != pattern_word(k, 4 * w) ||
        static_cast<uint32_t>(d.y) != pattern_word(k, 4 * w + 1) ||
        static_cast<uint32_t>(d.z) != pattern_word(k, 4 * w + 2) ||
        static_cast<uint32_t>(d.w) != pattern_word(k, 4 * w + 3)) {
      atomicAdd(a.counters + 2, 1);
      return;
    }
  }
}

}  // namespace uccl::ep::gpu_test
