"""Launcher for the multi-GPU tests: one spawned worker per rank, a hard deadline, and named
check results streamed back to the parent as they are made.

Placement: with at least as many GPUs as ranks, rank r runs alone on GPU r and the process
group is NCCL. With fewer GPUs and ``UCCL_EP_TEST_SHARE_GPUS=1``, ranks share the local GPUs
round-robin (rank r on GPU r % num_gpus) and the group is gloo (NCCL refuses two ranks on one
GPU). Sharing needs the CUDA MPS daemon: without it the kernels of different processes take
turns on a GPU instead of running side by side, and the ranks' spin-waits on each other crawl
into the timeout. ``tools/gpu_check.sh`` starts MPS for the tests. Shared runs check
correctness only (same-GPU peers use the same code path, through CUDA IPC on one device).

A suite body has the signature ``body(rank, num_ranks, rec)`` where ``rec`` is a `Recorder`.
It runs after ``torch.cuda.set_device(rank_device(rank, num_ranks))`` and
``init_process_group``. A rank may end its process on purpose (`Recorder.exit_on_purpose`, for
a test of a dying peer): the parent then counts it as finished, and its peers call
`Recorder.peer_left` so that they end without the collective teardown of the group.
"""

from __future__ import annotations

import math
import os
import queue as queue_lib
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

DEADLINE_ENV = "UCCL_EP_TEST_DEADLINE_SECS"
SHARE_ENV = "UCCL_EP_TEST_SHARE_GPUS"
DEFAULT_DEADLINE_SECS = 600.0
# After every rank reported "done", how long its process may take to exit.
EXIT_GRACE_SECS = 60.0
# Each queue message stays below PIPE_BUF (4096 B) so that it is written atomically and a
# worker killed mid-write cannot leave a partial message that blocks the parent's reader.
MAX_DETAIL_CHARS = 1500
MAX_TRACEBACK_CHARS = 3000
# NVLink multicast (NVLS) must stay off on the shared test machines. Never remove these.
SAFE_ENV = {
    "NCCL_NVLS_ENABLE": "0",
    "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
    "NVSHMEM_DISABLE_NVLS": "1",
}


@dataclass(frozen=True)
class Check:
    """One named check made by one rank."""

    rank: int
    name: str
    ok: bool
    detail: str = ""


class Recorder:
    """Records the named checks of one rank; each check goes to `sink` as soon as it is made,
    so results made before a hang or a crash still reach the parent. `announce_exit` (the
    launcher's) tells the parent that this rank ends on purpose and flushes what was sent."""

    def __init__(
        self,
        rank: int,
        sink: Callable[[Check], None],
        announce_exit: Callable[[], None] | None = None,
    ):
        self.rank = rank
        self.sink = sink
        self.num_checks = 0
        self.num_failed = 0
        self.announce_exit = announce_exit
        self.skip_group_teardown = False  # set by peer_left()

    def check(self, name: str, ok: object, detail: str = "") -> bool:
        """Records `name` as passed when `ok` is truthy; `detail` explains a failure."""
        ok = bool(ok)
        self.num_checks += 1
        self.num_failed += 0 if ok else 1
        self.sink(Check(self.rank, name, ok, "" if ok else detail))
        return ok

    def exit_on_purpose(self) -> NoReturn:
        """Ends this rank's process now, as a peer that dies mid-run (``os._exit(0)``: no
        teardown, no "done"). The parent is told first, so it counts this rank as finished;
        no check can be made afterwards."""
        if self.announce_exit is not None:
            self.announce_exit()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    def peer_left(self) -> None:
        """Notes that a peer exited on purpose: the process group has lost a member, so this
        rank ends without ``destroy_process_group`` (which could wait for the peer)."""
        self.skip_group_teardown = True


def deadline_secs() -> float:
    """The join deadline for one launch: env `UCCL_EP_TEST_DEADLINE_SECS`, default 600 s."""
    raw = os.environ.get(DEADLINE_ENV, "").strip()
    return float(raw) if raw else DEFAULT_DEADLINE_SECS


def num_gpus_for(num_ranks: int) -> int:
    """How many GPUs a launch of `num_ranks` ranks uses (0: it cannot run here): one per rank
    when there are enough, else every local GPU, shared, when `UCCL_EP_TEST_SHARE_GPUS=1`."""
    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if found >= num_ranks:
        return num_ranks
    sharing = os.environ.get(SHARE_ENV, "").strip() == "1"
    return found if sharing and found > 0 else 0


