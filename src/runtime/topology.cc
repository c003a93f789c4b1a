// make_topology: NVLink domains from host names or a given (or overridden) domain size.
#include <string>
#include <vector>

#include "common/error.h"
#include "uccl_ep/topology.h"

#include <algorithm>

namespace uccl::ep {

std::string Topology::describe() const {
  return str_cat(num_nodes(), num_nodes() == 1 ? " node" : " nodes", " x ", num_local_ranks,
                 num_local_ranks == 1 ? " rank" : " ranks",
                 single_host && num_nodes() > 1 ? " (emulated on one host)" : "");
}

namespace {

/// Ranks per host when the hosts hold equal runs of consecutive ranks, each host one run.
int ranks_per_host(const std::vector<std::string>& hosts) {
  const int r = static_cast<int>(hosts.size());
  int run = 1;
  while (run < r && hosts[run] == hosts[0]) ++run;
  const auto rule = [&] {
    return str_cat(
        ": every host must hold the same number of consecutive ranks (the host of rank 0, '",
        hosts[0], "', holds ", run,
        "); set UCCL_EP_NUM_LOCAL_RANKS to choose the NVLink domain size");
  };
  UCCL_EP_CHECK_VALUE(r % run == 0, "topology: ", r, " ranks do not split into hosts of ", run,
                      " ranks", rule());
  for (int i = 0; i < r; ++i) {
    const int first = i / run * run;
    UCCL_EP_CHECK_VALUE(hosts[i] == hosts[first], "topology: rank ", i, " runs on host '", hosts[i],
                        "' but rank ", first, " on '", hosts[first], "'", rule());
    for (int b = 0; i == first && b < first; b += run)
      UCCL_EP_CHECK_VALUE(hosts[b] != hosts[first], "topology: host '", hosts[first],
                          "' holds ranks ", b, " and ", first, " but not those between", rule());
  }
  return run;
}

}  // namespace

Topology make_topology(int rank, const std::vector<std::string>& hosts, int num_local_ranks,
                       int env_override) {
  const int r = static_cast<int>(hosts.size());
  UCCL_EP_CHECK_VALUE(r >= 1 && rank >= 0 && rank < r, "topology: rank=", rank, " must be in [0, ",
                      r, ")");
  UCCL_EP_CHECK_VALUE(num_local_ranks >= 0, "num_local_ranks=", num_local_ranks,
                      " must be >= 0 (0: the ranks of each host)");
  Topology t;
  t.rank = rank;
  t.num_ranks = r;
  const char* source = "num_local_ranks";
  int local = num_local_ranks;
  if (env_override > 0) {
    local = env_override;
    source = "UCCL_EP_NUM_LOCAL_RANKS";
  }
  if (local == 0) {
    local = ranks_per_host(hosts);
  } else {
    UCCL_EP_CHECK_VALUE(r % local == 0, source, "=", local, " must divide the number of ranks (", r,
                        ")");
    for (int i = 0; i < r; ++i)
      UCCL_EP_CHECK_VALUE(hosts[i] == hosts[i / local * local], source, "=", local, " puts ranks ",
                          i / local * local, " and ", i,
                          " in one NVLink domain, but they run on different hosts ('",
                          hosts[i / local * local], "' and '", hosts[i], "')");
  }
  t.num_local_ranks = local;
  t.single_host = true;
  for (int i = 1; i < r; ++i) t.single_host = t.single_host && hosts[i] == hosts[0];
  return t;
}

bool ipc_uses_host_memory(const std::string& setting, const Topology& topology,
                          const std::vector<std::string>& gpus) {
  if (setting == "host") return true;
  if (setting != "auto" || topology.all_local()) return false;
  std::vector<std::string> sorted(gpus);
  std::sort(sorted.begin(), sorted.end());
  return std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end();
}

}  // namespace uccl::ep
