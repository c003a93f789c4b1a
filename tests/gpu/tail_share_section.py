"""Combine tail-share section of the intranode suite: UCCL_EP_COMBINE_TAIL_SHARE is the percent
of every combine channel's tokens that its sender block reduces once its pushes are done (the
receiver block the rest); the rest of the suite runs at the default (0: the receiver block
reduces everything). The variable is read when a Buffer is built, so the section builds its own
Buffers: share 25 with the suite's rings, and a 90 % share with rings of 40 slots, where the
cap (one ring of slots per channel) decides the split. Every dispatch and combine is checked
against the pure-torch reference as in the rest of the suite."""

from __future__ import annotations

import os

try:
    from . import intranode_suite as suite
except ImportError:  # run as a script
    import intranode_suite as suite

ENV = "UCCL_EP_COMBINE_TAIL_SHARE"
# (share in percent, Config num_max_nvl_chunked_send_tokens, num_max_nvl_chunked_recv_tokens)
SHARES = ((25, 8, 256), (90, 4, 40))


def buffer_with_share(ctx, share: int):
    """A Buffer built while ENV is `share` (ENV restored afterwards; collective)."""
    saved = os.environ.get(ENV)
    os.environ[ENV] = str(share)
    try:
        return suite.make_buffer(ctx.ep, ctx.num_ranks)
    finally:
        if saved is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = saved


def section_tail_share(ctx, worlds) -> None:
    suite_buffer = ctx.buffer
    for share, nvl_send, nvl_recv in SHARES:
        buffer = buffer_with_share(ctx, share)
        ctx.buffer = buffer
        try:
            config = ctx.ep.Config(ctx.num_sms, nvl_send, nvl_recv)
            for world in worlds:
                for kind, async_finish in (("bf16_rand", False), ("fp8_f32", True)):
                    where = f"{world.sc.name} {kind} Config({ctx.num_sms}, {nvl_send}, {nvl_recv})"
                    scope = suite.Scope(ctx, f"tail_share[{share}]", where)
                    mode = suite.Mode(config, async_finish=async_finish, num_biases=2)
                    out = suite.run_case(scope, world, kind, mode)
                    if kind == "bf16_rand":  # without weights, one bias
                        plain = suite.Mode(config, with_topk=False, num_biases=1)
                        suite.combine_and_check(scope, world, kind, out, plain)
        finally:
            ctx.buffer = suite_buffer
            buffer.destroy()
