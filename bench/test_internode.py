"""UCCL-EP's internode test entry point on uccl-ep: DeepEP's tests/test_internode.py checks and
tuning sweep through `import deep_ep`, with DeepEP's output lines, for ranks in several NVLink
domains ("nodes"; on one host emulated with --local-ranks L).

    torchrun --nproc_per_node=N bench/test_internode.py [--num-tokens 4096] [--hidden 7168]
        [--num-topk 8] [--num-experts 256] [--num-topk-groups G] [--num-sms 24]
        [--test-ll-compatibility] [--local-ranks L] [--transport ipc|libfabric]
        [--fi-provider P] [--share-gpus] [--quick] [--json PATH]

Correctness: get_dispatch_layout (num_tokens_per_rdma_rank included), then every (previous
event, async, data, top-k) combination of dispatch (rows, top-k, expert counts, the 10-tuple
handle; with top-k also num_worst_tokens, without it a cached dispatch through the handle) and
combine with two biases, against the pure-torch reference of bench/_internode_check.py, built
on every rank from every rank's inputs. Tuning: the cached dispatch (FP8, then BF16) and the
combine over (NVL chunk, RDMA chunk), GB/s (RDMA) and (NVL) counted as DeepEP does
(bench/_internode_report.py). Exit status 1 if a check failed on any rank.
"""

from __future__ import annotations

import argparse
import importlib
import os
import socket
import sys
from dataclasses import dataclass, field
from typing import Any

try:
    import torch
    import torch.distributed as dist
except ImportError:  # reported by main(), which then exits 0
    torch = None
    dist = None

import _bench_utils as bu
import _deepep_style as style
import _internode_check as ic
import _internode_ll_check as llc
import _internode_report as rep
import _internode_tuning as tuning
import bench_internode as binter
import bench_intranode as bi

CHECK_CHUNKS = (8, 16)  # Config(num_sms, 8, nvl_buffer, 16, 128): DeepEP's correctness config
RDMA_BUFFER = 128  # num_max_rdma_chunked_recv_tokens
LAYOUT = ("num_tokens_per_rank", "num_tokens_per_rdma_rank", "num_tokens_per_expert")
LAYOUT += ("is_token_in_rank",)  # get_dispatch_layout's outputs = dispatch's keywords


@dataclass
class Context:
    """One rank's run: flags, packages, topology and, once built, the Buffer, the reference
    (_internode_check.World) and get_dispatch_layout's outputs (dispatch's keywords)."""

    args: argparse.Namespace
    deep_ep: Any  # the drop-in package
    ep: Any  # uccl.ep: its _C sizes the Buffer (bench_internode.buffer_sizes)
    rank: int
    num_ranks: int
    num_local_ranks: int
    num_nodes: int
    num_topk_groups: int
    device: Any
    log: style.CheckLog = field(init=False)
    flush: bu.L2Flusher = field(init=False)
    buffer: Any = None
    world: Any = None
    layout: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.log, self.flush = style.CheckLog(self.rank), bu.L2Flusher(self.device)

    def config(self, chunks: tuple[int, int]):
        """Config(num_sms, NVL chunk, 720 for 24/48/96/144/160 ranks else 512, RDMA chunk, 128),
        as DeepEP's test."""
        nvl_buffer = 720 if self.num_ranks in rep.NVL_RECV_720_RANKS else 512
        a = self.args
        return self.deep_ep.Config(a.num_sms, chunks[0], nvl_buffer, chunks[1], RDMA_BUFFER)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="DeepEP's internode test (correctness and tuning) on uccl-ep's deep_ep"
    )
    style.add_shape_flags(p, tokens=4096, hidden=7168, topk=8, experts=256)
    add = p.add_argument
    add("--num-topk-groups", type=int, help="nodes a token's experts come from (min(nodes, 4))")
    add("--num-sms", type=int, default=24, help="SMs of every Config (even; 24)")
    add(
        "--test-ll-compatibility",
        action="store_true",
        help="build the Buffer in low-latency mode as well (DeepEP's test_ll_compatibility: 16 "
        "tokens, hidden 5120, 256 experts, top-9), run the internode test on it, then "
        "clean_low_latency_buffer and a low-latency dispatch + combine on the same Buffer",
    )
    add("--local-ranks", type=int, help="UCCL_EP_NUM_LOCAL_RANKS: nodes of L ranks on one host")
    add("--transport", choices=("ipc", "libfabric"), help="UCCL_EP_TRANSPORT (default: auto)")
    add("--fi-provider", help="UCCL_EP_FI_PROVIDER, e.g. 'tcp;ofi_rxm' (libfabric transport)")
    add("--seed", type=int, default=0, help="seed of the inputs (rank r's from seed and r)")
    style.add_run_flags(p)
    args = p.parse_args(argv)
    style.check_positive(p, args, ("num_tokens", "hidden", "num_topk", "num_experts", "num_sms"))
    if args.num_sms % 2:
        p.error(f"--num-sms {args.num_sms} must be even (one channel is 2 blocks)")
    if args.hidden % bu.FP8_BLOCK:
        p.error(f"--hidden {args.hidden} must be a multiple of 128 (FP8 scales per 128)")
    if args.num_topk > args.num_experts:
        p.error(f"--num-topk {args.num_topk} > --num-experts {args.num_experts}")
    for name in ("local_ranks", "num_topk_groups"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} {getattr(args, name)} must be >= 1")
    if args.fi_provider is not None and args.transport == "ipc":
        p.error("--fi-provider is for --transport libfabric, not --transport ipc")
    return args


