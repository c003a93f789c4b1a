"""Per-rank body of the intranode GPU correctness suite for `uccl.ep.Buffer` (DeepEP V1 normal
mode: get_dispatch_layout / dispatch / combine), checked against the independent pure-torch
reference in reference.py. Every check is recorded by name; README.md lists them.

Runs under the launcher (test_intranode_gpu.py) or, for debugging, directly:
    torchrun --nproc_per_node=4 tests/gpu/intranode_suite.py
"""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass
from functools import partial

import torch
import torch.distributed as dist

try:
    from . import (
        _dist,
        api_section,
        bad_input_section,
        determinism_section,
        graph_section,
        stream_section,
        tensor_forms_section,
    )
    from . import reference as ref
    from ._dist import Recorder, all_gather_rows, run_under_torchrun
    from .reference import Scenario, ScenarioRef
except ImportError:  # run as a script: the siblings are importable from sys.path[0]
    import _dist
    import api_section
    import bad_input_section
    import determinism_section
    import graph_section
    import reference as ref
    import stream_section
    import tensor_forms_section
    from _dist import Recorder, all_gather_rows, run_under_torchrun
    from reference import Scenario, ScenarioRef

NVL_BYTES = int(2e9)
NUM_SMS = 24  # of the suite's Config(24, 8, 256) on unshared GPUs (see suite_num_sms)
X_KINDS = ("bf16_rand", "bf16_const", "fp8_f32", "fp8_i32", "fp8_colmajor")
FLOAT_KINDS = ("bf16_rand", "bf16_const", "fp8_f32", "fp8_colmajor")  # combinable after dequant
ERROR_TYPES = (TypeError, ValueError, RuntimeError)
RANDOM_ITERATIONS = 200
RANDOM_BASE_SEED = 20_250


@dataclass(frozen=True)
class Mode:
    """How one dispatch (and the combine after it) is called."""

    config: object = None  # None: the library default
    with_topk: bool = True
    async_finish: bool = False
    prev: bool = False  # pass previous_event=buffer.capture()
    alloc_on_comm: bool = False
    num_biases: int = 0  # combine bias: None, one tensor or a 2-tuple
    alignment: int = 1  # expert_alignment
    num_worst: int = 0  # num_worst_tokens


@dataclass
class Ctx:
    rank: int
    num_ranks: int
    rec: Recorder
    ep: object  # the uccl.ep module
    buffer: object
    config: object  # Config(num_sms, 8, 256)
    num_sms: int = NUM_SMS  # Config fields are not readable from Python


@dataclass
class Scope:
    """Names checks `<prefix>.<what>` and prefixes failure details with their context."""

    ctx: Ctx
    prefix: str
    where: str

    def ok(self, what: str, cond: object, detail: str = "") -> bool:
        return self.ctx.rec.check(f"{self.prefix}.{what}", cond, f"[{self.where}] {detail}")

    def same(self, what: str, actual: object, expected: torch.Tensor) -> bool:
        bad = ref.bitwise_mismatch(actual, expected)
        return self.ok(what, bad is None, bad or "")

    def close(self, what: str, actual: torch.Tensor, expected: torch.Tensor) -> bool:
        if actual.numel() == 0:
            return self.ok(what, True)
        diff = ref.calc_diff(actual, expected)
        far = ~torch.isclose(actual.float(), expected.float(), rtol=1e-2, atol=1e-2)
        num_far = int(far.sum())
        detail = f"calc_diff {diff:.3e} (limit 5e-6); {num_far} of {far.numel()} elements off"
        return self.ok(what, diff < 5e-6 and num_far == 0, detail)


