"""The sections of the internode GPU suite (internode_suite.py), run on each topology in order:
layout, the dispatch/combine case matrix, alignment, raw dtypes, worst-case rows, cached
dispatch, combine options, edge scenarios, stream semantics, random iterations, bad input."""

from __future__ import annotations

import os
import random
from functools import partial

import torch

try:
    from . import internode_suite as suite
    from . import intranode_suite as intra
    from . import reference as ref
    from . import stream_section
except ImportError:  # run as a script
    import internode_suite as suite
    import intranode_suite as intra
    import reference as ref
    import stream_section

RANDOM_ITERS_ENV = "UCCL_EP_TEST_INTERNODE_RANDOM_ITERS"
RANDOM_ITERATIONS = 200
RANDOM_BASE_SEED = 41_000
Mode = intra.Mode


def sections() -> tuple:
    """(name, fn(ctx, worlds)) of the sections after setup, in the order they run."""
    return (
        ("layout", section_layout),
        ("sweep", section_sweep),
        ("big", section_big),
        ("alignment", section_alignment),
        ("raw_dtypes", section_raw_dtypes),
        ("worst", section_worst),
        ("cached", section_cached),
        ("combine", section_combine),
        ("edges", section_edges),
        ("stream", section_stream),
        ("random", lambda ctx, worlds: section_random(ctx)),
        ("bad_input", section_bad_input),
    )


def section_setup(ctx, topo, worlds: dict) -> None:
    """Builds the Buffer and every fixed scenario's gathered inputs (all collective)."""
    ctx.buffer = suite.make_buffer(ctx)
    scope = ctx.scope("setup", "after Buffer(...)")
    rt = ctx.buffer.runtime
    got = (getattr(rt, "num_local_ranks", None), getattr(rt, "num_nodes", None))
    want = (topo.local_ranks, ctx.num_nodes)
    scope.ok("topology", got == want, f"(num_local_ranks, num_nodes) = {got}, want {want}")
    transport, expected = str(getattr(rt, "transport", "")), topo.env()["UCCL_EP_TRANSPORT"]
    scope.ok("transport", transport.startswith(expected), f"{transport!r}, want {expected}")
    sizes = {key: suite.gather_world(ctx, sc) for key, sc in intra.scenarios(ctx.num_ranks).items()}
    worlds.update(sizes)


def section_probe(ctx) -> None:
    """A small dispatch + combine after a section raised: is the buffer still usable?"""
    sc = ref.Scenario("probe", (64,) * ctx.num_ranks, 1024, 64, seed=99)
    world = suite.gather_world(ctx, sc)
    suite.run_case(
        ctx.scope("probe", "after a section raised"), world, "bf16_rand", Mode(ctx.config)
    )


# ----------------------------------------------------------------------------- case matrix


def section_layout(ctx, worlds: dict) -> None:
    for world in worlds.values():
        for async_finish in (False, True):
            scope = ctx.scope("layout", f"{world.sc.name} async={async_finish}")
            suite.check_layout(scope, world, Mode(async_finish=async_finish, prev=async_finish))


def section_sweep(ctx, worlds: dict) -> None:
    """Every input kind x top-k x sync/async x previous event, then the default config and
    allocate_on_comm_stream."""
    world = worlds["small"]
    flags = [(t, a, p) for t in (True, False) for a in (False, True) for p in (False, True)]
    for kind in intra.X_KINDS:
        for with_topk, async_finish, prev in flags:
            mode = Mode(ctx.config, with_topk, async_finish, prev)
            where = f"{world.sc.name} topk={with_topk} async={async_finish} prev={prev}"
            suite.run_case(ctx.scope(f"sweep[{kind}]", where), world, kind, mode)
    suite.run_case(ctx.scope("default_config", world.sc.name), world, "bf16_rand", Mode(None))
    mode = Mode(ctx.config, async_finish=True, prev=True, alloc_on_comm=True)
    suite.run_case(ctx.scope("alloc_on_comm", world.sc.name), world, "bf16_rand", mode)


def section_big(ctx, worlds: dict) -> None:
    """DeepSeek-V3-like shapes (hidden 7168, 256 experts, up to 4096 tokens per rank)."""
    world = worlds["big"]
    for kind, mode in (
        ("bf16_rand", Mode(ctx.config)),
        ("fp8_f32", Mode(ctx.config)),
        ("bf16_const", Mode(ctx.config, async_finish=True, prev=True)),
        ("fp8_colmajor", Mode(ctx.config, with_topk=False)),
    ):
        suite.run_case(ctx.scope(f"big[{kind}]", world.sc.name), world, kind, mode)


