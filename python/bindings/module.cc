// The extension module uccl.ep._C: error translation and the sub-bindings. Every file here but
// testing/ includes only the public headers (include/uccl_ep/); testing/ builds the submodule
// _C._testing of hooks into the runtime.
#include <nanobind/nanobind.h>

#include "tensor_convert.h"
#include "uccl_ep/error.h"

namespace uccl::ep::bindings {
void bind_config(nb::module_& m);
void bind_buffer(nb::module_& m);
void bind_intranode(nb::module_& m);
void bind_internode(nb::module_& m);
void bind_low_latency(nb::module_& m);
void bind_command_path(nb::module_& m);
void bind_testing(nb::module_& m);
}  // namespace uccl::ep::bindings

NB_MODULE(_C, m) {
  namespace nb = nanobind;
  using uccl::ep::Error;
  using uccl::ep::ErrorKind;
  m.doc() = "uccl-ep native core (framework-free; tensors cross as DLPack)";
#ifdef NDEBUG
  // With PyTorch loaded, objects referenced from exception tracebacks can outlive this module
  // at interpreter shutdown (cpython issue 98253); nanobind would report them as leaks on
  // every exit after a caught error. Debug builds keep the report.
  nb::set_leak_warnings(false);
#endif
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const Error& e) {
      PyObject* type = PyExc_RuntimeError;
      switch (e.kind()) {
        case ErrorKind::kValue:
          type = PyExc_ValueError;
          break;
        case ErrorKind::kType:
          type = PyExc_TypeError;
          break;
        case ErrorKind::kNotImplemented:
          type = PyExc_NotImplementedError;
          break;
        case ErrorKind::kRuntime:
        case ErrorKind::kTimeout:
          type = PyExc_RuntimeError;
          break;
      }
      PyErr_SetString(type, e.what());
    }
  });
  uccl::ep::bindings::bind_tensor_desc(m);
  uccl::ep::bindings::bind_config(m);
  uccl::ep::bindings::bind_buffer(m);
  uccl::ep::bindings::bind_intranode(m);
  uccl::ep::bindings::bind_internode(m);    // after bind_intranode: extends BufferInfo
  uccl::ep::bindings::bind_low_latency(m);  // after bind_intranode: extends BufferInfo
  uccl::ep::bindings::bind_command_path(m);
  uccl::ep::bindings::bind_testing(m);
#ifdef UCCL_EP_SM90
  m.attr("sm90_compiled") = true;
#else
  m.attr("sm90_compiled") = false;
#endif
  m.attr("topk_idx_bits") = 64;
}
