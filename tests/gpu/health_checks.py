"""The frame and the checks of the health suite (health_suite.py): a Case holds one scenario's
buffers and checks; the helpers check poison (floating outputs all NaN, indices all -1, counts
0), raised errors and their messages, and a good dispatch and combine."""

from __future__ import annotations

import dataclasses
import time
import traceback
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist

from . import _dist
from . import intranode_suite as suite
from . import reference as ref
from .intranode_suite import Ctx, Mode, Scope
from .reference import Scenario, ScenarioRef

TIMEOUT_ENV = "5"  # UCCL_EP_TIMEOUT_SECS of every buffer under test (read when it is built)
TIMEOUT_SECS = float(TIMEOUT_ENV)
MAX_WAIT_SECS = 30.0  # a GPU wait for an absent peer has given up by then
MARKER_SECS = TIMEOUT_SECS - 1.0  # inconsistent inputs travel as a marker, not as a timeout
SETUP_SECS = 15.0  # a refused Buffer(...) raises on every rank within this
DESTROY_SECS = TIMEOUT_SECS + 10.0  # destroy() without its peers returns or raises by then
REPORT_WAIT_SECS = DESTROY_SECS + 15.0  # the rank that holds back destroy() waits this long
PEER_EXIT_SECS = 30.0  # how long survivors wait for the killed rank's process to disappear
NVL_BYTES = 1 << 28  # far more than Config(24, 8, 256) needs for hidden 1024
TOKENS, HIDDEN, NUM_EXPERTS = 512, 1024, 64
KIND = "bf16_rand"
# The int32 tensors of a handle that a non-cached dispatch writes (index 4 is its input mask).
INT_HANDLE_FIELDS = (
    (0, "rank_prefix_matrix"),
    (1, "channel_prefix_matrix"),
    (2, "recv_channel_prefix_matrix"),
    (3, "recv_src_idx"),
    (5, "send_head"),
)
STORE_PREFIX = "uccl_ep_health"
KILL_CASE = "health.kill"


# ----------------------------------------------------------------------------- case frame


class Case:
    """One case on one rank: its buffers, its checks (named `<name>.<what>`) and the
    exceptions its steps raised. Steps do local work only and never stop the case, so every
    rank reaches the case's collectives (inputs, buffers, meetings) in the same order whatever
    fails; a step that needs the buffer is skipped on every rank when any rank lacks it."""

    def __init__(self, base: Ctx, name: str, group: Any, seed: int):
        self.base, self.name, self.group, self.seed = base, name, group, seed
        self.rank, self.last = base.rank, base.num_ranks - 1
        self.observer = self.rank != self.last  # every rank but the faulty or absent one
        self.ctx = base
        self.errors: list[str] = []
        self.owned: list[Any] = []  # buffers the driver destroys after the case

    @property
    def buffer(self) -> Any:
        return self.ctx.buffer

    def scope(self, sub: str = "", where: str = "") -> Scope:
        prefix = f"{self.name}.{sub}" if sub else self.name
        return Scope(self.ctx, prefix, where or f"last rank {self.last} faulty or absent")

    def world(self) -> ScenarioRef:
        """This case's inputs, all-gathered (collective)."""
        tokens = (TOKENS,) * self.base.num_ranks
        sc = Scenario(self.name, tokens, HIDDEN, NUM_EXPERTS, seed=self.seed)
        return suite.gather_world(self.base, sc)

    def build(self, group: Any = None) -> None:
        """A Buffer(explicitly_destroy=True) on every rank (collective); none anywhere when
        any rank failed to build one."""
        group = self.group if group is None else group
        buffer = self.step(lambda: new_buffer(self.base.ep, group), needs_buffer=False)
        if not everyone(buffer is not None):
            buffer = None  # dropped: its destructor frees it within the deadline
        self.ctx = dataclasses.replace(self.base, buffer=buffer)
        if buffer is not None:
            self.owned.append(buffer)

    def step(self, fn: Callable[[], Any], needs_buffer: bool = True) -> Any:
        """fn(), or None when it raised (recorded) or needs a buffer this case lacks."""
        if needs_buffer and self.ctx.buffer is None:
            return None
        try:
            return fn()
        except Exception:  # noqa: BLE001 - recorded in the case's `completed` check
            self.errors.append(traceback.format_exc()[-1200:])
            return None

    def meet(self) -> None:
        """Waits for this rank's GPU work, then for every rank (collective)."""
        self.step(torch.cuda.synchronize, needs_buffer=False)
        dist.barrier()

    def prepare(self, kind: str = KIND, mode: Optional[Mode] = None, good: bool = True):
        """Inputs and a buffer; a good dispatch (checked under `<name>.good.*`) and check()
        before any fault; a meeting. Returns (world, the good dispatch's 6-tuple or None)."""
        world = self.world()
        self.build()
        first = good_run(self, world, kind, mode) if good else None
        self.step(lambda: expect_healthy(self))
        self.meet()
        return world, first


def new_buffer(ep: Any, group: Any, num_nvl_bytes: int = NVL_BYTES) -> Any:
    return ep.Buffer(
        group,
        num_nvl_bytes=num_nvl_bytes,
        num_rdma_bytes=0,
        low_latency_mode=False,
        num_qps_per_rank=1,
        explicitly_destroy=True,
    )


