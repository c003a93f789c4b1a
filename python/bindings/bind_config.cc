// Bindings of Config, the tuned tables, size hints and the environment-variable registry.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <string>
#include <tuple>
#include <vector>

#include "uccl_ep/config.h"
#include "uccl_ep/env.h"
#include "uccl_ep/error.h"

namespace uccl::ep::bindings {

namespace nb = nanobind;

void bind_config(nb::module_& m) {
  nb::class_<Config>(m, "Config",
                     "Chunking configuration of the normal kernels (DeepEP-compatible).\n\n"
                     "Config(num_sms=20, num_max_nvl_chunked_send_tokens=6,\n"
                     "       num_max_nvl_chunked_recv_tokens=256,\n"
                     "       num_max_rdma_chunked_send_tokens=6,\n"
                     "       num_max_rdma_chunked_recv_tokens=256)")
      .def(nb::init<int, int, int, int, int>(), nb::arg("num_sms") = 20,
           nb::arg("num_max_nvl_chunked_send_tokens") = 6,
           nb::arg("num_max_nvl_chunked_recv_tokens") = 256,
           nb::arg("num_max_rdma_chunked_send_tokens") = 6,
           nb::arg("num_max_rdma_chunked_recv_tokens") = 256)
      .def_prop_ro("num_sms", &Config::num_sms)
      .def_prop_ro("num_max_nvl_chunked_send_tokens", &Config::num_max_nvl_chunked_send_tokens)
      .def_prop_ro("num_max_nvl_chunked_recv_tokens", &Config::num_max_nvl_chunked_recv_tokens)
      .def_prop_ro("num_max_rdma_chunked_send_tokens", &Config::num_max_rdma_chunked_send_tokens)
      .def_prop_ro("num_max_rdma_chunked_recv_tokens", &Config::num_max_rdma_chunked_recv_tokens)
      .def("get_nvl_buffer_size_hint", &Config::get_nvl_buffer_size_hint, nb::arg("hidden_bytes"),
           nb::arg("num_ranks"),
           "Bytes DeepEP V1 asks for the NVLink buffer (hidden_bytes = hidden * max(elem, 2)).")
      .def("get_rdma_buffer_size_hint", &Config::get_rdma_buffer_size_hint, nb::arg("hidden_bytes"),
           nb::arg("num_ranks"),
           "Bytes DeepEP V1 asks for the RDMA buffer (0 when num_ranks <= 8).")
      .def("__repr__", [](const Config& c) {
        return str_cat("Config(num_sms=", c.num_sms(),
                       ", num_max_nvl_chunked_send_tokens=", c.num_max_nvl_chunked_send_tokens(),
                       ", num_max_nvl_chunked_recv_tokens=", c.num_max_nvl_chunked_recv_tokens(),
                       ", num_max_rdma_chunked_send_tokens=", c.num_max_rdma_chunked_send_tokens(),
                       ", num_max_rdma_chunked_recv_tokens=", c.num_max_rdma_chunked_recv_tokens(),
                       ")");
      });
  m.def("get_dispatch_config", &get_dispatch_config, nb::arg("num_ranks"), nb::arg("num_sms"));
  m.def("get_combine_config", &get_combine_config, nb::arg("num_ranks"), nb::arg("num_sms"));
  m.def("get_low_latency_rdma_size_hint", &get_low_latency_rdma_size_hint,
        nb::arg("num_max_dispatch_tokens_per_rank"), nb::arg("hidden"), nb::arg("num_ranks"),
        nb::arg("num_experts"));
  m.def(
      "env_vars",
      [] {
        std::vector<std::tuple<std::string, std::string, std::string, std::string>> out;
        for (const auto& v : kEnvVars) out.emplace_back(v.name, v.type, v.default_value, v.meaning);
        return out;
      },
      "The environment variables uccl-ep reads: (name, type, default, meaning).");
  m.def(
      "read_env_settings",
      [] {
        const EnvSettings s = read_env_settings();
        return std::make_tuple(s.timeout_secs, static_cast<int>(s.log_level));
      },
      "Parses the environment now; raises ValueError naming a variable that does not parse.");
}

}  // namespace uccl::ep::bindings
