"""Stalled-rank test of the low-latency mode: in its own LL Buffer (UCCL_EP_TIMEOUT_SECS=5),
after a good dispatch + combine, rank 1 skips a dispatch that every other rank calls. The
others' call, or the torch.cuda.synchronize() / Buffer.check() after it (an LL call does not
wait on the host), must raise RuntimeError saying it timed out within 30 s, and a later call
must raise RuntimeError too. Runs on the "nvlink" and "proxy" topologies (those of them that
UCCL_EP_TEST_LL_TOPOLOGIES selects; "nvlink" when it selects neither). Never hangs: the
launcher's deadline covers a library that does not time out.

Runs under the launcher (test_low_latency_gpu.py) or, for debugging, directly:
    torchrun --nproc_per_node=2 tests/gpu/ll_stall_suite.py
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import torch.distributed as dist

try:
    from . import intranode_suite as intranode
    from . import low_latency_suite as suite
    from ._dist import Recorder, run_under_torchrun
    from .ll_reference import Case
except ImportError:  # run as a script: the siblings are importable from sys.path[0]
    import intranode_suite as intranode
    import low_latency_suite as suite
    from _dist import Recorder, run_under_torchrun
    from ll_reference import Case

TIMEOUT_SECS = "5"  # UCCL_EP_TIMEOUT_SECS of the buffer under test (read when it is built)
MAX_RAISE_SECS = 30.0  # a stalled call must have raised by then
STALLED_RANK = 1
STALL_TOKENS = 64
STALL_EXPERTS_PER_RANK = 8
STALL_TOPOLOGIES = ("nvlink", "proxy")


def stall_topologies(num_ranks: int) -> list:
    chosen = [t for t in suite.selected_topologies(num_ranks) if t.name in STALL_TOPOLOGIES]
    return chosen or [suite.TOPOLOGIES["nvlink"]]


def says_timeout(msg: str) -> bool:
    low = msg.lower()
    return "timed out" in low or "timeout" in low


def stalled_call(ctx: suite.Ctx, world: Any, attempt: str) -> None:
    """One dispatch that rank 1 never joins, then synchronize() and check(): one of them must
    raise RuntimeError in time."""
    scope = suite.Scope(ctx, f"stall.{ctx.topo}.{attempt}_call", f"rank {STALLED_RANK} absent")
    start = time.monotonic()
    try:
        suite.dispatch(ctx, world, suite.DispatchMode("bf16"))
        suite.sync()
        ctx.buffer.check()
    except RuntimeError as exc:
        elapsed, msg = time.monotonic() - start, str(exc)
        scope.ok("raises_runtime_error", True)
        scope.ok("raises_in_time", elapsed < MAX_RAISE_SECS, f"raised after {elapsed:.1f} s")
        if attempt == "first":
            scope.ok("says_timed_out", says_timeout(msg), f"message: {msg!r}")
    except Exception as exc:  # noqa: BLE001 - a wrong exception type is a failed check
        scope.ok("raises_runtime_error", False, f"raised {type(exc).__name__}: {exc}")
    else:
        elapsed = time.monotonic() - start
        scope.ok("raises_runtime_error", False, f"nothing raised; synchronize took {elapsed:.1f} s")


def stall_case(ctx: suite.Ctx, topo: suite.Topology) -> None:
    ctx.topo = topo.name
    suite.set_topology_env(topo)
    os.environ["UCCL_EP_TIMEOUT_SECS"] = TIMEOUT_SECS
    try:
        ctx.buffer = suite.make_buffer(ctx, topo)
    except Exception as exc:  # noqa: BLE001 - every rank raises alike (collective)
        ctx.rec.check(f"stall.{topo.name}.setup", False, f"{type(exc).__name__}: {exc}")
        return
    world = ctx.world(Case("stall", (ctx.t,) * ctx.num_ranks, ctx.hidden, seed=90))
    scope = suite.Scope(ctx, f"stall.{topo.name}.good", "before the stall")
    suite.run_case(scope, world, suite.DispatchMode("bf16"))
    dist.barrier()
    if ctx.rank != STALLED_RANK:
        ctx.rec.check(f"stall.{topo.name}.call_started", True)  # progress if it never returns
        stalled_call(ctx, world, "first")
        stalled_call(ctx, world, "second")  # the buffer must refuse further work
    dist.barrier()
    ctx.rec.check(f"stall.{topo.name}.all_ranks_met_after", True)
    try:
        ctx.buffer.destroy()
    except Exception:  # noqa: BLE001, S110 - an aborted buffer may refuse to be destroyed
        pass
    ctx.buffer = None
    dist.barrier()


def run_suite(rank: int, num_ranks: int, rec: Recorder) -> None:
    """The LL stall test on one rank (the launcher body)."""
    from uccl import ep

    num_sms = intranode.suite_num_sms(num_ranks)
    if num_sms != intranode.NUM_SMS:  # shared GPUs: every rank's kernels must fit at once
        ep.Buffer.set_num_sms(num_sms)
    ctx = suite.Ctx(
        rank,
        num_ranks,
        rec,
        ep,
        t=STALL_TOKENS,
        experts_per_rank=STALL_EXPERTS_PER_RANK,
        hidden=suite.SMALL_HIDDEN,
    )
    previous = os.environ.get("UCCL_EP_TIMEOUT_SECS")
    try:
        for topo in stall_topologies(num_ranks):
            stall_case(ctx, topo)
    finally:
        suite.set_topology_env(None)
        if previous is None:
            os.environ.pop("UCCL_EP_TIMEOUT_SECS", None)
        else:
            os.environ["UCCL_EP_TIMEOUT_SECS"] = previous


if __name__ == "__main__":
    sys.exit(run_under_torchrun(run_suite))