def section_alignment(ctx, worlds: dict) -> None:
    for alignment in (1, 4, 128):
        scope = ctx.scope(f"alignment[{alignment}]", worlds["small"].sc.name)
        suite.run_case(scope, worlds["small"], "bf16_rand", Mode(ctx.config, alignment=alignment))


def section_raw_dtypes(ctx, worlds: dict) -> None:
    """Rows of any element type move as raw bytes: float32, float16, float8 without scales,
    uint8 with float32 scales; non-cached and cached."""
    world = worlds["small"]
    rows = world.expected(ctx.rank).num_recv
    for kind in ref.RAW_KINDS:
        scope = ctx.scope(f"raw_dtype[{kind}]", world.sc.name)
        first = suite.run_case(scope, world, kind, Mode(ctx.config))
        intra.cached_dispatch(scope, world.inputs(kind, ctx.rank), first[4], first[0], rows, False)


def section_worst(ctx, worlds: dict) -> None:
    """num_worst_tokens: padded outputs whose prefixes equal the exact dispatch."""
    for key, kind in (("small", "bf16_rand"), ("small", "fp8_f32"), ("big", "bf16_rand")):
        world = worlds[key]
        scope = ctx.scope(f"worst[{kind}]", world.sc.name)
        exact = suite.run_case(scope, world, kind, Mode(ctx.config))
        num_worst = max(world.sc.tokens) * ctx.num_ranks
        worst = suite.run_case(scope, world, kind, Mode(ctx.config, num_worst=num_worst))
        intra.check_recv_x(scope, worst[0], exact[0], num_worst, name="recv_x_vs_exact")
        scope.same("recv_gbl_rank_prefix_sum_vs_exact", worst[4][-4], exact[4][-4])


def snapshot(handle) -> list:
    return [t.clone() for t in handle]


def section_cached(ctx, worlds: dict) -> None:
    """A handle reused: cached dispatch three times (the last async), other data through it,
    two combines; the handle never changes."""
    world = worlds["small"]
    mode, rows = Mode(ctx.config), world.expected(ctx.rank).num_recv
    for kind in ("bf16_rand", "fp8_f32", "fp8_colmajor"):
        scope = ctx.scope(f"cached[{kind}]", world.sc.name)
        first = suite.run_case(scope, world, kind, mode)
        before = snapshot(first[4])
        for repeat in range(3):
            x = world.inputs(kind, ctx.rank)
            intra.cached_dispatch(scope, x, first[4], first[0], rows, async_finish=repeat == 2)
        if kind == "bf16_rand":  # other data through the handle (combine's backward)
            scope = ctx.scope(f"cached[{kind}]", f"{world.sc.name} bf16_const data")
            x = world.inputs("bf16_const", ctx.rank)
            expected = world.expected_x("bf16_const", ctx.rank)
            intra.cached_dispatch(scope, x, first[4], expected, rows, async_finish=False)
            once = suite.combine_and_check(scope, world, kind, first, mode)
            twice = suite.combine_and_check(scope, world, kind, first, mode)
            scope.same("combine_repeat_identical", twice, once)
        torch.cuda.synchronize()
        for name, old, new in zip(suite.HANDLE_FIELDS, before, first[4]):
            scope.same(f"handle_unchanged[{name}]", new, old)


def section_combine(ctx, worlds: dict) -> None:
    for key in ("small", "big"):
        world = worlds[key]
        out = suite.run_case(
            ctx.scope("combine", world.sc.name), world, "bf16_rand", Mode(ctx.config)
        )
        for num_biases in (0, 1, 2):
            scope = ctx.scope(f"combine[bias={num_biases}]", world.sc.name)
            mode = Mode(ctx.config, num_biases=num_biases)
            suite.combine_and_check(scope, world, "bf16_rand", out, mode)
        scope = ctx.scope("combine[no_weights]", world.sc.name)
        mode = Mode(ctx.config, with_topk=False, num_biases=1)
        suite.combine_and_check(scope, world, "bf16_rand", out, mode)


