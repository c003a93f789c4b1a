"""UCCL-EP's low-latency test entry point on uccl-ep: DeepEP's tests/test_low_latency.py checks
and measurements through `import deep_ep`, with DeepEP's output lines.

    torchrun --nproc_per_node=N bench/test_low_latency.py [--num-tokens 128] [--hidden 7168]
        [--num-topk 8] [--num-experts 288] [--use-logfmt] [--disable-nvlink] [--share-gpus]
        [--quick] [--json PATH]

Correctness: for return_recv_hook False / True and every dispatch format (BF16, FP8, FP8 with
power-of-two scales, UE8M0), a dispatch (repeated once in alternate cases, so both buffer halves
are used) and a combine with and without zero_copy, against the pure-torch reference of
tests/gpu/ll_reference.py (the low-latency GPU suite's checks). Performance: DeepEP's three
figures per rank (bench/README.md says how each is timed). Exit status 1 if a check failed.
"""

from __future__ import annotations

import argparse
import functools
import sys

try:
    import torch
    import torch.distributed as dist
except ImportError:  # reported by main(), which then exits 0
    torch = None
    dist = None

import _bench_utils as bu
import _deepep_style as style
import _low_latency_report as rep
import bench_low_latency as bll
from bench_intranode import environment, init_distributed, shared_num_sms

ITERATIONS = (20, 200)  # warm-ups, timed calls
QUICK_ITERATIONS = (3, 20)
CALLS = ("dispatch", "combine", "dispatch_combine")
HOOK_KERNELS = ("dispatch_send", "dispatch_recv", "combine_send", "combine_recv")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="DeepEP's low-latency test (correctness and timing) on uccl-ep's deep_ep"
    )
    style.add_shape_flags(p, tokens=128, hidden=7168, topk=8, experts=288)
    p.add_argument("--use-logfmt", action="store_true", help="LogFMT-10 combine as well")
    p.add_argument(
        "--disable-nvlink",
        action="store_true",
        help="allow_nvlink_for_low_latency_mode=False: every peer through the CPU proxies",
    )
    p.add_argument("--allow-mnnvl", action="store_true", help="accepted, no effect (DeepEP's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs")
    style.add_run_flags(p)
    args = p.parse_args(argv)
    style.check_positive(p, args, ("num_tokens", "hidden", "num_topk", "num_experts"))
    if args.hidden not in rep.LL_HIDDEN_SIZES:
        p.error(f"--hidden {args.hidden} must be one of {rep.LL_HIDDEN_SIZES} (the LL kernels')")
    if args.num_topk > rep.LL_MAX_TOPK:
        p.error(f"--num-topk {args.num_topk} > {rep.LL_MAX_TOPK} (the LL kernels' limit)")
    return args


# ---------------------------------------------------------------------------------------------
# Correctness (also run by test_intranode.py --test-ll-compatibility on its Buffer)


def suite_context(deep_ep, buffer, rank: int, num_ranks: int, rec, shape: tuple):
    """The LL GPU suite's context for this Buffer; `shape` = (T, hidden, experts, top-k)."""
    (suite,) = style.import_gpu_tests("low_latency_suite")
    num_tokens, hidden, num_experts, _ = shape
    return suite.Ctx(
        rank,
        num_ranks,
        rec,
        deep_ep,
        topo="test_low_latency",
        buffer=buffer,
        t=num_tokens,
        experts_per_rank=num_experts // num_ranks,
        hidden=hidden,
    )


