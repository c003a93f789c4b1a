"""The sections of the low-latency suite (low_latency_suite.py): each takes the suite's Ctx,
runs LL calls that every rank makes identically, and records checks named
`<topology>.<section>[<variant>].<what>`. low_latency_suite.topology_sections() gives the
order they run in on each topology; section_api runs once, before the topologies."""

from __future__ import annotations

import os
import random
from functools import partial

import torch
import torch.distributed as dist

try:
    from . import intranode_suite as intranode
    from . import ll_reference as ref
    from . import low_latency_suite as suite
    from ._dist import all_gather_rows
    from .ll_reference import Case
except ImportError:  # run as a script: the siblings are importable from sys.path[0]
    import intranode_suite as intranode
    import ll_reference as ref
    import low_latency_suite as suite
    from _dist import all_gather_rows
    from ll_reference import Case

RANDOM_ITERS_ENV = "UCCL_EP_TEST_LL_RANDOM_ITERS"
RANDOM_ITERATIONS = 200
RANDOM_SEED = 31_000
NORMAL_NVL_BYTES = 1 << 22
SIZE_HINT_128_7168_256 = 1_908_410_496  # DeepEP V1's hint for T=128, H=7168, 256 experts


def uneven_tokens(ctx, seed: int = 0) -> tuple:
    """Tokens per rank, all below T but one: rank (1 + seed) % R has none, the others follow
    (T-3, T, T/2, 1, T-1, 7, T, T-2) shifted by `seed`."""
    t, zero = ctx.t, (1 + seed) % ctx.num_ranks
    pattern = (t - 3, t, t // 2, 1, t - 1, min(7, t), t, t - 2)
    return tuple(
        0 if r == zero else pattern[(r + seed) % len(pattern)] for r in range(ctx.num_ranks)
    )


def full_tokens(ctx) -> tuple:
    return (ctx.t,) * ctx.num_ranks


def scope_of(ctx, section: str, where: str) -> suite.Scope:
    return suite.Scope(ctx, f"{ctx.topo}.{section}", where)


# ----------------------------------------------------------------------------- api (once)


def section_api(ctx) -> None:
    """Size hint, regenerated inputs, LL calls on a normal-mode Buffer."""
    scope = suite.Scope(ctx, "api", "before any LL buffer")
    hint = ctx.ep.Buffer.get_low_latency_rdma_size_hint(128, 7168, ctx.num_ranks, 256)
    scope.ok(
        "size_hint", hint == SIZE_HINT_128_7168_256, f"got {hint}, want {SIZE_HINT_128_7168_256}"
    )
    case = Case("regenerate", uneven_tokens(ctx), suite.SMALL_HIDDEN, seed=70)
    world = ctx.world(case)
    gathered = [all_gather_rows(t, ctx.num_ranks) for t in world.own()]
    for i, name in enumerate(("x", "topk_idx", "topk_weights")):
        bad = [
            s
            for s in range(ctx.num_ranks)
            if intranode.ref.bitwise_mismatch(gathered[i][s], world.inputs[s][i])
        ]
        scope.ok(
            f"inputs_regenerate_{name}", not bad, f"ranks {bad}: rebuilt inputs differ from theirs"
        )
    x, idx, _ = world.own()
    group = dist.new_group(list(range(ctx.num_ranks)))
    normal = ctx.ep.Buffer(
        group,
        num_nvl_bytes=NORMAL_NVL_BYTES,
        num_rdma_bytes=0,
        low_latency_mode=False,
        num_qps_per_rank=1,
        explicitly_destroy=True,
    )
    try:
        call = partial(normal.low_latency_dispatch, x, idx, ctx.t, ctx.num_experts)
        intranode.expect_error(scope, "dispatch_on_normal_buffer", call, ("low_latency_mode",))
        call = partial(normal.clean_low_latency_buffer, ctx.t, suite.SMALL_HIDDEN, ctx.num_experts)
        intranode.expect_error(scope, "clean_on_normal_buffer", call, ("low_latency_mode",))
    finally:
        normal.destroy()


# ----------------------------------------------------------------------------- dispatch + combine


def section_formats(ctx) -> None:
    """Every rank sends T tokens (10 -1 entries, one token routed nowhere), hidden 7168, top-8:
    BF16, FP8, FP8 with power-of-two scales, and with UE8M0 scales; identity and scaled
    experts."""
    world = ctx.world(Case("main", full_tokens(ctx), suite.HIDDEN, suite.NUM_TOPK, seed=1))
    combines = (suite.CombineMode("identity"), suite.CombineMode("scaled"))
    for fmt in ref.FORMATS:
        scope = scope_of(ctx, f"formats[{fmt}]", world.case.name)
        suite.run_case(scope, world, suite.DispatchMode(fmt), combines)


def section_combine_options(ctx) -> None:
    """zero_copy (x as written, and an all-NaN x that must not be read), out=, and LogFMT-10
    (inputs of per-token magnitudes 2^-6 .. 2^6: some groups encoded, some kept)."""
    world = ctx.world(Case("options", uneven_tokens(ctx, 1), suite.HIDDEN, seed=2))
    combines = (
        suite.CombineMode(zero_copy=True),
        suite.CombineMode(zero_copy=True, poison_x=True),
        suite.CombineMode(use_out=True),
        suite.CombineMode("identity", zero_copy=True, use_out=True),
        suite.CombineMode(use_logfmt=True),
        suite.CombineMode("identity", use_logfmt=True, use_out=True),
    )
    for fmt in ("bf16", "fp8"):
        suite.run_case(
            scope_of(ctx, f"combine_options[{fmt}]", world.case.name),
            world,
            suite.DispatchMode(fmt),
            combines,
        )


def section_shapes(ctx) -> None:
    """Hidden 2048; top-1; top-11; tokens whose K experts all live on one rank (each arrives
    once per expert)."""
    tokens = full_tokens(ctx)
    cases = (
        (Case("h2048", tokens, suite.SMALL_HIDDEN, seed=3), ("bf16", "fp8", "fp8_ue8m0")),
        (Case("top1", tokens, suite.HIDDEN, 1, seed=4), ("bf16", "fp8")),
        (Case("top11", tokens, suite.HIDDEN, 11, seed=5), ("bf16", "fp8_round")),
        (
            Case("same_rank_experts", tokens, suite.HIDDEN, seed=6, routing="same_rank"),
            ("bf16", "fp8"),
        ),
    )
    for case, fmts in cases:
        world = ctx.world(case)
        for fmt in fmts:
            scope = scope_of(ctx, f"shapes[{case.name},{fmt}]", case.name)
            suite.run_case(
                scope,
                world,
                suite.DispatchMode(fmt),
                (suite.CombineMode("identity"), suite.CombineMode()),
            )


def section_edges(ctx) -> None:
    """Uneven token counts (rank 1 none, others below T), a rank whose tokens are all -1, and
    nothing routed anywhere."""
    t, k = ctx.t, suite.NUM_TOPK
    cases = (
        Case("uneven_tokens", uneven_tokens(ctx), suite.HIDDEN, seed=7),
        Case("silent_rank0", full_tokens(ctx), suite.HIDDEN, seed=8, silent_rank=0),
        Case("nothing_routed", full_tokens(ctx), suite.SMALL_HIDDEN, seed=9, num_dropped=t * k),
    )
    for case in cases:
        world = ctx.world(case)
        scope = scope_of(ctx, f"edges[{case.name}]", f"tokens {case.tokens}")
        if case.silent_rank is not None:
            sent = int(world.routing.pair_counts[:, case.silent_rank].sum())
            scope.ok("input_silent_rank_sends_nothing", sent == 0, f"{sent} rows from it")
        for fmt in ("bf16", "fp8"):
            scope = scope_of(ctx, f"edges[{case.name},{fmt}]", f"tokens {case.tokens}")
            suite.run_case(
                scope,
                world,
                suite.DispatchMode(fmt),
                (suite.CombineMode("identity"), suite.CombineMode()),
            )


def section_stats(ctx) -> None:
    """cumulative_local_expert_recv_stats adds recv_count on every dispatch; the wait-cost
    stats (int64 [R]) of dispatch and combine never decrease."""
    dev, num_ranks = suite.device(), ctx.num_ranks
    cumulative = torch.zeros(ctx.experts_per_rank, dtype=torch.int32, device=dev)
    dispatch_wait = torch.zeros(num_ranks, dtype=torch.int64, device=dev)
    combine_wait = torch.zeros(num_ranks, dtype=torch.int64, device=dev)
    expected = torch.zeros(ctx.experts_per_rank, dtype=torch.int64)
    modes = (
        suite.DispatchMode("bf16"),
        suite.DispatchMode("fp8", hook=True),
        suite.DispatchMode("fp8_round", async_finish=True),
        suite.DispatchMode("bf16"),
    )
    for i, mode in enumerate(modes):
        world = ctx.world(Case(f"stats{i}", uneven_tokens(ctx, i), suite.HIDDEN, seed=20 + i))
        scope = scope_of(ctx, "stats", f"call {i}: {mode}")
        before = dispatch_wait.cpu()
        out = suite.dispatch(
            ctx,
            world,
            mode,
            cumulative_local_expert_recv_stats=cumulative,
            dispatch_wait_recv_cost_stats=dispatch_wait,
        )
        recv_x, recv_count, handle, event, hook = out
        suite.complete(scope, "dispatch", event, hook, mode.hook, mode.async_finish)
        suite.check_dispatch(scope, world, mode.fmt, recv_x, recv_count, handle)
        expected += world.routing.counts
        scope.same("cumulative_recv_stats", cumulative.cpu(), expected.int())
        monotonic(scope, "dispatch_wait_stats", before, dispatch_wait)
        before = combine_wait.cpu()
        cmode = suite.CombineMode(hook=mode.hook, async_finish=mode.async_finish)
        suite.run_combine(
            scope.sub("combine"),
            world,
            mode.fmt,
            cmode,
            recv_x,
            recv_count,
            handle,
            combine_wait_recv_cost_stats=combine_wait,
        )
        monotonic(scope, "combine_wait_stats", before, combine_wait)


def monotonic(scope, what: str, before: torch.Tensor, after: torch.Tensor) -> None:
    after = after.cpu()
    good = bool((after >= before).all()) and bool((after >= 0).all())
    scope.ok(f"{what}_never_decrease", good, f"before {before.tolist()}, after {after.tolist()}")


def section_hooks(ctx) -> None:
    """return_recv_hook: every rank issues the send phase and waits for it on the host, all
    ranks meet (dist.barrier), then hook(): the send phase must not wait for any peer's
    receive phase (otherwise this hangs until the deadline)."""
    world = ctx.world(Case("hooks", uneven_tokens(ctx, 2), suite.HIDDEN, seed=30))
    combines = (
        suite.CombineMode(hook=True),
        suite.CombineMode("identity", zero_copy=True, hook=True),
    )
    for fmt in ("bf16", "fp8"):
        scope = scope_of(ctx, f"hooks[{fmt}]", "send phase, synchronize, barrier, hook()")
        suite.run_case(
            scope, world, suite.DispatchMode(fmt, hook=True), combines, suite.host_barrier()
        )


def section_async(ctx) -> None:
    """async_finish=True: event.current_stream_wait(), then the results are right."""
    world = ctx.world(Case("async", uneven_tokens(ctx, 3), suite.HIDDEN, seed=31))
    combines = (
        suite.CombineMode(async_finish=True),
        suite.CombineMode("identity", use_out=True, async_finish=True),
    )
    for fmt in ("bf16", "fp8_ue8m0"):
        scope = scope_of(ctx, f"async[{fmt}]", "event.current_stream_wait()")
        suite.run_case(scope, world, suite.DispatchMode(fmt, async_finish=True), combines)


def section_double_buffer(ctx) -> None:
    """Two LL results pending at once: dispatch A, dispatch B, combine A, combine B (plain
    and with hooks, the combine hooks called B first); and dispatch A twice, then combine the
    second, then the first."""
    a = ctx.world(Case("double_a", uneven_tokens(ctx, 4), suite.HIDDEN, seed=40))
    b = ctx.world(Case("double_b", full_tokens(ctx), suite.HIDDEN, seed=41))
    for fmt in ("bf16", "fp8"):
        two_pending(ctx, a, b, fmt, hooked=False)
        two_pending(ctx, a, b, fmt, hooked=True)
        repeated(ctx, a, fmt)


def two_pending(ctx, a, b, fmt: str, hooked: bool) -> None:
    """Two calls pending at once. With hooks a rank may start the call after next (which
    reuses the first call's half) only once every rank ran the first call's hook: DeepEP's
    contract too (its dispatch and combine receive areas of a half alias, as ours do)."""
    tag = "hook" if hooked else "plain"
    sa = scope_of(
        ctx, f"double_buffer[{fmt},{tag}].A", "dispatch A, dispatch B, combine A, combine B"
    )
    sb = scope_of(ctx, f"double_buffer[{fmt},{tag}].B", sa.where)
    mode = suite.DispatchMode(fmt, hook=hooked)
    out_a = suite.dispatch(ctx, a, mode)
    if not hooked:
        suite.complete(sa, "dispatch", out_a[3], out_a[4], False, False)
    out_b = suite.dispatch(ctx, b, mode)
    if hooked:
        suite.host_barrier()()
        suite.complete(sa, "dispatch", out_a[3], out_a[4], True, False)
    suite.complete(sb, "dispatch", out_b[3], out_b[4], hooked, False)
    if hooked:  # every rank has run both hooks before anyone reuses A's half (contract below)
        suite.host_barrier()()
    suite.check_dispatch(sa, a, fmt, *out_a[:3])
    suite.check_dispatch(sb, b, fmt, *out_b[:3])
    cmode = suite.CombineMode(hook=hooked)
    y_a = suite.expert_outputs(ctx, out_a[0], out_a[1], cmode.expert)
    y_b = suite.expert_outputs(ctx, out_b[0], out_b[1], cmode.expert)
    ca, cb = sa.sub("combine"), sb.sub("combine")
    (comb_a, ev_a, hook_a), _ = suite.combine(ca, a, cmode, y_a, out_a[2])
    if not hooked:
        suite.complete(ca, "combine", ev_a, hook_a, False, False)
    (comb_b, ev_b, hook_b), _ = suite.combine(cb, b, cmode, y_b, out_b[2])
    if hooked:
        suite.host_barrier()()
    suite.complete(cb, "combine", ev_b, hook_b, hooked, False)
    if hooked:
        suite.complete(ca, "combine", ev_a, hook_a, True, False)
        suite.host_barrier()()
    suite.check_combined(ca, a, fmt, cmode, comb_a)
    suite.check_combined(cb, b, fmt, cmode, comb_b)


def repeated(ctx, world, fmt: str) -> None:
    first = scope_of(
        ctx, f"double_buffer[{fmt},repeat].first", "dispatch A twice, combine second, first"
    )
    second = scope_of(ctx, f"double_buffer[{fmt},repeat].second", first.where)
    outs = []
    for scope in (first, second):
        out = suite.dispatch(ctx, world, suite.DispatchMode(fmt))
        suite.complete(scope, "dispatch", out[3], out[4], False, False)
        outs.append(out)
    for scope, out in zip((first, second), outs):
        suite.check_dispatch(scope, world, fmt, *out[:3])
    for scope, out in ((second, outs[1]), (first, outs[0])):
        suite.run_combine(scope.sub("combine"), world, fmt, suite.CombineMode(), *out[:3])


def section_clean(ctx) -> None:
    """clean_low_latency_buffer after an odd number of calls, and twice in a row: the next
    dispatch + combine are right."""
    world = ctx.world(Case("clean", uneven_tokens(ctx, 5), suite.HIDDEN, seed=50))
    clean = partial(ctx.buffer.clean_low_latency_buffer, ctx.t, ctx.hidden, ctx.num_experts)
    scope = scope_of(ctx, "clean[before]", "a dispatch without combine")
    out = suite.dispatch(ctx, world, suite.DispatchMode("bf16"))
    suite.complete(scope, "dispatch", out[3], out[4], False, False)
    suite.check_dispatch(scope, world, "bf16", *out[:3])
    clean()
    suite.run_case(
        scope_of(ctx, "clean[after_one]", "after clean"), world, suite.DispatchMode("fp8")
    )
    clean()
    clean()
    suite.run_case(
        scope_of(ctx, "clean[after_two]", "after two cleans"), world, suite.DispatchMode("bf16")
    )


# ----------------------------------------------------------------------------- random


def random_iterations() -> int:
    raw = os.environ.get(RANDOM_ITERS_ENV, "").strip()
    return int(raw) if raw else RANDOM_ITERATIONS


def random_case(ctx, it: int) -> tuple:
    """Iteration `it`'s (Case, DispatchMode, CombineMode); the same on every rank."""
    rng, t = random.Random(RANDOM_SEED + it), ctx.t
    tokens = []
    for _ in range(ctx.num_ranks):
        draw = rng.random()
        tokens.append(0 if draw < 0.1 else t if draw < 0.3 else rng.randint(1, t))
    case = Case(
        name=f"random{it}",
        tokens=tuple(tokens),
        hidden=rng.choice((suite.SMALL_HIDDEN, suite.HIDDEN)),
        num_topk=rng.choice((1, 2, 3, 4, 6, 8, 9)),
        seed=RANDOM_SEED + it,
        routing="same_rank" if rng.random() < 0.15 else "random",
        num_dropped=rng.choice((0, 3, 10, 40)),
        empty_token=rng.random() < 0.5,
        silent_rank=rng.randrange(ctx.num_ranks) if rng.random() < 0.1 else None,
    )
    fmt = "bf16" if it % 2 == 0 else rng.choice(("fp8", "fp8_round", "fp8_ue8m0"))
    hook = rng.random() < 0.35
    dmode = suite.DispatchMode(fmt, hook=hook, async_finish=not hook and rng.random() < 0.3)
    hook = rng.random() < 0.35
    cmode = suite.CombineMode(
        expert=rng.choice(("identity", "scaled")),
        zero_copy=rng.random() < 0.2,
        hook=hook,
        async_finish=not hook and rng.random() < 0.3,
    )
    return case, dmode, cmode


def section_random(ctx) -> None:
    """Random token counts (0..T), hidden, top-k (1..9), routing, -1 entries, silent ranks,
    BF16 and FP8 formats alternating, hook / async / zero_copy at random."""
    for it in range(random_iterations()):
        case, dmode, cmode = random_case(ctx, it)
        where = (
            f"iter {it} tokens={case.tokens} hidden={case.hidden} k={case.num_topk} "
            f"routing={case.routing} dropped={case.num_dropped} silent={case.silent_rank} "
            f"{dmode} {cmode}"
        )
        scope = suite.Scope(ctx, f"{ctx.topo}.random", where)
        suite.run_case(scope, ctx.world(case), dmode, (cmode,), label_combines=False)