def section_edges(ctx, worlds: dict) -> None:
    """A rank that sends nothing, one that receives nothing, a rank with zero tokens, rows that
    are all -1."""
    for key in ("silent", "zero", "empty"):
        world = worlds[key]
        sc, scope = world.sc, ctx.scope(f"edge[{world.sc.name}]", "setup")
        sent = [int(lay.num_tokens_per_rank.sum()) for lay in world.layouts]
        recv = torch.stack([lay.num_tokens_per_rank for lay in world.layouts]).sum(0).tolist()
        if sc.silent_rank is not None:  # the scenario itself must have the property
            scope.ok("silent_rank_sends_nothing", sent[sc.silent_rank] == 0, f"sent {sent}")
        if sc.unpicked_rank is not None:
            scope.ok("unpicked_rank_gets_nothing", recv[sc.unpicked_rank] == 0, f"recv {recv}")
        for kind in ("bf16_rand", "fp8_f32"):
            scope = ctx.scope(f"edge[{sc.name}]", f"{kind} sent={sent} recv={recv}")
            suite.run_case(scope, world, kind, Mode(ctx.config, num_biases=2))


# ----------------------------------------------------------------------------- streams


def section_stream(ctx, worlds: dict) -> None:
    """previous_event orders the communication stream after a side stream; async_finish keeps
    inputs the caller dropped alive until the event."""
    world = worlds["small"]
    scope = ctx.scope("stream.previous_event", world.sc.name)
    x_final, idx, weights = world.own("bf16_rand")
    x = torch.zeros_like(x_final)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        stream_section.busy_current_stream()
        x.copy_(x_final)
        event = ctx.buffer.capture()
    mode = Mode(ctx.config)
    out = suite.dispatch(ctx, world, "bf16_rand", mode, (x, idx, weights), previous_event=event)
    intra.settle(scope, out[5], False)
    torch.cuda.current_stream().wait_stream(side)
    suite.check_dispatch(scope, world, "bf16_rand", out, mode)

    scope = ctx.scope("stream.async_drop_inputs", world.sc.name)
    mode = Mode(ctx.config, async_finish=True, prev=True)
    inputs = [t.clone() for t in world.own("bf16_rand")]
    sizes = [stream_section.nbytes(t) for t in inputs]
    stream_section.busy_current_stream()
    out = suite.dispatch(ctx, world, "bf16_rand", mode, inputs=inputs)
    del inputs
    junk = stream_section.scribble(sizes)
    intra.settle(scope, out[5], True)
    del junk
    suite.check_dispatch(scope, world, "bf16_rand", out, mode)
    stream_section.busy_current_stream()
    combined, _ = suite.combine(ctx, world, out, mode)  # its y is dropped on return
    junk = stream_section.scribble([stream_section.nbytes(out[0])] * 2)
    intra.settle(scope, combined[2], True)
    del junk
    suite.check_combined(scope, world, "bf16_rand", combined, (), True)


# ----------------------------------------------------------------------------- random


def random_iterations() -> int:
    raw = os.environ.get(RANDOM_ITERS_ENV, "").strip()
    return int(raw) if raw else RANDOM_ITERATIONS


def random_case(it: int, ctx) -> tuple:
    """Iteration `it`'s scenario, input kind and Config; the same on every rank."""
    rng, num_ranks = random.Random(RANDOM_BASE_SEED + it), ctx.num_ranks
    tokens = [
        rng.choice((0, 1)) if rng.random() < 0.15 else rng.randint(2, 700) for _ in range(num_ranks)
    ]
    sc = ref.Scenario(
        name=f"random{it}",
        tokens=tuple(tokens),
        hidden=rng.choice((1024, 2048)),
        num_experts=rng.choice((64, 128, 256)),
        num_topk=rng.randint(1, 8),
        seed=RANDOM_BASE_SEED + 7 * it,
        drop_prob=rng.choice((0.0, 0.1, 0.3)),
        empty_row_prob=rng.choice((0.0, 0.05, 0.2)),
        silent_rank=rng.choice([None, None, None, rng.randrange(num_ranks)]),
        unpicked_rank=rng.choice([None, None, None, rng.randrange(num_ranks)]),
    )
    kind = "bf16_rand" if it % 2 == 0 else "fp8_f32"
    num_sms = min(rng.choice((2, 10, 24)), ctx.num_sms)
    rdma_send, rdma_recv = rng.choice(suite.RDMA_CHUNKS)
    config = ctx.ep.Config(num_sms, rng.choice((1, 4, 8, 16)), 256, rdma_send, rdma_recv)
    return sc, kind, config


def section_random(ctx) -> None:
    """Random token counts (0..700), hidden, experts, top-k (1..8), -1 entries, silent and
    unpicked ranks, BF16 and FP8 alternating, random chunk sizes, async and biases."""
    for it in range(random_iterations()):
        sc, kind, config = random_case(it, ctx)
        mode = Mode(config, async_finish=it % 3 == 1, num_biases=it % 3)
        where = (
            f"iter {it} tokens={sc.tokens} hidden={sc.hidden} E={sc.num_experts} "
            f"k={sc.num_topk} {kind} {config!r} async={mode.async_finish} biases={mode.num_biases}"
        )
        suite.run_case(ctx.scope("random", where), suite.gather_world(ctx, sc), kind, mode)


