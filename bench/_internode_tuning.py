"""bench/test_internode.py's tuning sweep, as DeepEP's test_internode.py runs it: the cached
dispatch (FP8, then BF16) and the combine over (NVL chunk, RDMA chunk) configs with the
correctness config's num_sms, each config's time the average of CUDA-event times of calls after
an L2 flush (bench/_bench_utils.e2e_samples), GB/s (RDMA) and (NVL) counted as DeepEP counts them
(bench/_internode_report.Traffic); and the run's JSON document. `ctx` is test_internode.Context.
"""

from __future__ import annotations

try:
    import torch.distributed as dist
except ImportError:  # the grids and the summary work without torch
    dist = None

import _bench_utils as bu
import _deepep_style as style
import _internode_report as rep

MODES = rep.MODES  # fp8_dispatch, bf16_dispatch, bf16_combine
DISPATCH_GRID = (tuple(range(4, 45, 4)), tuple(range(4, 33, 4)))  # DeepEP's NVL x RDMA chunks
QUICK_DISPATCH_GRID = ((8, 16), (8, 16))
QUICK_COMBINE_GRID = ((2, 4), (16, 32))
ITERATIONS = (50, 50)  # DeepEP's bench(): warm-ups, timed calls
QUICK_ITERATIONS = (5, 10)


def grid(mode: str, num_nodes: int, quick: bool) -> list[tuple[int, int]]:
    """(NVL chunk, RDMA chunk) of DeepEP's sweep: dispatch 4..44 x 4..32, combine 1..7 x
    (12 with 2 nodes, else 8)..32, RDMA chunks in steps of 4; --quick: 2 x 2 points."""
    if mode.endswith("combine"):
        rdma = tuple(range(12 if num_nodes == 2 else 8, 33, 4))
        nvl, rdma = QUICK_COMBINE_GRID if quick else (tuple(range(1, 8)), rdma)
    else:
        nvl, rdma = QUICK_DISPATCH_GRID if quick else DISPATCH_GRID
    return [(n, r) for n in nvl for r in rdma]


def sweep(ctx, mode: str, fn_for, traffic: rep.Traffic) -> dict:
    """Every config of `mode`'s grid timed on this rank (average of CUDA-event times, L2
    flushed before each call); the best is the lowest time, as DeepEP picks it."""
    a, points = ctx.args, []
    warmups, iters = QUICK_ITERATIONS if a.quick else ITERATIONS
    nbytes = traffic.bytes_for(mode, a.hidden, 0)
    counted = (nbytes["rdma_deepep"], nbytes["nvl_deepep"])
    for chunks in grid(mode, ctx.num_nodes, a.quick):
        with bu.phase(f"tuning {mode}, NVL chunk {chunks[0]}, RDMA chunk {chunks[1]}"):
            samples = bu.e2e_samples(fn_for(ctx.config(chunks)), ctx.flush, warmups, iters)
        avg, lo, hi = style.mean_min_max(samples)
        gbps = tuple(b / avg / 1e9 for b in counted)
        point = {"nvl_chunk": chunks[0], "rdma_chunk": chunks[1], "t_us": avg * 1e6}
        point.update(min_us=lo * 1e6, max_us=hi * 1e6, rdma_gbps=gbps[0], nvl_gbps=gbps[1])
        points.append(point)
        if ctx.rank == 0:
            print(style.internode_tuning_line(a.num_sms, chunks, gbps, avg), flush=True)
    best = min(points, key=lambda p: p["t_us"])
    if ctx.rank == 0:
        chunks, gbps = (
            (best["nvl_chunk"], best["rdma_chunk"]),
            (best["rdma_gbps"], best["nvl_gbps"]),
        )
        seconds = best["t_us"] / 1e6
        print(style.internode_tuning_line(a.num_sms, chunks, gbps, seconds, rep.TITLES[mode]))
        print("", flush=True)
    return {"bytes": {"rdma": counted[0], "nvl": counted[1]}, "points": points, "best": best}


