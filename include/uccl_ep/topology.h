// Which ranks share an NVLink domain ("local" ranks, one node) and which are reached through
// the RDMA domain. Ranks 0..R-1; a node holds num_local_ranks consecutive ranks.
#pragma once

#include <string>
#include <vector>

namespace uccl::ep {

/// The layout of the ranks, computed once when a Buffer is built.
struct Topology {
  int rank = 0;
  int num_ranks = 1;
  int num_local_ranks = 1;  // ranks per NVLink domain; divides num_ranks
  /// Whether several nodes of this topology share one host (emulated nodes,
  /// UCCL_EP_NUM_LOCAL_RANKS): peers on other nodes are reachable by CUDA IPC.
  bool single_host = true;

  int num_nodes() const { return num_ranks / num_local_ranks; }
  int node() const { return rank / num_local_ranks; }
  int local_rank() const { return rank % num_local_ranks; }
  /// First rank of this rank's NVLink domain.
  int local_base() const { return node() * num_local_ranks; }
  bool is_local(int peer) const { return peer / num_local_ranks == node(); }
  /// Whether every rank shares this rank's NVLink domain (the intranode mode's requirement).
  bool all_local() const { return num_local_ranks == num_ranks; }
  /// "2 nodes x 4 ranks (emulated on one host)": for messages.
  std::string describe() const;
};

/// Builds the topology of `rank` from every rank's host name (index = rank).
/// `num_local_ranks`: 0 groups the ranks by host (each host's ranks must be consecutive and
/// every host must hold the same number); > 0 is taken as given (it must divide the rank count
/// and no node may span two hosts). `env_override` (UCCL_EP_NUM_LOCAL_RANKS; 0 when unset)
/// replaces `num_local_ranks` when > 0. Throws Error(kValue) naming the rule it breaks.
Topology make_topology(int rank, const std::vector<std::string>& host_names, int num_local_ranks,
                       int env_override);

/// Whether the ipc transport keeps the RDMA buffer in host memory. `setting` is
/// UCCL_EP_IPC_MEMORY: "host", "device", or "auto", which picks host memory when the ranks span
/// several NVLink domains and some GPU serves two ranks (ranks sharing a GPU under CUDA MPS,
/// where copy-engine copies of the proxies wait behind spinning kernels). `gpus` holds every
/// rank's GPU as "host/PCI bus id" (index = rank), so every rank decides the same.
bool ipc_uses_host_memory(const std::string& setting, const Topology& topology,
                          const std::vector<std::string>& gpus);

}  // namespace uccl::ep
