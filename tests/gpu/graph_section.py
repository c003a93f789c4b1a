"""CUDA-graph capture of the host-synchronisation-free intranode calls (cached dispatch,
combine, num_worst_tokens dispatch), replayed several times against the reference."""

from __future__ import annotations

import torch
import torch.distributed as dist

try:
    from . import intranode_suite as suite
    from . import reference as ref
except ImportError:  # run as a script
    import intranode_suite as suite
    import reference as ref

REPLAYS = 3


def section_graphs(ctx, world) -> None:
    """Captures cached dispatch + combine, and a worst-case dispatch, then replays each graph
    REPLAYS times with the outputs poisoned before every replay."""
    mode = suite.Mode(ctx.config)
    scope = suite.Scope(ctx, "graph", world.sc.name)
    kind = "bf16_rand"
    first = suite.run_case(scope, world, kind, mode)
    handle, rows = first[4], world.expected(ctx.rank).num_recv
    x = world.inputs(kind, ctx.rank)
    y = ref.expert_transform(ref.as_bf16(first[0]), ctx.rank)
    idx, weights = world.topk_idx[ctx.rank], world.topk_weights[ctx.rank]
    per_rank, _, per_expert, in_rank, _ = ctx.buffer.get_dispatch_layout(idx, world.sc.num_experts)
    num_worst = max(world.sc.tokens) * ctx.num_ranks
    expected_x = world.expected_x(kind, ctx.rank)
    expected_combined, _ = world.expected_combine(kind, (), False)
    torch.cuda.synchronize()
    dist.barrier()

    graph, worst_graph = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        recv_x = ctx.buffer.dispatch(x, handle=handle, config=ctx.config)[0]
        combined = ctx.buffer.combine(y, handle, config=ctx.config)[0]
    dist.barrier()
    with torch.cuda.graph(worst_graph):
        worst = ctx.buffer.dispatch(
            x,
            num_tokens_per_rank=per_rank,
            is_token_in_rank=in_rank,
            num_tokens_per_expert=per_expert,
            topk_idx=idx,
            topk_weights=weights,
            num_worst_tokens=num_worst,
            config=ctx.config,
        )
    torch.cuda.synchronize()
    dist.barrier()
    for replay in range(REPLAYS):
        for t in (recv_x, combined, worst[0], worst[1]):
            t.fill_(0 if t.dtype != torch.int64 else 7)
        torch.cuda.synchronize()
        dist.barrier()
        graph.replay()
        worst_graph.replay()
        torch.cuda.synchronize()
        where = f"replay {replay}"
        rep = suite.Scope(ctx, "graph", f"{world.sc.name} {where}")
        suite.rows_then_prefix(rep, "cached_dispatch_recv_x", recv_x, expected_x, rows)
        rep.close("combined_x", combined, expected_combined)
        suite.rows_then_prefix(rep, "worst_recv_x", worst[0], expected_x, num_worst)
        exp = world.expected(ctx.rank)
        suite.rows_then_prefix(rep, "worst_recv_topk_idx", worst[1], exp.recv_topk_idx, num_worst)
        tail_ok = bool((worst[1][exp.num_recv :] == -1).all())
        rep.ok("worst_tail_idx", tail_ok, "entries past the real rows are not -1 after replay")
        dist.barrier()
