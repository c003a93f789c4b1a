"""Stalled-rank test of the internode normal mode: in its own Buffer (nodes of 2 ranks over the
ipc transport, UCCL_EP_TIMEOUT_SECS=5), after a good dispatch + combine, the last rank (on the
last node) skips a dispatch that every other rank calls. The others' call (or the
torch.cuda.synchronize() / Buffer.check() after it) must raise RuntimeError within 30 s saying
it timed out and naming the calling rank; no output of it is used; a later call must raise
RuntimeError too (the Buffer refuses further work). The stalled rank waits in a host barrier
for the others meanwhile (past their deadline, without calling dispatch); then every rank
destroys its Buffer. Runs on the "L2_ipc" topology (and "L4_ipc" when
UCCL_EP_TEST_INTERNODE_TOPOLOGIES selects it; "L2_ipc" when it selects neither). Never hangs:
the launcher's deadline covers a library that does not time out.

Runs under the launcher (test_internode_gpu.py) or, for debugging, directly:
    torchrun --nproc_per_node=4 tests/gpu/internode_stall_suite.py
"""

from __future__ import annotations

import os
import re
import sys
import time

import torch
import torch.distributed as dist

try:
    from . import internode_suite as suite
    from . import intranode_suite as intra
    from . import reference as ref
    from ._dist import Recorder, run_under_torchrun
except ImportError:  # run as a script: the siblings are importable from sys.path[0]
    import internode_suite as suite
    import intranode_suite as intra
    import reference as ref
    from _dist import Recorder, run_under_torchrun

TIMEOUT_SECS = "5"  # UCCL_EP_TIMEOUT_SECS of the buffer under test (read when it is built)
MAX_RAISE_SECS = 30.0  # a stalled call must have raised by then
STALL_TOPOLOGIES = ("L2_ipc", "L4_ipc")
DEFAULT_TOPOLOGY = suite.Topology(2, "ipc")
STALL_TOKENS = 256
KIND = "bf16_rand"


def stall_topologies(num_ranks: int) -> list:
    """The stall test's topologies among those UCCL_EP_TEST_INTERNODE_TOPOLOGIES selects;
    L2_ipc when it selects none of them (and the ranks form 2 nodes of 2 or more)."""
    chosen = [t for t in suite.selected_topologies(num_ranks) if t.name in STALL_TOPOLOGIES]
    if chosen:
        return chosen
    return [DEFAULT_TOPOLOGY] if DEFAULT_TOPOLOGY.runs_on(num_ranks) else []


def stalled_rank(num_ranks: int) -> int:
    """The rank that skips the call: the last one, on the last node (never rank 0's node)."""
    return num_ranks - 1


def says_timeout(msg: str) -> bool:
    low = msg.lower()
    return "timed out" in low or "timeout" in low


def names_rank(msg: str, rank: int) -> bool:
    """Whether `msg` names "rank <rank>" (not a longer number that starts with it)."""
    return re.search(rf"\brank {rank}(?!\d)", msg) is not None


def stalled_call(ctx: suite.Ctx, world, attempt: str) -> None:
    """One dispatch that the stalled rank never joins, then synchronize() and check(): one of
    them must raise RuntimeError in time. Whatever dispatch returns is never used."""
    absent = stalled_rank(ctx.num_ranks)
    scope = intra.Scope(ctx, f"stall.{ctx.topo}.{attempt}_call", f"rank {absent} absent")
    start = time.monotonic()
    try:
        suite.dispatch(ctx, world, KIND, intra.Mode(ctx.config))
        torch.cuda.synchronize()
        ctx.buffer.check()
    except RuntimeError as exc:
        elapsed, msg = time.monotonic() - start, str(exc)
        scope.ok("raises_runtime_error", True)
        scope.ok("raises_in_time", elapsed < MAX_RAISE_SECS, f"raised after {elapsed:.1f} s")
        if attempt == "first":
            scope.ok("says_timed_out", says_timeout(msg), f"message: {msg!r}")
            scope.ok("names_rank", names_rank(msg, ctx.rank), f"message: {msg!r}")
    except Exception as exc:  # noqa: BLE001 - a wrong exception type is a failed check
        scope.ok("raises_runtime_error", False, f"raised {type(exc).__name__}: {exc}")
    else:
        elapsed = time.monotonic() - start
        scope.ok("raises_runtime_error", False, f"nothing raised; synchronize took {elapsed:.1f} s")


def stall_case(ctx: suite.Ctx, topo: suite.Topology) -> None:
    ctx.topo, ctx.local_ranks = topo.name, topo.local_ranks
    suite.set_topology_env(topo)
    os.environ["UCCL_EP_TIMEOUT_SECS"] = TIMEOUT_SECS
    try:
        ctx.buffer = suite.make_buffer(ctx)
    except Exception as exc:  # noqa: BLE001 - every rank raises alike (collective)
        ctx.rec.check(f"stall.{topo.name}.setup", False, f"{type(exc).__name__}: {exc}")
        return
    sc = ref.Scenario("stall", (STALL_TOKENS,) * ctx.num_ranks, 1024, 64, seed=90)
    world = suite.gather_world(ctx, sc)  # collective: before anyone stalls
    scope = intra.Scope(ctx, f"stall.{topo.name}.good", "before the stall")
    suite.run_case(scope, world, KIND, intra.Mode(ctx.config))
    torch.cuda.synchronize()
    dist.barrier()
    if ctx.rank != stalled_rank(ctx.num_ranks):
        ctx.rec.check(f"stall.{topo.name}.call_started", True)  # progress if it never returns
        stalled_call(ctx, world, "first")
        stalled_call(ctx, world, "second")  # the buffer must refuse further work
    dist.barrier()  # the stalled rank waits here, past the others' deadline
    ctx.rec.check(f"stall.{topo.name}.all_ranks_met_after", True)
    try:
        ctx.buffer.destroy()
    except Exception:  # noqa: BLE001, S110 - an aborted buffer may refuse to be destroyed
        pass
    ctx.buffer = None
    dist.barrier()


def run_suite(rank: int, num_ranks: int, rec: Recorder) -> None:
    """The internode stall test on one rank (the launcher body)."""
    from uccl import ep

    num_sms = intra.suite_num_sms(num_ranks)
    if num_sms != intra.NUM_SMS:  # shared GPUs: every rank's kernels must fit at once
        ep.Buffer.set_num_sms(num_sms)
    ctx = suite.Ctx(rank, num_ranks, rec, ep, num_sms, ep.Config(num_sms, 8, 256, 16, 128))
    topologies = stall_topologies(num_ranks)
    rec.check("stall.has_topologies", topologies, f"no stall topology fits {num_ranks} ranks")
    previous = os.environ.get("UCCL_EP_TIMEOUT_SECS")
    try:
        for topo in topologies:
            stall_case(ctx, topo)
    finally:
        suite.set_topology_env(None)
        if previous is None:
            os.environ.pop("UCCL_EP_TIMEOUT_SECS", None)
        else:
            os.environ["UCCL_EP_TIMEOUT_SECS"] = previous


if __name__ == "__main__":
    sys.exit(run_under_torchrun(run_suite))
