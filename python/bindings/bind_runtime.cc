// Bindings of IntranodeBuffer and of the argument validation (BufferInfo.check_*).
// Every tensor argument is passed by keyword; unknown keywords raise TypeError.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <string>
#include <tuple>
#include <vector>

#include "common/error.h"
#include "kernels/intranode/launch.h"
#include "runtime/validate.h"
#include "tensor_convert.h"
#include "uccl_ep/intranode.h"

namespace uccl::ep::bindings {
namespace {

/// Keyword arguments of one call: typed getters that count what they found, so that a
/// misspelt keyword (one nobody read) raises TypeError.
class Kw {
 public:
  Kw(const nb::kwargs& kw, const char* op) : kw_(kw), op_(op) {}
  TensorView tensor(const char* name) { return imports_.view(get(name), name); }
  int integer(const char* name, int fallback) {
    nb::handle h = get(name);
    return h.is_none() ? fallback : nb::cast<int>(h);
  }
  bool boolean(const char* name, bool fallback) {
    nb::handle h = get(name);
    return h.is_none() ? fallback : nb::cast<bool>(h);
  }
  Config config() {
    nb::handle h = get("config");
    UCCL_EP_CHECK(!h.is_none(), ErrorKind::kValue, op_, ": config is required");
    return nb::cast<Config>(h);
  }
  cudaStream_t stream() {
    nb::handle h = get("stream");
    return h.is_none() ? nullptr : reinterpret_cast<cudaStream_t>(nb::cast<uintptr_t>(h));
  }
  /// Raises TypeError for keywords nobody read (a misspelt argument).
  void finish() const {
    if (static_cast<size_t>(PyDict_Size(kw_.ptr())) == found_.size()) return;
    for (auto [key, value] : kw_) {
      const std::string k = nb::cast<std::string>(key);
      bool read = false;
      for (const char* f : found_) read = read || k == f;
      if (!read)
        throw_error(ErrorKind::kType,
                    str_cat(op_, "() got an unexpected keyword argument '", k, "'"));
    }
  }