def topology(args, num_ranks: int) -> tuple[int, int, int]:
    """(ranks per node L, nodes N, top-k groups) from UCCL_EP_NUM_LOCAL_RANKS, else the ranks
    on rank 0's host, with the sizes checked."""
    local = os.environ.get("UCCL_EP_NUM_LOCAL_RANKS", "").strip()
    hosts = [None] * num_ranks
    if not local:
        dist.all_gather_object(hosts, socket.gethostname())
    big_l = int(local) if local else rep.ranks_per_host(hosts)
    if num_ranks % big_l or num_ranks // big_l < 2:
        raise ValueError(
            f"{num_ranks} ranks in nodes of {big_l}: the internode mode needs >= 2 nodes "
            "(--local-ranks L emulates nodes of L ranks on one host)"
        )
    nodes = num_ranks // big_l
    groups = args.num_topk_groups or rep.num_topk_groups(nodes)
    if args.num_experts % num_ranks or groups > nodes:
        raise ValueError(
            f"need --num-experts {args.num_experts} a multiple of {num_ranks} ranks and top-k "
            f"groups {groups} <= {nodes} nodes"
        )
    if args.num_topk > groups * args.num_experts // nodes:
        raise ValueError(f"--num-topk {args.num_topk} > the experts of {groups} nodes")
    if args.test_ll_compatibility and llc.LL.num_experts % num_ranks:
        raise ValueError(f"--test-ll-compatibility: 256 experts over {num_ranks} ranks")
    return big_l, nodes, groups