def check_low_latency(
    deep_ep, buffer, rank: int, num_ranks: int, rec, log, shape: tuple, seed: int, logfmt=False
):
    """DeepEP's low-latency checks on `buffer`, each line's verdict printed by rank 0; returns
    the reference World (its inputs are the timed ones)."""
    suite, ref = style.import_gpu_tests("low_latency_suite", "ll_reference")
    ctx = suite_context(deep_ep, buffer, rank, num_ranks, rec, shape)
    num_tokens, hidden, _, num_topk = shape
    world = ctx.world(
        ref.Case("test_low_latency", (num_tokens,) * num_ranks, hidden, num_topk, seed=seed)
    )
    num_times = 0
    for hook in (False, True):
        for fmt in ref.FORMATS:
            num_times += 1
            if rank == 0:
                print(style.ll_testing_line(fmt, logfmt, hook), end="", flush=True)
            log.mark()
            where = f"{fmt} return_recv_hook={hook}"
            mode = suite.DispatchMode(fmt, hook=hook, async_finish=not hook)
            scope = suite.Scope(ctx, f"low_latency[{fmt}]", where)
            with bu.phase(f"low-latency checks: {where}"):
                for _ in range(num_times % 2):  # an extra call: the checked one uses the other half
                    out = suite.dispatch(ctx, world, mode)
                    suite.complete(scope.sub("extra"), "dispatch", out[3], out[4], hook, not hook)
                both = {"use_out": True, "hook": hook, "async_finish": not hook}
                combines = [
                    suite.CombineMode("identity", **both),
                    suite.CombineMode("scaled", zero_copy=True, **both),
                ]
                if logfmt:
                    combines.append(suite.CombineMode("identity", use_logfmt=True, **both))
                suite.run_case(scope, world, mode, tuple(combines))
            if rank == 0:
                print(log.verdict(), flush=True)
    return world


# ---------------------------------------------------------------------------------------------
# Performance


class Timed:
    """The calls DeepEP's test times: FP8 dispatch of this rank's tokens, and the combine of the
    identity experts' rows (LogFMT with --use-logfmt)."""

    def __init__(self, ctx, suite_ctx, world, use_logfmt: bool) -> None:
        (suite,) = style.import_gpu_tests("low_latency_suite")
        self.ctx, self.buffer, self.use_logfmt = ctx, suite_ctx.buffer, use_logfmt
        self.x, self.idx, self.weights = world.own()
        a = ctx.args
        self.num_tokens, self.num_experts = a.num_tokens, a.num_experts
        num_local = a.num_experts // ctx.num_ranks
        self.stats = torch.zeros(num_local, dtype=torch.int32, device=ctx.device)
        recv_x, recv_count, self.handle, _, _ = self.dispatch(False)
        self.y = suite.expert_outputs(suite_ctx, recv_x, recv_count, "identity")
        torch.cuda.synchronize()

    def dispatch(self, hook: bool):
        return self.buffer.low_latency_dispatch(
            self.x,
            self.idx,
            self.num_tokens,
            self.num_experts,
            cumulative_local_expert_recv_stats=self.stats,
            use_fp8=True,
            async_finish=False,
            return_recv_hook=hook,
        )

    def combine(self, handle, zero_copy: bool, hook: bool):
        if zero_copy:
            self.buffer.get_next_low_latency_combine_buffer(handle).copy_(self.y)
        return self.buffer.low_latency_combine(
            self.y,
            self.idx,
            self.weights,
            handle,
            use_logfmt=self.use_logfmt,
            zero_copy=zero_copy,
            return_recv_hook=hook,
        )

    def both(self, zero_copy: bool = False, hook: bool = False) -> None:
        """DeepEP's test_func: dispatch then combine; with hooks each receive phase starts after
        a ~1 ms spin on the stream (DeepEP: a large GEMM), so it times receiving alone."""
        _, _, handle, _, recv_hook = self.dispatch(hook)
        if hook:
            bll.hold_back()
            recv_hook()
        _, _, recv_hook = self.combine(handle, zero_copy, hook)
        if hook:
            bll.hold_back()
            recv_hook()


def call_bytes(num_selections: int, hidden: int, use_logfmt: bool) -> dict:
    """DeepEP's byte counts: FP8 dispatch messages; BF16 (or LogFMT-10) combine rows."""
    dispatch = num_selections * rep.dispatch_message_bytes(hidden, use_fp8=True)
    row = hidden * 10 / 8 + hidden / 128 * 4 if use_logfmt else rep.combine_message_bytes(hidden)
    combine = num_selections * row
    return {"dispatch": dispatch, "combine": combine, "dispatch_combine": dispatch + combine}


