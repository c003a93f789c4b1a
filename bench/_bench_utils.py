"""Helpers shared by the uccl-ep benchmarks: environment, inputs, timing, byte accounting and
the baselines (NCCL all-to-all, copy-engine peer copies).

Everything measures on the calling process's current CUDA device and talks to other ranks only
through torch.distributed (NCCL). Nothing here touches uccl.ep: the benchmarks pass callables.
"""

from __future__ import annotations

import os
import statistics
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

try:
    import torch
    import torch.distributed as dist
except ImportError:  # the entry point reports a missing torch and exits 0
    torch = None
    dist = None

L2_FLUSH_BYTES = 256 * 1024 * 1024  # DeepEP's `bench` writes 256 MB between iterations
FP8_BLOCK = 128  # channels per FP8 scale (DeepEP's per_token_cast_to_fp8)
FP8_MAX = 448.0  # largest finite float8_e4m3fn
FP8_FACTOR = (1 + 4 / 128) / 2  # DeepEP: FP8 bytes (1 B + 4 B per 128 channels) / BF16 bytes

# Environment that keeps NCCL / symmetric memory / NVSHMEM off NVLink SHARP (multicast).
COMM_ENV = {
    "NCCL_NVLS_ENABLE": "0",
    "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
    "NVSHMEM_DISABLE_NVLS": "1",
}


def set_comm_env() -> None:
    """Set COMM_ENV (without overriding the user's values); call before NCCL is initialised."""
    for name, value in COMM_ENV.items():
        os.environ.setdefault(name, value)


# ---------------------------------------------------------------------------------------------
# Where are we: a failure message names the step that was running.

_phase = "startup"


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Record `name` as the running step; on an exception it stays recorded for the report."""
    global _phase
    previous, _phase = _phase, name
    yield
    _phase = previous


def current_phase() -> str:
    return _phase


# ---------------------------------------------------------------------------------------------
# Inputs


def make_routing(num_tokens: int, num_experts: int, num_topk: int, device, idx_dtype):
    """Uniform routing as in DeepEP's test: top-k of |randn| + 1 -> `[num_tokens, num_topk]`."""
    scores = torch.randn(num_tokens, num_experts, dtype=torch.float32, device=device).abs() + 1
    return torch.topk(scores, num_topk, dim=-1).indices.to(idx_dtype).contiguous()


def per_token_cast_to_fp8(x):
    """BF16 `[T, H]` -> (float8_e4m3fn `[T, H]`, float32 scales `[T, H/128]`), per token and
    128-channel block: amax clamped at 1e-4, value * 448/amax, scale = amax/448 (dequant = v*s).
    """
    num_tokens, hidden = x.shape
    if hidden % FP8_BLOCK != 0:
        raise ValueError(f"hidden ({hidden}) must be a multiple of {FP8_BLOCK} for FP8")
    blocks = x.float().view(num_tokens, hidden // FP8_BLOCK, FP8_BLOCK)
    amax = blocks.abs().amax(dim=2, keepdim=True).clamp(min=1e-4)
    values = (blocks * (FP8_MAX / amax)).to(torch.float8_e4m3fn).view(num_tokens, hidden)
    scales = (amax / FP8_MAX).squeeze(2).contiguous()
    return values, scales


# ---------------------------------------------------------------------------------------------
# Timing


class L2Flusher:
    """Writes L2_FLUSH_BYTES on the current stream so that no iteration starts with a warm L2."""

    def __init__(self, device):
        self.buf = torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.int32, device=device)

    def __call__(self) -> None:
        self.buf.zero_()


def sync_all() -> None:
    """Finish this device's work, then line the ranks up (dist.barrier)."""
    torch.cuda.synchronize()
    dist.barrier()
    torch.cuda.synchronize()


