"""Stalled-peer test: after one good dispatch, every rank but the last calls dispatch again
while the last rank never does. With UCCL_EP_TIMEOUT_SECS=5 the callers must get a
RuntimeError saying "timed out" and naming their rank within 30 s, and the buffer must refuse
further work. Never hangs: the launcher's deadline covers a library that does not time out.

Runs under the launcher (test_intranode_gpu.py) or, for debugging, directly:
    torchrun --nproc_per_node=2 tests/gpu/stall_suite.py
"""

from __future__ import annotations

import os
import sys
import time

import torch.distributed as dist

try:
    from . import intranode_suite as suite
    from ._dist import Recorder, run_under_torchrun
    from .intranode_suite import Ctx, Mode, Scope
    from .reference import Scenario, ScenarioRef
except ImportError:  # run as a script: the siblings are importable from sys.path[0]
    import intranode_suite as suite
    from _dist import Recorder, run_under_torchrun
    from intranode_suite import Ctx, Mode, Scope
    from reference import Scenario, ScenarioRef

TIMEOUT_SECS = "5"  # UCCL_EP_TIMEOUT_SECS for the buffer under test
MAX_RAISE_SECS = 30.0  # a stalled call must raise within this


def stalled_call(ctx: Ctx, world: ScenarioRef, attempt: str) -> None:
    """One dispatch that the last rank never joins; it must raise RuntimeError in time."""
    scope = Scope(ctx, f"stall.{attempt}_call", f"last rank {ctx.num_ranks - 1} absent")
    start = time.monotonic()
    try:
        suite.dispatch(ctx, world, "bf16_rand", Mode(ctx.config))
    except RuntimeError as exc:
        elapsed, msg = time.monotonic() - start, str(exc)
        scope.ok("raises_runtime_error", True)
        scope.ok("raises_in_time", elapsed < MAX_RAISE_SECS, f"raised after {elapsed:.1f} s")
        if attempt == "first":
            scope.ok("says_timed_out", "timed out" in msg, f"message: {msg!r}")
            scope.ok("names_rank", f"rank {ctx.rank}" in msg, f"message: {msg!r}")
    except Exception as exc:  # noqa: BLE001 - a wrong exception type is a failed check
        scope.ok("raises_runtime_error", False, f"raised {type(exc).__name__}: {exc}")
    else:
        elapsed = time.monotonic() - start
        scope.ok("raises_runtime_error", False, f"returned normally after {elapsed:.1f} s")


def run_suite(rank: int, num_ranks: int, rec: Recorder) -> None:
    """The stall test on one rank (the launcher body)."""
    os.environ["UCCL_EP_TIMEOUT_SECS"] = TIMEOUT_SECS  # read when the Buffer is built
    from uccl import ep

    num_sms = suite.suite_num_sms(num_ranks)
    config = ep.Config(num_sms, 8, 256)
    ctx = Ctx(rank, num_ranks, rec, ep, suite.make_buffer(ep, num_ranks), config, num_sms)
    world = suite.gather_world(ctx, Scenario("stall", (512,) * num_ranks, 1024, 64, seed=11))
    scope = Scope(ctx, "stall.good_dispatch", world.sc.name)
    suite.run_case(scope, world, "bf16_rand", Mode(config))
    dist.barrier()
    if rank != num_ranks - 1:
        rec.check("stall.call_started", True)  # marks progress if the call below never returns
        stalled_call(ctx, world, "first")
        stalled_call(ctx, world, "second")  # the buffer must refuse further work
    dist.barrier()
    rec.check("stall.all_ranks_met_after", True)
    try:
        ctx.buffer.destroy()
    except Exception:  # noqa: BLE001, S110 - a failed buffer may refuse to be destroyed
        pass


if __name__ == "__main__":
    sys.exit(run_under_torchrun(run_suite))
