// The CPU proxy of one GPU: thread lifecycle (start, pinning, stop with a deadline), errors.
#include "proxy/proxy.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <system_error>

#include "common/error.h"
#include "common/log.h"
#include "proxy/cpu_affinity.h"

namespace uccl::ep::proxy {
namespace {

using Clock = std::chrono::steady_clock;

// Extra time stop() waits for a thread to leave after its own drain deadline.
constexpr double kExitGraceSecs = 5.0;

// Waits until `w` exited or `deadline` passed.
bool wait_exit(const Worker& w, Clock::time_point deadline) {
  while (!w.exited()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

}  // namespace

const char* stop_status_name(StopStatus status) {
  switch (status) {
    case StopStatus::kNotStarted:
      return "not started";
    case StopStatus::kDrained:
      return "drained";
    case StopStatus::kAbandoned:
      return "abandoned";
    case StopStatus::kFailed:
      return "failed";
  }
  return "unknown";
}

Proxy::Proxy(const ProxyOptions& options, const std::vector<queue::QueueHostView>& queues,
             std::vector<std::unique_ptr<transport::Transport>> transports)
    : options_(options) {
  validate_options(options);
  control_.queues = queues;
  control_.num_threads = options.num_threads;
  control_.progress = std::make_unique<ThreadProgress[]>(static_cast<size_t>(options.num_threads));
  const int n = options.num_threads;
  UCCL_EP_CHECK_VALUE(queues.size() >= static_cast<size_t>(n), "proxy: ", queues.size(),
                      " queue(s) for ", n,
                      " threads: every thread needs at least one queue "
                      "(lower UCCL_EP_NUM_PROXY_THREADS or use more queues)");
  UCCL_EP_CHECK_VALUE(transports.size() == static_cast<size_t>(n), "proxy: ", transports.size(),
                      " transport(s) for ", n, " threads (one per thread)");
  for (size_t q = 0; q < queues.size(); ++q)
    UCCL_EP_CHECK_VALUE(queues[q].index == q, "proxy: queues[", q, "] has index ", queues[q].index,
                        " (queues must be given in index order)");
  for (int t = 0; t < n; ++t) {
    std::vector<queue::QueueHostView> mine;
    for (size_t q = static_cast<size_t>(t); q < queues.size(); q += static_cast<size_t>(n))
      mine.push_back(queues[q]);
    workers_.push_back(
        std::make_unique<Worker>(t, options, mine, std::move(transports[t]), control_));
  }
}

Proxy::~Proxy() {
  if (running()) stop(StopMode::kAbandon);
}

void Proxy::start() {
  UCCL_EP_CHECK_RUNTIME(!started_,
                        "proxy: start() called twice (a stopped Proxy cannot be "
                        "restarted; create a new one)");
  cpus_.assign(workers_.size(), -1);
  if (options_.pin_threads) {
    const CpuPlan plan = plan_proxy_cpus(options_.sysfs_root, options_.gpu_pci_bus_id,
                                         options_.local_rank, options_.num_threads, allowed_cpus());
    if (!plan.cpus.empty()) cpus_ = plan.cpus;
    static std::atomic<bool> logged{false};
    log_message(logged.exchange(true) ? LogLevel::kDebug : LogLevel::kInfo,
                str_cat("proxy: rank ", options_.rank, ", ", options_.num_threads, " thread(s): ",
                        plan.summary, " (UCCL_EP_DISABLE_CPU_AFFINITY=1 to opt out)"));
  }
  started_ = true;
  for (size_t t = 0; t < workers_.size(); ++t) {
    Worker* w = workers_[t].get();
    const int cpu = cpus_[t];
    try {
      threads_.emplace_back([w, cpu] { w->run(cpu); });
    } catch (const std::system_error& e) {
      control_.mode.store(static_cast<int>(RunMode::kAbandon), std::memory_order_release);
      for (std::thread& th : threads_) th.join();
      threads_.clear();
      stopped_ = true;
      throw Error(ErrorKind::kRuntime, str_cat("proxy: cannot start thread ", t, ": ", e.what()));
    }
  }
}

void Proxy::pause() {
  control_.paused.store(true, std::memory_order_release);
  if (!running()) return;
  // Synchronous: once every thread acknowledged, nothing more is taken from the queues.
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(options_.timeout_secs));
  for (const auto& w : workers_) {
    while (!w->paused() && !w->exited()) {
      UCCL_EP_CHECK(Clock::now() < deadline, ErrorKind::kTimeout, "proxy: rank ", options_.rank,
                    ": a thread did not acknowledge pause() within ", options_.timeout_secs, " s");
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
}

void Proxy::resume() {
  control_.paused.store(false, std::memory_order_release);
}

void Proxy::check() const {
  if (control_.error.failed()) throw Error(ErrorKind::kRuntime, control_.error.message());
}

StopResult Proxy::stop(StopMode mode) {
  if (!started_) return StopResult{StopStatus::kNotStarted, 0, 0, "proxy: never started"};
  if (stopped_) return result_;
  control_.mode.store(
      static_cast<int>(mode == StopMode::kDrain ? RunMode::kDrain : RunMode::kAbandon),
      std::memory_order_release);
  // Draining needs the threads to take commands again; abandoning stays paused.
  if (mode == StopMode::kDrain) control_.paused.store(false, std::memory_order_release);
  const double wait_secs = (mode == StopMode::kDrain ? options_.timeout_secs : 0) + kExitGraceSecs;
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(wait_secs));
  std::vector<int> stuck;
  for (size_t t = 0; t < workers_.size(); ++t) {
    if (!wait_exit(*workers_[t], deadline)) {
      // Ask once more to abandon, briefly; a thread stuck inside a transport call is left.
      control_.mode.store(static_cast<int>(RunMode::kAbandon), std::memory_order_release);
      if (!wait_exit(*workers_[t], Clock::now() + std::chrono::seconds(1)))
        stuck.push_back(static_cast<int>(t));
    }
  }
  for (size_t t = 0; t < workers_.size(); ++t) {
    if (std::find(stuck.begin(), stuck.end(), static_cast<int>(t)) != stuck.end()) {
      threads_[t].detach();
      (void)workers_[t].release();  // the thread still uses it: leak rather than free
    } else {
      threads_[t].join();
    }
  }
  stopped_ = true;
  result_ = collect(mode, stuck);
  return result_;
}

StopResult Proxy::collect(StopMode mode, const std::vector<int>& stuck) {
  StopResult r;
  bool drained = true;
  for (const auto& w : workers_) {
    if (!w) continue;
    r.pending_commands += w->exit_state().pending_commands;
    r.inflight_ops += w->exit_state().inflight_ops;
    drained = drained && w->exit_state().drained;
  }
  if (!stuck.empty()) {
    r.status = StopStatus::kFailed;
    std::string list;
    for (int t : stuck) list += str_cat(list.empty() ? "" : ",", t);
    r.message = str_cat("uccl-ep proxy: rank ", options_.rank, ": thread(s) ", list,
                        " did not exit within the deadline (stuck in a transport call?); they "
                        "were detached and their memory leaked");
    control_.fail(ProxyErrorCode::kInternal, r.message);
  } else if (control_.error.failed()) {
    r.status = StopStatus::kFailed;
    r.message = control_.error.message();
  } else if ((mode == StopMode::kDrain && drained) ||
             (r.pending_commands == 0 && r.inflight_ops == 0)) {
    r.status = StopStatus::kDrained;
    r.message = str_cat("uccl-ep proxy: rank ", options_.rank, ": stopped with nothing left");
    return r;  // queues are consistent: a new proxy may serve them
  } else {
    r.status = StopStatus::kAbandoned;
    r.message = str_cat("uccl-ep proxy: rank ", options_.rank, ": stopped ",
                        mode == StopMode::kDrain ? "at the drain deadline" : "(abandon)",
                        " with at least ", r.pending_commands, " command(s) queued and ",
                        r.inflight_ops, " operation(s) in flight");
  }
  // Producers waiting on these queues must stop: set every error word (first code wins).
  control_.set_queue_errors(control_.error.failed()
                                ? control_.error.code()
                                : static_cast<uint32_t>(ProxyErrorCode::kStopped));
  return r;
}

std::vector<ThreadStats> Proxy::stats() const {
  std::vector<ThreadStats> out;
  for (const auto& w : workers_) out.push_back(w ? w->stats() : ThreadStats{});
  return out;
}

ThreadStats Proxy::total_stats() const {
  ThreadStats sum;
  for (const ThreadStats& s : stats()) {
    sum.commands += s.commands;
    sum.posted += s.posted;
    sum.completed += s.completed;
    sum.bytes += s.bytes;
    sum.fences += s.fences;
    sum.barriers += s.barriers;
    sum.split_signals += s.split_signals;
    sum.flow_stalls += s.flow_stalls;
    sum.retries += s.retries;
    sum.inflight += s.inflight;
    sum.pending += s.pending;
  }
  return sum;
}

}  // namespace uccl::ep::proxy