def e2e_samples(fn: Callable[[], object], flush: L2Flusher, num_warmups: int, num_tests: int):
    """Time (s) of each of `num_tests` calls of `fn()` between two CUDA events on the current
    stream, L2 flushed before each iteration (outside the events). For a uccl.ep call this is
    the whole Python call: stream waits, kernel launches and any CPU wait inside it."""
    for _ in range(num_warmups):
        fn()
    sync_all()
    events = [
        (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
        for _ in range(num_tests)
    ]
    for start, end in events:
        flush()
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return [start.elapsed_time(end) / 1e3 for start, end in events]


def e2e_seconds(fn: Callable[[], object], flush: L2Flusher, num_warmups: int, num_tests: int):
    """Median of `e2e_samples`: the time (s) of one call of `fn()`."""
    return statistics.median(e2e_samples(fn, flush, num_warmups, num_tests))


def _is_main_kernel(name: str, main: str) -> bool:
    return main in name and "notify" not in name


def _is_notify_kernel(name: str) -> bool:
    return "intranode" in name and "notify" in name


def _device_kernels(prof) -> Iterator[tuple[str, float]]:
    """(name, duration us) of every device activity in a finished torch.profiler run."""
    cuda = torch.autograd.DeviceType.CUDA
    for evt in prof.events():
        if evt.device_type == cuda:
            yield evt.name, evt.time_range.elapsed_us()


def profiled_kernels(fn, flush: L2Flusher, num_warmups: int, num_tests: int):
    """(name, duration us) of every CUDA kernel of `num_tests` calls of `fn()` (L2 flushed
    before each), from torch.profiler with CUDA activities, after `num_warmups` calls."""
    for _ in range(num_warmups):
        fn()
    sync_all()
    activities = [torch.profiler.ProfilerActivity.CUDA]
    with warnings.catch_warnings():  # "Profiler clears events at the end of each cycle"
        warnings.filterwarnings("ignore", message=".*Profiler clears events")
        with torch.profiler.profile(activities=activities) as prof:
            for _ in range(num_tests):
                flush()
                fn()
            torch.cuda.synchronize()
        return list(_device_kernels(prof))


def _missing_kernel(main: str, kernels) -> RuntimeError:
    names = "; ".join(sorted({n[:120] for n, _ in kernels})[:20]) or "none"
    return RuntimeError(f"profiler saw no CUDA kernel named like '{main}'; kernels: {names}")


def kernel_times_us(fn, main: str, flush: L2Flusher, num_warmups: int, num_tests: int):
    """Average device time per call (us) of the kernels `fn()` launches, from torch.profiler
    (CUDA activities), like DeepEP's bench_kineto: (main, notify). `main` sums kernels whose name
    contains `main` and not "notify"; `notify` sums kernels whose name contains "intranode" and
    "notify" (None if there is none). Raises if no main kernel was seen."""
    kernels = profiled_kernels(fn, flush, num_warmups, num_tests)
    main_us, notify_us = 0.0, 0.0
    for name, duration_us in kernels:
        if _is_main_kernel(name, main):
            main_us += duration_us
        elif _is_notify_kernel(name):
            notify_us += duration_us
    if main_us <= 0:
        raise _missing_kernel(main, kernels)
    return main_us / num_tests, (notify_us / num_tests if notify_us > 0 else None)


def kernel_times_by_name(fn, names: Sequence[str], flush, num_warmups: int, num_tests: int):
    """{name: average device time per call (us) of the kernels whose name contains `name`} over
    one profiled run of `fn()` (as kernel_times_us; DeepEP's bench_kineto with several kernel
    names). Raises if a name matches no kernel."""
    kernels = profiled_kernels(fn, flush, num_warmups, num_tests)
    out = {}
    for main in names:
        total = sum(us for name, us in kernels if main in name)
        if total <= 0:
            raise _missing_kernel(main, kernels)
        out[main] = total / num_tests
    return out


def all_reduce_max(values: Sequence[float | None], device) -> list[float | None]:
    """Element-wise MAX over ranks; None (missing on this rank) travels as -1. Through the
    host under gloo (--share-gpus runs)."""
    device = device if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([-1.0 if v is None else float(v) for v in values], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [None if v < 0 else v for v in t.tolist()]


def gbps(num_bytes: float, seconds: float | None) -> float | None:
    return None if not seconds else num_bytes / seconds / 1e9


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def min_avg_max(values: Sequence[float | None]) -> dict[str, float | None]:
    present = [v for v in values if v is not None]
    if not present:
        return {"min": None, "avg": None, "max": None}
    return {"min": min(present), "avg": sum(present) / len(present), "max": max(present)}


# ---------------------------------------------------------------------------------------------
# Byte accounting


def bytes_per_token(mode: str, hidden: int) -> int:
    """Payload bytes of one token: FP8 = hidden + 4*hidden/128 (values + float32 scales)."""
    return hidden + 4 * (hidden // FP8_BLOCK) if mode.startswith("fp8") else 2 * hidden


@dataclass(frozen=True)
class Traffic:
    """Token counts of one rank in an intranode dispatch, read from the handle's rank prefix
    matrix `M [R, R]` (`M[i][j]` = tokens sent to rank j by ranks 0..i)."""

    rank: int
    recv_from: tuple[int, ...]  # tokens this rank receives from each source rank (incl. itself)
    send_to: tuple[int, ...]  # tokens this rank sends to each destination rank (incl. itself)

    @classmethod
    def from_prefix_matrix(cls, matrix, rank: int) -> Traffic:
        m = matrix.cpu().tolist()
        num_ranks = len(m)
        if any(len(row) != num_ranks for row in m) or not 0 <= rank < num_ranks:
            raise ValueError(f"rank prefix matrix must be [R, R] with R > {rank}; got {m}")

        def tokens(src: int, dst: int) -> int:
            return m[src][dst] - (m[src - 1][dst] if src > 0 else 0)

        recv_from = tuple(tokens(i, rank) for i in range(num_ranks))
        send_to = tuple(tokens(rank, j) for j in range(num_ranks))
        return cls(rank=rank, recv_from=recv_from, send_to=send_to)

    @property
    def recv_total(self) -> int:
        return sum(self.recv_from)

    @property
    def recv_peers(self) -> int:
        return self.recv_total - self.recv_from[self.rank]

    @property
    def send_peers(self) -> int:
        return sum(self.send_to) - self.send_to[self.rank]

    def bytes_for(self, mode: str, hidden: int) -> dict[str, float]:
        """Bytes one call of `mode` moves for this rank (see bench/README.md):
        deepep   recv_tokens * hidden * 2 (incl. self), * FP8_FACTOR for FP8; combine = BF16
        payload  recv_tokens * bytes_per_token (what lands in / leaves recv_x, incl. self)
        nvlink   (recv_tokens - self) * bytes_per_token: dispatch receives them from peers,
                 combine sends them back to peers
        nvlink_reverse  (sent tokens - self) * bytes_per_token: the other direction."""
        per_token = bytes_per_token(mode, hidden)
        factor = FP8_FACTOR if mode.startswith("fp8") else 1.0
        return {
            "deepep": self.recv_total * hidden * 2 * factor,
            "payload": float(self.recv_total * per_token),
            "nvlink": float(self.recv_peers * per_token),
            "nvlink_reverse": float(self.send_peers * per_token),
        }

    def alltoall_splits(self, mode: str, hidden: int) -> tuple[list[int], list[int]]:
        """(input, output) byte splits of an all_to_all_single moving what `mode` moves:
        dispatch sends `send_to` and receives `recv_from`; combine is the reverse."""
        per_token = bytes_per_token(mode, hidden)
        sent = [n * per_token for n in self.send_to]
        received = [n * per_token for n in self.recv_from]
        return (received, sent) if mode.endswith("combine") else (sent, received)


# ---------------------------------------------------------------------------------------------
# Baselines


def nccl_alltoall_seconds(splits, device, flush: L2Flusher, num_warmups: int, num_tests: int):
    """Median time (s) of dist.all_to_all_single on uint8 tensors with the given byte splits,
    timed like e2e_seconds (CUDA events, L2 flush)."""
    in_splits, out_splits = splits
    inp = torch.ones(sum(in_splits), dtype=torch.uint8, device=device)
    out = torch.empty(sum(out_splits), dtype=torch.uint8, device=device)

    def run() -> None:
        dist.all_to_all_single(out, inp, output_split_sizes=out_splits, input_split_sizes=in_splits)

    return e2e_seconds(run, flush, num_warmups, num_tests)


def peers_reachable(device_ids: Sequence[int], me: int, device) -> tuple[bool, str]:
    """Whether every rank can copy to every other rank's device by P2P (agreed over ranks)."""
    bad = [d for d in device_ids if d != me and not torch.cuda.can_device_access_peer(me, d)]
    flag = torch.tensor([0 if bad else 1], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    if flag.item() == 1:
        return True, ""
    why = f"device {me} cannot access {bad}" if bad else "another rank lacks P2P access"
    return False, why


def _timed_copies(src, dsts, streams) -> float:
    """Seconds from a start event until every `dst.copy_(src)` (one stream each) has finished."""
    current = torch.cuda.current_stream()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record(current)
    for dst, stream in zip(dsts, streams, strict=True):
        stream.wait_event(start)
        with torch.cuda.stream(stream):
            dst.copy_(src, non_blocking=True)
        current.wait_stream(stream)
    end.record(current)
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def ce_copy_gbps(me: int, targets: Sequence[int], active: bool, nbytes: int, iters: int, barrier):
    """Copy-engine peak: this device copies `nbytes` to each device in `targets` at once (one
    stream per target, peer tensors allocated by this process). All ranks run the same number
    of `barrier()` calls (pass a CPU one: an NCCL barrier kernel spinning on a peer while its
    memory is being written slows the copies); only `active` ranks copy. Returns outgoing GB/s
    (median over iterations), or None if idle."""
    src = dsts = streams = None
    if active:
        src = torch.ones(nbytes, dtype=torch.uint8, device=me)
        dsts = [torch.empty(nbytes, dtype=torch.uint8, device=t) for t in targets]
        streams = [torch.cuda.Stream(device=me) for _ in targets]
    times = []
    for i in range(iters + 2):  # two warm-up rounds
        torch.cuda.synchronize()
        barrier()
        if active:
            seconds = _timed_copies(src, dsts, streams)
            if i >= 2:
                times.append(seconds)
    torch.cuda.synchronize()
    barrier()
    del src, dsts, streams
    if not active:
        return None
    return nbytes * len(targets) / statistics.median(times) / 1e9


def run_torchrun_main(name: str, torch_module, run: Callable[[], int]) -> int:
    """The common main of the torchrun benchmarks: skips (0) without torch or CUDA, refuses (2)
    a launch without torchrun, runs `run`, and on any exception prints the rank, the phase and
    the traceback, then ends the process at once with status 1. No cleanup on failure:
    Buffer.destroy() and the process group's teardown are collective and would hang while a
    peer is stuck; torchrun stops the other ranks when this one exits non-zero."""
    if torch_module is None:
        print(f"{name}: torch is not installed; nothing to measure (skipped).")
        return 0
    if not torch_module.cuda.is_available():
        print(f"{name}: CUDA is not available; nothing to measure (skipped).")
        return 0
    if "LOCAL_RANK" not in os.environ:
        print(f"{name}: launch with torchrun --nproc_per_node=N", file=sys.stderr)
        return 2
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 - any failure must end the run with a report
        rank = os.environ.get("RANK", "?")
        print(
            f"{name}: rank {rank} FAILED during '{current_phase()}': {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


@contextmanager
def environment_overrides(overrides: dict[str, str | None]):
    """Set (or unset, for None) environment variables for the block; restore them after."""
    saved = {name: os.environ.get(name) for name in overrides}

    def apply(values: dict[str, str | None]) -> None:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    apply(overrides)
    try:
        yield
    finally:
        apply(saved)