def mps_pipe_directory() -> str:
    """Where the CUDA MPS control daemon keeps its pipes (CUDA's default unless overridden)."""
    return os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps")


def mps_running() -> bool:
    """Whether a CUDA MPS control daemon listens in mps_pipe_directory() (its `control` pipe
    exists). Ranks sharing a GPU need it: without it their kernels time-slice and the
    spin-waits of one rank's kernel for another's end in timeouts."""
    return os.path.exists(os.path.join(mps_pipe_directory(), "control"))


def ranks_per_gpu(num_ranks: int) -> int:
    """The most ranks of a launch on one GPU (1 unless GPUs are shared)."""
    gpus = num_gpus_for(num_ranks)
    return -(-num_ranks // gpus) if gpus else 0


def rank_device(rank: int, num_ranks: int) -> int:
    """The GPU of `rank` in a launch of `num_ranks` ranks."""
    return rank % max(num_gpus_for(num_ranks), 1)


def comm_device() -> torch.device:
    """Where tensors for the test's own collectives live: the GPU under NCCL, the CPU under
    gloo (shared GPUs; gloo all-gathers host tensors only)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _init_group(rank: int, num_ranks: int, init_method: str | None) -> None:
    """Binds this process to its GPU and joins the process group (NCCL, or gloo when GPUs
    are shared)."""
    dev = rank_device(rank, num_ranks)
    torch.cuda.set_device(dev)
    kwargs = {} if init_method is None else {"init_method": init_method}
    if ranks_per_gpu(num_ranks) > 1:
        dist.init_process_group("gloo", rank=rank, world_size=num_ranks, **kwargs)
    else:
        dist.init_process_group(
            "nccl", rank=rank, world_size=num_ranks, device_id=torch.device("cuda", dev), **kwargs
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker_entry(rank: int, num_ranks: int, port: int, body: Callable, results) -> None:
    """Runs in a spawned process: sets up CUDA + NCCL, runs `body`, reports through `results`."""

    def sink(c: Check) -> None:
        results.put(("check", c.rank, c.name[:200], c.ok, c.detail[:MAX_DETAIL_CHARS]))

    def announce_exit() -> None:
        results.put(("exit", rank))
        results.close()
        results.join_thread()  # everything sent so far reaches the parent before os._exit

    rec = Recorder(rank, sink, announce_exit)
    failed = False
    try:
        _init_group(rank, num_ranks, f"tcp://127.0.0.1:{port}")
        body(rank, num_ranks, rec)
    except BaseException:  # noqa: BLE001 - everything is reported to the parent
        failed = True
        results.put(("error", rank, traceback.format_exc()[-MAX_TRACEBACK_CHARS:]))
    results.put(("done", rank))
    results.close()
    results.join_thread()
    if failed:
        # Tearing down NCCL after a failure can block on peers; the parent has the report.
        os._exit(1)
    if rec.skip_group_teardown:
        os._exit(0)  # a peer exited on purpose: the group's teardown could wait for it
    dist.destroy_process_group()


@dataclass
class LaunchResult:
    """What a launch produced: every check, worker errors, and ranks that did not finish."""

    num_ranks: int
    deadline_secs: float
    elapsed_secs: float = 0.0
    checks: list[Check] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)
    unfinished: list[int] = field(default_factory=list)  # no "done" before the deadline
    bad_exits: dict[int, str] = field(default_factory=dict)  # crashed or stuck in teardown
    planned_exits: list[int] = field(default_factory=list)  # Recorder.exit_on_purpose

    @property
    def num_checks(self) -> int:
        return len(self.checks)

    @property
    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    @property
    def ok(self) -> bool:
        return not (self.failed_checks or self.errors or self.unfinished or self.bad_exits)

    def table(self, suite: str) -> str:
        """One line per check name: PASS/FAIL, runs over all ranks, first failure details."""
        groups: dict[str, list[Check]] = {}
        for c in self.checks:
            groups.setdefault(c.name, []).append(c)
        width = max([len(n) for n in groups] + [10])
        summary = (
            f"suite '{suite}' on {self.num_ranks} ranks: {len(groups)} checks, "
            f"{self.num_checks} results, {len(self.failed_checks)} failed, "
            f"{self.elapsed_secs:.1f} s"
        )
        if self.planned_exits:
            summary += f"; ranks {sorted(self.planned_exits)} exited on purpose"
        lines = [summary]
        for name, runs in groups.items():
            bad = [c for c in runs if not c.ok]
            ranks = sorted({c.rank for c in runs})
            status = "FAIL" if bad else "PASS"
            line = f"  {status}  {name:<{width}}  runs {len(runs):>4} on ranks {ranks}"
            if bad:
                line += f", {len(bad)} failed"
                for c in bad[:3]:
                    line += f"\n          rank {c.rank}: {c.detail}"
            lines.append(line)
        return "\n".join(lines)

    def failure_report(self, suite: str) -> str:
        """Everything that went wrong, for an assertion message."""
        parts = [f"suite '{suite}' on {self.num_ranks} ranks failed"]
        if self.unfinished:
            parts.append(
                f"deadline of {self.deadline_secs:.0f} s expired; ranks {self.unfinished} "
                "did not finish (all workers were killed)"
            )
        for rank, why in sorted(self.bad_exits.items()):
            parts.append(f"rank {rank}: {why}")
        for rank, tb in sorted(self.errors.items()):
            parts.append(f"rank {rank} raised:\n{tb}")
        for c in self.failed_checks[:50]:
            parts.append(f"FAIL {c.name} (rank {c.rank}): {c.detail}")
        if len(self.failed_checks) > 50:
            parts.append(f"... and {len(self.failed_checks) - 50} more failed checks")
        return "\n".join(parts)


def _handle_message(msg: tuple, result: LaunchResult, done: set[int]) -> None:
    kind, rank = msg[0], msg[1]
    if kind == "check":
        result.checks.append(Check(rank, msg[2], msg[3], msg[4]))
    elif kind == "error":
        result.errors[rank] = msg[2]
    elif kind == "done":
        done.add(rank)
    elif kind == "exit":  # Recorder.exit_on_purpose: finished, though no "done" follows
        done.add(rank)
        result.planned_exits.append(rank)


def _drain(results, result: LaunchResult, done: set[int], wait_secs: float) -> int:
    """Reads the messages that arrive within `wait_secs` (reading for at most about a second
    longer, so that the caller sees its deadlines); returns how many were read."""
    count = 0
    stop_at = time.monotonic() + wait_secs + 1.0  # return regularly so deadlines are seen
    while time.monotonic() < stop_at:
        try:
            msg = results.get(timeout=wait_secs if count == 0 else 0.05)
        except queue_lib.Empty:
            return count
        _handle_message(msg, result, done)
        count += 1
    return count


def _kill(procs: list) -> None:
    for p in procs:
        if p.is_alive():
            p.kill()
    for p in procs:
        p.join(timeout=10)


def _make_importable(fn: Callable) -> None:
    """Spawned workers import `fn` by its module name: put that module's root on sys.path
    (spawn copies it), whatever import mode pytest used to load the module."""
    path = getattr(sys.modules.get(fn.__module__), "__file__", None)
    if not path or fn.__module__ == "__main__":
        return
    root = os.path.dirname(os.path.abspath(path))
    for _ in range(fn.__module__.count(".")):
        root = os.path.dirname(root)
    if root not in sys.path:
        sys.path.append(root)


def launch(body: Callable, num_ranks: int, deadline: float | None = None) -> LaunchResult:
    """Runs `body(rank, num_ranks, rec)` in `num_ranks` spawned processes (placed as the
    module docstring says) and collects its checks. Never blocks longer than `deadline`
    seconds (plus exit grace)."""
    os.environ.update(SAFE_ENV)
    _make_importable(body)
    _make_importable(_worker_entry)
    deadline = deadline_secs() if deadline is None else deadline
    result = LaunchResult(num_ranks=num_ranks, deadline_secs=deadline)
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = _free_port()
    procs = [
        ctx.Process(target=_worker_entry, args=(rank, num_ranks, port, body, results), daemon=True)
        for rank in range(num_ranks)
    ]
    start = time.monotonic()
    for p in procs:
        p.start()
    done: set[int] = set()
    all_done_at = None
    while True:
        _drain(results, result, done, wait_secs=0.2)
        now = time.monotonic()
        if not any(p.is_alive() for p in procs):
            break
        if len(done) == num_ranks:
            all_done_at = all_done_at or now
            if now - all_done_at > EXIT_GRACE_SECS:
                for rank, p in enumerate(procs):
                    if p.is_alive():
                        result.bad_exits[rank] = f"still running {EXIT_GRACE_SECS:.0f} s after done"
                break
        if now - start > deadline:
            result.unfinished = [r for r in range(num_ranks) if r not in done]
            break
    _kill(procs)
    while _drain(results, result, done, wait_secs=0.5):
        pass
    result.elapsed_secs = time.monotonic() - start
    for rank, p in enumerate(procs):
        if rank in result.unfinished or rank in result.bad_exits or rank in result.errors:
            continue
        if rank not in done:
            result.bad_exits[rank] = f"exited with code {p.exitcode} before finishing"
        elif p.exitcode not in (0, None):
            result.bad_exits[rank] = f"exited with code {p.exitcode} after finishing"
    return result


def run_section(rec: Recorder, rank: int, check: str, label: str, fn: Callable[[], None]) -> bool:
    """Runs one section of a suite and records the check `check` (pass, or fail with the
    traceback); rank 0 prints `label` and the time taken. Collective: returns False on every rank
    if the section raised on any rank, so that all ranks take the same path afterwards."""
    start, failed = time.monotonic(), False
    try:
        fn()
    except Exception:  # noqa: BLE001 - recorded as a failed check with its traceback
        failed = True
        rec.check(check, False, traceback.format_exc()[-1200:])
    else:
        rec.check(check, True)
    flag = torch.tensor([int(failed)], device=comm_device())
    dist.all_reduce(flag)
    if rank == 0:
        print(f"{label}: {time.monotonic() - start:.1f} s", flush=True)
    return int(flag.item()) == 0


def all_gather_rows(t: torch.Tensor, num_ranks: int) -> list[torch.Tensor]:
    """Every rank's `t` ([n_r, ...]; n_r may differ by rank, the rest may not), by rank.
    Moved as raw bytes, so any dtype works; results are on `t`'s device."""
    home, t = t.device, t.to(comm_device())
    count = torch.tensor([t.size(0)], dtype=torch.int64, device=t.device)
    counts = [torch.empty_like(count) for _ in range(num_ranks)]
    dist.all_gather(counts, count)
    sizes = [int(c.item()) for c in counts]
    row_shape = tuple(t.shape[1:])
    # Flatten first: an empty or expanded tensor can carry a zero stride that view() rejects.
    row_bytes = math.prod(row_shape) * t.element_size()
    flat = t.contiguous().reshape(-1).view(torch.uint8)
    as_bytes = flat.reshape(t.size(0), row_bytes)
    padded = torch.zeros(max(sizes + [1]), as_bytes.size(1), dtype=torch.uint8, device=t.device)
    padded[: t.size(0)] = as_bytes
    parts = [torch.empty_like(padded) for _ in range(num_ranks)]
    dist.all_gather(parts, padded)
    return [p[:n].to(home).view(t.dtype).reshape(n, *row_shape) for p, n in zip(parts, sizes)]


def run_under_torchrun(body: Callable) -> int:
    """Runs `body` in a process started by torchrun; prints failures; returns an exit code."""
    os.environ.update(SAFE_ENV)
    rank = int(os.environ["RANK"])
    num_ranks = int(os.environ["WORLD_SIZE"])
    if int(os.environ.get("LOCAL_RANK", rank)) != rank:
        raise RuntimeError("run_under_torchrun: one host only (LOCAL_RANK must equal RANK)")
    _init_group(rank, num_ranks, None)

    def sink(c: Check) -> None:
        if not c.ok:
            print(f"FAIL {c.name} (rank {c.rank}): {c.detail}", file=sys.stderr, flush=True)

    rec = Recorder(rank, sink)
    body(rank, num_ranks, rec)
    print(f"rank {rank}: {rec.num_checks} checks, {rec.num_failed} failed", flush=True)
    if not rec.skip_group_teardown:
        dist.destroy_process_group()
    return 1 if rec.num_failed else 0
