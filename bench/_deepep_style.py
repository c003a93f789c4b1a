"""What bench/test_intranode.py, test_internode.py and test_low_latency.py (UCCL-EP's and DeepEP's
test entry points) share: their common flags, the DeepEP-format output lines, the import of
`deep_ep` as a DeepEP user does it, the check recorder over the references, and the JSON
document. Plain Python (no torch at import): the lines and flags are tested on the CPU."""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import sys
from collections.abc import Sequence

import _internode_report as internode_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPU_TESTS = os.path.join(ROOT, "tests", "gpu")

# ---------------------------------------------------------------------------------------------
# Flags


def add_shape_flags(p: argparse.ArgumentParser, tokens: int, hidden: int, topk: int, experts: int):
    """UCCL-EP's README flags (`--num-tokens=128 --hidden=7168 ...`) with DeepEP's defaults."""
    p.add_argument("--num-tokens", type=int, default=tokens, help=f"tokens per rank ({tokens})")
    p.add_argument("--hidden", type=int, default=hidden, help=f"hidden size ({hidden})")
    p.add_argument("--num-topk", type=int, default=topk, help=f"experts per token ({topk})")
    p.add_argument("--num-experts", type=int, default=experts, help=f"experts ({experts})")


def add_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--share-gpus",
        action="store_true",
        help="ranks share GPUs (rank r on GPU r %% num_gpus; needs the CUDA MPS daemon): gloo "
        "instead of NCCL, SMs split between the ranks of a GPU; correct results, but the "
        "figures are not NVLink bandwidth",
    )
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--quick", action="store_true", help="fewer tuning points and iterations")


def check_positive(p: argparse.ArgumentParser, args: argparse.Namespace, names: Sequence[str]):
    """p.error naming every flag of `names` (attribute names) that is not positive."""
    bad = [f"--{n.replace('_', '-')} {getattr(args, n)}" for n in names if getattr(args, n) <= 0]
    if bad:
        p.error(f"must be positive: {', '.join(bad)}")


# ---------------------------------------------------------------------------------------------
# DeepEP's output lines (tests/test_intranode.py, tests/test_low_latency.py), same formats


def config_line(num_tokens: int, hidden: int, num_topk: int, num_topk_groups=None) -> str:
    """With `num_topk_groups`, test_internode.py's line."""
    groups = "" if num_topk_groups is None else f", num_topk_groups={num_topk_groups}"
    return f"[config] num_tokens={num_tokens}, hidden={hidden}{groups}, num_topk={num_topk}"


def layout_line(seconds: float) -> str:
    return f"[layout] Kernel performance: {seconds * 1000:.3f} ms"


def testing_line(fp8: bool, with_topk: bool, async_mode: bool, previous: bool) -> str:
    """The `[testing]` line without its verdict (DeepEP prints ' passed' after it)."""
    dtype = "FP8" if fp8 else "BF16"
    topk = "with" if with_topk else "without"
    flags = f"(async={async_mode}, previous={previous})"
    return f"[testing] Running with {dtype}, {topk} top-k {flags} ..."


def tuning_line(num_sms: int, nvl_chunk: int | None, gbps: float, seconds: float) -> str:
    """One config of the sweep; `nvl_chunk` None is the tuned default config."""
    chunk = "default" if nvl_chunk is None else nvl_chunk
    return (
        f"[tuning] SMs {num_sms}, NVL chunk {chunk}: {gbps:.2f} GB/s (NVL), "
        f"avg_t: {seconds * 1e6:.2f} us"
    )


def best_dispatch_line(fp8: bool, num_sms: int, nvl_chunk: int, gbps: float, seconds: float):
    dtype = "FP8" if fp8 else "BF16"
    return (
        f"[tuning] Best dispatch ({dtype}): SMs {num_sms}, NVL chunk {nvl_chunk}, "
        f"{gbps:.2f} GB/s (NVL), t: {seconds * 1e6:.2f} us"
    )


def best_combine_line(num_sms: int, nvl_chunk: int, gbps: float, seconds: float) -> str:
    return (
        f"[tuning] Best combine: SMs {num_sms}, NVL chunk {nvl_chunk}: {gbps:.2f} GB/s (NVL), "
        f"t: {seconds * 1e6:.2f} us"
    )


def internode_tuning_line(
    num_sms: int, chunks: tuple[int, int], gbps: tuple, seconds: float, best: str | None = None
) -> str:
    """test_internode.py's line of one (NVL chunk, RDMA chunk) config, GB/s (RDMA, NVL); with
    `best` ("dispatch (FP8)", "dispatch (BF16)", "combine") the best config's line (the format of
    bench_internode.py's lines)."""
    point = {"num_sms": num_sms, "nvl_chunk": chunks[0], "rdma_chunk": chunks[1]}
    head = "[tuning] " if best is None else f"[tuning] Best {best}: "
    return head + internode_report.tuning_line({**point, "us": seconds * 1e6}, gbps)


