"""CUDA-graph section of the low-latency suite: dispatch + test expert + combine captured in
one graph on static inputs (default capture mode, as vLLM and SGLang capture), replayed with
new inputs and checked against the reference after every replay."""

from __future__ import annotations

import torch
import torch.distributed as dist

try:
    from . import ll_reference as ref
    from . import ll_sections as sections
    from . import low_latency_suite as suite
    from .ll_reference import Case
except ImportError:  # run as a script: the siblings are importable from sys.path[0]
    import ll_reference as ref
    import ll_sections as sections
    import low_latency_suite as suite
    from ll_reference import Case

GRAPH_REPLAYS = 3


def capture_graph(fn):
    """Captures fn() in a CUDA graph; returns (replay, fn's outputs)."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph.replay, out


def poison(recv_x, recv_count, handle, combined) -> None:
    """Overwrites every output of a captured dispatch + combine (a replay must rewrite them)."""
    data, scales = recv_x if isinstance(recv_x, tuple) else (recv_x, None)
    if data.dtype == torch.float8_e4m3fn:
        data.view(torch.uint8).fill_(0x7F)  # E4M3 NaN
    else:
        data.fill_(float("nan"))
    if scales is not None:
        scales.fill_(-1 if scales.dtype == torch.int32 else float("nan"))
    recv_count.fill_(-1)
    handle[0].fill_(-1)
    handle[1].fill_(-1)
    combined.fill_(float("nan"))


def section_graph(ctx) -> None:
    for fmt in ("bf16", "fp8"):
        graph_case(ctx, fmt)


def graph_case(ctx, fmt: str) -> None:
    """Dispatch + test expert + combine captured in one CUDA graph on static inputs; replayed
    GRAPH_REPLAYS times with new inputs (new routing) copied in and the outputs poisoned;
    each replay checked against the reference; then an eager call."""
    tokens = tuple(ctx.t - r % 3 for r in range(ctx.num_ranks))
    cases = [Case(f"graph{i}", tokens, suite.HIDDEN, seed=80 + i) for i in range(GRAPH_REPLAYS + 1)]
    x, idx, weights = (t.clone() for t in ctx.world(cases[0]).own())

    def body():
        recv_x, recv_count, handle, _, _ = ctx.buffer.low_latency_dispatch(
            x, idx, ctx.t, ctx.num_experts, **ref.FORMATS[fmt]
        )
        y = suite.expert_outputs(ctx, recv_x, recv_count, "scaled", host_rows=False)
        combined = ctx.buffer.low_latency_combine(y, idx, weights, handle)[0]
        return recv_x, recv_count, handle, combined

    suite.sync()
    dist.barrier()
    replay, outputs = capture_graph(body)
    suite.sync()
    dist.barrier()
    for i in range(1, GRAPH_REPLAYS + 1):
        world = ctx.world(cases[i])
        for static, new in zip((x, idx, weights), world.own()):
            static.copy_(new)
        poison(*outputs)
        suite.sync()
        dist.barrier()
        replay()
        suite.sync()
        scope = sections.scope_of(ctx, f"graph[{fmt}]", f"replay {i}")
        recv_x, recv_count, handle, combined = outputs
        suite.check_dispatch(scope, world, fmt, recv_x, recv_count, handle)
        suite.check_combined(scope, world, fmt, suite.CombineMode(), combined)
        dist.barrier()
    world = ctx.world(cases[-1])
    suite.run_case(
        sections.scope_of(ctx, f"graph[{fmt}].eager_after", "eager call after the replays"),
        world,
        suite.DispatchMode(fmt),
    )
