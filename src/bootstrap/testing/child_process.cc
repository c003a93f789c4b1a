// Test support: child processes of the test binary with a parent-death signal and deadlines.
#include "bootstrap/testing/child_process.h"

#include <dirent.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>

#include "common/error.h"

namespace uccl::ep::testing {

std::string ChildExit::describe() const {
  if (timed_out) return "timed out (killed)";
  if (signal != 0) return str_cat("killed by signal ", signal);
  return str_cat("exit code ", code);
}

ChildProcess ChildProcess::spawn(const std::vector<std::string>& args) {
  std::vector<std::string> argv_storage = {"/proc/self/exe"};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& s : argv_storage) argv.push_back(s.data());
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  UCCL_EP_CHECK_RUNTIME(pid >= 0, "fork failed (errno ", errno, ")");
  if (pid == 0) {
    // Child: die with the parent, and never run on if the parent is already gone.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(111);
    execv(argv[0], argv.data());
    _exit(112);
  }
  ChildProcess c;
  c.pid_ = pid;
  return c;
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept : pid_(other.pid_) {
  other.pid_ = -1;
}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    kill();
    pid_ = other.pid_;
    other.pid_ = -1;
  }
  return *this;
}

ChildProcess::~ChildProcess() {
  kill();
}

ChildExit ChildProcess::wait(double timeout_secs) {
  ChildExit e;
  if (pid_ < 0) return e;
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(timeout_secs));
  for (;;) {
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      remove_shm_leftovers(pid_);  // nothing when it exited cleanly
      pid_ = -1;
      if (WIFEXITED(status)) e.code = WEXITSTATUS(status);
      if (WIFSIGNALED(status)) e.signal = WTERMSIG(status);
      return e;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      kill();
      e.timed_out = true;
      return e;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void ChildProcess::kill() {
  if (pid_ < 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  remove_shm_leftovers(pid_);
  pid_ = -1;
}

void remove_shm_leftovers(pid_t pid) {
  // Only for a reaped child of ours: its pid can be reused at once, and a new process would
  // then meet these names (uccl-ep's signal regions; libfabric shm's "<pid>:..." regions).
  const std::string ours = str_cat("uccl_ep_", static_cast<int64_t>(pid), "_");
  const std::string fabric = str_cat(static_cast<int64_t>(pid), ":");
  DIR* dir = opendir("/dev/shm");
  if (dir == nullptr) return;
  std::vector<std::string> names;
  while (const dirent* e = readdir(dir)) {
    const std::string n = e->d_name;
    if (n.rfind(ours, 0) == 0 || n.rfind(fabric, 0) == 0) names.push_back("/" + n);
  }
  closedir(dir);
  for (const std::string& n : names) shm_unlink(n.c_str());
}

std::string arg_value(int argc, char** argv, const std::string& name) {
  const std::string flag = "--" + name, prefix = flag + "=";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind(prefix, 0) == 0) return a.substr(prefix.size());
    if (a == flag && i + 1 < argc) return argv[i + 1];
  }
  return "";
}

}  // namespace uccl::ep::testing
