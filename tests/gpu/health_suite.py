"""Aborted-buffer (health) test: a Buffer whose kernels or host waits recorded an error never
returns data that looks valid. In every case the last rank is the faulty or absent one and the
others observe; each case builds its own Buffer with UCCL_EP_TIMEOUT_SECS=5. After the fault,
kernel outputs are poisoned (floating all NaN, indices all -1, counts 0), and `check()`, every
later call and the events of the buffer raise RuntimeError. README.md lists the checks.

Runs under the launcher (test_health_gpu.py) or, for debugging, directly:
    torchrun --nproc_per_node=2 tests/gpu/health_suite.py
"""

from __future__ import annotations

import dataclasses
import gc
import os
import sys
import time
import traceback
from datetime import timedelta
from functools import partial
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist

try:
    from . import _dist
    from . import intranode_suite as suite
    from . import reference as ref
    from ._dist import Recorder, run_under_torchrun
    from .intranode_suite import Ctx, Mode, Scope
    from .reference import Scenario, ScenarioRef
except ImportError:  # run as a script: the siblings are importable from sys.path[0]
    import _dist
    import intranode_suite as suite
    import reference as ref
    from _dist import Recorder, run_under_torchrun
    from intranode_suite import Ctx, Mode, Scope
    from reference import Scenario, ScenarioRef

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


# ----------------------------------------------------------------------------- a-d: absent rank


def case_cached(case: Case, kind: str) -> None:
    """a. The last rank skips a cached dispatch; the others' (async) call times out on the GPU."""
    world, first = case.prepare(kind)
    if case.observer and first is not None:
        case.step(lambda: cached_fault(case, world, kind, first[4]))


def cached_fault(case: Case, world: ScenarioRef, kind: str, handle: tuple) -> None:
    scope, buf, cfg = case.scope(), case.buffer, case.base.config
    x = world.inputs(kind, case.rank)
    start = time.monotonic()
    out = call_returns(scope, lambda: buf.dispatch(x, handle=handle, config=cfg, async_finish=True))
    finished_in_time(scope, start)
    if out is not None:
        poisoned_x(scope, "poison.recv_x", out[0])
        event = out[5]
        if getattr(event, "event", None) is None:
            scope.ok("event_wait_raises", False, f"async_finish=True gave no event: {event!r}")
        else:
            raises(scope, "event_wait_raises", event.current_stream_wait)
    msg = raises(scope, "check_raises", lambda: buf.check())
    says(scope, "check_says_timed_out", msg, "timed out")
    says(scope, "check_names_rank", msg, f"rank {case.rank}")
    refuses_later_calls(case, world, kind, handle)


def case_worst(case: Case) -> None:
    """b. The last rank skips a num_worst_tokens dispatch (no host wait on the others)."""
    mode = Mode(case.base.config, num_worst=TOKENS * case.base.num_ranks)
    world, first = case.prepare(KIND, mode)
    if case.observer and first is not None:
        case.step(lambda: worst_fault(case, world, mode, first[4]))


def worst_fault(case: Case, world: ScenarioRef, mode: Mode, good_handle: tuple) -> None:
    scope = case.scope()
    start = time.monotonic()
    out = call_returns(scope, lambda: suite.dispatch(case.ctx, world, KIND, mode))
    finished_in_time(scope, start)
    if out is not None:
        poisoned(scope, "poison.recv_x", out[0])
        poisoned(scope, "poison.recv_topk_idx", out[1])
        poisoned(scope, "poison.recv_topk_weights", out[2])
        handle = out[4] if isinstance(out[4], tuple) and len(out[4]) == 6 else (None,) * 6
        for index, field in INT_HANDLE_FIELDS:
            poisoned(scope, f"poison.handle.{field}", handle[index])
    raises(scope, "check_raises", lambda: case.buffer.check())
    refuses_later_calls(case, world, KIND, good_handle)


def case_combine(case: Case) -> None:
    """c. After a good dispatch the last rank skips the combine."""
    world, first = case.prepare()
    if case.observer and first is not None:
        case.step(lambda: combine_fault(case, world, first))


