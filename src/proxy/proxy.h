// The CPU proxy of one GPU: N threads, each owning the queues q with q % N == thread and one
// transport, executing the GPU's commands (see worker.h for the execution rules and
// docs/command_path.md, "The proxy", for the design).
#pragma once

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "proxy/proxy_options.h"
#include "proxy/worker.h"
#include "queue/consumer.h"
#include "transport/transport.h"

namespace uccl::ep::proxy {

/// How stop() ends the threads.
enum class StopMode {
  kDrain,    // execute every command already queued and wait for completions (with the
             // deadline timeout_secs), then stop; what is left at the deadline is abandoned
  kAbandon,  // stop at once; queued commands stay unexecuted, operations in flight are dropped
};

enum class StopStatus {
  kNotStarted,  // start() was never called
  kDrained,     // every queue empty and nothing in flight
  kAbandoned,   // stopped with work left (kAbandon, or kDrain past its deadline)
  kFailed,      // the proxy had failed (message: the first error), or a thread did not exit
};

/// What stop() found.
struct StopResult {
  StopStatus status = StopStatus::kNotStarted;
  uint64_t pending_commands = 0;  // at least this many commands were left in the queues
  uint64_t inflight_ops = 0;      // operations still in flight
  std::string message;            // one line for logs and exceptions
};

/// "drained", "abandoned", ...
const char* stop_status_name(StopStatus status);

/// Not thread-safe itself: one owner calls start/stop/pause/resume; check(), failed(),
/// error_message() and stats() may be called from any thread.
class Proxy {
 public:
  /// `queues[q]` is queue q (`queues[q].index == q`); thread t serves the queues with
  /// q % num_threads == t through `transports[t]`, which must be connected, created with
  /// num_pipes_of_thread() pipes and max_inflight >= max_inflight_of_thread(). Throws
  /// Error(kValue) on invalid options, fewer queues than threads or a transport count that is
  /// not num_threads.
  Proxy(const ProxyOptions& options, const std::vector<queue::QueueHostView>& queues,
        std::vector<std::unique_ptr<transport::Transport>> transports);
  /// Stops (kAbandon) if still running.
  ~Proxy();
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  /// Starts the threads (pinned unless options.pin_threads is false; the choice is logged once
  /// per process at info level). Once per Proxy: throws Error(kRuntime) on a second call.
  void start();
  /// Stops the threads and reports how (see StopMode). Never hangs: threads that do not exit
  /// within the deadline are reported (kFailed) and left detached with their memory leaked.
  /// After kAbandoned or kFailed the error word of every queue is set, so producers waiting on
  /// them stop. Idempotent: later calls return the first result.
  StopResult stop(StopMode mode = StopMode::kDrain);

  /// Stop draining the queues (completions are still polled) / resume. pause() returns once
  /// every thread has acknowledged (Error(kTimeout) if one does not within timeout_secs).
  /// Tests and the back-pressure check use it; producers then wait on full queues.
  void pause();
  void resume();

  /// Throws Error(kRuntime) with the first recorded error (rank, thread, queue, ticket, opcode,
  /// peer, transport message, counters) once the proxy failed.
  void check() const;
  bool failed() const { return control_.error.failed(); }
  /// "" while healthy, else the first error.
  std::string error_message() const { return control_.error.message(); }

  bool running() const { return started_ && !stopped_; }
  int num_threads() const { return options_.num_threads; }
  const ProxyOptions& options() const { return options_; }
  /// The CPU of each thread (-1: not pinned); valid after start().
  const std::vector<int>& cpus() const { return cpus_; }
  /// Counters of every thread.
  std::vector<ThreadStats> stats() const;
  /// Sum over threads.
  ThreadStats total_stats() const;

 private:
  StopResult collect(StopMode mode, const std::vector<int>& stuck);

  ProxyOptions options_;
  SharedControl control_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
  std::vector<int> cpus_;
  bool started_ = false, stopped_ = false;
  StopResult result_;
};

}  // namespace uccl::ep::proxy