def measure(ctx, timed: Timed) -> dict:
    """This rank's figures and DeepEP's three lines. Per-call samples: CUDA events around the
    call, each after an L2 flush and a barrier (bench_low_latency.time_full_calls)."""
    rank, s = ctx.rank, ctx.settings
    nbytes = call_bytes(int((timed.idx >= 0).sum()), ctx.args.hidden, timed.use_logfmt)
    fns = {
        "dispatch": lambda: timed.dispatch(False),
        "combine": lambda: timed.combine(timed.handle, False, False),
        "dispatch_combine": timed.both,
    }
    samples = {}
    for call in CALLS:
        with bu.phase(f"timing {call}"):
            samples[call] = bll.time_full_calls(fns[call], ctx)
    avg, lo, hi = style.mean_min_max(samples["dispatch_combine"])
    print(
        style.ll_dispatch_combine_line(
            rank, nbytes["dispatch_combine"], avg / 1e6, lo / 1e6, hi / 1e6
        ),
        flush=True,
    )
    with bu.phase("kernel times (profiler)"):
        fn = functools.partial(timed.both, zero_copy=True)
        kernel = bu.kernel_times_by_name(fn, ("dispatch", "combine"), ctx.flush, s.warmups, s.iters)
    d_s, c_s = kernel["dispatch"] / 1e6, kernel["combine"] / 1e6
    print(style.ll_kernel_line(rank, nbytes["dispatch"], d_s, nbytes["combine"], c_s), flush=True)
    with bu.phase("hook-mode kernel times (profiler)"):
        ctx.sync()
        fn = functools.partial(timed.both, zero_copy=True, hook=True)
        hooked = bu.kernel_times_by_name(fn, HOOK_KERNELS, ctx.flush, s.warmups, s.iters)
    kernel.update(hooked)
    send_recv = [hooked[k] / 1e6 for k in HOOK_KERNELS]
    print(style.ll_hook_line(rank, tuple(send_recv[:2]), tuple(send_recv[2:])), flush=True)
    return {
        "bytes": nbytes,
        "latency_us": samples,
        "stats": {call: rep.sample_stats(samples[call]) for call in CALLS},
        "gbps_avg": {
            call: bu.gbps(nbytes[call], style.mean_min_max(samples[call])[0] / 1e6)
            for call in CALLS
        },
        "kernel_us": kernel,
        "gbps_kernel": {
            "dispatch": bu.gbps(nbytes["dispatch"], d_s),
            "combine": bu.gbps(nbytes["combine"], c_s),
        },
    }


# ---------------------------------------------------------------------------------------------
# Driver


def build_document(args, hardware: dict, num_ranks: int, notes: dict, rank_results: list) -> dict:
    """The JSON file: settings, every rank's per-iteration latencies, statistics and figures."""
    return style.document(
        "test_low_latency",
        args,
        hardware,
        num_ranks=num_ranks,
        figures_are_nvlink=not args.share_gpus,
        **notes,
        byte_definitions={
            "dispatch": "valid (token, k) * (hidden + hidden/128*4 + 16): FP8 messages",
            "combine": "valid (token, k) * 2*hidden (LogFMT: hidden*10/8 + hidden/128*4)",
        },
        timing_definitions={
            "latency_us": "per iteration: CUDA events around the call, after an L2 flush and a "
            "barrier of all ranks",
            "kernel_us": "torch.profiler device time per call of the kernels whose name has "
            "the key (dispatch_send etc.: hook mode, receive started ~1 ms after the send)",
        },
        failed_checks=sum(r["num_failed"] for r in rank_results),
        per_rank=rank_results,
    )