def ll_testing_line(fmt: str, logfmt: bool = False, hook: bool = False) -> str:
    """A low-latency case's `[testing]` line without its verdict."""
    also = " and LogFMT" if logfmt else ""
    return (
        f"[testing] Running low-latency {fmt} dispatch, BF16 combine{also} "
        f"(return_recv_hook={hook}) ..."
    )


def ll_dispatch_combine_line(rank: int, num_bytes: float, avg: float, lo: float, hi: float):
    """DeepEP's `bench` figure of dispatch + combine (seconds: average, min, max)."""
    return (
        f"[rank {rank}] Dispatch + combine bandwidth: {num_bytes / 1e9 / avg:.2f} GB/s, "
        f"avg_t={avg * 1e6:.2f} us, min_t={lo * 1e6:.2f} us, max_t={hi * 1e6:.2f} us"
    )


def ll_kernel_line(rank: int, dispatch_bytes: float, dispatch_s: float, combine_bytes, combine_s):
    """DeepEP's `bench_kineto` figures (kernel seconds per call) of dispatch and combine."""
    return (
        f"[rank {rank}] Dispatch bandwidth: {dispatch_bytes / 1e9 / dispatch_s:.2f} GB/s, "
        f"avg_t={dispatch_s * 1e6:.2f} us | Combine bandwidth: "
        f"{combine_bytes / 1e9 / combine_s:.2f} GB/s, avg_t={combine_s * 1e6:.2f} us"
    )


def ll_hook_line(rank: int, dispatch: tuple[float, float], combine: tuple[float, float]) -> str:
    """Hook mode: (send, recv) kernel seconds of dispatch and of combine."""
    return (
        f"[rank {rank}] Dispatch send/recv time: {dispatch[0] * 1e6:.2f} + "
        f"{dispatch[1] * 1e6:.2f} us | Combine send/recv time: {combine[0] * 1e6:.2f} + "
        f"{combine[1] * 1e6:.2f} us"
    )


def mean_min_max(samples: Sequence[float]) -> tuple[float, float, float]:
    if not samples:
        raise ValueError("no timing samples")
    return sum(samples) / len(samples), min(samples), max(samples)


# ---------------------------------------------------------------------------------------------
# Imports


def import_deep_ep():
    """`import deep_ep` as a DeepEP user writes it (uccl-ep's deep_ep package), installed or
    from this checkout's python/ folder."""
    try:
        return importlib.import_module("deep_ep")
    except ImportError:
        sys.path.insert(0, os.path.join(ROOT, "python"))
        return importlib.import_module("deep_ep")


def import_gpu_tests(*names: str) -> list:
    """Modules of tests/gpu (the pure-torch references and the suites' checks)."""
    if GPU_TESTS not in sys.path:
        sys.path.insert(0, GPU_TESTS)
    return [importlib.import_module(n) for n in names]


# ---------------------------------------------------------------------------------------------
# Checks


class CheckLog:
    """Sink of a tests/gpu `Recorder`: prints each failed check of this rank at once and keeps
    them; `mark()` / `failed_since()` tell a DeepEP `[testing]` line its verdict."""

    def __init__(self, rank: int, max_printed: int = 20) -> None:
        self.rank, self.max_printed = rank, max_printed
        self.failures: list[str] = []
        self._mark = 0

    def __call__(self, check) -> None:
        if check.ok:
            return
        text = f"{check.name}: {check.detail}"
        self.failures.append(text)
        if len(self.failures) <= self.max_printed:
            print(f"\n[rank {self.rank}] FAILED {text}", file=sys.stderr, flush=True)

    def mark(self) -> None:
        self._mark = len(self.failures)

    def failed_since(self) -> int:
        return len(self.failures) - self._mark

    def verdict(self) -> str:
        n = self.failed_since()
        return " passed" if n == 0 else f" FAILED ({n} checks on rank {self.rank})"


# ---------------------------------------------------------------------------------------------
# Output


def document(benchmark: str, args: argparse.Namespace, hardware: dict, **fields) -> dict:
    """The JSON file's common header, then `fields`."""
    return {
        "benchmark": benchmark,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "command": sys.argv,
        "hardware": hardware,
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        **fields,
    }


def write_json(path: str, doc: dict) -> None:
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"wrote {path}", flush=True)
