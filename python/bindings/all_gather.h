// An AllGather (uccl_ep/buffer.h) that calls a Python callable: bytes in, a sequence of bytes
// (one per rank) out. The GIL is taken for the call; C++ callers hold it released.
#pragma once

#include <nanobind/nanobind.h>

#include <string>
#include <vector>

#include "uccl_ep/buffer.h"
#include "uccl_ep/error.h"

namespace uccl::ep::bindings {

namespace nb = nanobind;

inline AllGather python_all_gather(nb::object fn) {
  return [fn = std::move(fn)](const Bytes& mine) {
    nb::gil_scoped_acquire gil;
    std::vector<Bytes> out;
    try {
      nb::object result = fn(nb::bytes(reinterpret_cast<const char*>(mine.data()), mine.size()));
      for (nb::handle item : result) {
        const auto b = nb::cast<nb::bytes>(item);
        const auto* p = static_cast<const uint8_t*>(b.data());
        out.emplace_back(p, p + b.size());
      }
    } catch (nb::python_error& e) {
      throw Error(ErrorKind::kRuntime, std::string("the all-gather failed: ") + e.what());
    } catch (const nb::cast_error&) {
      throw Error(ErrorKind::kRuntime,
                  "the all-gather must return a sequence of bytes objects, one per rank");
    }
    return out;
  };
}

inline nb::bytes to_bytes(const Bytes& v) {
  return nb::bytes(reinterpret_cast<const char*>(v.data()), v.size());
}

}  // namespace uccl::ep::bindings
