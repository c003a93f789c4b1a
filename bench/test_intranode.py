"""UCCL-EP's intranode test entry point on uccl-ep: DeepEP's tests/test_intranode.py checks and
tuning sweep through `import deep_ep`, with DeepEP's output lines.

    torchrun --nproc_per_node=N bench/test_intranode.py [--num-tokens 4096] [--hidden 7168]
        [--num-topk 8] [--num-experts 256] [--num-sms 24] [--test-ll-compatibility]
        [--share-gpus] [--quick] [--json PATH]

Correctness: get_dispatch_layout, then every (previous event, async, data, top-k) combination of
dispatch (+ num_worst_tokens with top-k, cached dispatch without), and combine, against the
pure-torch reference of tests/gpu/reference.py (the intranode GPU suite's checks). Tuning: the
cached dispatch (FP8, then BF16) and the combine over NVL chunk sizes, timed with the
benchmarks' CUDA-event timer (bench/_bench_utils.py), GB/s counted as DeepEP does
(bench/README.md says which lines match DeepEP's). Exit status 1 if a check failed on any rank.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from types import SimpleNamespace

try:
    import torch
    import torch.distributed as dist
except ImportError:  # reported by main(), which then exits 0
    torch = None
    dist = None

import _bench_utils as bu
import _deepep_style as style
import bench_intranode as bi

NUM_NVL_BYTES = int(2e9)
NVL_BUFFER = 256  # DeepEP's nvl_buffer_size (num_max_nvl_chunked_recv_tokens) while tuning
CHECK_CHUNK = 8  # Config(num_sms, 8, 256): DeepEP's correctness config
DISPATCH_CHUNKS = tuple(range(4, 33, 2))
COMBINE_CHUNKS = tuple(range(1, 17))
QUICK_DISPATCH_CHUNKS = (4, 8, 16, 32)
QUICK_COMBINE_CHUNKS = (1, 4, 8, 16)
ITERATIONS = (50, 50)  # DeepEP's bench(): warm-ups, timed calls
QUICK_ITERATIONS = (5, 10)
KINDS = ("bf16_rand", "bf16_const", "fp8_colmajor")  # DeepEP's x_pure_rand, x, x_e4m3
# DeepEP's test_ll_compatibility sizes: 16 tokens, hidden 5120, 256 experts, top-9.
LL_COMPAT = SimpleNamespace(num_tokens=16, hidden=5120, num_experts=256, num_topk=9)
MODES = (("fp8_dispatch", True), ("bf16_dispatch", False), ("bf16_combine", False))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="DeepEP's intranode test (correctness and tuning) on uccl-ep's deep_ep"
    )
    style.add_shape_flags(p, tokens=4096, hidden=7168, topk=8, experts=256)
    p.add_argument("--num-sms", type=int, default=24, help="SMs of every Config (even; 24)")
    p.add_argument(
        "--test-ll-compatibility",
        action="store_true",
        help="build the Buffer in low-latency mode as well (DeepEP's test_ll_compatibility: "
        "16 tokens, hidden 5120, 256 experts, top-9), run the intranode test on it, then "
        "clean_low_latency_buffer and the low-latency checks on the same Buffer",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the correctness inputs")
    style.add_run_flags(p)
    args = p.parse_args(argv)
    style.check_positive(p, args, ("num_tokens", "hidden", "num_topk", "num_experts", "num_sms"))
    if args.num_sms % 2:
        p.error(f"--num-sms {args.num_sms} must be even (one channel is 2 blocks)")
    if args.hidden % 128:
        p.error(f"--hidden {args.hidden} must be a multiple of 128 (FP8 scales per 128)")
    if args.num_topk > args.num_experts:
        p.error(f"--num-topk {args.num_topk} > --num-experts {args.num_experts}")
    return args


# ---------------------------------------------------------------------------------------------
# Correctness


def make_buffer(deep_ep, args, num_ranks: int):
    """DeepEP's test Buffer: 2 GB of NVLink buffer; with --test-ll-compatibility also the
    low-latency mode and its RDMA buffer."""
    num_rdma_bytes, num_qps = 0, 1
    if args.test_ll_compatibility:
        c = LL_COMPAT
        num_rdma_bytes = deep_ep.Buffer.get_low_latency_rdma_size_hint(
            c.num_tokens, c.hidden, num_ranks, c.num_experts
        )
        num_qps = c.num_experts // num_ranks
    return deep_ep.Buffer(
        dist.group.WORLD,
        NUM_NVL_BYTES,
        num_rdma_bytes,
        low_latency_mode=args.test_ll_compatibility,
        num_qps_per_rank=num_qps,
        explicitly_destroy=True,
    )


def check_intranode(deep_ep, buffer, args, rank: int, num_ranks: int, rec, log, flush) -> dict:
    """DeepEP's intranode checks against tests/gpu/reference.py; prints its [layout] and
    [testing] lines (rank 0). Returns {"layout_us": ...}."""
    suite, ref = style.import_gpu_tests("intranode_suite", "reference")
    config = deep_ep.Config(args.num_sms, CHECK_CHUNK, NVL_BUFFER)
    ctx = suite.Ctx(rank, num_ranks, rec, deep_ep, buffer, config, args.num_sms)
    tokens = (args.num_tokens,) * num_ranks
    scenario = ref.Scenario(
        "test_intranode", tokens, args.hidden, args.num_experts, args.num_topk, seed=args.seed
    )
    with bu.phase("reference inputs (all-gather)"):
        world = suite.gather_world(ctx, scenario)
    with bu.phase("get_dispatch_layout"):
        for async_mode in (False, True):
            scope = suite.Scope(ctx, "layout", f"async={async_mode}")
            suite.check_layout(scope, world, suite.Mode(async_finish=async_mode, prev=async_mode))
        idx = world.topk_idx[rank]
        samples = bu.e2e_samples(
            lambda: buffer.get_dispatch_layout(idx, args.num_experts), flush, 5, 20
        )
    layout_s = style.mean_min_max(samples)[0]
    if rank == 0:
        print(style.layout_line(layout_s) + "\n", flush=True)
    worst = max(tokens) * num_ranks
    for previous in (False, True):
        for async_mode in (False, True):
            for kind in KINDS:
                for with_topk in (False, True):
                    with bu.phase(f"dispatch/combine {kind} top-k={with_topk}"):
                        run_one(ctx, world, kind, with_topk, async_mode, previous, worst, log)
    if rank == 0:
        print("", flush=True)
    return {"layout_us": layout_s * 1e6}


def run_one(ctx, world, kind: str, with_topk: bool, async_mode: bool, previous: bool, worst, log):
    """One DeepEP case: dispatch + combine checked; with top-k also num_worst_tokens, without
    it a cached dispatch through the handle."""
    (suite,) = style.import_gpu_tests("intranode_suite")
    if ctx.rank == 0:
        fp8 = kind.startswith("fp8")
        print(style.testing_line(fp8, with_topk, async_mode, previous), end="", flush=True)
    log.mark()
    where = f"top-k={with_topk} async={async_mode} previous={previous}"
    scope = suite.Scope(ctx, f"intranode[{kind}]", where)
    mode = suite.Mode(ctx.config, with_topk, async_mode, previous)
    out = suite.run_case(scope, world, kind, mode)
    if with_topk:
        padded = suite.run_case(scope, world, kind, dataclasses.replace(mode, num_worst=worst))
        suite.check_recv_x(scope, padded[0], out[0], worst, name="recv_x_vs_exact")
    else:
        x, rows = world.inputs(kind, ctx.rank), world.expected(ctx.rank).num_recv
        suite.cached_dispatch(scope, x, out[4], out[0], rows, async_mode)
    if ctx.rank == 0:
        print(log.verdict(), flush=True)


# ---------------------------------------------------------------------------------------------
# Tuning (bench_intranode.py's IntranodeBench on this Buffer)


def tuning_bench(deep_ep, buffer, args, rank: int, num_ranks: int, device):
    dispatch = QUICK_DISPATCH_CHUNKS if args.quick else DISPATCH_CHUNKS
    combine = QUICK_COMBINE_CHUNKS if args.quick else COMBINE_CHUNKS
    warmups, iters = QUICK_ITERATIONS if args.quick else ITERATIONS
    settings = bi.Settings(
        dispatch_chunks=dispatch,
        combine_chunks=combine,
        warmups=warmups,
        kernel_iters=0,
        e2e_iters=iters,
        nccl_iters=0,
        ce_bytes=0,
        ce_iters=0,
    )
    shape = SimpleNamespace(
        num_tokens=args.num_tokens,
        hidden=args.hidden,
        num_topk=args.num_topk,
        num_experts=args.num_experts,
        num_sms=args.num_sms,
        nvl_recv=[NVL_BUFFER],
    )
    return bi.IntranodeBench(shape, settings, deep_ep, rank, num_ranks, device, buffer=buffer)


def sweep(bench, mode: str, rank: int) -> dict:
    """Every config of `mode` (the cached dispatch, or the combine) timed on this rank; the
    best (lowest average time, not the default config) as DeepEP picks it."""
    s, points = bench.settings, []
    num_bytes = bench.traffic.bytes_for(mode, bench.args.hidden)["deepep"]
    for label, chunk, config in bench.configs(mode):
        full, cached = bench.calls(mode, config)
        with bu.phase(f"tuning {mode}, NVL chunk {label}"):
            samples = bu.e2e_samples(cached or full, bench.flush, s.warmups, s.e2e_iters)
        avg, lo, hi = style.mean_min_max(samples)
        gbps = num_bytes / avg / 1e9
        points.append(
            {
                "label": label,
                "nvl_chunk": chunk,
                "t_us": avg * 1e6,
                "min_us": lo * 1e6,
                "max_us": hi * 1e6,
                "gbps": gbps,
            }
        )
        if rank == 0:
            print(style.tuning_line(bench.args.num_sms, chunk, gbps, avg), flush=True)
    tuned = [p for p in points if p["nvl_chunk"] is not None]
    best = min(tuned, key=lambda p: p["t_us"])
    if rank == 0:
        sms, t = bench.args.num_sms, best["t_us"] / 1e6
        if mode.endswith("combine"):
            line = style.best_combine_line(sms, best["nvl_chunk"], best["gbps"], t)
        else:
            line = style.best_dispatch_line(
                mode.startswith("fp8"), sms, best["nvl_chunk"], best["gbps"], t
            )
        print(line + "\n", flush=True)
    return {"bytes": num_bytes, "points": points, "best": best}


def tune(bench, rank: int, num_ranks: int) -> dict:
    """FP8 then BF16 cached dispatch; rank 0's best FP8 chunk makes the handle that the combine
    sweep uses (as in DeepEP's test)."""
    out = {}
    for mode, _ in MODES:
        if mode == "bf16_combine":
            chunks = [None] * num_ranks
            dist.all_gather_object(chunks, out["fp8_dispatch"]["best"]["nvl_chunk"])
            config = bench.ep.Config(bench.args.num_sms, chunks[0], NVL_BUFFER)
            with bu.phase("dispatch with the best FP8 config (the combine's handle)"):
                recv_x, _, _, _, handle, _ = bench.buffer.dispatch(
                    bench.x_bf16, config=config, **bench.layout
                )
            bench.recv_x, bench.handle = recv_x, handle
        out[mode] = sweep(bench, mode, rank)
    return out


# ---------------------------------------------------------------------------------------------
# Driver


def summarize(rank_results: list[dict]) -> dict:
    """Per mode: rank 0's best config and figures (DeepEP's printed line), each rank's best."""
    best = {}
    for mode, _ in MODES:
        per_rank = [r["tuning"][mode]["best"] for r in rank_results]
        first = per_rank[0]
        best[mode] = {
            "nvl_chunk": first["nvl_chunk"],
            "gbps": first["gbps"],
            "t_us": first["t_us"],
            "gbps_by_rank": [p["gbps"] for p in per_rank],
            "nvl_chunk_by_rank": [p["nvl_chunk"] for p in per_rank],
        }
    return best


def build_document(args, hardware: dict, num_ranks: int, rank_results: list[dict]) -> dict:
    """The JSON file: settings, per mode rank 0's best and every rank's sweep, check failures."""
    return style.document(
        "test_intranode",
        args,
        hardware,
        num_ranks=num_ranks,
        figures_are_nvlink=not args.share_gpus,
        byte_definition="recv_x.size(0) * hidden * 2 (all received tokens incl. self), "
        "* (1 + 4/128)/2 for FP8; combine: the BF16 dispatch's count (DeepEP's test)",
        timing_definition="average of CUDA-event times of the cached dispatch / the combine, "
        "each call after an L2 flush (bench/_bench_utils.e2e_samples)",
        best=summarize(rank_results),
        failed_checks=sum(len(r["failures"]) for r in rank_results),
        per_rank=rank_results,
    )


def run(args) -> int:
    with bu.phase("import deep_ep"):
        deep_ep = style.import_deep_ep()
    with bu.phase("init_process_group"):
        rank, num_ranks, device = bi.init_distributed(args.share_gpus)
    if num_ranks < 2 or args.num_experts % num_ranks:
        raise ValueError(
            f"need >= 2 ranks dividing --num-experts {args.num_experts}; got {num_ranks} ranks"
        )
    if args.test_ll_compatibility and LL_COMPAT.num_experts % num_ranks:
        raise ValueError(f"--test-ll-compatibility: 256 experts over {num_ranks} ranks")
    if args.share_gpus:
        args.num_sms = bi.shared_num_sms(args.num_sms, num_ranks, device)
        deep_ep.Buffer.set_num_sms(args.num_sms)
        if rank == 0:
            print(f"ranks share GPUs: {args.num_sms} SMs per rank; not NVLink figures", flush=True)
    (dist_mod,) = style.import_gpu_tests("_dist")
    log = style.CheckLog(rank)
    rec = dist_mod.Recorder(rank, log)
    with bu.phase("Buffer"):
        buffer = make_buffer(deep_ep, args, num_ranks)
    if rank == 0:
        print(style.config_line(args.num_tokens, args.hidden, args.num_topk), flush=True)
    flush = bu.L2Flusher(device)
    result = check_intranode(deep_ep, buffer, args, rank, num_ranks, rec, log, flush)
    with bu.phase("tuning setup: inputs, layout, first dispatch"):
        bench = tuning_bench(deep_ep, buffer, args, rank, num_ranks, device)
    result["tuning"] = tune(bench, rank, num_ranks)
    if args.test_ll_compatibility:
        import test_low_latency as tll

        c = LL_COMPAT
        with bu.phase("low-latency compatibility: clean_low_latency_buffer"):
            buffer.clean_low_latency_buffer(c.num_tokens, c.hidden, c.num_experts)
        with bu.phase("low-latency compatibility: checks"):
            shape = (c.num_tokens, c.hidden, c.num_experts, c.num_topk)
            tll.check_low_latency(deep_ep, buffer, rank, num_ranks, rec, log, shape, seed=1)
    result.update(rank=rank, failures=log.failures[:50], num_failed=len(log.failures))
    with bu.phase("gather results"):
        results = [None] * num_ranks
        dist.all_gather_object(results, result)
    failed = sum(r["num_failed"] for r in results)
    if rank == 0:
        bad = [r["rank"] for r in results if r["num_failed"]]
        verdict = "all checks passed" if not failed else f"{failed} checks FAILED on ranks {bad}"
        print(f"test_intranode: EP{num_ranks}: {verdict}", flush=True)
        if args.json:
            style.write_json(
                args.json, build_document(args, bi.environment(device, deep_ep), num_ranks, results)
            )
    with bu.phase("buffer.destroy"):
        buffer.destroy()
    dist.barrier()
    dist.destroy_process_group()
    return 1 if failed else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    bu.set_comm_env()
    return bu.run_torchrun_main("test_intranode", torch, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
