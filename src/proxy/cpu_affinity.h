// Where proxy threads run: the CPUs of the GPU's NUMA node (from sysfs), physical cores first,
// distinct CPUs per thread and per local GPU.
#pragma once

#include <string>
#include <vector>

namespace uccl::ep::proxy {

/// "0-3,8,10-11" -> {0, 1, 2, 3, 8, 10, 11}. Throws Error(kValue) on malformed text.
std::vector<int> parse_cpu_list(const std::string& text);

/// The CPUs proxy threads of one GPU should use, and why.
struct CpuPlan {
  std::vector<int> cpus;  // one per thread (empty: do not pin)
  int numa_node = -1;     // the GPU's NUMA node, -1 when unknown
  std::string summary;    // for the log: device, node, CPUs or why nothing is pinned
};

/// Plans `num_threads` CPUs for the GPU at `pci_bus_id` ("0000:3b:00.0"; empty: unknown).
/// Candidates: the CPUs of the device's NUMA node (`<sysfs>/bus/pci/devices/<id>/numa_node`,
/// `<sysfs>/devices/system/node/node<N>/cpulist`) that this process may use (`allowed`), or
/// every allowed CPU when the node is unknown; ordered with the first hardware thread of each
/// core first (`<sysfs>/devices/system/cpu/cpu<K>/topology/thread_siblings_list`). Thread t of
/// the GPU with local index `local_rank` gets candidate (local_rank * num_threads + t) modulo
/// the number of candidates. Never throws for missing sysfs files (the plan says why).
CpuPlan plan_proxy_cpus(const std::string& sysfs_root, const std::string& pci_bus_id,
                        int local_rank, int num_threads, const std::vector<int>& allowed);

/// CPUs the calling thread may run on (sched_getaffinity), ascending.
std::vector<int> allowed_cpus();

/// Pins the calling thread to `cpu`; false with the reason in `*why` on failure.
bool pin_current_thread(int cpu, std::string* why);

}  // namespace uccl::ep::proxy
