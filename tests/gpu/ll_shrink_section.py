"""enable_shrink (rank masking) of the LL mode, on its own small Buffer built with
enable_shrink=True and UCCL_EP_TIMEOUT_SECS=SHRINK_TIMEOUT_SECS. Rank MASKED = the last rank
plays the failed rank: it skips the calls while the others run them.

1. The mask starts clear; the mask calls on a Buffer without enable_shrink raise ValueError.
2. Explicit mask: every other rank masks MASKED; their dispatch + combine neither receive
   MASKED's tokens nor sum its experts (the reference drops both); the mask reads 1 at MASKED.
3. Deadline: nobody masks; the others' calls wait SHRINK_TIMEOUT_SECS for MASKED, then mask it
   and finish with the same results instead of failing.
4. After each, every rank clears the mask and cleans the buffer (collective), and a full
   dispatch + combine on every rank is right again.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import torch
import torch.distributed as dist

try:
    from . import intranode_suite as intranode
    from . import low_latency_suite as suite
    from .ll_reference import Case, World, combine_reference, dequantized_bf16, expected_routing
except ImportError:  # run as a script: the siblings are importable from sys.path[0]
    import intranode_suite as intranode
    import low_latency_suite as suite
    from ll_reference import Case, World, combine_reference, dequantized_bf16, expected_routing

SHRINK_TIMEOUT_SECS = "3"
MAX_MASK_SECS = 30.0  # a call that masks a silent peer must finish by then
SHRINK_TOKENS = 64
SHRINK_EXPERTS_PER_RANK = 8


class MaskedWorld(World):
    """A World whose reference ignores rank `masked`: its tokens are not received and its
    experts are summed as if -1."""

    def __init__(self, world: World, masked: int):
        self.__dict__.update(world.__dict__)
        self.masked = masked
        idx = [
            torch.full_like(i[1], -1) if r == masked else i[1] for r, i in enumerate(self.inputs)
        ]
        self.routing = expected_routing(idx, self.rank, self.num_local_experts, self.t)

    def combined(self, fmt: str, factors: torch.Tensor, use_logfmt: bool = False) -> torch.Tensor:
        x, idx, weights = self.own()
        owner = torch.div(idx, self.num_local_experts, rounding_mode="floor")
        kept = idx.masked_fill((idx >= 0) & (owner == self.masked), -1)
        return combine_reference(dequantized_bf16(x, fmt), kept, weights, factors, use_logfmt)


def read_mask(buffer: Any, num_ranks: int) -> list:
    status = torch.full((num_ranks,), -1, dtype=torch.int32, device=suite.device())
    buffer.low_latency_query_mask_buffer(status)
    return status.tolist()


def masked_round(sctx: suite.Ctx, world: World, name: str, masked: int, explicit: bool) -> None:
    """Every rank but `masked` runs a dispatch + combine without it (masking it first when
    `explicit`); `masked` skips them. Then all clean and check a full round."""
    buf, rank = sctx.buffer, sctx.rank
    scope = suite.Scope(sctx, f"{sctx.topo}.shrink.{name}", f"rank {masked} absent")
    dist.barrier()
    if rank != masked:
        if explicit:
            buf.low_latency_update_mask_buffer(masked, True)
        start = time.monotonic()
        suite.run_case(scope, MaskedWorld(world, masked), suite.DispatchMode("bf16"))
        elapsed = time.monotonic() - start
        scope.ok("in_time", elapsed < MAX_MASK_SECS, f"took {elapsed:.1f} s")
        want = [1 if r == masked else 0 for r in range(sctx.num_ranks)]
        got = read_mask(buf, sctx.num_ranks)
        scope.ok("mask_status", got == want, f"got {got}, want {want}")
        scope.ok("buffer_healthy", _healthy(buf), "Buffer.check() raised after masking")
    dist.barrier()
    buf.low_latency_clean_mask_buffer()
    buf.clean_low_latency_buffer(sctx.t, sctx.hidden, sctx.num_experts)
    suite.sync()
    got = read_mask(buf, sctx.num_ranks)
    scope.ok("mask_cleared", got == [0] * sctx.num_ranks, f"got {got}")
    after = suite.Scope(sctx, f"{sctx.topo}.shrink.{name}_after_clean", "everyone back")
    suite.run_case(after, world, suite.DispatchMode("bf16"))


def _healthy(buf: Any) -> bool:
    try:
        buf.check()
        return True
    except RuntimeError:
        return False


def section_shrink(ctx: suite.Ctx) -> None:
    if ctx.num_ranks < 2:
        return
    topo = suite.TOPOLOGIES[ctx.topo]
    scope = suite.Scope(ctx, f"{ctx.topo}.shrink", "mask API")
    plain = ctx.buffer
    for what, call in (
        ("update", lambda: plain.low_latency_update_mask_buffer(0, True)),
        ("clean", plain.low_latency_clean_mask_buffer),
    ):
        intranode.expect_error(
            scope, f"{what}_without_shrink", call, ("enable_shrink",), (ValueError,)
        )
    previous = os.environ.get("UCCL_EP_TIMEOUT_SECS")
    os.environ["UCCL_EP_TIMEOUT_SECS"] = SHRINK_TIMEOUT_SECS
    sctx = dataclasses.replace(
        ctx,
        t=SHRINK_TOKENS,
        hidden=suite.SMALL_HIDDEN,
        experts_per_rank=SHRINK_EXPERTS_PER_RANK,
    )
    try:
        sctx.buffer = suite.make_buffer(sctx, topo, enable_shrink=True)
    finally:
        if previous is None:
            os.environ.pop("UCCL_EP_TIMEOUT_SECS", None)
        else:
            os.environ["UCCL_EP_TIMEOUT_SECS"] = previous
    try:
        buf, masked = sctx.buffer, ctx.num_ranks - 1
        got = read_mask(buf, ctx.num_ranks)
        scope.ok("starts_clear", got == [0] * ctx.num_ranks, f"got {got}")
        intranode.expect_error(
            scope,
            "rank_out_of_range",
            lambda: buf.low_latency_update_mask_buffer(ctx.num_ranks, True),
            ("rank_to_mask",),
            (ValueError,),
        )
        world = sctx.world(Case("shrink", (sctx.t,) * ctx.num_ranks, sctx.hidden, seed=80))
        suite.run_case(
            suite.Scope(sctx, f"{ctx.topo}.shrink.before", "all ranks"),
            world,
            suite.DispatchMode("bf16"),
        )
        masked_round(sctx, world, "explicit", masked, explicit=True)
        masked_round(sctx, world, "deadline", masked, explicit=False)
    finally:
        sctx.buffer.destroy()
        dist.barrier()