# ----------------------------------------------------------------------------- bad input


def section_bad_input(ctx, worlds: dict) -> None:
    """Bad arguments raise a clear error naming the argument (all ranks make the same calls;
    every one is refused before any communication)."""
    world = worlds["small"]
    b, cfg, num_experts = ctx.buffer, ctx.config, world.sc.num_experts
    other = ctx.ep.Config(max(2, ctx.num_sms - 14), 8, 256, 16, 128)  # num_sms of no dispatch
    x, idx, w = world.own("bf16_rand")
    per_rank, per_node, per_expert, is_in, _ = b.get_dispatch_layout(idx, num_experts)
    lay = {"num_tokens_per_rank": per_rank, "is_token_in_rank": is_in, "config": cfg}
    lay["num_tokens_per_rdma_rank"] = per_node
    full = {**lay, "num_tokens_per_expert": per_expert, "topk_idx": idx, "topk_weights": w}
    handle = b.dispatch(x, **full)[4]
    y = ref.expert_transform(b.dispatch(x, handle=handle, config=cfg)[0], ctx.rank)
    scales = torch.ones(x.size(0), max(x.size(1) // 128, 1), device=x.device)
    per_rank_as_node = {**full, "num_tokens_per_rdma_rank": per_rank}
    bad_experts = {**lay, "num_tokens_per_expert": torch.cat([per_expert, per_expert[:1]])}
    holed = handle[:8] + (None,) + handle[9:]
    layout, dispatch_, combine_ = b.get_dispatch_layout, b.dispatch, b.combine
    cases = [  # (check, words the message must name one of, call)
        ("layout_topk_idx_int32", "topk_idx", partial(layout, idx.int(), num_experts)),
        ("layout_num_experts_indivisible", "num_experts", partial(layout, idx, num_experts + 1)),
        (
            "dispatch_without_rdma_counts",
            "num_tokens_per_rdma_rank",
            partial(dispatch_, x, **{**full, "num_tokens_per_rdma_rank": None}),
        ),
        (
            "dispatch_rdma_counts_per_rank",
            "num_tokens_per_rdma_rank",
            partial(dispatch_, x, **per_rank_as_node),
        ),
        ("dispatch_bf16_with_scales", "x", partial(dispatch_, (x, scales), **full)),
        ("dispatch_x_12_byte_rows", "x", partial(dispatch_, x[:, :3].float().contiguous(), **full)),
        (
            "dispatch_topk_idx_int32",
            "topk_idx",
            partial(dispatch_, x, **{**full, "topk_idx": idx.int()}),
        ),
        (
            "dispatch_without_weights",
            "topk_weights topk_idx",
            partial(dispatch_, x, **{**full, "topk_weights": None}),
        ),
        (
            "dispatch_num_experts_indivisible",
            "num_experts num_tokens_per_expert",
            partial(dispatch_, x, **bad_experts),
        ),
        (
            "cached_dispatch_with_topk",
            "topk_idx handle",
            partial(dispatch_, x, handle=handle, topk_idx=idx, topk_weights=w, config=cfg),
        ),
        ("cached_intranode_handle", "handle", partial(dispatch_, x, handle=handle[:6], config=cfg)),
        ("combine_handle_hole", "send_rdma_head handle", partial(combine_, y, holed, config=cfg)),
        ("combine_x_float32", "x", partial(combine_, y.float(), handle, config=cfg)),
        ("combine_x_rows", "x", partial(combine_, y[1:], handle, config=cfg)),
        ("combine_num_sms_mismatch", "num_sms config", partial(combine_, y, handle, config=other)),
        (
            "cached_dispatch_num_sms_mismatch",
            "num_sms config",
            partial(dispatch_, x, handle=handle, config=other),
        ),
    ]
    if ctx.num_nodes == ctx.num_ranks:  # nodes of one rank: per-rank counts have the right shape
        cases = [c for c in cases if c[0] != "dispatch_rdma_counts_per_rank"]
    for what, words, call in cases:
        intra.expect_error(ctx.scope("bad_input", world.sc.name), what, call, tuple(words.split()))
    # The Buffer still works after every refusal.
    suite.run_case(ctx.scope("bad_input.after", world.sc.name), world, "bf16_rand", Mode(cfg))
