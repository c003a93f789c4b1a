"""Stream-semantics checks of the intranode suite: async_finish keeps dropped tensors alive,
previous_event orders the communication stream, allocate_on_comm_stream and its rejection."""

from __future__ import annotations

from functools import partial

import torch

try:
    from . import intranode_suite as suite
except ImportError:  # run as a script
    import intranode_suite as suite


def busy_current_stream() -> None:
    """Keeps the current stream busy for tens of ms so that stream races show."""
    if hasattr(torch.cuda, "_sleep"):
        torch.cuda._sleep(int(1e8))
        return
    a = torch.randn(4096, 4096, device=suite.device())
    for _ in range(16):
        a = (a @ a) / 64.0


def nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def scribble(sizes: list[int]) -> list[torch.Tensor]:
    """New blocks of these byte sizes, filled on the current stream: they reuse freed memory
    that the caching allocator believes idle."""
    return [torch.full((max(n, 1),), 0x5A, dtype=torch.uint8, device=suite.device()) for n in sizes]


def stream_drop_references(ctx: suite.Ctx, world: suite.ScenarioRef) -> None:
    """async_finish=True: inputs dropped before waiting must not be reused under the call."""
    scope = suite.Scope(ctx, "stream.async_drop_inputs", world.sc.name)
    mode = suite.Mode(ctx.config, async_finish=True, prev=True)
    inputs = [t.clone() for t in world.own("bf16_rand")]
    sizes = [nbytes(t) for t in inputs]
    busy_current_stream()
    out = suite.dispatch(ctx, world, "bf16_rand", mode, inputs=inputs)
    del inputs
    junk = scribble(sizes)
    suite.settle(scope, out[5], True)
    del junk
    suite.check_dispatch(scope, world, "bf16_rand", out, mode)
    busy_current_stream()
    combined, _ = suite.combine(ctx, world, out, mode)  # its y is dropped on return
    junk = scribble([nbytes(out[0]), nbytes(out[0]), nbytes(out[2])])
    suite.settle(scope, combined[2], True)
    del junk
    suite.check_combined(scope, world, "bf16_rand", combined, (), True)


def stream_previous_event(ctx: suite.Ctx, world: suite.ScenarioRef) -> None:
    """previous_event from a side stream: the suite.dispatch must read x only after that event."""
    scope = suite.Scope(ctx, "stream.previous_event", world.sc.name)
    x_final, idx, weights = world.own("bf16_rand")
    x = torch.zeros_like(x_final)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        busy_current_stream()
        x.copy_(x_final)
        event = ctx.buffer.capture()
    mode = suite.Mode(ctx.config)
    out = suite.dispatch(ctx, world, "bf16_rand", mode, (x, idx, weights), previous_event=event)
    suite.settle(scope, out[5], False)
    torch.cuda.current_stream().wait_stream(side)
    suite.check_dispatch(scope, world, "bf16_rand", out, mode)


def stream_sync_event_chain(ctx: suite.Ctx, world: suite.ScenarioRef) -> None:
    """Each synchronous call's EventOverlap (it holds no event) as the next call's previous_event,
    as Megatron chains them: DeepEP reads previous_event.event, so it means "no event".
    Layout -> dispatch -> combine -> cached dispatch through the handle as a list, with a
    num_worst_tokens that a cached dispatch ignores. Then what stays refused: a torch.cuda.Event
    (no .event), and allocate_on_comm_stream with an event-less previous_event."""
    scope = suite.Scope(ctx, "stream.sync_event_chain", world.sc.name)
    mode = suite.Mode(ctx.config)
    x, idx, weights = world.own("bf16_rand")
    per_rank, _, per_expert, is_in, event = ctx.buffer.get_dispatch_layout(
        idx, world.sc.num_experts
    )
    suite.settle(scope, event, False)
    out = ctx.buffer.dispatch(
        x,
        num_tokens_per_rank=per_rank,
        is_token_in_rank=is_in,
        num_tokens_per_expert=per_expert,
        topk_idx=idx,
        topk_weights=weights,
        config=ctx.config,
        previous_event=event,
    )
    suite.settle(scope, out[5], False)
    suite.check_dispatch(scope, world, "bf16_rand", out, mode)
    recv_x, _, recv_w, _, handle, event = out
    y = suite.ref.expert_transform(suite.ref.as_bf16(recv_x), ctx.rank)
    combined = ctx.buffer.combine(
        y, handle, topk_weights=recv_w, config=ctx.config, previous_event=event
    )
    suite.settle(scope, combined[2], False)
    suite.check_combined(scope, world, "bf16_rand", combined, (), True)
    rows = world.expected(ctx.rank).num_recv
    cached = ctx.buffer.dispatch(
        x, handle=list(handle), config=ctx.config, num_worst_tokens=rows + 7, previous_event=event
    )
    suite.settle(scope, cached[5], False)
    suite.check_recv_x(scope, cached[0], recv_x, rows, name="cached_list_handle")
    words = ("previous_event",)
    call = partial(
        ctx.buffer.dispatch, x, handle=handle, config=ctx.config, previous_event=torch.cuda.Event()
    )
    suite.expect_error(scope, "torch_event_refused", call, words, (TypeError,))
    call = partial(
        ctx.buffer.dispatch,
        x,
        handle=handle,
        config=ctx.config,
        previous_event=event,
        async_finish=True,
        allocate_on_comm_stream=True,
    )
    suite.expect_error(scope, "alloc_on_comm_needs_an_event", call, words, (ValueError,))


def stream_alloc_on_comm(ctx: suite.Ctx, world: suite.ScenarioRef) -> None:
    """allocate_on_comm_stream=True with previous_event and async_finish works."""
    scope = suite.Scope(ctx, "stream.alloc_on_comm", world.sc.name)
    mode = suite.Mode(ctx.config, async_finish=True, prev=True, alloc_on_comm=True)
    suite.check_layout(scope, world, mode)
    suite.run_case(scope, world, "bf16_rand", mode)


def stream_alloc_on_comm_rejected(ctx: suite.Ctx, world: suite.ScenarioRef) -> None:
    """allocate_on_comm_stream=True without previous_event and async_finish is rejected."""
    words = ("allocate_on_comm_stream", "previous_event", "async_finish")
    types = (ValueError, RuntimeError, AssertionError)
    for prev, async_finish in ((False, False), (True, False), (False, True)):
        scope = suite.Scope(
            ctx, "stream.alloc_on_comm_rejected", f"prev={prev} async={async_finish}"
        )
        mode = suite.Mode(ctx.config, async_finish=async_finish, prev=prev, alloc_on_comm=True)
        call = partial(suite.dispatch, ctx, world, "bf16_rand", mode)
        suite.expect_error(scope, "dispatch", call, words, types, allow_empty=True)
    scope = suite.Scope(ctx, "stream.alloc_on_comm_rejected", "prev=False async=False")
    idx, num_experts = world.topk_idx[ctx.rank], world.sc.num_experts
    call = partial(ctx.buffer.get_dispatch_layout, idx, num_experts, allocate_on_comm_stream=True)
    suite.expect_error(scope, "layout", call, words, types, allow_empty=True)
    out = suite.dispatch(ctx, world, "bf16_rand", suite.Mode(ctx.config))
    call = partial(suite.combine, ctx, world, out, suite.Mode(ctx.config, alloc_on_comm=True))
    suite.expect_error(scope, "combine", call, words, types, allow_empty=True)