def combine_fault(case: Case, world: ScenarioRef, first: tuple) -> None:
    scope, buf, cfg = case.scope(), case.buffer, case.base.config
    recv_x, _, recv_w, _, handle, _ = first
    y = ref.expert_transform(ref.as_bf16(recv_x), case.rank)
    start = time.monotonic()
    out = call_returns(scope, lambda: buf.combine(y, handle, topk_weights=recv_w, config=cfg))
    finished_in_time(scope, start)
    if out is not None:
        poisoned(scope, "poison.combined_x", out[0])
        poisoned(scope, "poison.combined_topk_weights", out[1])
    raises(scope, "check_raises", lambda: buf.check())
    refuses_later_calls(case, world, KIND, handle)


def case_graph(case: Case) -> None:
    """d. Every rank captures cached dispatch + combine in one graph and replays it together;
    then the last rank stops replaying and the others' replay times out on the GPU."""
    world, first = case.prepare()
    graph = case.step(lambda: capture(case, world, first)) if first is not None else None
    case.meet()
    if graph is not None:
        case.step(lambda: replay_together(case, world, graph))
    case.meet()
    if case.observer and graph is not None:
        case.step(lambda: graph_fault(case, world, graph, first[4]))


def capture(case: Case, world: ScenarioRef, first: tuple) -> tuple:
    """(graph, recv_x, combined): the cached dispatch and the combine of `first`'s handle."""
    buf, cfg, handle = case.buffer, case.base.config, first[4]
    x = world.inputs(KIND, case.rank)
    y = ref.expert_transform(ref.as_bf16(first[0]), case.rank)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        recv_x = buf.dispatch(x, handle=handle, config=cfg)[0]
        combined = buf.combine(y, handle, config=cfg)[0]
    recv_x.zero_()  # capture ran nothing: only a replay can write the right values
    combined.zero_()
    torch.cuda.synchronize()
    return graph, recv_x, combined


def replay_together(case: Case, world: ScenarioRef, graph: tuple) -> None:
    """One replay on every rank (after a meeting): outputs equal the reference."""
    g, recv_x, combined = graph
    scope = case.scope("good", "replay on every rank")
    g.replay()
    torch.cuda.synchronize()
    rows = world.expected(case.rank).num_recv
    suite.rows_then_prefix(scope, "replay_recv_x", recv_x, world.expected_x(KIND, case.rank), rows)
    scope.close("replay_combined_x", combined, world.expected_combine(KIND, (), False)[0])
    recv_x.zero_()  # the faulty replay must write NaN over these
    combined.zero_()
    torch.cuda.synchronize()


def graph_fault(case: Case, world: ScenarioRef, graph: tuple, handle: tuple) -> None:
    g, recv_x, combined = graph
    scope = case.scope()
    start = time.monotonic()
    g.replay()
    finished_in_time(scope, start)
    poisoned(scope, "poison.recv_x", recv_x)
    poisoned(scope, "poison.combined_x", combined)
    raises(scope, "check_raises", lambda: case.buffer.check())
    refuses_later_calls(case, world, KIND, handle)


# ----------------------------------------------------------------------------- e: killed peer


def case_kill(case: Case) -> None:
    """e. After a good dispatch the last rank exits (os._exit); the others combine. Runs last:
    afterwards the group has lost a member, so the survivors use no collective."""
    world, first = case.prepare()
    pid = torch.tensor([os.getpid()], dtype=torch.int64, device=_dist.comm_device())
    pids = [torch.empty_like(pid) for _ in range(case.base.num_ranks)]
    dist.all_gather(pids, pid)
    case.meet()
    rec = case.base.rec
    if not case.observer:
        rec.check(f"{case.name}.exiting", True)
        rec.exit_on_purpose()
    rec.peer_left()
    case.step(lambda: wait_gone(case, int(pids[case.last].item())), needs_buffer=False)
    if first is not None:
        case.step(lambda: kill_fault(case, world, first))


