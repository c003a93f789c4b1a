"""Aborted-buffer (health) test: a Buffer whose kernels or host waits recorded an error never
returns data that looks valid. In every case the last rank is the faulty or absent one and the
others observe; each case builds its own Buffer with UCCL_EP_TIMEOUT_SECS=5. After the fault,
kernel outputs are poisoned (floating all NaN, indices all -1, counts 0), and `check()`, every
later call and the events of the buffer raise RuntimeError. README.md lists the checks.

Runs under the launcher (test_health_gpu.py) or, for debugging, from the repository root:
    torchrun --nproc_per_node=2 -m tests.gpu.health_suite
"""

from __future__ import annotations

import gc
import os
import sys
import time
import traceback
from datetime import timedelta
from functools import partial
from typing import Any, Callable

import torch
import torch.distributed as dist

from . import _dist
from . import intranode_suite as suite
from . import reference as ref
from ._dist import Recorder, run_under_torchrun
from .health_checks import (
    DESTROY_SECS,
    INT_HANDLE_FIELDS,
    KILL_CASE,
    KIND,
    MARKER_SECS,
    NUM_EXPERTS,
    NVL_BYTES,
    PEER_EXIT_SECS,
    REPORT_WAIT_SECS,
    SETUP_SECS,
    STORE_PREFIX,
    TIMEOUT_ENV,
    TOKENS,
    Case,
    call_returns,
    default_store,
    expect_healthy,
    finished_in_time,
    good_run,
    new_buffer,
    poisoned,
    poisoned_x,
    raises,
    refuses_later_calls,
    says,
    zeroed,
)
from .intranode_suite import Ctx, Mode
from .reference import ScenarioRef

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
    to every rank's dispatch with reference counts that ignore it, every rank raises at once;
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
    detail = f"raised={msg is not None} after {elapsed:.1f} s (limit {MARKER_SECS:.0f} s)"
    scope.ok("raises_quickly", msg is not None and elapsed < MARKER_SECS, detail)
    if case.rank == 0:
        says(scope, "message_names_topk_idx", msg, "topk_idx")
    else:
        says(scope, "message_names_rank_0", msg, "rank 0")
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