def suite_num_sms(num_ranks: int) -> int:
    """SMs per dispatch / combine: NUM_SMS, or less when ranks share a GPU, so that every
    sharing rank's kernel is resident at once (each rank's blocks wait for its peers')."""
    per_gpu = _dist.ranks_per_gpu(num_ranks)
    if per_gpu <= 1:
        return NUM_SMS
    sms = torch.cuda.get_device_properties(device()).multi_processor_count
    return max(2, min(NUM_SMS, sms // per_gpu // 2 * 2))


def device() -> torch.device:
    """This rank's GPU (set by the launcher)."""
    return torch.device("cuda", torch.cuda.current_device())


def describe(obj: object) -> str:
    if isinstance(obj, torch.Tensor):
        return f"tensor{tuple(obj.shape)} {obj.dtype}"
    if isinstance(obj, (tuple, list)):
        return f"{type(obj).__name__}[{', '.join(describe(o) for o in obj[:6])}]"
    return type(obj).__name__


def gather_world(ctx: Ctx, sc: Scenario) -> ScenarioRef:
    """Makes this rank's inputs of `sc` and all-gathers every rank's (collective)."""
    mine = ref.make_rank_inputs(sc, ctx.rank, ctx.num_ranks, device())
    x, topk_idx, topk_weights = (all_gather_rows(t, ctx.num_ranks) for t in mine)
    return ScenarioRef(sc, ctx.rank, x, topk_idx, topk_weights)


# ----------------------------------------------------------------------------- calls + checks


def stream_kwargs(ctx: Ctx, mode: Mode) -> dict:
    return {
        "previous_event": ctx.buffer.capture() if mode.prev else None,
        "async_finish": mode.async_finish,
        "allocate_on_comm_stream": mode.alloc_on_comm,
    }


def dispatch(ctx: Ctx, world: ScenarioRef, kind: str, mode: Mode, inputs=None, **overrides):
    """get_dispatch_layout + non-cached dispatch of this rank's data (or of `inputs` =
    (x, topk_idx, topk_weights)); returns dispatch's 6-tuple."""
    x, idx, weights = inputs or world.own(kind)
    per_rank, _, per_expert, is_in, _ = ctx.buffer.get_dispatch_layout(idx, world.sc.num_experts)
    kwargs = stream_kwargs(ctx, mode)
    if mode.with_topk:
        kwargs.update(topk_idx=idx, topk_weights=weights)
    kwargs.update(expert_alignment=mode.alignment, num_worst_tokens=mode.num_worst)
    kwargs.update(overrides)
    return ctx.buffer.dispatch(
        x,
        num_tokens_per_rank=per_rank,
        is_token_in_rank=is_in,
        num_tokens_per_expert=per_expert,
        config=mode.config,
        **kwargs,
    )


def combine(ctx: Ctx, world: ScenarioRef, dispatch_out, mode: Mode):
    """Each rank's expert transform of its received rows, then combine.
    Returns (combine's 3-tuple, the biases passed)."""
    recv_x, _, recv_w, _, handle, _ = dispatch_out
    y = ref.expert_transform(ref.as_bf16(recv_x), ctx.rank)
    biases = world.biases(mode.num_biases)
    bias = None if not biases else biases[0] if len(biases) == 1 else biases
    weights = recv_w if mode.with_topk else None
    out = ctx.buffer.combine(
        y, handle, topk_weights=weights, bias=bias, config=mode.config, **stream_kwargs(ctx, mode)
    )
    return out, biases


def settle(scope: Scope, event, async_finish: bool) -> None:
    """Checks the returned EventOverlap and makes the current stream wait for the call."""
    if not async_finish:
        got = getattr(event, "event", "<missing>")
        scope.ok("event", got is None, f"async_finish=False must give event.event None: {got!r}")
        return
    has_event = getattr(event, "event", None) is not None
    scope.ok("event", has_event, f"async_finish=True returned no event: {event!r}")
    if has_event:
        event.current_stream_wait()
    else:
        torch.cuda.synchronize()


def rows_then_prefix(scope: Scope, what: str, actual, expected: torch.Tensor, rows: int) -> None:
    """`actual` must have `rows` rows whose first expected.size(0) equal `expected` bitwise."""
    if not isinstance(actual, torch.Tensor) or actual.dim() == 0 or actual.size(0) != rows:
        scope.ok(what, False, f"got {describe(actual)}, expected {rows} rows")
        return
    scope.same(what, actual[: expected.size(0)], expected)


def check_recv_x(scope: Scope, actual, expected, rows: int, name: str = "recv_x") -> None:
    if not isinstance(expected, tuple):
        rows_then_prefix(scope, name, actual, expected, rows)
        return
    is_pair = isinstance(actual, tuple) and len(actual) == 2
    if not scope.ok(f"{name}_tuple", is_pair, f"expected (fp8, scales), got {describe(actual)}"):
        return
    rows_then_prefix(scope, name, actual[0], expected[0], rows)
    rows_then_prefix(scope, f"{name}_scales", actual[1], expected[1], rows)
    contiguous = isinstance(actual[1], torch.Tensor) and actual[1].is_contiguous()
    scope.ok(f"{name}_scales_contiguous", contiguous, f"{describe(actual[1])} not contiguous")


def check_dispatch(scope: Scope, world: ScenarioRef, kind: str, out, mode: Mode) -> None:
    """Compares a non-cached dispatch result with the reference for this rank."""
    recv_x, recv_idx, recv_w, expert_list, handle, _ = out
    exp = world.expected(scope.ctx.rank)
    rows = mode.num_worst or exp.num_recv
    check_recv_x(scope, recv_x, world.expected_x(kind, scope.ctx.rank), rows)
    prefix = handle[0] if isinstance(handle, (tuple, list)) and handle else handle
    scope.same("rank_prefix_matrix", prefix, exp.rank_prefix_matrix)
    want = [] if mode.num_worst else exp.expert_list(mode.alignment)
    int_list = isinstance(expert_list, list) and all(type(v) is int for v in expert_list)
    detail = f"got {str(expert_list)[:300]}, expected {str(want)[:300]}"
    scope.ok("expert_list", int_list and expert_list == want, detail)
    if not mode.with_topk:
        detail = f"without top-k got {describe(recv_idx)}, {describe(recv_w)}"
        scope.ok("topk_none", recv_idx is None and recv_w is None, detail)
        return
    rows_then_prefix(scope, "recv_topk_idx", recv_idx, exp.recv_topk_idx, rows)
    rows_then_prefix(scope, "recv_topk_weights", recv_w, exp.recv_topk_weights, rows)
    if mode.num_worst and isinstance(recv_idx, torch.Tensor) and recv_idx.size(0) == rows:
        bad = int((recv_idx[exp.num_recv :] != -1).sum())
        scope.ok("worst_tail_idx", bad == 0, f"{bad} entries past the real rows are not -1")


def check_combined(
    scope: Scope, world: ScenarioRef, kind: str, combine_out, biases: tuple, with_weights: bool
) -> torch.Tensor:
    """Compares combine outputs with the reference sum of every rank's returned rows."""
    combined, combined_w, _ = combine_out
    exp_out, exp_w = world.expected_combine(kind, biases, with_weights)
    good = isinstance(combined, torch.Tensor) and combined.dtype == torch.bfloat16
    good = good and combined.shape == exp_out.shape
    if not scope.ok("combined_shape", good, f"got {describe(combined)}, want {describe(exp_out)}"):
        return combined
    scope.close("combined_x", combined, exp_out)
    nowhere = ~world.layouts[scope.ctx.rank].is_token_in_rank.any(1)
    scope.same("combined_nowhere_rows", combined[nowhere], exp_out[nowhere])
    if not with_weights:
        scope.ok("combined_weights_none", combined_w is None, f"got {describe(combined_w)}")
        return combined
    good = isinstance(combined_w, torch.Tensor) and combined_w.shape == exp_w.shape
    if scope.ok("combined_weights_shape", good, f"got {describe(combined_w)}"):
        # For tokens sent anywhere exp_w is the original topk_weights with -1 slots zeroed.
        want = exp_w[~nowhere]
        diff = ref.calc_diff(combined_w[~nowhere].float(), want) if want.numel() else 0.0
        scope.ok("combined_weights", diff < 1e-9, f"calc_diff {diff:.3e} (limit 1e-9)")
    return combined


def combine_and_check(scope: Scope, world: ScenarioRef, kind: str, dispatch_out, mode: Mode):
    out, biases = combine(scope.ctx, world, dispatch_out, mode)
    settle(scope, out[2], mode.async_finish)
    return check_combined(scope, world, kind, out, biases, mode.with_topk)


def run_case(scope: Scope, world: ScenarioRef, kind: str, mode: Mode):
    """Dispatch + checks, then (for float data) combine + checks; returns the dispatch."""
    out = dispatch(scope.ctx, world, kind, mode)
    settle(scope, out[5], mode.async_finish)
    check_dispatch(scope, world, kind, out, mode)
    if kind in FLOAT_KINDS and not mode.num_worst:
        combine_and_check(scope, world, kind, out, mode)
    return out


def expect_error(
    scope: Scope,
    what: str,
    call,
    words: tuple[str, ...] = (),
    types: tuple = ERROR_TYPES,
    allow_empty: bool = False,
) -> None:
    """`call()` must raise one of `types` whose message names one of `words` (if any)."""
    try:
        call()
    except types as exc:
        msg = str(exc)
        named = not words or ref.mentions(msg, words) or (allow_empty and not msg.strip())
        scope.ok(what, named, f"{type(exc).__name__} does not name any of {words}: {msg!r}")
    except Exception as exc:  # noqa: BLE001 - a wrong exception type is a failed check
        names = ", ".join(t.__name__ for t in types)
        scope.ok(what, False, f"raised {type(exc).__name__} (expected {names}): {exc}")
    else:
        torch.cuda.synchronize()
        scope.ok(what, False, "no error raised")


# ----------------------------------------------------------------------------- sections


def check_layout(scope: Scope, world: ScenarioRef, mode: Mode) -> None:
    own = world.layouts[scope.ctx.rank]
    idx, num_experts = world.topk_idx[scope.ctx.rank], world.sc.num_experts
    out = scope.ctx.buffer.get_dispatch_layout(idx, num_experts, **stream_kwargs(scope.ctx, mode))
    if not scope.ok("returns_5", isinstance(out, tuple) and len(out) == 5, describe(out)):
        return
    per_rank, per_rdma, per_expert, is_in, event = out
    settle(scope, event, mode.async_finish)
    scope.same("num_tokens_per_rank", per_rank, own.num_tokens_per_rank)
    scope.ok("num_tokens_per_rdma_rank_none", per_rdma is None, f"got {describe(per_rdma)}")
    scope.same("num_tokens_per_expert", per_expert, own.num_tokens_per_expert)
    scope.same("is_token_in_rank", is_in, own.is_token_in_rank)


def section_layout(ctx: Ctx, worlds: list[ScenarioRef]) -> None:
    for world in worlds:
        for async_finish in (False, True):
            scope = Scope(ctx, "layout", f"{world.sc.name} async={async_finish}")
            check_layout(scope, world, Mode(async_finish=async_finish, prev=async_finish))


def section_sweep(ctx: Ctx, world: ScenarioRef) -> None:
    flags = [(t, a, p) for t in (True, False) for a in (False, True) for p in (False, True)]
    for kind in X_KINDS:
        for with_topk, async_finish, prev in flags:
            mode = Mode(ctx.config, with_topk, async_finish, prev)
            where = f"{world.sc.name} topk={with_topk} async={async_finish} prev={prev}"
            run_case(Scope(ctx, f"sweep[{kind}]", where), world, kind, mode)
    run_case(Scope(ctx, "default_config", world.sc.name), world, "bf16_rand", Mode(None))


def section_alignment(ctx: Ctx, world: ScenarioRef) -> None:
    for alignment in (1, 4, 128):
        scope = Scope(ctx, f"alignment[{alignment}]", world.sc.name)
        run_case(scope, world, "bf16_rand", Mode(ctx.config, alignment=alignment))


def section_raw_dtypes(ctx: Ctx, world: ScenarioRef) -> None:
    """Rows of any element type move as raw bytes (as in DeepEP): float32, float16, float8
    without scales, uint8 with float32 scales; non-cached (sync and async) and cached."""
    rows = world.expected(ctx.rank).num_recv
    for kind in ref.RAW_KINDS:
        for async_finish in (False, True):
            scope = Scope(ctx, f"raw_dtype[{kind}]", f"{world.sc.name} async={async_finish}")
            first = run_case(scope, world, kind, Mode(ctx.config, async_finish=async_finish))
        scope = Scope(ctx, f"raw_dtype[{kind}]", f"{world.sc.name} cached")
        cached_dispatch(scope, world.inputs(kind, ctx.rank), first[4], first[0], rows, False)


def section_worst(ctx: Ctx, small: ScenarioRef, big: ScenarioRef) -> None:
    for world, kind in ((small, "bf16_rand"), (small, "fp8_f32"), (big, "bf16_rand")):
        worst_case(ctx, world, kind)


def worst_case(ctx: Ctx, world: ScenarioRef, kind: str) -> None:
    """num_worst_tokens: padded outputs whose prefixes equal the exact dispatch."""
    scope = Scope(ctx, f"worst[{kind}]", world.sc.name)
    exact = run_case(scope, world, kind, Mode(ctx.config))
    num_worst = max(world.sc.tokens) * ctx.num_ranks
    worst = run_case(scope, world, kind, Mode(ctx.config, num_worst=num_worst))
    check_recv_x(scope, worst[0], exact[0], num_worst, name="recv_x_vs_exact")
    scope.same("rank_prefix_matrix_vs_exact", worst[4][0], exact[4][0])


def cached_dispatch(scope: Scope, x, handle, expected, rows: int, async_finish: bool) -> None:
    ctx = scope.ctx
    out = ctx.buffer.dispatch(x, handle=handle, config=ctx.config, async_finish=async_finish)
    good = isinstance(out, tuple) and len(out) == 6 and all(v is None for v in out[1:5])
    if scope.ok("returns", good, f"expected (recv_x, None x4, event), got {describe(out)}"):
        settle(scope, out[5], async_finish)
        check_recv_x(scope, out[0], expected, rows, name="cached_recv_x")


def section_cached(ctx: Ctx, world: ScenarioRef) -> None:
    mode, rows = Mode(ctx.config), world.expected(ctx.rank).num_recv
    for kind in ("bf16_rand", "fp8_f32", "fp8_colmajor"):
        scope = Scope(ctx, f"cached[{kind}]", world.sc.name)
        first = run_case(scope, world, kind, mode)
        for repeat in range(3):  # the handle three times in a row, the last one async
            x = world.inputs(kind, ctx.rank)
            cached_dispatch(scope, x, first[4], first[0], rows, async_finish=repeat == 2)
        if kind == "bf16_rand":  # other data through the handle (combine's backward)
            scope = Scope(ctx, f"cached[{kind}]", f"{world.sc.name} bf16_const data")
            x = world.inputs("bf16_const", ctx.rank)
            expected = world.expected_x("bf16_const", ctx.rank)
            cached_dispatch(scope, x, first[4], expected, rows, async_finish=False)
            once = combine_and_check(scope, world, kind, first, mode)
            twice = combine_and_check(scope, world, kind, first, mode)
            scope.same("combine_repeat_identical", twice, once)


def section_combine(ctx: Ctx, world: ScenarioRef) -> None:
    out = run_case(Scope(ctx, "combine", world.sc.name), world, "bf16_rand", Mode(ctx.config))
    for num_biases in (0, 1, 2):
        scope = Scope(ctx, f"combine[bias={num_biases}]", world.sc.name)
        combine_and_check(scope, world, "bf16_rand", out, Mode(ctx.config, num_biases=num_biases))
    scope = Scope(ctx, "combine[no_weights]", world.sc.name)
    combine_and_check(scope, world, "bf16_rand", out, Mode(ctx.config, with_topk=False))


def section_edges(ctx: Ctx, worlds: list[ScenarioRef]) -> None:
    for world in worlds:
        sc, scope = world.sc, Scope(ctx, f"edge[{world.sc.name}]", "setup")
        sent = [int(lay.num_tokens_per_rank.sum()) for lay in world.layouts]
        recv = torch.stack([lay.num_tokens_per_rank for lay in world.layouts]).sum(0).tolist()
        if sc.silent_rank is not None:  # the scenario itself must have the property
            scope.ok("silent_rank_sends_nothing", sent[sc.silent_rank] == 0, f"sent {sent}")
        if sc.unpicked_rank is not None:
            scope.ok("unpicked_rank_gets_nothing", recv[sc.unpicked_rank] == 0, f"recv {recv}")
        for kind in ("bf16_rand", "fp8_f32"):
            scope = Scope(ctx, f"edge[{sc.name}]", f"{kind} sent={sent} recv={recv}")
            run_case(scope, world, kind, Mode(ctx.config, num_biases=2))


def random_case(it: int, num_ranks: int) -> tuple[Scenario, str, tuple[int, int]]:
    """Iteration `it`'s scenario, input kind and (num_sms, nvl_send); same on every rank."""
    rng = random.Random(RANDOM_BASE_SEED + it)
    tokens = [
        rng.choice((0, 1)) if rng.random() < 0.15 else rng.randint(2, 700) for _ in range(num_ranks)
    ]
    sc = Scenario(
        name=f"random{it}",
        tokens=tuple(tokens),
        hidden=rng.choice((1024, 2048)),
        num_experts=rng.choice((64, 128, 256)),
        num_topk=rng.randint(1, 8),
        seed=RANDOM_BASE_SEED + 7 * it,  # data: this base seed + rank offset
        drop_prob=rng.choice((0.0, 0.1, 0.3)),
        empty_row_prob=rng.choice((0.0, 0.05, 0.2)),
        silent_rank=rng.choice([None, None, None, rng.randrange(num_ranks)]),
        unpicked_rank=rng.choice([None, None, None, rng.randrange(num_ranks)]),
    )
    kind = "bf16_rand" if it % 2 == 0 else "fp8_f32"
    return sc, kind, (rng.choice((2, 10, 24)), rng.choice((1, 4, 8, 16)))


def section_random(ctx: Ctx) -> None:
    for it in range(RANDOM_ITERATIONS):
        sc, kind, (num_sms, nvl_send) = random_case(it, ctx.num_ranks)
        num_sms = min(num_sms, ctx.num_sms)
        config = ctx.ep.Config(num_sms, nvl_send, 256)
        mode = Mode(config, async_finish=it % 3 == 1, num_biases=it % 3)
        where = (
            f"iter {it} tokens={sc.tokens} hidden={sc.hidden} E={sc.num_experts} "
            f"k={sc.num_topk} {kind} Config({num_sms}, {nvl_send}, 256) "
            f"async={mode.async_finish} biases={mode.num_biases}"
        )
        run_case(Scope(ctx, "random", where), gather_world(ctx, sc), kind, mode)


def section_destroy(ctx: Ctx) -> None:
    scope = Scope(ctx, "destroy", "end")
    ctx.buffer.destroy()
    scope.ok("first", True)
    expect_error(scope, "second_raises", ctx.buffer.destroy, types=(Exception,))


# ----------------------------------------------------------------------------- driver


def scenarios(num_ranks: int) -> dict[str, Scenario]:
    """The fixed scenarios: varying token counts per rank, some all -1 rows everywhere."""
    ranks = range(num_ranks)
    big = tuple((4096, 3000, 4096, 1234)[r % 4] for r in ranks)
    small = tuple((1500, 4096, 700, 2900)[r % 4] for r in ranks)
    zero = tuple(0 if r == 1 else 600 for r in ranks)
    return {
        "big": Scenario("h7168_e256", big, 7168, 256, seed=1),
        "small": Scenario("h2048_e64", small, 2048, 64, seed=2),
        "silent": Scenario(
            "silent0_unpicked_last",
            (512,) * num_ranks,
            1024,
            64,
            seed=3,
            empty_row_prob=0.1,
            silent_rank=0,
            unpicked_rank=num_ranks - 1,
        ),
        "zero": Scenario("zero_tokens_on_rank1", zero, 1024, 256, seed=4),
        "empty": Scenario(
            "all_rows_empty", (300,) * num_ranks, 1024, 64, seed=5, empty_row_prob=1.0
        ),
    }


def run_section(ctx: Ctx, name: str, fn) -> bool:
    """Runs one section and records `<name>.completed` (_dist.run_section)."""
    return _dist.run_section(
        ctx.rec, ctx.rank, f"{name}.completed", f"[intranode] section {name}", fn
    )


def make_buffer(ep, num_ranks: int):
    group = dist.new_group(list(range(num_ranks)))
    return ep.Buffer(
        group,
        num_nvl_bytes=NVL_BYTES,
        num_rdma_bytes=0,
        low_latency_mode=False,
        num_qps_per_rank=1,
        explicitly_destroy=True,
    )


def section_setup(ctx: Ctx, worlds: dict[str, ScenarioRef]) -> None:
    """Builds the buffer and every fixed scenario's gathered inputs (all collective)."""
    ctx.buffer = make_buffer(ctx.ep, ctx.num_ranks)
    worlds.update({key: gather_world(ctx, sc) for key, sc in scenarios(ctx.num_ranks).items()})


def section_probe(ctx: Ctx) -> None:
    """A small dispatch + combine after a section raised: is the buffer still usable?"""
    world = gather_world(ctx, Scenario("probe", (64,) * ctx.num_ranks, 1024, 64, seed=99))
    run_case(Scope(ctx, "probe", "after a section raised"), world, "bf16_rand", Mode(ctx.config))


def run_suite(rank: int, num_ranks: int, rec: Recorder) -> None:
    """The whole intranode suite on one rank (the launcher body)."""
    # A stuck collective should fail well before the launcher deadline; a user value wins.
    os.environ.setdefault("UCCL_EP_TIMEOUT_SECS", "60")
    from uccl import ep

    num_sms = suite_num_sms(num_ranks)
    if num_sms != NUM_SMS:  # shared GPUs: the library's default configs must fit as well
        ep.Buffer.set_num_sms(num_sms)
    ctx = Ctx(rank, num_ranks, rec, ep, None, ep.Config(num_sms, 8, 256), num_sms)
    w: dict[str, ScenarioRef] = {}  # filled by the setup section
    sections = [
        ("setup", lambda: section_setup(ctx, w)),
        ("api", lambda: api_section.section_api(ctx)),
        ("layout", lambda: section_layout(ctx, list(w.values()))),
        ("sweep_small", lambda: section_sweep(ctx, w["small"])),
        ("sweep_big", lambda: section_sweep(ctx, w["big"])),
        ("alignment", lambda: section_alignment(ctx, w["small"])),
        ("raw_dtypes", lambda: section_raw_dtypes(ctx, w["small"])),
        ("worst", lambda: section_worst(ctx, w["small"], w["big"])),
        ("cached", lambda: section_cached(ctx, w["small"])),
        ("combine", lambda: [section_combine(ctx, w[key]) for key in ("small", "big")]),
        ("determinism", lambda: determinism_section.section_determinism(ctx, w["big"])),
        ("tensor_forms", lambda: tensor_forms_section.section_tensor_forms(ctx, w["small"])),
        ("edges", lambda: section_edges(ctx, [w[key] for key in ("silent", "zero", "empty")])),
        ("stream_drop_references", lambda: stream_section.stream_drop_references(ctx, w["small"])),
        ("stream_previous_event", lambda: stream_section.stream_previous_event(ctx, w["small"])),
        (
            "stream_sync_event_chain",
            lambda: stream_section.stream_sync_event_chain(ctx, w["small"]),
        ),
        ("stream_alloc_on_comm", lambda: stream_section.stream_alloc_on_comm(ctx, w["small"])),
        (
            "stream_alloc_on_comm_rejected",
            lambda: stream_section.stream_alloc_on_comm_rejected(ctx, w["small"]),
        ),
        ("random", lambda: section_random(ctx)),
        ("graphs", lambda: graph_section.section_graphs(ctx, w["small"])),
        ("bad_input", lambda: bad_input_section.section_bad_inputs(ctx, w["small"])),
        ("destroy", lambda: section_destroy(ctx)),
    ]
    probe = partial(section_probe, ctx)
    for name, fn in sections:
        if run_section(ctx, name, fn):
            continue
        # The failure is recorded; go on only while the buffer still works on every rank.
        usable = name not in ("setup", "destroy") and run_section(ctx, "probe", probe)
        if not usable:
            rec.check("suite.not_aborted", False, f"stopped after section {name!r} raised")
            return


if __name__ == "__main__":
    sys.exit(run_under_torchrun(run_suite))