def process_gone(pid: int) -> bool:
    """Whether process `pid` has exited (no /proc entry, or a zombie not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def wait_gone(case: Case, pid: int) -> None:
    deadline = time.monotonic() + PEER_EXIT_SECS
    while not process_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    detail = f"process {pid} of rank {case.last} still exists after {PEER_EXIT_SECS:.0f} s"
    case.scope().ok("peer_gone", process_gone(pid), detail)


def kill_fault(case: Case, world: ScenarioRef, first: tuple) -> None:
    scope, buf, cfg = case.scope(), case.buffer, case.base.config
    recv_x, handle = first[0], first[4]
    y = ref.expert_transform(ref.as_bf16(recv_x), case.rank)
    start = time.monotonic()
    out = call_returns(scope, lambda: buf.combine(y, handle, config=cfg))
    finished_in_time(scope, start)
    if out is not None:
        poisoned(scope, "poison.combined_x", out[0])
    msg = raises(scope, "check_raises", lambda: buf.check())
    says(scope, "check_names_peer", msg, f"peer {case.last}")
    refuses_later_calls(case, world, KIND, handle)


# ----------------------------------------------------------------------------- f-g: bad inputs


def case_counts(case: Case, field: str) -> None:
    """f. Rank 0 passes one count too many in `field`; every rank's dispatch raises at once."""
    world, first = case.prepare()
    if first is not None:
        case.step(lambda: counts_fault(case, world, field, first[4]))


def bad_dispatch(case: Case, x: Any, counts: tuple, idx: Any, weights: Any):
    """A non-cached dispatch with (num_tokens_per_rank, is_token_in_rank,
    num_tokens_per_expert) = `counts` that must raise; returns (message or None, seconds)."""
    per_rank, in_rank, per_expert = counts
    kwargs = dict(num_tokens_per_rank=per_rank, is_token_in_rank=in_rank)
    kwargs.update(num_tokens_per_expert=per_expert, topk_idx=idx, topk_weights=weights)
    start = time.monotonic()
    call = partial(case.buffer.dispatch, x, config=case.base.config, **kwargs)
    msg = raises(case.scope(), "dispatch_raises", call)
    return msg, time.monotonic() - start


def counts_fault(case: Case, world: ScenarioRef, field: str, good_handle: tuple) -> None:
    scope, buf = case.scope(), case.buffer
    x, idx, weights = world.own(KIND)
    per_rank, _, per_expert, in_rank, _ = buf.get_dispatch_layout(idx, NUM_EXPERTS)
    if case.rank == 0 and field == "num_tokens_per_rank":
        per_rank = per_rank.clone()
        per_rank[1] += 1
    elif case.rank == 0:
        per_expert = per_expert.clone()
        per_expert[0] += 1
    torch.cuda.synchronize()
    msg, elapsed = bad_dispatch(case, x, (per_rank, in_rank, per_expert), idx, weights)
    detail = f"raised={msg is not None} after {elapsed:.1f} s (limit {MARKER_SECS:.0f} s)"
    scope.ok("raises_quickly", msg is not None and elapsed < MARKER_SECS, detail)
    if case.rank == 0:
        says(scope, "message_names_field", msg, field)
    else:
        says(scope, "message_names_rank_0", msg, "rank 0")
    torch.cuda.synchronize()
    raises(scope, "check_raises", lambda: buf.check())
    refuses_later_calls(case, world, KIND, good_handle)


