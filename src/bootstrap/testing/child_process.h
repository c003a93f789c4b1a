// Test support: run this test binary again as a child process in another role (fork + exec),
// with PR_SET_PDEATHSIG so a dying parent never leaves an orphan, and a deadline on the wait.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace uccl::ep::testing {

/// How a child ended.
struct ChildExit {
  bool timed_out = false;  // still running at the deadline (then killed)
  int code = -1;           // exit code, when it exited
  int signal = 0;          // terminating signal, when killed
  bool ok() const { return !timed_out && signal == 0 && code == 0; }
  std::string describe() const;
};

/// A child running /proc/self/exe with `args` (argv[1..]). Killed (SIGKILL) and reaped by the
/// destructor if still running. Move-only.
class ChildProcess {
 public:
  static ChildProcess spawn(const std::vector<std::string>& args);
  ChildProcess() = default;
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  /// Waits up to `timeout_secs` for the child to exit; kills it at the deadline.
  ChildExit wait(double timeout_secs);
  /// SIGKILL now, then reap.
  void kill();

 private:
  pid_t pid_ = -1;
};

/// Unlinks the POSIX shared-memory objects a dead process `pid` left in /dev/shm (uccl-ep's
/// "uccl_ep_<pid>_..." and libfabric shm's "<pid>:..."). Call only once `pid` was reaped;
/// ChildProcess does it after wait() and kill().
void remove_shm_leftovers(pid_t pid);

/// The value of "--name=value" or "--name value" in argv, or "" when absent.
std::string arg_value(int argc, char** argv, const std::string& name);

}  // namespace uccl::ep::testing