def make_context(args, deep_ep, rank: int, num_ranks: int, device, num_rdma_bytes: int):
    group = dist.group.WORLD if args.share_gpus else dist.new_group(backend="gloo")
    warmups, iters = QUICK_ITERATIONS if args.quick else ITERATIONS
    return bll.Context(
        args=args,
        settings=bll.Settings(warmups=warmups, iters=iters),
        ep=deep_ep,
        rank=rank,
        num_ranks=num_ranks,
        ranks_per_host=num_ranks,
        device=device,
        sync=bll.RankSync(group, rank, num_ranks),
        flush=bu.L2Flusher(device),
        num_rdma_bytes=num_rdma_bytes,
    )


def run(args) -> int:
    with bu.phase("import deep_ep"):
        deep_ep = style.import_deep_ep()
    with bu.phase("init_process_group"):
        rank, num_ranks, device = init_distributed(args.share_gpus)
    requested = args.num_experts
    args.num_experts, note = rep.fit_num_experts(requested, num_ranks)
    if num_ranks < 2 or num_ranks * args.num_tokens % 4:
        raise ValueError(f"need >= 2 ranks and ranks * --num-tokens % 4 == 0; got {num_ranks}")
    if args.share_gpus:
        deep_ep.Buffer.set_num_sms(shared_num_sms(deep_ep.Buffer.num_sms, num_ranks, device))
    if rank == 0 and note:
        print(note, flush=True)
    hint = deep_ep.Buffer.get_low_latency_rdma_size_hint(
        args.num_tokens, args.hidden, num_ranks, args.num_experts
    )
    if rank == 0:
        print(
            f"{style.config_line(args.num_tokens, args.hidden, args.num_topk)}, "
            f"num_experts={args.num_experts}, RDMA buffer {hint / 1e6:.1f} MB",
            flush=True,
        )
    with bu.phase("Buffer"):
        buffer = deep_ep.Buffer(
            dist.group.WORLD,
            num_rdma_bytes=hint,
            low_latency_mode=True,
            num_qps_per_rank=args.num_experts // num_ranks,
            allow_nvlink_for_low_latency_mode=not args.disable_nvlink,
            allow_mnnvl=args.allow_mnnvl,
            explicitly_destroy=True,
        )
    (dist_mod,) = style.import_gpu_tests("_dist")
    log = style.CheckLog(rank)
    rec = dist_mod.Recorder(rank, log)
    shape = (args.num_tokens, args.hidden, args.num_experts, args.num_topk)
    world = check_low_latency(
        deep_ep, buffer, rank, num_ranks, rec, log, shape, args.seed, args.use_logfmt
    )
    ctx = make_context(args, deep_ep, rank, num_ranks, device, hint)
    with bu.phase("timing setup"):
        suite_ctx = suite_context(deep_ep, buffer, rank, num_ranks, rec, shape)
        timed = Timed(ctx, suite_ctx, world, args.use_logfmt)
    ctx.sync()
    result = measure(ctx, timed)
    result.update(rank=rank, failures=log.failures[:50], num_failed=len(log.failures))
    with bu.phase("gather results"):
        results = ctx.sync.all_gather(result)
    failed = sum(r["num_failed"] for r in results)
    if rank == 0:
        bad = [r["rank"] for r in results if r["num_failed"]]
        verdict = "all checks passed" if not failed else f"{failed} checks FAILED on ranks {bad}"
        print(f"test_low_latency: EP{num_ranks}: {verdict}", flush=True)
        if args.json:
            notes = {"num_experts_requested": requested, "num_experts_note": note}
            notes["buffer_num_sms"] = deep_ep.Buffer.num_sms
            doc = build_document(args, environment(device, deep_ep), num_ranks, notes, results)
            style.write_json(args.json, doc)
    with bu.phase("buffer.destroy"):
        ctx.sync()
        buffer.destroy()
    dist.barrier(group=ctx.sync.group)
    dist.destroy_process_group()
    return 1 if failed else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    bu.set_comm_env()
    return bu.run_torchrun_main("test_low_latency", torch, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
