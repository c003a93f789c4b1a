// The libfabric functions the transport calls through the library's exports. Everything else
// it uses (fi_domain, fi_endpoint, fi_writedata, fi_cq_read, fi_close, ...) is an inline
// wrapper over the objects' ops tables in libfabric's headers, so these six are all it needs
// from libfabric.so.1. They are loaded with dlopen at the first use: a build with libfabric
// imports and runs on machines without it (intranode mode, the ipc transport), and only
// creating a libfabric transport fails there, with an error that says so.
#pragma once

#include <rdma/fabric.h>

#include <cstdint>

namespace uccl::ep::transport::libfabric {

struct Api {
  int (*getinfo)(uint32_t version, const char* node, const char* service, uint64_t flags,
                 const fi_info* hints, fi_info** info) = nullptr;
  void (*freeinfo)(fi_info* info) = nullptr;
  fi_info* (*dupinfo)(const fi_info* info) = nullptr;  // dupinfo(nullptr) == fi_allocinfo()
  int (*fabric)(fi_fabric_attr* attr, fid_fabric** fabric, void* context) = nullptr;
  const char* (*strerror)(int errnum) = nullptr;
  uint32_t (*version)() = nullptr;
};

/// The shared library loaded when none is named.
inline constexpr const char* kLibraryName = "libfabric.so.1";

/// Loads `library` (a name the dynamic loader searches for, or a path) and resolves every
/// function of Api. Throws Error(kRuntime) naming the library and the loader's message when it
/// or a function is missing. The library stays loaded for the life of the process.
Api load_api(const char* library);

/// The process's Api, loaded from kLibraryName once. Throws the load error (the same message
/// every call) when libfabric is not installed.
const Api& api();

}  // namespace uccl::ep::transport::libfabric
