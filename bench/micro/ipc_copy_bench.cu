// Per-SM copy throughput into memory that another process exported (cudaIpcGetMemHandle), against
// the writer's own memory, on one GPU. Ranks sharing a GPU (the GPU suites with shared GPUs,
// bench_intranode.py --share-gpus) push into each other's rings through such mappings; this says
// whether those stores cost more than local ones, i.e. whether a shared-GPU run underrates a
// kernel whose SMs only push.
//
//   ipc_copy_bench [--mib 256] [--json PATH]
//
// The process allocates the destination, exports it and runs itself again (--child HANDLE) as the
// writer, which copies 14336-byte rows from its own memory with the warp copy kernel (24 warps
// per SM, 4 words in flight per lane) into its own memory and into the imported one, with 4, 8,
// 12 and 24 SMs, and checks each destination.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "copy_common.cuh"

namespace {

using namespace uccl::ep::bench;

std::string to_hex(const cudaIpcMemHandle_t& h) {
  std::string s;
  const auto* b = reinterpret_cast<const unsigned char*>(&h);
  for (size_t i = 0; i < sizeof(h); ++i) {
    char x[3];
    std::snprintf(x, sizeof(x), "%02x", b[i]);
    s += x;
  }
  return s;
}

bool from_hex(const std::string& s, cudaIpcMemHandle_t& h) {
  if (s.size() != 2 * sizeof(h)) return false;
  auto* b = reinterpret_cast<unsigned char*>(&h);
  for (size_t i = 0; i < sizeof(h); ++i)
    b[i] = std::strtoul(s.substr(2 * i, 2).c_str(), nullptr, 16);
  return true;
}

int run_writer(const std::string& handle_hex, int64_t bytes, const std::string& json_path) {
  cudaIpcMemHandle_t h;
  if (!from_hex(handle_hex, h)) {
    std::fprintf(stderr, "--child: expected %zu hex digits\n", 2 * sizeof(h));
    return 2;
  }
  uint8_t *imported = nullptr, *own = nullptr, *src = nullptr;
  CHECK_CUDA(
      cudaIpcOpenMemHandle(reinterpret_cast<void**>(&imported), h, cudaIpcMemLazyEnablePeerAccess));
  CHECK_CUDA(cudaMalloc(&own, bytes));
  CHECK_CUDA(cudaMalloc(&src, bytes));
  std::vector<uint8_t> host(bytes), back(bytes);
  for (int64_t i = 0; i < bytes; ++i) host[i] = static_cast<uint8_t>(i * 2654435761u >> 11);
  CHECK_CUDA(cudaMemcpy(src, host.data(), bytes, cudaMemcpyHostToDevice));
  const int num_rows = static_cast<int>(bytes / kRowBytes);
  std::FILE* json = json_path.empty() ? nullptr : std::fopen(json_path.c_str(), "w");
  if (json) std::fprintf(json, "{\"bytes\": %lld, \"results\": [\n", static_cast<long long>(bytes));
  bool all_ok = true, first = true;
  std::printf("%4s  %-9s %9s %9s %12s\n", "SMs", "dst", "us", "GB/s", "GB/s per SM");
  for (int sms : {4, 8, 12, 24}) {
    for (uint8_t* dst : {own, imported}) {
      const char* name = dst == own ? "own" : "imported";
      CHECK_CUDA(cudaMemset(dst, 0, bytes));
      const float ms =
          time_median([&] { warp_copy_kernel<4><<<sms, 768>>>(src, dst, num_rows, 0); });
      CHECK_CUDA(cudaMemcpy(back.data(), dst, bytes, cudaMemcpyDeviceToHost));
      const bool ok =
          std::memcmp(back.data(), host.data(), static_cast<size_t>(num_rows) * kRowBytes) == 0;
      all_ok &= ok;
      const double gbps = static_cast<double>(num_rows) * kRowBytes / (ms * 1e-3) / 1e9;
      std::printf("%4d  %-9s %9.1f %9.1f %12.2f  %s\n", sms, name, ms * 1e3, gbps, gbps / sms,
                  ok ? "ok" : "MISMATCH");
      if (json)
        std::fprintf(json, "%s{\"sms\": %d, \"dst\": \"%s\", \"gbps\": %.2f, \"ok\": %s}",
                     first ? "" : ",\n", sms, name, gbps, ok ? "true" : "false");
      first = false;
    }
  }
  if (json) {
    std::fprintf(json, "\n]}\n");
    std::fclose(json);
  }
  CHECK_CUDA(cudaIpcCloseMemHandle(imported));
  return all_ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t mib = 256;
  std::string child, json;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--mib")
      mib = std::atoll(argv[i + 1]);
    else if (k == "--child")
      child = argv[i + 1];
    else if (k == "--json")
      json = argv[i + 1];
    else {
      std::fprintf(stderr, "unknown flag %s (use --mib, --json)\n", k.c_str());
      return 2;
    }
  }
  if (mib < 1 || mib > 4096) {
    std::fprintf(stderr, "--mib %lld: must be in [1, 4096]\n", static_cast<long long>(mib));
    return 2;
  }
  const int64_t bytes = mib << 20;
  if (!child.empty()) return run_writer(child, bytes, json);

  // The exporting process: owns the destination until the writer exits.
  uint8_t* dst = nullptr;
  CHECK_CUDA(cudaMalloc(&dst, bytes));
  cudaIpcMemHandle_t h;
  CHECK_CUDA(cudaIpcGetMemHandle(&h, dst));
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) {
    std::perror("readlink /proc/self/exe");
    return 1;
  }
  self[n] = '\0';
  // Arguments before fork(): the child only execs (this process has CUDA threads; no allocation
  // after fork).
  const std::string m = std::to_string(mib), hex = to_hex(h);
  std::vector<const char*> args = {self, "--mib", m.c_str(), "--child", hex.c_str()};
  if (!json.empty()) {
    args.push_back("--json");
    args.push_back(json.c_str());
  }
  args.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    execv(self, const_cast<char* const*>(args.data()));
    std::perror("execv");
    _exit(127);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid) {
    std::perror("fork/waitpid");
    return 1;
  }
  CHECK_CUDA(cudaFree(dst));
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