def make_buffer(ctx: Context):
    """Sized for every config used (bench_internode.buffer_sizes); with --test-ll-compatibility
    also for the low-latency calls, in low-latency mode, num_qps_per_rank as DeepEP's test."""
    a, r = ctx.args, ctx.num_ranks
    chunks = {CHECK_CHUNKS} | {
        c for m in tuning.MODES for c in tuning.grid(m, ctx.num_nodes, a.quick)
    }
    nvl, rdma = binter.buffer_sizes(ctx, [ctx.config(c) for c in sorted(chunks)])
    qps, c = a.num_sms, llc.LL
    if a.test_ll_compatibility:
        hint = ctx.deep_ep.Buffer.get_low_latency_rdma_size_hint
        rdma = max(rdma, hint(c.num_tokens, c.hidden, r, c.num_experts))
        qps = max(qps, c.num_experts // r)
    buffer = ctx.deep_ep.Buffer(
        dist.group.WORLD,
        nvl,
        rdma,
        low_latency_mode=a.test_ll_compatibility,
        num_qps_per_rank=qps,
        explicitly_destroy=True,
    )
    got = (int(buffer.runtime.num_local_ranks), int(buffer.runtime.num_nodes))
    if got != (ctx.num_local_ranks, ctx.num_nodes):
        want = (ctx.num_local_ranks, ctx.num_nodes)
        raise RuntimeError(f"the Buffer's (ranks per node, nodes) is {got}, expected {want}")
    return buffer


# ---------------------------------------------------------------------------------------------
# Correctness


def stream_kwargs(ctx: Context, async_mode: bool, previous: bool) -> dict:
    event = ctx.deep_ep.Buffer.capture() if previous else None
    return {"async_finish": async_mode, "previous_event": event}


def settle(out: tuple, async_mode: bool) -> tuple:
    if async_mode:
        out[-1].current_stream_wait()
    return out


def check_layout(ctx: Context) -> dict:
    """get_dispatch_layout against the reference (sync, then async after an event) and its
    time; prints DeepEP's [layout] line."""
    idx, want = ctx.world.routes[ctx.rank][0], ctx.world.layouts[ctx.rank]
    for mode in (False, True):
        checks = ic.Checks(ctx.log, f"layout (async={mode}): ")
        kwargs = stream_kwargs(ctx, mode, mode)
        out = settle(ctx.buffer.get_dispatch_layout(idx, ctx.args.num_experts, **kwargs), mode)
        for name, got in zip(LAYOUT, out):
            checks.same(name, got, getattr(want, name))
    fn = lambda: ctx.buffer.get_dispatch_layout(idx, ctx.args.num_experts)  # noqa: E731
    layout_s = style.mean_min_max(bu.e2e_samples(fn, ctx.flush, 5, 20))[0]
    if ctx.rank == 0:
        print(style.layout_line(layout_s) + "\n", flush=True)
    return {"layout_us": layout_s * 1e6}


def run_case(ctx: Context, kind: str, with_topk: bool, async_mode: bool, previous: bool) -> None:
    """One DeepEP case: dispatch and combine checked; with top-k also num_worst_tokens, without
    it a cached dispatch through the handle. Prints the [testing] line (rank 0)."""
    world, buffer, config = ctx.world, ctx.buffer, ctx.config(CHECK_CHUNKS)
    if ctx.rank == 0:
        line = style.testing_line(kind.startswith("fp8"), with_topk, async_mode, previous)
        print(line, end="", flush=True)
    ctx.log.mark()
    where = f"internode[{kind}] top-k={with_topk} async={async_mode} previous={previous}: "
    checks = ic.Checks(ctx.log, where)
    x, (idx, weights) = world.own(kind), world.routes[ctx.rank]
    topk = {"topk_idx": idx, "topk_weights": weights} if with_topk else {}

    def call(fn, *args, **kwargs):
        return settle(fn(*args, **kwargs, **stream_kwargs(ctx, async_mode, previous)), async_mode)

    out = call(buffer.dispatch, x, config=config, **ctx.layout, **topk)
    ic.check_dispatch(checks, world, kind, out, with_topk)
    if with_topk:
        worst = ctx.args.num_tokens * ctx.num_ranks
        padded = call(
            buffer.dispatch, x, config=config, num_worst_tokens=worst, **ctx.layout, **topk
        )
        checks.where = f"{where}num_worst_tokens={worst}: "
        ic.check_dispatch(checks, world, kind, padded, True, worst)
    else:
        cached = call(buffer.dispatch, x, handle=out[4], config=config)
        checks.where = f"{where}cached: "
        ic.check_rows(checks, "recv_x", cached[0], world.recv_x(kind), world.num_recv)
    checks.where = f"{where}combine: "
    y, weights = ic.combine_input(out[0]), (out[2] if with_topk else None)
    combined = call(buffer.combine, y, out[4], weights, bias=world.biases, config=config)
    ic.check_combine(checks, world, kind, combined, with_topk)
    if ctx.rank == 0:
        print(ctx.log.verdict(), flush=True)


def check_low_latency(ctx: Context) -> None:
    """--test-ll-compatibility, after the internode test: clean_low_latency_buffer, a BF16 and
    an FP8 low-latency dispatch + combine, then one internode case again, on the same Buffer."""
    c = llc.LL
    with bu.phase("low-latency compatibility: clean_low_latency_buffer"):
        ctx.buffer.clean_low_latency_buffer(c.num_tokens, c.hidden, c.num_experts)
    for use_fp8 in (False, True):
        fmt = "fp8" if use_fp8 else "bf16"
        if ctx.rank == 0:
            print(style.ll_testing_line(fmt), end="", flush=True)
        ctx.log.mark()
        checks = ic.Checks(ctx.log, f"low_latency[{fmt}]: ")
        with bu.phase(f"low-latency compatibility: {fmt} dispatch + combine"):
            llc.check_low_latency(
                checks, ctx.buffer, ctx.rank, ctx.num_ranks, ctx.args.seed, use_fp8, ctx.device
            )
        if ctx.rank == 0:
            print(ctx.log.verdict(), flush=True)
    with bu.phase("low-latency compatibility: internode again"):
        run_case(ctx, "bf16_rand", True, False, False)


# ---------------------------------------------------------------------------------------------
# Driver


def setup(args, deep_ep) -> Context:
    """Process group, topology, Buffer, reference and layout; prints the [config] lines."""
    rank, num_ranks, device = bi.init_distributed(args.share_gpus)
    problem = rep.mps_problem(args.share_gpus, num_ranks, torch.cuda.device_count())
    if problem:
        raise RuntimeError(problem)
    big_l, nodes, groups = topology(args, num_ranks)
    if args.share_gpus:
        args.num_sms = bi.shared_num_sms(args.num_sms, num_ranks, device)
        deep_ep.Buffer.set_num_sms(args.num_sms)
    ep = importlib.import_module("uccl.ep")
    ctx = Context(args, deep_ep, ep, rank, num_ranks, big_l, nodes, groups, device)
    with bu.phase("Buffer"):
        ctx.buffer = make_buffer(ctx)
    if rank == 0:
        mib = (ctx.buffer.num_nvl_bytes >> 20, ctx.buffer.num_rdma_bytes >> 20)
        shared = "; ranks share GPUs: not network figures" if args.share_gpus else ""
        print(
            f"EP{num_ranks}: {nodes} nodes of {big_l} ranks, {args.num_sms} SMs, Buffer NVL "
            f"{mib[0]} MiB, RDMA {mib[1]} MiB{shared}",
            flush=True,
        )
        line = style.config_line(args.num_tokens, args.hidden, args.num_topk, groups)
        print(line, flush=True)
    with bu.phase("reference: every rank's inputs, rebuilt from the seed"):
        channels = args.num_sms // 2
        ctx.world = ic.World(args, rank, num_ranks, big_l, groups, channels, device)
        layout = ctx.buffer.get_dispatch_layout(ctx.world.routes[rank][0], args.num_experts)
        ctx.layout = dict(zip(LAYOUT, layout))
    return ctx


def run(args) -> int:
    with bu.phase("import deep_ep"):
        deep_ep = style.import_deep_ep()
    with bu.phase("init_process_group, topology, Buffer"):
        ctx = setup(args, deep_ep)
    result = check_layout(ctx)
    for previous in (False, True):
        for async_mode in (False, True):
            for kind in ic.KINDS:
                for with_topk in (False, True):
                    with bu.phase(f"dispatch/combine {kind} top-k={with_topk} async={async_mode}"):
                        run_case(ctx, kind, with_topk, async_mode, previous)
    if ctx.rank == 0:
        print("", flush=True)
    result.update(tuning.tune(ctx, CHECK_CHUNKS))
    if args.test_ll_compatibility:
        check_low_latency(ctx)
    failures = ctx.log.failures
    result.update(rank=ctx.rank, failures=failures[:50], num_failed=len(failures))
    with bu.phase("gather results"):
        results = [None] * ctx.num_ranks
        dist.all_gather_object(results, result)
    failed = sum(r["num_failed"] for r in results)
    if ctx.rank == 0:
        bad = [r["rank"] for r in results if r["num_failed"]]
        verdict = "all checks passed" if not failed else f"{failed} checks FAILED on ranks {bad}"
        print(f"test_internode: EP{ctx.num_ranks}: {verdict}", flush=True)
        if args.json:
            hardware = bi.environment(ctx.device, ctx.ep)
            doc = tuning.document(args, hardware, tuning.topology_of(ctx), results)
            style.write_json(args.json, doc)
    with bu.phase("buffer.destroy"):
        ctx.buffer.destroy()
    dist.barrier()
    dist.destroy_process_group()
    return 1 if failed else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    rep.apply_env(args)
    bu.set_comm_env()
    return bu.run_torchrun_main("test_internode", torch, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
