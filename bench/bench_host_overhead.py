"""Host (CPU) time of the uccl.ep Python API per call, next to PyTorch's own per-call costs
measured in the same run.

    torchrun --nproc_per_node=N bench/bench_host_overhead.py [--json PATH] [--iters 200]
        [--share-gpus]

For every call (get_dispatch_layout, non-cached FP8 and BF16 dispatch, cached dispatch,
combine; DeepSeek-V3 shapes by default) each rank reports the median over iterations of:

- ``wall``: the whole Python call, from entry to return (GPU synchronised and ranks aligned by a
  barrier before each iteration, outside the timing);
- ``extension``: the part spent inside ``uccl.ep._C`` calls (argument reading, validation,
  kernel launches and, for a non-cached dispatch, the host wait for the received counts);
- ``python``: wall minus extension;
- ``counts_to_launch`` (non-cached dispatch only): from the moment the received counts reach
  the host to the return of the dispatch launch. The GPU idles for about this long between
  the count exchange and the dispatch kernel: it is the part of the host time that users see
  in the end-to-end latency.

Baselines, same process and device: ``torch.empty`` of the received rows, a small kernel
launch from Python (``Tensor.zero_``) and ``torch.cuda.Stream.wait_stream``; the report prints
each call's wall time in units of kernel launches. With ``--share-gpus`` ranks share GPUs
(CUDA MPS needed) and the figures include MPS's launch overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import traceback

try:
    import torch
    import torch.distributed as dist
except ImportError:  # reported by main(), which then exits 0
    torch = None
    dist = None

import _bench_utils as bu

NUM_NVL_BYTES = int(2e9)


class TimedRuntime:
    """Times every method call of the extension objects it wraps (a Buffer's native runtime and
    its intranode operations), and the interval from the return of notify_dispatch (counts on
    the host) to the return of the next dispatch."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.counts_to_launch: list[float] = []
        self._counts_at = None

    def wrap(self, inner):
        return _Timed(self, inner)


class _Timed:
    def __init__(self, timer: TimedRuntime, inner) -> None:
        self._timer = timer
        self._inner = inner

    def __getattr__(self, name):
        fn = getattr(self._inner, name)
        if not callable(fn):
            return fn
        timer = self._timer

        def timed(*args, **kwargs):
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            end = time.perf_counter()
            timer.calls.append(end - start)
            if name == "notify_dispatch":
                timer._counts_at = end
            elif name == "dispatch" and timer._counts_at is not None:
                timer.counts_to_launch.append(end - timer._counts_at)
                timer._counts_at = None
            return out

        return timed


def host_us(fn, iters: int) -> float:
    """Mean host time of `fn()` in us over `iters` back-to-back calls (after 20 warm-ups)."""
    for _ in range(20):
        fn()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    return 1e6 * (time.perf_counter() - start) / iters


def baselines(device, hidden: int, num_rows: int, iters: int) -> dict:
    small = torch.zeros(1024, dtype=torch.int32, device=device)
    side = torch.cuda.Stream(device=device)
    out = {
        "torch_empty_us": host_us(
            lambda: torch.empty(num_rows, hidden, dtype=torch.bfloat16, device=device), iters
        ),
        "kernel_launch_us": host_us(small.zero_, iters),
        "wait_stream_us": host_us(lambda: side.wait_stream(torch.cuda.current_stream()), iters),
    }
    torch.cuda.synchronize(device)
    return out


def measure(call, timed: TimedRuntime, iters: int) -> dict:
    """Medians (us) of wall, extension and python time of `call()` over `iters` iterations."""
    walls, inside, gaps = [], [], []
    for i in range(iters + 5):
        torch.cuda.synchronize()
        dist.barrier()
        timed.calls.clear()
        timed.counts_to_launch.clear()
        start = time.perf_counter()
        call()
        wall = time.perf_counter() - start
        if i < 5:
            continue
        walls.append(wall)
        inside.append(sum(timed.calls))
        gaps.extend(timed.counts_to_launch)
    med = lambda v: 1e6 * statistics.median(v) if v else None  # noqa: E731
    return {
        "wall_us": med(walls),
        "extension_us": med(inside),
        "python_us": med([w - e for w, e in zip(walls, inside)]),
        "counts_to_launch_us": med(gaps),
    }