def tune(ctx, handle_chunks: tuple[int, int]) -> dict:
    """FP8 then BF16 cached dispatch through one BF16 dispatch's handle; rank 0's best FP8
    config makes the handle that the combine sweep uses (as in DeepEP's test)."""
    buffer, bf16 = ctx.buffer, ctx.world.own("bf16_rand")
    x = {"fp8_dispatch": ctx.world.own("fp8_colmajor"), "bf16_dispatch": bf16}
    with bu.phase("tuning setup: BF16 dispatch (the handle)"):
        recv_x, _, _, _, handle, _ = buffer.dispatch(
            bf16, config=ctx.config(handle_chunks), **ctx.layout
        )
    traffic = rep.Traffic.from_prefix(
        ctx.rank, ctx.num_local_ranks, handle[1].tolist(), handle[3].tolist(), recv_x.size(0)
    )

    def cached(x):
        return lambda config: lambda: buffer.dispatch(x, handle=handle, config=config)

    out = {mode: sweep(ctx, mode, cached(x[mode]), traffic) for mode in MODES[:2]}
    best, fp8 = [None] * ctx.num_ranks, out["fp8_dispatch"]["best"]
    dist.all_gather_object(best, (fp8["nvl_chunk"], fp8["rdma_chunk"]))
    with bu.phase("dispatch with rank 0's best FP8 config (the combine's handle)"):
        y, _, _, _, y_handle, _ = buffer.dispatch(bf16, config=ctx.config(best[0]), **ctx.layout)

    def combine(config):
        return lambda: buffer.combine(y, y_handle, config=config)

    out["bf16_combine"] = sweep(ctx, "bf16_combine", combine, traffic)
    return {"tuning": out, "traffic": traffic.to_json()}


# ---------------------------------------------------------------------------------------------
# Results


def summarize(rank_results: list[dict]) -> dict:
    """Per mode: rank 0's best config and figures (DeepEP's printed line), each rank's best."""
    best = {}
    for mode in MODES:
        per_rank = [r["tuning"][mode]["best"] for r in rank_results]
        best[mode] = {
            **per_rank[0],
            "rdma_gbps_by_rank": [p["rdma_gbps"] for p in per_rank],
            "nvl_gbps_by_rank": [p["nvl_gbps"] for p in per_rank],
            "chunks_by_rank": [[p["nvl_chunk"], p["rdma_chunk"]] for p in per_rank],
        }
    return best


def topology_of(ctx) -> dict:
    """The run's topology and Buffer, as the JSON file records them."""
    runtime = ctx.buffer.runtime
    return {
        "num_ranks": ctx.num_ranks,
        "num_local_ranks": ctx.num_local_ranks,
        "num_nodes": ctx.num_nodes,
        "num_topk_groups": ctx.num_topk_groups,
        "topology": str(getattr(runtime, "topology", "")),
        "transport": str(getattr(runtime, "transport", "")),
        "buffer_bytes": {"nvl": ctx.buffer.num_nvl_bytes, "rdma": ctx.buffer.num_rdma_bytes},
    }


def document(args, hardware: dict, topology: dict, rank_results: list[dict]) -> dict:
    """The JSON file: settings, `topology` (topology_of), per mode rank 0's best config and
    figures with each rank's best, and every rank's sweep, traffic and failed checks."""
    return style.document(
        "test_internode",
        args,
        hardware,
        **topology,
        figures_are_network=not (args.share_gpus or args.local_ranks),
        byte_definitions={k: rep.BYTE_DEFINITIONS[k] for k in ("rdma_deepep", "nvl_deepep")},
        timing_definition="average of CUDA-event times of the cached dispatch / the combine, "
        "each call after an L2 flush (bench/_bench_utils.e2e_samples)",
        best=summarize(rank_results),
        failed_checks=sum(r["num_failed"] for r in rank_results),
        per_rank=rank_results,
    )
