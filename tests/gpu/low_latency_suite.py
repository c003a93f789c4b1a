"""Per-rank body of the low-latency (LL) GPU suite for `uccl.ep.Buffer` (DeepEP V1
low_latency_dispatch / low_latency_combine), checked against the independent pure-torch
reference in ll_reference.py. Each topology (README.md) builds its own LL Buffer, runs every
section on it and destroys it; every check is recorded by name `<topology>.<section>.<what>`.

Runs under the launcher (test_low_latency_gpu.py) or, for debugging, directly:
    torchrun --nproc_per_node=2 tests/gpu/low_latency_suite.py
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist

try:
    from . import _dist, ll_bad_input_section, ll_graph_section, ll_sections, ll_shrink_section
    from . import intranode_suite as intranode
    from . import ll_reference as ref
    from ._dist import Recorder, run_under_torchrun
    from .ll_checks import (  # noqa: F401 - re-exported for the sections
        check_combined,
        check_dispatch,
        describe,
        device,
        form_problem,
    )
    from .ll_reference import Case, World
except ImportError:  # run as a script: the siblings are importable from sys.path[0]
    import _dist
    import intranode_suite as intranode
    import ll_bad_input_section
    import ll_graph_section
    import ll_reference as ref
    import ll_sections
    import ll_shrink_section
    from _dist import Recorder, run_under_torchrun
    from ll_checks import (  # noqa: F401 - re-exported for the sections
        check_combined,
        check_dispatch,
        describe,
        device,
        form_problem,
    )
    from ll_reference import Case, World

TOKENS = 128  # num_max_dispatch_tokens_per_rank (T) of every call
HIDDEN = 7168  # the main hidden size; the buffer is sized for it
SMALL_HIDDEN = 2048
EXPERTS_PER_RANK = 32
NUM_TOPK = 8
EXPERT_CHUNK = 4  # local experts dequantised at once by the test expert (bounds its memory)
TOPOLOGIES_ENV = "UCCL_EP_TEST_LL_TOPOLOGIES"
TOPOLOGY_ENV_KEYS = ("UCCL_EP_NUM_LOCAL_RANKS", "UCCL_EP_TRANSPORT", "UCCL_EP_FI_PROVIDER")
TCP = {"UCCL_EP_TRANSPORT": "libfabric", "UCCL_EP_FI_PROVIDER": "tcp;ofi_rxm"}
IPC = {"UCCL_EP_TRANSPORT": "ipc"}


@dataclass(frozen=True)
class Topology:
    """Where the ranks' peers are: one NVLink domain, or emulated nodes of `local_ranks`
    ranks whose other peers go through the CPU proxies and `env`'s transport."""

    name: str
    env: dict
    local_ranks: Optional[int] = None  # None: every rank in one NVLink domain
    allow_nvlink: bool = True

    def runs_on(self, num_ranks: int) -> bool:
        local = self.local_ranks
        return local is None or (num_ranks % local == 0 and num_ranks // local >= 2)


TOPOLOGIES = {
    t.name: t
    for t in (
        Topology("nvlink", {}),
        Topology("proxy", {"UCCL_EP_NUM_LOCAL_RANKS": "1", **IPC}, 1),
        Topology("mixed", {"UCCL_EP_NUM_LOCAL_RANKS": "2", **IPC}, 2),
        Topology("proxy_tcp", {"UCCL_EP_NUM_LOCAL_RANKS": "1", **TCP}, 1),
        Topology("mixed_tcp", {"UCCL_EP_NUM_LOCAL_RANKS": "2", **TCP}, 2),
        # Not run by default: one NVLink domain, but allow_nvlink_for_low_latency_mode=False.
        Topology("nvlink_off", {}, allow_nvlink=False),
    )
}
DEFAULT_TOPOLOGIES = ("nvlink", "proxy", "mixed", "proxy_tcp", "mixed_tcp")


def selected_topologies(num_ranks: int) -> list[Topology]:
    """The topologies named in UCCL_EP_TEST_LL_TOPOLOGIES (comma separated; default
    DEFAULT_TOPOLOGIES) that `num_ranks` ranks can form ("mixed*" needs at least 4)."""
    raw = os.environ.get(TOPOLOGIES_ENV, "").strip()
    names = [n.strip() for n in raw.split(",") if n.strip()] if raw else list(DEFAULT_TOPOLOGIES)
    unknown = [n for n in names if n not in TOPOLOGIES]
    if unknown:
        raise ValueError(f"{TOPOLOGIES_ENV}: unknown {unknown}; known: {sorted(TOPOLOGIES)}")
    return [TOPOLOGIES[n] for n in names if TOPOLOGIES[n].runs_on(num_ranks)]


# ----------------------------------------------------------------------------- context


@dataclass
class Ctx:
    rank: int
    num_ranks: int
    rec: Recorder
    ep: Any  # the uccl.ep module
    topo: str = "suite"
    buffer: Any = None
    t: int = TOKENS
    experts_per_rank: int = EXPERTS_PER_RANK
    hidden: int = HIDDEN  # the largest hidden the buffer is sized for

    @property
    def num_experts(self) -> int:
        return self.experts_per_rank * self.num_ranks

    def world(self, case: Case) -> World:
        """Every rank's inputs of `case` (rebuilt here, no communication) and the reference."""
        return World(case, self.rank, self.num_ranks, self.num_experts, self.t, device())

    def factors(self, expert: str) -> torch.Tensor:
        """float32 [num_experts]: what test expert g multiplies its rows by."""
        if expert == "identity":
            return torch.ones(self.num_experts, device=device())
        return ref.expert_factors(self.num_experts, device())

    def local_factors(self, expert: str) -> torch.Tensor:
        first = self.rank * self.experts_per_rank
        return self.factors(expert)[first : first + self.experts_per_rank]


@dataclass
class Scope:
    """Names checks `<prefix>.<what>` and prefixes failure details with their context."""

    ctx: Ctx
    prefix: str
    where: str

    def ok(self, what: str, cond: object, detail: str = "") -> bool:
        return self.ctx.rec.check(f"{self.prefix}.{what}", cond, f"[{self.where}] {detail}")

    def same(self, what: str, actual: object, expected: torch.Tensor) -> bool:
        bad = intranode.ref.bitwise_mismatch(actual, expected)
        return self.ok(what, bad is None, bad or "")

    def sub(self, name: str) -> Scope:
        return Scope(self.ctx, f"{self.prefix}.{name}", self.where)


@dataclass(frozen=True)
class DispatchMode:
    fmt: str = "bf16"  # a key of ll_reference.FORMATS
    hook: bool = False  # return_recv_hook
    async_finish: bool = False


@dataclass(frozen=True)
class CombineMode:
    expert: str = "scaled"  # "identity": y = dequantised rows; "scaled": times factors[g]
    zero_copy: bool = False  # y written into get_next_low_latency_combine_buffer first
    poison_x: bool = False  # with zero_copy: pass an all-NaN x (it must not be read)
    use_out: bool = False  # pass out= (NaN-filled)
    use_logfmt: bool = False
    hook: bool = False
    async_finish: bool = False

    @property
    def label(self) -> str:
        parts = [self.expert]
        for flag in ("zero_copy", "poison_x", "use_out", "use_logfmt", "hook", "async_finish"):
            if getattr(self, flag):
                parts.append(flag)
        return ",".join(parts)


def sync() -> None:
    torch.cuda.synchronize()


def dispatch(ctx: Ctx, world: World, mode: DispatchMode, **extra) -> tuple:
    """low_latency_dispatch of this rank's inputs of `world`; returns its 5-tuple."""
    x, idx, _ = world.own()
    kwargs = {**ref.FORMATS[mode.fmt], "async_finish": mode.async_finish}
    kwargs.update(return_recv_hook=mode.hook, **extra)
    return ctx.buffer.low_latency_dispatch(x, idx, ctx.t, ctx.num_experts, **kwargs)


def complete(
    scope: Scope,
    name: str,
    event: Any,
    hook: Any,
    hooked: bool,
    async_finish: bool,
    before_hook: Optional[Callable[[], None]] = None,
) -> None:
    """Checks (as `<name>_returns`) the (event, hook) a call made with `hooked` /
    `async_finish` returned, and makes its results ready on the current stream: hook() (after
    `before_hook()`), or the current stream waits for the event."""
    got = getattr(event, "event", "<no event attribute>")
    problems = []
    if hooked and not callable(hook):
        problems.append(f"return_recv_hook=True gave hook {hook!r}")
    if not hooked and hook is not None:
        problems.append(f"return_recv_hook=False gave hook {hook!r}")
    if async_finish and (got is None or isinstance(got, str)):
        problems.append(f"async_finish=True gave no event: {event!r}")
    if not async_finish and got is not None:
        problems.append(f"without async_finish event.event is {got!r}, not None")
    scope.ok(f"{name}_returns", not problems, "; ".join(problems))
    if hooked:
        if before_hook is not None:
            before_hook()
        if callable(hook):
            hook()
    elif async_finish:
        if got is None or isinstance(got, str):
            sync()
        else:
            event.current_stream_wait()


def expert_outputs(
    ctx: Ctx, recv_x: Any, recv_count: Any, expert: str, host_rows: bool = True
) -> torch.Tensor:
    """The test expert: bf16 [E, N, H], row i of local expert e = bf16(dequantised recv row *
    factors[g]) for i < recv_count[e], NaN elsewhere (so a combine reading a row past the
    count yields NaN). `host_rows`: look at recv_count on the host to dequantise only the rows
    up to its maximum (False under CUDA-graph capture). Never raises on malformed outputs (the
    dispatch checks report them): it then returns all NaN, so every rank still calls combine."""
    num_rows = ctx.num_ranks * ctx.t
    data, scales = recv_x if isinstance(recv_x, tuple) and len(recv_x) == 2 else (recv_x, None)
    hidden = data.size(-1) if isinstance(data, torch.Tensor) and data.dim() == 3 else ctx.hidden
    shape = (ctx.experts_per_rank, num_rows, hidden)
    y = torch.full(shape, float("nan"), dtype=torch.bfloat16, device=device())
    formed = isinstance(data, torch.Tensor) and tuple(data.shape) == shape
    formed = formed and isinstance(recv_count, torch.Tensor) and recv_count.numel() == shape[0]
    formed = formed and (scales is None or isinstance(scales, torch.Tensor))
    if not formed:
        return y
    counts = recv_count.to(device()).long()
    rows = num_rows
    if host_rows:
        rows = max(0, min(num_rows, int(counts.max()))) if counts.numel() else 0
    if rows == 0:
        return y
    valid = torch.arange(rows, device=device()).unsqueeze(0) < counts.unsqueeze(1)
    factors = ctx.local_factors(expert)
    for e0 in range(0, shape[0], EXPERT_CHUNK):
        e1 = min(shape[0], e0 + EXPERT_CHUNK)
        part_scales = None if scales is None else scales[e0:e1, :rows]
        values = ref.dequantize(data[e0:e1, :rows], part_scales) * factors[e0:e1].view(-1, 1, 1)
        mask = valid[e0:e1].unsqueeze(-1)
        y[e0:e1, :rows] = torch.where(mask, values.bfloat16(), y[e0:e1, :rows])
    return y


def combine(
    scope: Scope, world: World, mode: CombineMode, y: torch.Tensor, handle: Any, **extra
) -> tuple:
    """low_latency_combine of `y` for this rank's routing of `world`; returns (its 3-tuple,
    the `out` tensor passed or None). With zero_copy, y goes into
    get_next_low_latency_combine_buffer(handle) first."""
    ctx = scope.ctx
    _, idx, weights = world.own()
    kwargs = {"async_finish": mode.async_finish, "return_recv_hook": mode.hook, **extra}
    if mode.use_logfmt:
        kwargs["use_logfmt"] = True
    x = y
    if mode.zero_copy:
        kwargs["zero_copy"] = True
        staged = ctx.buffer.get_next_low_latency_combine_buffer(handle)
        good = isinstance(staged, torch.Tensor) and staged.dtype == torch.bfloat16
        good = good and tuple(staged.shape) == tuple(y.shape)
        if scope.ok("next_combine_buffer", good, f"got {describe(staged)}, want {describe(y)}"):
            staged.copy_(y)
        if mode.poison_x:
            x = torch.full_like(y, float("nan"))
    out = None
    if mode.use_out:
        shape = (idx.size(0), y.size(-1))
        out = torch.full(shape, float("nan"), dtype=torch.bfloat16, device=device())
        kwargs["out"] = out
    return ctx.buffer.low_latency_combine(x, idx, weights, handle, **kwargs), out


def run_combine(
    scope: Scope,
    world: World,
    fmt: str,
    mode: CombineMode,
    recv_x: Any,
    recv_count: Any,
    handle: Any,
    before_hook: Optional[Callable[[], None]] = None,
    **extra,
) -> Any:
    """The test expert, combine in `mode`, completion and checks; returns combined_x."""
    y = expert_outputs(scope.ctx, recv_x, recv_count, mode.expert)
    (combined, event, hook), out = combine(scope, world, mode, y, handle, **extra)
    complete(scope, "combine", event, hook, mode.hook, mode.async_finish, before_hook)
    if out is not None:
        same = isinstance(combined, torch.Tensor) and combined.data_ptr() == out.data_ptr()
        scope.ok("out_returned", same, f"combine(out=o) returned {describe(combined)}, not o")
    check_combined(scope, world, fmt, mode, combined)
    return combined


def run_case(
    scope: Scope,
    world: World,
    mode: DispatchMode,
    combines: tuple = (CombineMode(),),
    before_hook: Optional[Callable[[], None]] = None,
    label_combines: bool = True,
) -> tuple:
    """Dispatch in `mode` + checks, then one combine per entry of `combines` (each checked
    under `<prefix>.combine[<label>]`, or `<prefix>.combine` without `label_combines`);
    returns the dispatch's 5-tuple. Every rank makes the same calls whatever its checks
    find."""
    out = dispatch(scope.ctx, world, mode)
    recv_x, recv_count, handle, event, hook = out
    complete(scope, "dispatch", event, hook, mode.hook, mode.async_finish, before_hook)
    check_dispatch(scope, world, mode.fmt, recv_x, recv_count, handle)
    for cmode in combines:
        sub = scope.sub(f"combine[{cmode.label}]" if label_combines else "combine")
        run_combine(sub, world, mode.fmt, cmode, recv_x, recv_count, handle, before_hook)
    return out


def host_barrier() -> Callable[[], None]:
    """Waits for this rank's GPU work, then for every rank (the send phase must finish
    without any peer's receive phase)."""

    def meet() -> None:
        sync()
        dist.barrier()

    return meet


# ----------------------------------------------------------------------------- driver


def set_topology_env(topo: Optional[Topology]) -> None:
    for key in TOPOLOGY_ENV_KEYS:
        os.environ.pop(key, None)
    if topo is not None:
        os.environ.update(topo.env)


def make_buffer(ctx: Ctx, topo: Topology, **extra: Any) -> Any:
    """An LL Buffer sized by get_low_latency_rdma_size_hint (collective); `extra` goes to
    Buffer(...)."""
    group = dist.new_group(list(range(ctx.num_ranks)))
    hint = ctx.ep.Buffer.get_low_latency_rdma_size_hint(
        ctx.t, ctx.hidden, ctx.num_ranks, ctx.num_experts
    )
    return ctx.ep.Buffer(
        group,
        num_nvl_bytes=0,
        num_rdma_bytes=hint,
        low_latency_mode=True,
        num_qps_per_rank=ctx.experts_per_rank,
        allow_nvlink_for_low_latency_mode=topo.allow_nvlink,
        explicitly_destroy=True,
        **extra,
    )


def run_section(ctx: Ctx, name: str, fn: Callable[[], None]) -> bool:
    """Runs one section and records `<topology>.<name>.completed` (_dist.run_section)."""
    check = f"{ctx.topo}.{name}.completed"
    return _dist.run_section(ctx.rec, ctx.rank, check, f"[low_latency] {ctx.topo}: {name}", fn)


def section_setup(ctx: Ctx, topo: Topology) -> None:
    ctx.buffer = make_buffer(ctx, topo)
    scope = Scope(ctx, f"{topo.name}.setup", "after Buffer(...)")
    buf, num_ranks = ctx.buffer, ctx.num_ranks
    scope.ok(
        "low_latency_mode", getattr(buf, "low_latency_mode", None) is True, "attribute not True"
    )
    scope.ok(
        "group_size",
        getattr(buf, "group_size", None) == num_ranks,
        f"{getattr(buf, 'group_size', None)}",
    )
    local = topo.local_ranks or num_ranks
    rt = getattr(buf, "runtime", None)
    got = (getattr(rt, "num_local_ranks", None), getattr(rt, "num_nodes", None))
    scope.ok(
        "topology", got == (local, num_ranks // local), f"(num_local_ranks, num_nodes) = {got}"
    )
    want = topo.env.get("UCCL_EP_TRANSPORT")
    if want is not None:
        transport = str(getattr(rt, "transport", ""))
        scope.ok("transport", transport.startswith(want), f"transport {transport!r}, want {want}")


def section_probe(ctx: Ctx) -> None:
    """A small dispatch + combine after a section raised: is the buffer still usable?"""
    world = ctx.world(Case("probe", (min(16, ctx.t),) * ctx.num_ranks, SMALL_HIDDEN, seed=99))
    run_case(Scope(ctx, f"{ctx.topo}.probe", "after a section raised"), world, DispatchMode())


def topology_sections() -> tuple:
    """(name, fn(ctx)) of the sections, in the order they run on each topology."""
    s = ll_sections
    return (
        ("formats", s.section_formats),
        ("combine_options", s.section_combine_options),
        ("shapes", s.section_shapes),
        ("edges", s.section_edges),
        ("stats", s.section_stats),
        ("hooks", s.section_hooks),
        ("async", s.section_async),
        ("double_buffer", s.section_double_buffer),
        ("clean", s.section_clean),
        ("graph", ll_graph_section.section_graph),
        ("random", s.section_random),
        ("shrink", ll_shrink_section.section_shrink),
        ("bad_input", ll_bad_input_section.section_bad_input),
    )


def run_topology(ctx: Ctx, topo: Topology) -> None:
    """Builds this topology's Buffer, runs every section on it, destroys it."""
    ctx.topo = topo.name
    set_topology_env(topo)
    failed = not run_section(ctx, "setup", lambda: section_setup(ctx, topo))
    if not failed:
        for name, fn in topology_sections():
            if run_section(ctx, name, lambda fn=fn: fn(ctx)):
                continue
            failed = True
            if not run_section(ctx, "probe", lambda: section_probe(ctx)):
                ctx.rec.check(f"{topo.name}.not_aborted", False, f"stopped after section {name!r}")
                break
    if ctx.buffer is not None:
        try:
            ctx.buffer.destroy()
            ctx.rec.check(f"{topo.name}.destroy", True)
        except Exception as e:  # noqa: BLE001 - an aborted buffer may refuse; reported if not
            ctx.rec.check(f"{topo.name}.destroy", failed, f"{type(e).__name__}: {e}")
    ctx.buffer = None
    set_topology_env(None)
    dist.barrier()


def run_suite(rank: int, num_ranks: int, rec: Recorder) -> None:
    """The whole LL suite on one rank (the launcher body)."""
    # A stuck call should fail well before the launcher deadline; a user value wins.
    os.environ.setdefault("UCCL_EP_TIMEOUT_SECS", "60")
    from uccl import ep

    num_sms = intranode.suite_num_sms(num_ranks)
    if num_sms != intranode.NUM_SMS:  # shared GPUs: every rank's kernels must fit at once
        ep.Buffer.set_num_sms(num_sms)
    ctx = Ctx(rank, num_ranks, rec, ep, t=TOKENS, experts_per_rank=EXPERTS_PER_RANK, hidden=HIDDEN)
    set_topology_env(None)
    if not run_section(ctx, "api", lambda: ll_sections.section_api(ctx)):
        rec.check("suite.not_aborted", False, "the api section raised")
    for topo in selected_topologies(num_ranks):
        run_topology(ctx, topo)


if __name__ == "__main__":
    sys.exit(run_under_torchrun(run_suite))
