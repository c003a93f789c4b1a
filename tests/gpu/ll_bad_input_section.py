"""Bad-argument section of the low-latency suite: each bad call raises TypeError / ValueError /
RuntimeError naming the argument, before anything is sent; every rank makes the same calls,
and the buffer works afterwards."""

from __future__ import annotations

from functools import partial

import torch

try:
    from . import intranode_suite as intranode
    from . import ll_sections as sections
    from . import low_latency_suite as suite
    from .ll_reference import Case
except ImportError:  # run as a script: the siblings are importable from sys.path[0]
    import intranode_suite as intranode
    import ll_sections as sections
    import low_latency_suite as suite
    from ll_reference import Case

ERROR_TYPES = (TypeError, ValueError, RuntimeError)


def section_bad_input(ctx) -> None:
    """Bad arguments raise TypeError / ValueError / RuntimeError naming the argument before
    anything is sent (every rank makes the same calls; the ones that could communicate if
    unchecked come last); then the buffer still works."""
    world = ctx.world(Case("bad_input", sections.full_tokens(ctx), suite.HIDDEN, seed=60))
    x, idx, weights = world.own()
    buf, t, num_experts, dev = ctx.buffer, ctx.t, ctx.num_experts, suite.device()
    disp = buf.low_latency_dispatch
    gen = torch.Generator(device=dev)
    gen.manual_seed(61)
    idx12 = torch.rand(t, num_experts, generator=gen, device=dev).topk(12, dim=1).indices
    bf16 = {"dtype": torch.bfloat16, "device": dev}
    over = torch.zeros(t + 1, suite.HIDDEN, **bf16)
    over_idx = torch.zeros(t + 1, suite.NUM_TOPK, dtype=torch.int64, device=dev)
    stats = {
        "cumulative_local_expert_recv_stats": torch.zeros(
            ctx.experts_per_rank, dtype=torch.int64, device=dev
        ),
    }
    wait32 = {
        "dispatch_wait_recv_cost_stats": torch.zeros(ctx.num_ranks, dtype=torch.int32, device=dev)
    }
    cases = [  # (check, words the message must name one of, call)
        ("dispatch_x_float32", "x", partial(disp, x.float(), idx, t, num_experts)),
        ("dispatch_x_fp8", "x", partial(disp, x.to(torch.float8_e4m3fn), idx, t, num_experts)),
        ("dispatch_topk_idx_int32", "topk_idx", partial(disp, x, idx.int(), t, num_experts)),
        (
            "dispatch_topk_idx_1d",
            "topk_idx",
            partial(disp, x, idx[:, 0].contiguous(), t, num_experts),
        ),
        ("dispatch_num_topk_12", "topk_idx num_topk", partial(disp, x, idx12, t, num_experts)),
        (
            "dispatch_hidden_1000",
            "hidden x",
            partial(disp, torch.zeros(t, 1000, **bf16), idx, t, num_experts),
        ),
        (
            "dispatch_hidden_1024",
            "hidden x",
            partial(disp, torch.zeros(t, 1024, **bf16), idx, t, num_experts),
        ),
        (
            "dispatch_num_tokens_over_max",
            "num_max_dispatch_tokens_per_rank num_tokens x",
            partial(disp, over, over_idx, t, num_experts),
        ),
        (
            "dispatch_ue8m0_without_round_scale",
            "use_ue8m0 round_scale",
            partial(disp, x, idx, t, num_experts, use_fp8=True, round_scale=False, use_ue8m0=True),
        ),
        (
            "dispatch_async_finish_and_hook",
            "async_finish return_recv_hook",
            partial(disp, x, idx, t, num_experts, async_finish=True, return_recv_hook=True),
        ),
        (
            "dispatch_cumulative_stats_int64",
            "cumulative_local_expert_recv_stats",
            partial(disp, x, idx, t, num_experts, **stats),
        ),
        (
            "dispatch_wait_stats_int32",
            "dispatch_wait_recv_cost_stats",
            partial(disp, x, idx, t, num_experts, **wait32),
        ),
        (
            "dispatch_num_experts_indivisible",
            "num_experts",
            partial(disp, x, idx, t, num_experts + 1),
        ),
        (
            "dispatch_max_tokens_over_buffer",
            "num_rdma_bytes num_max_dispatch_tokens_per_rank",
            partial(disp, x, idx, 8 * t, num_experts),
        ),
    ]
    scope = sections.scope_of(ctx, "bad_input", world.case.name)
    for what, words, call in cases:
        intranode.expect_error(scope, what, call, tuple(words.split()), ERROR_TYPES)
    bad_combines(ctx, world, scope)
    for what in ("update", "query", "clean"):
        mask_refused(ctx, scope, what)
    suite.run_case(
        sections.scope_of(ctx, "bad_input.after", "dispatch + combine after the bad calls"),
        world,
        suite.DispatchMode("fp8"),
    )


def bad_combines(ctx, world, scope) -> None:
    """A good dispatch; bad combines with its handle; then its good combine."""
    out = suite.dispatch(ctx, world, suite.DispatchMode("bf16"))
    suite.complete(scope, "good_dispatch", out[3], out[4], False, False)
    recv_x, recv_count, handle = out[:3]
    x, idx, weights = world.own()
    y = suite.expert_outputs(ctx, recv_x, recv_count, "scaled")
    comb, n, hidden = ctx.buffer.low_latency_combine, x.size(0), x.size(1)
    bf16 = {"dtype": torch.bfloat16, "device": suite.device()}
    wide = torch.cat([weights, weights[:, :1]], dim=1)
    cases = [  # lambdas: the large bad inputs exist only while their call runs
        ("combine_x_float32", "x", lambda: comb(y.float(), idx, weights, handle)),
        ("combine_x_shape", "x", lambda: comb(y[:-1].contiguous(), idx, weights, handle)),
        (
            "combine_topk_weights_bf16",
            "topk_weights",
            partial(comb, y, idx, weights.bfloat16(), handle),
        ),
        ("combine_topk_weights_shape", "topk_weights", partial(comb, y, idx, wide, handle)),
        (
            "combine_out_shape",
            "out",
            partial(comb, y, idx, weights, handle, out=torch.empty(n + 1, hidden, **bf16)),
        ),
        (
            "combine_out_float32",
            "out",
            partial(
                comb, y, idx, weights, handle, out=torch.empty(n, hidden, device=suite.device())
            ),
        ),
    ]
    for what, words, call in cases:
        intranode.expect_error(scope, what, call, tuple(words.split()), ERROR_TYPES)
    call = partial(comb, y, idx, weights, handle, use_logfmt=True, zero_copy=True)
    intranode.expect_error(
        scope, "combine_logfmt_with_zero_copy", call, ("use_logfmt", "zero_copy"), (ValueError,)
    )
    suite.run_combine(
        scope.sub("good_combine"), world, "bf16", suite.CombineMode(), recv_x, recv_count, handle
    )


def mask_refused(ctx, scope, what: str) -> None:
    """The rank-mask APIs raise ValueError naming enable_shrink on this Buffer (built without
    it)."""
    buf = ctx.buffer
    calls = {
        "update": lambda: buf.low_latency_update_mask_buffer(1, True),
        "query": lambda: buf.low_latency_query_mask_buffer(
            torch.zeros(ctx.num_ranks, dtype=torch.int32, device=suite.device())
        ),
        "clean": lambda: buf.low_latency_clean_mask_buffer(),
    }
    intranode.expect_error(
        scope, f"mask_{what}_without_shrink", calls[what], ("enable_shrink",), (ValueError,)
    )
