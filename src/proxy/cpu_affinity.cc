// Proxy thread placement from sysfs: NUMA node of the GPU, its CPUs, physical cores first.
#include "proxy/cpu_affinity.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/error.h"

namespace uccl::ep::proxy {
namespace {

// First line of a small text file, "" when it cannot be read.
std::string read_line(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return "";
  char buf[4096];
  std::string out;
  if (std::fgets(buf, sizeof(buf), f) != nullptr) out = buf;
  std::fclose(f);
  while (!out.empty() && std::isspace(static_cast<unsigned char>(out.back()))) out.pop_back();
  return out;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Orders CPUs with the first hardware thread of each core first (then the SMT siblings).
std::vector<int> cores_first(const std::string& sysfs, const std::vector<int>& cpus) {
  std::vector<int> primary, secondary;
  for (int cpu : cpus) {
    const std::string siblings =
        read_line(str_cat(sysfs, "/devices/system/cpu/cpu", cpu, "/topology/thread_siblings_list"));
    bool first = true;
    if (!siblings.empty()) {
      try {
        const std::vector<int> s = parse_cpu_list(siblings);
        first = s.empty() || *std::min_element(s.begin(), s.end()) == cpu;
      } catch (const Error&) {
      }
    }
    (first ? primary : secondary).push_back(cpu);
  }
  primary.insert(primary.end(), secondary.begin(), secondary.end());
  return primary;
}

std::string join(const std::vector<int>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += str_cat(i ? "," : "", v[i]);
  return out;
}

}  // namespace

std::vector<int> parse_cpu_list(const std::string& text) {
  std::vector<int> out;
  size_t pos = 0;
  auto number = [&](size_t& p) {
    UCCL_EP_CHECK_VALUE(p < text.size() && std::isdigit(static_cast<unsigned char>(text[p])),
                        "CPU list '", text, "': expected a number at offset ", p);
    long v = 0;
    while (p < text.size() && std::isdigit(static_cast<unsigned char>(text[p]))) {
      v = v * 10 + (text[p++] - '0');
      UCCL_EP_CHECK_VALUE(v < 1 << 20, "CPU list '", text, "': CPU number too large");
    }
    return static_cast<int>(v);
  };
  while (pos < text.size()) {
    const int first = number(pos);
    int last = first;
    if (pos < text.size() && text[pos] == '-') {
      ++pos;
      last = number(pos);
      UCCL_EP_CHECK_VALUE(last >= first, "CPU list '", text, "': range ", first, "-", last,
                          " is reversed");
    }
    for (int c = first; c <= last; ++c) out.push_back(c);
    if (pos < text.size()) {
      UCCL_EP_CHECK_VALUE(text[pos] == ',', "CPU list '", text, "': unexpected '", text[pos],
                          "' at offset ", pos);
      ++pos;
      UCCL_EP_CHECK_VALUE(pos < text.size(), "CPU list '", text, "' ends with ','");
    }
  }
  return out;
}

CpuPlan plan_proxy_cpus(const std::string& sysfs, const std::string& pci_bus_id, int local_rank,
                        int num_threads, const std::vector<int>& allowed) {
  CpuPlan plan;
  if (allowed.empty() || num_threads < 1) {
    plan.summary = "no CPU is known to be allowed: threads are not pinned";
    return plan;
  }
  std::vector<int> candidates;
  std::string where = "any allowed CPU";
  if (!pci_bus_id.empty()) {
    const std::string node =
        read_line(str_cat(sysfs, "/bus/pci/devices/", lower(pci_bus_id), "/numa_node"));
    if (!node.empty() && node != "-1") {
      try {
        plan.numa_node = std::stoi(node);
        const std::vector<int> node_cpus = parse_cpu_list(
            read_line(str_cat(sysfs, "/devices/system/node/node", plan.numa_node, "/cpulist")));
        for (int c : node_cpus)
          if (std::find(allowed.begin(), allowed.end(), c) != allowed.end())
            candidates.push_back(c);
        where = str_cat("NUMA node ", plan.numa_node, " of GPU ", pci_bus_id);
      } catch (const std::exception&) {
        plan.numa_node = -1;
      }
    }
    if (candidates.empty())
      where = str_cat("any allowed CPU (NUMA node of GPU ", pci_bus_id,
                      " unknown or without allowed CPUs)");
  }
  if (candidates.empty()) candidates = allowed;
  candidates = cores_first(sysfs, candidates);
  const size_t n = candidates.size();
  for (int t = 0; t < num_threads; ++t)
    plan.cpus.push_back(
        candidates[(static_cast<size_t>(local_rank) * num_threads + static_cast<size_t>(t)) % n]);
  plan.summary = str_cat(
      "threads pinned to CPUs ", join(plan.cpus), " (", where, ", local rank ", local_rank,
      n < static_cast<size_t>(num_threads) ? "; fewer candidate CPUs than threads: CPUs are shared"
                                           : "",
      ")");
  return plan;
}

std::vector<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> out;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return out;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) out.push_back(c);
  return out;
}

bool pin_current_thread(int cpu, std::string* why) {
  if (cpu < 0 || cpu >= CPU_SETSIZE) {
    if (why) *why = str_cat("CPU ", cpu, " out of range");
    return false;
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  const int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
  if (rc != 0 && why) *why = std::strerror(rc);
  return rc == 0;
}

}  // namespace uccl::ep::proxy