def everyone(flag: bool) -> bool:
    """Whether `flag` holds on every rank (collective)."""
    t = torch.tensor([int(flag)], device=_dist.comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def default_store() -> Any:
    """The key-value store of the default process group (torch has no public accessor)."""
    from torch.distributed import distributed_c10d

    return distributed_c10d._get_default_store()


# ----------------------------------------------------------------------------- checks


def expect_healthy(case: Case) -> None:
    """check() on a buffer that recorded no error returns None."""
    scope = case.scope()
    try:
        got = case.buffer.check()
    except Exception as exc:  # noqa: BLE001 - any exception fails the check
        scope.ok("check_healthy", False, f"raised {type(exc).__name__}: {exc}")
    else:
        scope.ok("check_healthy", got is None, f"returned {got!r}")


def raises(scope: Scope, what: str, call: Callable[[], Any]) -> Optional[str]:
    """Records `what`: call() must raise RuntimeError. Returns its message, else None."""
    try:
        call()
    except RuntimeError as exc:
        scope.ok(what, True)
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - a wrong exception type is a failed check
        scope.ok(what, False, f"raised {type(exc).__name__} (expected RuntimeError): {exc}")
    else:
        torch.cuda.synchronize()  # whatever it launched finishes before the next step
        scope.ok(what, False, "no error raised")
    return None


def says(scope: Scope, what: str, msg: Optional[str], phrase: str) -> None:
    """Records `what`: the message `msg` names `phrase` (whole words, any case)."""
    if msg is None:
        scope.ok(what, False, f"nothing raised, so nothing names {phrase!r}")
        return
    scope.ok(what, ref.mentions(msg, (phrase,)), f"message does not name {phrase!r}: {msg!r}")


def call_returns(scope: Scope, call: Callable[[], Any]) -> Any:
    """A call without host wait must return (its kernels fail later); returns its result."""
    try:
        out = call()
    except Exception as exc:  # noqa: BLE001 - recorded
        scope.ok("call_returns", False, f"raised {type(exc).__name__}: {exc}")
        return None
    scope.ok("call_returns", True)
    return out


def finished_in_time(scope: Scope, start: float) -> None:
    """Synchronizes; the GPU work since `start` must have ended (its waits timed out)."""
    torch.cuda.synchronize()
    elapsed = time.monotonic() - start
    detail = f"synchronize returned after {elapsed:.1f} s (UCCL_EP_TIMEOUT_SECS={TIMEOUT_ENV})"
    scope.ok("finishes_in_time", elapsed < MAX_WAIT_SECS, detail)


def poisoned(scope: Scope, what: str, t: Any) -> None:
    """Floating tensors (bf16, float32, float8) must be all NaN, integer ones all -1."""
    if not isinstance(t, torch.Tensor) or t.numel() == 0:
        scope.ok(what, False, f"expected a non-empty tensor, got {suite.describe(t)}")
        return
    if t.is_floating_point():
        bad, want = ~torch.isnan(t.float()), "NaN"
    else:
        bad, want = t != -1, "-1"
    num_bad = int(bad.sum())
    detail = f"{num_bad} of {t.numel()} elements of {suite.describe(t)} are not {want}"
    scope.ok(what, num_bad == 0, detail)


def poisoned_x(scope: Scope, what: str, x: Any) -> None:
    """recv_x: a tensor, or (data, scales) whose scales are NaN (float32) or -1 (int32)."""
    if isinstance(x, tuple):
        poisoned(scope, what, x[0] if x else None)
        poisoned(scope, f"{what}_scales", x[1] if len(x) > 1 else None)
    else:
        poisoned(scope, what, x)


def zeroed(scope: Scope, what: str, t: Any) -> None:
    """A count tensor of an aborted call must be all 0."""
    if not isinstance(t, torch.Tensor) or t.numel() == 0:
        scope.ok(what, False, f"expected a non-empty tensor, got {suite.describe(t)}")
        return
    num_bad = int((t != 0).sum())
    scope.ok(what, num_bad == 0, f"{num_bad} of {t.numel()} counts are not 0: {t.tolist()}")


def refuses_later_calls(case: Case, world: ScenarioRef, kind: str, handle: Any) -> None:
    """get_dispatch_layout, and with a handle a cached dispatch and a combine, all raise."""
    scope, buf, cfg = case.scope(), case.buffer, case.base.config
    idx = world.topk_idx[case.rank]
    raises(scope, "later_layout_raises", lambda: buf.get_dispatch_layout(idx, NUM_EXPERTS))
    if handle is None:
        return
    x = world.inputs(kind, case.rank)
    raises(scope, "later_dispatch_raises", lambda: buf.dispatch(x, handle=handle, config=cfg))
    y = torch.zeros(handle[3].size(0), HIDDEN, dtype=torch.bfloat16, device=suite.device())
    raises(scope, "later_combine_raises", lambda: buf.combine(y, handle, config=cfg))


def good_run(case: Case, world: ScenarioRef, kind: str = KIND, mode: Optional[Mode] = None):
    """A correct dispatch (+ combine for float kinds) on every rank, checked as in the
    intranode suite under `<name>.good.*`; returns the dispatch's 6-tuple."""
    mode = Mode(case.base.config) if mode is None else mode
    return case.step(lambda: suite.run_case(case.scope("good"), world, kind, mode))
