// dlopen of libfabric.so.1 and the six functions of Api.
#include "transport/libfabric/api.h"

#include <dlfcn.h>

#include <mutex>
#include <string>

#include "common/error.h"

namespace uccl::ep::transport::libfabric {
namespace {

template <typename Fn>
void resolve(void* handle, const char* library, const char* symbol, Fn& out) {
  dlerror();
  void* p = dlsym(handle, symbol);
  const char* err = dlerror();
  UCCL_EP_CHECK_RUNTIME(p != nullptr && err == nullptr,
                        "libfabric transport unavailable: ", library, " has no symbol ", symbol,
                        " (", err ? err : "null", ")");
  out = reinterpret_cast<Fn>(p);
}

}  // namespace

Api load_api(const char* library) {
  void* handle = dlopen(library, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* err = dlerror();
    throw Error(ErrorKind::kRuntime,
                str_cat("libfabric transport unavailable: cannot load ", library, " (",
                        err ? err : "unknown error",
                        "). Install libfabric with your NIC's provider (Debian/Ubuntu: apt "
                        "install libfabric1) or add its directory to LD_LIBRARY_PATH; "
                        "intranode mode and the ipc transport do not need it"));
  }
  Api api;
  try {
    resolve(handle, library, "fi_getinfo", api.getinfo);
    resolve(handle, library, "fi_freeinfo", api.freeinfo);
    resolve(handle, library, "fi_dupinfo", api.dupinfo);
    resolve(handle, library, "fi_fabric", api.fabric);
    resolve(handle, library, "fi_strerror", api.strerror);
    resolve(handle, library, "fi_version", api.version);
  } catch (...) {
    dlclose(handle);
    throw;
  }
  return api;  // the handle stays open: the library's objects outlive any transport
}

const Api& api() {
  static std::once_flag once;
  static Api loaded;
  static std::string failure;
  std::call_once(once, [] {
    try {
      loaded = load_api(kLibraryName);
    } catch (const Error& e) {
      failure = e.what();
    }
  });
  if (!failure.empty()) throw Error(ErrorKind::kRuntime, failure);
  return loaded;
}

}  // namespace uccl::ep::transport::libfabric
