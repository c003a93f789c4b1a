// libfabric provider selection: hints, the auto list, and why each candidate was refused.
#include "transport/libfabric/fabric.h"
#include "transport/libfabric/api.h"

#include <rdma/fi_errno.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <utility>
#include <vector>

#include "common/error.h"

namespace uccl::ep::transport::libfabric {
namespace {

constexpr uint64_t kBaseCaps =
    FI_MSG | FI_RMA | FI_SEND | FI_RECV | FI_WRITE | FI_READ | FI_REMOTE_WRITE | FI_REMOTE_READ;

// Every mr_mode bit the transport handles: descriptors for local buffers, remote addresses
// per FI_MR_VIRT_ADDR, provider keys (exchanged), bind + enable per endpoint, device memory.
constexpr int kHandledMrMode =
    FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_ENDPOINT;

// fi_info strings are C strings the library frees with fi_freeinfo.
char* dup_cstr(std::string_view s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  UCCL_EP_CHECK_RUNTIME(p != nullptr, "libfabric: out of memory building hints");
  std::memcpy(p, s.data(), s.size());
  p[s.size()] = '\0';
  return p;
}

fi_info* make_hints(const std::string& provider, bool atomics, bool hmem) {
  fi_info* hints = api().dupinfo(nullptr);  // fi_allocinfo()
  UCCL_EP_CHECK_RUNTIME(hints != nullptr, "libfabric: fi_allocinfo failed");
  hints->ep_attr->type = FI_EP_RDM;
  hints->caps = kBaseCaps | (atomics ? FI_ATOMIC : 0) | (hmem ? FI_HMEM : 0);
  // Modes we honour: a fi_context2 leads every operation context; remote CQ data may consume
  // a posted receive (the receive pool is always posted and reposted).
  hints->mode = FI_CONTEXT | FI_CONTEXT2 | FI_RX_CQ_DATA;
  hints->domain_attr->mr_mode = kHandledMrMode | (hmem ? FI_MR_HMEM : 0);
  hints->domain_attr->threading = FI_THREAD_DOMAIN;  // one proxy thread drives a transport
  hints->fabric_attr->prov_name = dup_cstr(provider);
  return hints;
}

// Returns the first info of `provider` (exact name match) or nullptr with `why` set.
fi_info* try_getinfo(const std::string& provider, bool atomics, bool hmem, std::string& why) {
  fi_info* hints = make_hints(provider, atomics, hmem);
  fi_info* list = nullptr;
  const int rc = api().getinfo(FI_VERSION(FI_MAJOR_VERSION, FI_MINOR_VERSION), nullptr, nullptr, 0,
                               hints, &list);
  api().freeinfo(hints);
  if (rc != 0) {
    why = fi_error_text(rc);
    return nullptr;
  }
  fi_info* chosen = nullptr;
  for (fi_info* i = list; i && !chosen; i = i->next)
    if (i->fabric_attr && i->fabric_attr->prov_name && provider == i->fabric_attr->prov_name)
      chosen = api().dupinfo(i);
  api().freeinfo(list);
  if (!chosen) why = "no info with exactly this provider name";
  return chosen;
}

}  // namespace

std::string hex_text(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string fi_error_text(long rc) {
  return str_cat(api().strerror(static_cast<int>(rc < 0 ? -rc : rc)), " (", rc, ")");
}

bool hardware_atomics(const std::string& provider) {
  return provider == "cxi";
}

std::string native_atomics_broken(const std::string& provider) {
  const uint32_t v = api().version();
  if (provider == "shm" && (FI_MAJOR(v) < 1 || (FI_MAJOR(v) == 1 && FI_MINOR(v) <= 17))) {
    return str_cat("shm in libfabric ", FI_MAJOR(v), ".", FI_MINOR(v),
                   " applies the operand of a later fi_atomic to an earlier one when two "
                   "FI_DELIVERY_COMPLETE atomics are in flight (docs/transports.md, \"Provider "
                   "behaviour\")");
  }
  return "";
}

ProviderSelection select_provider(const std::string& provider, SignalPath path, bool want_hmem) {
  std::vector<std::string> candidates;
  if (provider.empty() || provider == "auto") {
    for (const char* p : kAutoProviders) candidates.emplace_back(p);
  } else {
    candidates.push_back(provider);
  }
  ProviderSelection sel;
  for (const std::string& name : candidates) {
    const bool atomics =
        path == SignalPath::kNativeAtomic || (path == SignalPath::kAuto && hardware_atomics(name));
    // Most wanted first; drop FI_HMEM, then FI_ATOMIC unless native atomics are required.
    std::vector<std::pair<bool, bool>> attempts;  // (atomics, hmem)
    for (bool a : {true, false}) {
      if ((a && !atomics) || (!a && path == SignalPath::kNativeAtomic)) continue;
      if (want_hmem) attempts.emplace_back(a, true);
      attempts.emplace_back(a, false);
    }
    std::string why;
    for (const auto& [a, h] : attempts) {
      std::string w;
      if (fi_info* info = try_getinfo(name, a, h, w)) {
        sel.info = info;
        sel.name = name;
        sel.atomics = a;
        sel.hmem = h;
        return sel;
      }
      if (why.empty()) why = w;
    }
    sel.tried += str_cat(sel.tried.empty() ? "" : "; ", name, ": ", why);
  }
  throw Error(
      ErrorKind::kRuntime,
      str_cat("libfabric: no usable RDM provider (RMA + messages + remote CQ data",
              path == SignalPath::kNativeAtomic ? " + FI_ATOMIC" : "", "); tried ", sel.tried,
              ". Name one with UCCL_EP_FI_PROVIDER (fi_info -l lists what is installed)"));
}

std::string first_working_provider() {
  for (const char* p : kAutoProviders) {
    std::string why;
    if (fi_info* info = try_getinfo(p, false, false, why)) {
      api().freeinfo(info);
      return p;
    }
  }
  return "";
}

}  // namespace uccl::ep::transport::libfabric