def bad_entry(world: ScenarioRef, value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank 0's topk_idx with one entry set to -1 (clean) and to `value` (bad)."""
    clean = world.topk_idx[0].clone()
    clean[clean.size(0) // 2, 0] = -1
    bad = clean.clone()
    bad[bad.size(0) // 2, 0] = value
    return clean, bad


def case_expert_id(case: Case, via: str, value: int) -> None:
    """g. Rank 0's topk_idx holds `value` (num_experts or -2) in one entry. "dispatch": passed
    to every rank's dispatch with reference counts that ignore it, every rank raises;
    "layout": rank 0's get_dispatch_layout records the error, its peers do nothing."""
    world, first = case.prepare(good=via == "dispatch")
    if via == "dispatch" and first is not None:
        case.step(lambda: dispatch_bad_id(case, world, value, first[4]))
    elif via == "layout" and case.rank == 0:
        case.step(lambda: layout_bad_id(case, world, value))


def dispatch_bad_id(case: Case, world: ScenarioRef, value: int, good_handle: tuple) -> None:
    scope, buf = case.scope(), case.buffer
    x, idx, weights = world.own(KIND)
    layout = world.layouts[case.rank]
    if case.rank == 0:
        clean, idx = bad_entry(world, value)
        layout = ref.dispatch_layout(clean, NUM_EXPERTS, case.base.num_ranks)
    counts = (layout.num_tokens_per_rank, layout.is_token_in_rank, layout.num_tokens_per_expert)
    msg, elapsed = bad_dispatch(case, x, counts, idx, weights)
    detail = f"raised={msg is not None} after {elapsed:.1f} s"
    scope.ok("raises_in_time", msg is not None and elapsed < MAX_WAIT_SECS, detail)
    if case.rank == 0:
        says(scope, "message_names_topk_idx", msg, "topk_idx")
    torch.cuda.synchronize()
    raises(scope, "check_raises", lambda: buf.check())
    refuses_later_calls(case, world, KIND, good_handle)


def layout_bad_id(case: Case, world: ScenarioRef, value: int) -> None:
    scope, buf = case.scope(), case.buffer
    _, bad = bad_entry(world, value)
    out = call_returns(scope, lambda: buf.get_dispatch_layout(bad, NUM_EXPERTS))
    torch.cuda.synchronize()
    if out is not None:
        zeroed(scope, "poison.num_tokens_per_rank", out[0])
        zeroed(scope, "poison.num_tokens_per_expert", out[2])
    msg = raises(scope, "check_raises", lambda: buf.check())
    says(scope, "check_names_topk_idx", msg, "topk_idx")
    refuses_later_calls(case, world, KIND, None)


# ----------------------------------------------------------------------------- h-i: set-up, destroy


def case_setup(case: Case) -> None:
    """h. The last rank passes num_nvl_bytes=100: every rank's Buffer(...) raises in time (the
    last ValueError, the others RuntimeError naming it); then the same group builds a valid
    buffer and dispatches."""
    world = case.world()
    group = dist.new_group(list(range(case.base.num_ranks)))
    bad = not case.observer
    start, got = time.monotonic(), None
    try:
        new_buffer(case.base.ep, group, num_nvl_bytes=100 if bad else NVL_BYTES)
    except Exception as exc:  # noqa: BLE001 - checked below
        got = exc
    elapsed, msg = time.monotonic() - start, None if got is None else str(got)
    scope = case.scope(where=f"rank {case.last} passes num_nvl_bytes=100")
    detail = f"{type(got).__name__} after {elapsed:.1f} s: {msg!r}"
    scope.ok("raises_in_time", got is not None and elapsed < SETUP_SECS, detail)
    if bad:
        scope.ok("bad_rank_value_error", isinstance(got, ValueError), detail)
        says(scope, "bad_rank_names_num_nvl_bytes", msg, "num_nvl_bytes")
    else:
        scope.ok("peer_runtime_error", isinstance(got, RuntimeError), detail)
        says(scope, "peer_names_bad_rank", msg, f"rank {case.last}")
        says(scope, "peer_has_its_message", msg, "num_nvl_bytes")
    case.meet()
    case.build(group)
    errors = case.errors[-1] if case.errors else "a rank failed to build it"
    case.scope().ok("valid_buffer_builds", case.buffer is not None, errors)
    good_run(case, world)


def case_destroy(case: Case) -> None:
    """i. The last rank holds back destroy() until the others report that theirs ended
    (returned or raised RuntimeError) within the deadline; then a healthy pair of buffers is
    destroyed on every rank together without error."""
    case.build(dist.new_group(list(range(case.base.num_ranks))))
    case.step(lambda: expect_healthy(case))
    case.meet()
    store, key = default_store(), f"{STORE_PREFIX}/destroyed/"
    if case.observer:
        case.step(lambda: timed_destroy(case, "lone_destroy"))
        store.set(f"{key}{case.rank}", "1")
    else:
        keys = [f"{key}{r}" for r in range(case.last)]
        case.step(lambda: wait_reports(case, store, keys), needs_buffer=False)
        case.step(lambda: timed_destroy(case, "late_destroy"))
    case.owned.clear()
    case.meet()
    case.build(dist.new_group(list(range(case.base.num_ranks))))
    case.meet()
    case.step(lambda: timed_destroy(case, "together_destroy", clean=True))
    case.owned.clear()


def wait_reports(case: Case, store: Any, keys: list[str]) -> None:
    """The others' reports (through the store, with a deadline: a destroy() that hangs in a
    collective is released when this rank destroys its own buffer afterwards)."""
    try:
        store.wait(keys, timedelta(seconds=REPORT_WAIT_SECS))
    except Exception as exc:  # noqa: BLE001 - a store timeout
        detail = f"no report within {REPORT_WAIT_SECS:.0f} s ({type(exc).__name__}: {exc})"
        case.scope().ok("peers_reported", False, detail)
    else:
        case.scope().ok("peers_reported", True)


def timed_destroy(case: Case, what: str, clean: bool = False) -> None:
    """destroy() must end in time: return, or (unless `clean`) raise RuntimeError."""
    scope = case.scope()
    start, how = time.monotonic(), "returned"
    try:
        case.buffer.destroy()
    except Exception as exc:  # noqa: BLE001 - checked below
        how = f"raised {type(exc).__name__}: {exc}"
        allowed = isinstance(exc, RuntimeError) and not clean
    else:
        allowed = True
    elapsed = time.monotonic() - start
    scope.ok(f"{what}_ends" if not clean else f"{what}_raises_nothing", allowed, how)
    detail = f"took {elapsed:.1f} s (limit {DESTROY_SECS:.0f} s); {how}"
    scope.ok(f"{what}_in_time", elapsed < DESTROY_SECS, detail)


# ----------------------------------------------------------------------------- driver

CASES: tuple = (
    ("health.destroy", case_destroy),  # first: the cases' clean-up relies on destroy's deadline
    ("health.cached[bf16_rand]", partial(case_cached, kind="bf16_rand")),
    ("health.cached[fp8_f32]", partial(case_cached, kind="fp8_f32")),
    ("health.cached[fp8_i32]", partial(case_cached, kind="fp8_i32")),
    ("health.worst", case_worst),
    ("health.combine", case_combine),
    ("health.graph", case_graph),
    ("health.counts[num_tokens_per_rank]", partial(case_counts, field="num_tokens_per_rank")),
    ("health.counts[num_tokens_per_expert]", partial(case_counts, field="num_tokens_per_expert")),
    (
        "health.expert_id[dispatch,num_experts]",
        partial(case_expert_id, via="dispatch", value=NUM_EXPERTS),
    ),
    ("health.expert_id[dispatch,-2]", partial(case_expert_id, via="dispatch", value=-2)),
    (
        "health.expert_id[layout,num_experts]",
        partial(case_expert_id, via="layout", value=NUM_EXPERTS),
    ),
    ("health.expert_id[layout,-2]", partial(case_expert_id, via="layout", value=-2)),
    ("health.setup", case_setup),
    (KILL_CASE, case_kill),  # last: the killed rank leaves the process group
)


def run_one(base: Ctx, group: Any, name: str, body: Callable[[Case], None], seed: int) -> None:
    """One case, its `completed` check, then (except after the kill) a meeting of all ranks
    and the destroy of its buffers on every rank (errors ignored: an aborted buffer is dead)."""
    start, case = time.monotonic(), Case(base, name, group, seed)
    try:
        body(case)
    except Exception:  # noqa: BLE001 - recorded as a failed check with its traceback
        case.errors.append(traceback.format_exc()[-1200:])
    base.rec.check(f"{name}.completed", not case.errors, "\n".join(case.errors)[:1500])
    if base.rank == 0:
        print(f"[health] {name}: {time.monotonic() - start:.1f} s", flush=True)
    if name == KILL_CASE:
        return
    case.meet()
    for buffer in case.owned:
        try:
            buffer.destroy()
        except Exception:  # noqa: BLE001, S110 - a dead buffer may refuse to be destroyed
            pass
    case.owned.clear()
    case.ctx = base
    gc.collect()


def run_suite(rank: int, num_ranks: int, rec: Recorder) -> None:
    """The health test on one rank (the launcher body)."""
    os.environ["UCCL_EP_TIMEOUT_SECS"] = TIMEOUT_ENV  # read when each Buffer is built
    from uccl import ep

    num_sms = suite.suite_num_sms(num_ranks)
    if num_sms != suite.NUM_SMS:  # shared GPUs: the library's default configs must fit too
        ep.Buffer.set_num_sms(num_sms)
    base = Ctx(rank, num_ranks, rec, ep, None, ep.Config(num_sms, 8, 256), num_sms)
    group = dist.new_group(list(range(num_ranks)))  # the buffers' group (h and i make theirs)
    for seed, (name, body) in enumerate(CASES, start=60):
        run_one(base, group, name, body, seed)


if __name__ == "__main__":
    sys.exit(run_under_torchrun(run_suite))