 private:
  nb::handle get(const char* name) {
    PyObject* v = PyDict_GetItemString(kw_.ptr(), name);  // borrowed
    if (v == nullptr) return nb::handle(Py_None);
    found_.push_back(name);
    return nb::handle(v);
  }
  const nb::kwargs& kw_;
  const char* op_;
  std::vector<const char*> found_;  // names read that were present (each read once)
  Imports imports_;
};

LayoutTensors layout_tensors(Kw& k) {
  LayoutTensors t;
  t.topk_idx = k.tensor("topk_idx");
  t.num_experts = k.integer("num_experts", 0);
  t.num_tokens_per_rank = k.tensor("num_tokens_per_rank");
  t.num_tokens_per_rdma_rank = k.tensor("num_tokens_per_rdma_rank");
  t.num_tokens_per_expert = k.tensor("num_tokens_per_expert");
  t.is_token_in_rank = k.tensor("is_token_in_rank");
  return t;
}

DispatchTensors dispatch_tensors(Kw& k) {
  DispatchTensors t;
  t.x = k.tensor("x");
  t.x_scales = k.tensor("x_scales");
  t.topk_idx = k.tensor("topk_idx");
  t.topk_weights = k.tensor("topk_weights");
  t.is_token_in_rank = k.tensor("is_token_in_rank");
  t.rank_prefix_matrix = k.tensor("rank_prefix_matrix");
  t.channel_prefix_matrix = k.tensor("channel_prefix_matrix");
  t.num_experts = k.integer("num_experts", 0);
  t.num_worst_tokens = k.integer("num_worst_tokens", 0);
  t.cached = k.boolean("cached", false);
  t.config = k.config();
  t.recv_x = k.tensor("recv_x");
  t.recv_x_scales = k.tensor("recv_x_scales");
  t.recv_topk_idx = k.tensor("recv_topk_idx");
  t.recv_topk_weights = k.tensor("recv_topk_weights");
  t.recv_src_idx = k.tensor("recv_src_idx");
  t.recv_channel_prefix_matrix = k.tensor("recv_channel_prefix_matrix");
  t.send_head = k.tensor("send_head");
  return t;
}

/// The dispatch inputs plus the count tensors; dispatch outputs are not read.
NotifyTensors notify_tensors(Kw& k) {
  NotifyTensors t;
  DispatchTensors& d = t.dispatch;
  d.x = k.tensor("x");
  d.x_scales = k.tensor("x_scales");
  d.topk_idx = k.tensor("topk_idx");
  d.topk_weights = k.tensor("topk_weights");
  d.is_token_in_rank = k.tensor("is_token_in_rank");
  d.rank_prefix_matrix = k.tensor("rank_prefix_matrix");
  d.channel_prefix_matrix = k.tensor("channel_prefix_matrix");
  d.num_experts = k.integer("num_experts", 0);
  d.num_worst_tokens = k.integer("num_worst_tokens", 0);
  d.config = k.config();
  t.num_tokens_per_rank = k.tensor("num_tokens_per_rank");
  t.num_tokens_per_expert = k.tensor("num_tokens_per_expert");
  t.expert_alignment = k.integer("expert_alignment", 1);
  t.wait_for_counts = d.num_worst_tokens == 0;
  return t;
}

CombineTensors combine_tensors(Kw& k) {
  CombineTensors t;
  t.x = k.tensor("x");
  t.topk_weights = k.tensor("topk_weights");
  t.bias0 = k.tensor("bias0");
  t.bias1 = k.tensor("bias1");
  t.rank_prefix_matrix = k.tensor("rank_prefix_matrix");
  t.recv_channel_prefix_matrix = k.tensor("recv_channel_prefix_matrix");
  t.recv_src_idx = k.tensor("recv_src_idx");
  t.is_token_in_rank = k.tensor("is_token_in_rank");
  t.send_head = k.tensor("send_head");
  t.config = k.config();
  t.combined_x = k.tensor("combined_x");
  t.combined_topk_weights = k.tensor("combined_topk_weights");
  return t;
}

nb::bytes to_bytes(const std::vector<uint8_t>& v) {
  return nb::bytes(reinterpret_cast<const char*>(v.data()), v.size());
}

void bind_buffer_info(nb::module_& m) {
  nb::class_<BufferInfo>(m, "BufferInfo",
                         "Facts about a buffer that argument validation needs; check_* run the "
                         "same validation as IntranodeBuffer without a GPU.")
      .def(nb::init<>())
      .def(
          "__init__",
          [](BufferInfo* self, int rank, int num_ranks, int64_t num_nvl_bytes, int device_index) {
            new (self) BufferInfo{rank, num_ranks, num_nvl_bytes, device_index};
          },
          nb::arg("rank"), nb::arg("num_ranks"), nb::arg("num_nvl_bytes"),
          nb::arg("device_index") = 0)
      .def_rw("rank", &BufferInfo::rank)
      .def_rw("num_ranks", &BufferInfo::num_ranks)
      .def_rw("num_nvl_bytes", &BufferInfo::num_nvl_bytes)
      .def_rw("device_index", &BufferInfo::device_index)
      .def("check_layout",
           [](const BufferInfo& info, nb::kwargs kw) {
             Kw k(kw, "get_dispatch_layout");
             const auto t = layout_tensors(k);
             k.finish();
             runtime::validate_layout(info, t);
           })
      .def("check_notify",
           [](const BufferInfo& info, nb::kwargs kw) {
             Kw k(kw, "notify_dispatch");
             const auto t = notify_tensors(k);
             k.finish();
             runtime::validate_notify(info, t);
           })
      .def("check_dispatch",
           [](const BufferInfo& info, nb::kwargs kw) {
             Kw k(kw, "dispatch");
             const auto t = dispatch_tensors(k);
             k.finish();
             runtime::validate_dispatch(info, t);
           })
      .def("check_combine", [](const BufferInfo& info, nb::kwargs kw) {
        Kw k(kw, "combine");
        const auto t = combine_tensors(k);
        k.finish();
        runtime::validate_combine(info, t);
      });
  m.def("validate_buffer_args", &runtime::validate_buffer_args, nb::arg("rank"),
        nb::arg("num_ranks"), nb::arg("num_nvl_bytes"));
  m.def(
      "wait_profile",
      [](const std::string& kernel, bool reset) {
        if (kernel == "dispatch") return kernels::intranode::read_dispatch_wait_profile(reset);
        if (kernel == "combine") return kernels::intranode::read_combine_wait_profile(reset);
        throw Error(ErrorKind::kValue,
                    str_cat("wait_profile kernel='", kernel, "' must be 'dispatch' or 'combine'"));
      },
      nb::arg("kernel"), nb::arg("reset") = true,
      "Diagnostic builds (-DUCCL_EP_WAIT_PROFILE=ON): summed wait ns per WaitSite (16), then "
      "summed warp run ns per role (send, self, recv, publish) since the last reset. Empty "
      "otherwise. Synchronize the device first.");
}

}  // namespace

void bind_runtime(nb::module_& m) {
  bind_buffer_info(m);
  nb::class_<IntranodeBuffer>(m, "IntranodeBuffer",
                              "One rank's NVLink buffer and the intranode kernels.")
      .def(nb::init<int, int, int64_t, int>(), nb::arg("rank"), nb::arg("num_ranks"),
           nb::arg("num_nvl_bytes"), nb::arg("device_index"))
      .def_prop_ro("info", &IntranodeBuffer::info)
      .def("ipc_handle", [](const IntranodeBuffer& b) { return to_bytes(b.ipc_handle()); })
      .def(
          "connect",
          [](IntranodeBuffer& b, const std::vector<nb::bytes>& handles) {
            std::vector<std::vector<uint8_t>> raw;
            for (const auto& h : handles) {
              const auto* p = static_cast<const uint8_t*>(h.data());
              raw.emplace_back(p, p + h.size());
            }
            b.connect(raw);
          },
          nb::arg("handles"))
      .def("is_available", &IntranodeBuffer::is_available)
      .def("check_healthy", &IntranodeBuffer::check_healthy)
      .def(
          "stream_wait",
          [](IntranodeBuffer& b, uintptr_t waiter, uintptr_t waitee) {
            b.stream_wait(reinterpret_cast<cudaStream_t>(waiter),
                          reinterpret_cast<cudaStream_t>(waitee));
          },
          nb::arg("waiter"), nb::arg("waitee"),
          "Makes stream `waiter` wait for the work queued on `waitee` so far (raw handles).")
      .def(
          "stream_wait_event",
          [](IntranodeBuffer& b, uintptr_t waiter, uintptr_t event) {
            b.stream_wait_event(reinterpret_cast<cudaStream_t>(waiter),
                                reinterpret_cast<cudaEvent_t>(event));
          },
          nb::arg("waiter"), nb::arg("event"),
          "Makes stream `waiter` wait for a recorded CUDA event (raw handles; 0: no wait).")
      .def("destroy", &IntranodeBuffer::destroy)
      .def("get_dispatch_layout",
           [](IntranodeBuffer& b, nb::kwargs kw) {
             Kw k(kw, "get_dispatch_layout");
             const auto t = layout_tensors(k);
             const cudaStream_t s = k.stream();
             k.finish();
             b.get_dispatch_layout(t, s);
           })
      .def("notify_dispatch",
           [](IntranodeBuffer& b, nb::kwargs kw) {
             Kw k(kw, "dispatch");
             const auto t = notify_tensors(k);
             const cudaStream_t s = k.stream();
             k.finish();
             NotifyResult r;
             {
               nb::gil_scoped_release release;
               r = b.notify_dispatch(t, s);
             }
             return std::make_tuple(r.num_recv_tokens, r.num_recv_tokens_per_expert);
           })
      .def("dispatch",
           [](IntranodeBuffer& b, nb::kwargs kw) {
             Kw k(kw, "dispatch");
             const auto t = dispatch_tensors(k);
             const cudaStream_t s = k.stream();
             k.finish();
             b.dispatch(t, s);
           })
      .def("combine",
           [](IntranodeBuffer& b, nb::kwargs kw) {
             Kw k(kw, "combine");
             const auto t = combine_tensors(k);
             const cudaStream_t s = k.stream();
             k.finish();
             b.combine(t, s);
           })
      .def(
          "local_buffer",
          [](nb::handle self) {
            auto& b = nb::cast<IntranodeBuffer&>(self);
            const size_t shape[1] = {static_cast<size_t>(b.num_nvl_bytes())};
            return nb::ndarray<uint8_t, nb::ndim<1>>(b.local_buffer(), 1, shape, self, nullptr,
                                                     nb::dtype<uint8_t>(), nb::device::cuda::value,
                                                     b.info().device_index);
          },
          "1-D uint8 view (DLPack) of this rank's ring storage; valid until destroy().");
}

}  // namespace uccl::ep::bindings