def run(args) -> int:
    from bench_intranode import import_uccl_ep, init_distributed, shared_num_sms

    ep = import_uccl_ep()
    rank, num_ranks, device = init_distributed(args.share_gpus)
    num_sms = shared_num_sms(args.num_sms, num_ranks, device) if args.share_gpus else args.num_sms
    torch.manual_seed(rank)
    t, h = args.num_tokens, args.hidden
    x = torch.randn(t, h, device=device).to(torch.bfloat16)
    x_fp8 = bu.per_token_cast_to_fp8(x)
    topk_idx = bu.make_routing(t, args.num_experts, args.num_topk, device, torch.int64)
    topk_weights = torch.rand(t, args.num_topk, device=device)

    buffer = ep.Buffer(dist.group.WORLD, NUM_NVL_BYTES)
    timed = TimedRuntime()
    runtime, ops = buffer.runtime, buffer._intranode("bench")
    buffer.runtime, buffer._ops = timed.wrap(runtime), timed.wrap(ops)
    ep.Buffer.set_num_sms(num_sms)
    dcfg = ep.Buffer.get_dispatch_config(num_ranks)
    ccfg = ep.Buffer.get_combine_config(num_ranks)
    per_rank, _, per_expert, in_rank, _ = buffer.get_dispatch_layout(topk_idx, args.num_experts)

    def fresh(data):
        return buffer.dispatch(
            data,
            num_tokens_per_rank=per_rank,
            is_token_in_rank=in_rank,
            num_tokens_per_expert=per_expert,
            topk_idx=topk_idx,
            topk_weights=topk_weights,
            config=dcfg,
        )

    recv_x, _, _, _, handle, _ = fresh(x)
    calls = {
        "get_dispatch_layout": lambda: buffer.get_dispatch_layout(topk_idx, args.num_experts),
        "dispatch_fp8": lambda: fresh(x_fp8),
        "dispatch_bf16": lambda: fresh(x),
        "dispatch_cached_bf16": lambda: buffer.dispatch(x, handle=handle, config=dcfg),
        "combine": lambda: buffer.combine(recv_x, handle, config=ccfg),
    }
    results = {name: measure(call, timed, args.iters) for name, call in calls.items()}
    torch.cuda.synchronize()
    dist.barrier()
    buffer.runtime, buffer._ops = runtime, ops
    base = baselines(device, h, recv_x.shape[0], 2000)
    reports = [None] * num_ranks
    dist.all_gather_object(reports, {"rank": rank, "calls": results, "baselines": base})
    if rank == 0:
        publish(args, num_ranks, num_sms, reports)
    dist.barrier()
    dist.destroy_process_group()
    return 0


def publish(args, num_ranks: int, num_sms: int, reports: list) -> None:
    worst = lambda key, name: max(  # noqa: E731
        (r["calls"][name][key] for r in reports if r["calls"][name][key] is not None),
        default=None,
    )
    base = {k: max(r["baselines"][k] for r in reports) for k in reports[0]["baselines"]}
    launch = base["kernel_launch_us"]
    print(
        f"Host time per call, EP {num_ranks}, {args.num_tokens} tokens x {args.hidden}, "
        f"top-{args.num_topk} of {args.num_experts}, {num_sms} SMs (median; slowest rank)"
    )
    print(
        f"{'call':24s} {'wall us':>9s} {'extension':>10s} {'python':>8s} {'counts->launch':>15s}"
        f" {'launches':>9s}"
    )
    summary = {}
    for name in reports[0]["calls"]:
        row = {k: worst(k, name) for k in reports[0]["calls"][name]}
        row["wall_in_launches"] = bu.ratio(row["wall_us"], launch)
        summary[name] = row
        gap = "-" if row["counts_to_launch_us"] is None else f"{row['counts_to_launch_us']:.1f}"
        print(
            f"{name:24s} {row['wall_us']:9.1f} {row['extension_us']:10.1f} "
            f"{row['python_us']:8.1f} {gap:>15s} {row['wall_in_launches']:9.1f}"
        )
    print(
        f"baselines (us per call): torch.empty {base['torch_empty_us']:.1f}, kernel launch "
        f"(zero_) {launch:.1f}, Stream.wait_stream {base['wait_stream_us']:.1f}"
    )
    path = args.json or f"bench_host_overhead_ep{num_ranks}.json"
    with open(path, "w") as f:
        json.dump(
            {
                "settings": {
                    **{k: v for k, v in vars(args).items() if k != "json"},
                    "num_ranks": num_ranks,
                    "num_sms": num_sms,
                },
                "summary": summary,
                "baselines": base,
                "per_rank": reports,
            },
            f,
            indent=1,
        )
    print(f"wrote {path}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--num-tokens", type=int, default=4096)
    p.add_argument("--hidden", type=int, default=7168)
    p.add_argument("--num-topk", type=int, default=8)
    p.add_argument("--num-experts", type=int, default=256)
    p.add_argument("--num-sms", type=int, default=24)
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--share-gpus", action="store_true", help="more ranks than GPUs (CUDA MPS)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if torch is None or not torch.cuda.is_available():
        print("bench_host_overhead: needs torch with CUDA; skipped")
        return 0
    if args.iters < 1:
        raise ValueError(f"--iters={args.iters} must be >= 1")
    bu.set_comm_env()
    try:
        return run(args)
    except Exception:
        traceback.print_exc()
        print(f"[rank {os.environ.get('RANK', '?')}] bench_host_overhead failed", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
