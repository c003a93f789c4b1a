"""Checks of the low-latency GPU suite: the forms of what a dispatch or combine returned and
their contents against the pure-torch reference (ll_reference.py). Every check is recorded
through a suite Scope."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

try:
    from . import intranode_suite as intranode
    from . import ll_reference as ref
    from .ll_reference import World
except ImportError:  # run as a script: the siblings are importable from sys.path[0]
    import intranode_suite as intranode
    import ll_reference as ref
    from ll_reference import World

if TYPE_CHECKING:
    from .low_latency_suite import CombineMode, Ctx, Scope


def device() -> torch.device:
    """This rank's GPU (set by the launcher)."""
    return torch.device("cuda", torch.cuda.current_device())


def describe(obj: object) -> str:
    return intranode.describe(obj)


# ----------------------------------------------------------------------------- calls


def form_problem(what: str, t: Any, dtype: torch.dtype, shape: tuple) -> list:
    """[] when `t` is a `dtype` tensor of `shape`, else [what is wrong]."""
    if isinstance(t, torch.Tensor) and t.dtype == dtype and tuple(t.shape) == shape:
        return []
    return [f"{what}: got {describe(t)}, want {shape} {dtype}"]


def recv_x_problems(ctx: Ctx, fmt: str, recv_x: Any, hidden: int) -> list:
    """recv_x: bf16 [E, N, H], or (fp8 [E, N, H], scales) with float32 [E, N, H/128] (int32
    [E, N, H/512] with UE8M0) scales of strides (N * S, 1, N)."""
    shape = (ctx.experts_per_rank, ctx.num_ranks * ctx.t, hidden)
    if not ref.is_fp8(fmt):
        return form_problem("recv_x", recv_x, torch.bfloat16, shape)
    if not (isinstance(recv_x, tuple) and len(recv_x) == 2):
        return [f"recv_x: got {describe(recv_x)}, want (fp8 data, scales)"]
    problems = form_problem("recv_x[0]", recv_x[0], torch.float8_e4m3fn, shape)
    ue8m0 = ref.FORMATS[fmt].get("use_ue8m0", False)
    groups = hidden // (ref.GROUP * (ref.UE8M0_PACK if ue8m0 else 1))
    scale_dtype = torch.int32 if ue8m0 else torch.float32
    scales = recv_x[1]
    problems += form_problem("recv_x[1]", scales, scale_dtype, shape[:2] + (groups,))
    want = (shape[1] * groups, 1, shape[1])
    if isinstance(scales, torch.Tensor) and tuple(scales.stride()) != want:
        problems.append(f"recv_x[1] strides {tuple(scales.stride())}, want {want}")
    return problems


def handle_problems(ctx: Ctx, handle: Any, hidden: int) -> list:
    """handle = (src_info int32 [E, N], layout_range int64 [E, R], T, H, num_experts)."""
    if not (isinstance(handle, tuple) and len(handle) == 5):
        return [f"handle: got {describe(handle)}, want a 5-tuple"]
    num_experts, num_rows = ctx.experts_per_rank, ctx.num_ranks * ctx.t
    problems = form_problem("handle[0]", handle[0], torch.int32, (num_experts, num_rows))
    problems += form_problem("handle[1]", handle[1], torch.int64, (num_experts, ctx.num_ranks))
    want = (ctx.t, hidden, ctx.num_experts)
    if tuple(handle[2:]) != want:
        problems.append(f"handle[2:] {tuple(handle[2:])}, want {want}")
    return problems


def check_dispatch(
    scope: Scope, world: World, fmt: str, recv_x: Any, recv_count: Any, handle: Any
) -> bool:
    """Forms, counts, per-(expert, source) blocks, token multisets and row data of a dispatch
    against the reference; returns whether every check passed."""
    ctx, hidden = scope.ctx, world.case.hidden
    problems = recv_x_problems(ctx, fmt, recv_x, hidden)
    problems += form_problem("recv_count", recv_count, torch.int32, (ctx.experts_per_rank,))
    problems += handle_problems(ctx, handle, hidden)
    if not scope.ok("forms", not problems, "; ".join(problems)):
        return False
    expected = world.routing
    good = scope.same("recv_count", recv_count.cpu(), expected.counts.int())
    counts = handle[1].cpu() & ref.LOW32
    good = scope.same("layout_counts", counts, expected.pair_counts) and good
    blocks, why = ref.decode_layout(handle[1], recv_count, handle[0], ctx.t)
    if not scope.ok("layout_blocks", blocks is not None, why):
        return False
    same = torch.equal(blocks.keys, expected.keys)
    why = "" if same else ref.mismatched_keys(blocks.keys, expected.keys, ctx.num_ranks, ctx.t)
    if not scope.ok("src_info", same, why):
        return False
    return check_rows(scope, world, fmt, recv_x, blocks) and good


def check_rows(scope: Scope, world: World, fmt: str, recv_x: Any, blocks: ref.Blocks) -> bool:
    """Every valid row equals its source token's row: BF16 bitwise; FP8 data and scales equal
    the reference quantisation (bitwise with power-of-two scales; otherwise scales within
    3e-7 relative and E4M3 codes off by at most one on a tiny fraction, for arithmetic that
    rounds amax / 448 differently)."""
    dev = device()
    expert, row = blocks.expert.to(dev), blocks.row.to(dev)
    flat = (blocks.src * world.t + blocks.token).to(dev)
    expected = world.rows(fmt)
    if not ref.is_fp8(fmt):
        return scope.same("rows", recv_x[expert, row], expected[flat])
    data, scales = recv_x
    got_codes = data.view(torch.uint8)[expert, row]
    want_codes = expected[0].view(torch.uint8)[flat]
    got_scales, want_scales = scales[expert, row], expected[1][flat]
    if ref.FORMATS[fmt].get("round_scale", False):
        good = scope.same("rows_fp8", got_codes, want_codes)
        return scope.same("rows_scales", got_scales, want_scales) and good
    rel = (got_scales - want_scales).abs() / want_scales
    num_bad = int((~(rel <= 3e-7)).sum())
    detail = f"{num_bad} of {rel.numel()} scales differ by more than 3e-7 relative"
    good = scope.ok("rows_scales", num_bad == 0, detail)
    diff = (got_codes.to(torch.int16) - want_codes.to(torch.int16)).abs()
    num_diff, num_far = int((diff != 0).sum()), int((diff > 1).sum())
    limit = max(8, diff.numel() // 10_000)
    detail = (
        f"{num_diff} of {diff.numel()} E4M3 codes differ (limit {limit}), {num_far} by more than 1"
    )
    return scope.ok("rows_fp8", num_far == 0 and num_diff <= limit, detail) and good


def check_combined(scope: Scope, world: World, fmt: str, mode: CombineMode, combined: Any) -> None:
    """combined_x against the reference: calc_diff < 1e-5 and elementwise within 2e-2 (two bf16
    roundings: the dequantised expert rows and the sum), tokens
    routed nowhere exactly zero; identity experts also DeepEP's check against the original x
    (calc_diff < 1e-5 BF16, < 9e-4 FP8; not with power-of-two scales, as DeepEP)."""
    x, idx, weights = world.own()
    problems = form_problem("combined_x", combined, torch.bfloat16, tuple(x.shape))
    if not scope.ok("combined_form", not problems, "; ".join(problems)):
        return
    if x.size(0) == 0:
        return
    num_nan = int(torch.isnan(combined).sum())
    scope.ok(
        "combined_no_nan", num_nan == 0, f"{num_nan} NaN elements (a row past recv_count read?)"
    )
    factors = scope.ctx.factors(mode.expert)
    want = world.combined(fmt, factors, mode.use_logfmt)
    diff = ref.calc_diff(combined, want)
    far = ~torch.isclose(combined.float(), want.float(), rtol=2e-2, atol=1e-6)
    num_far = int(far.sum())
    # LogFMT: the kernel's float32 log grid may put a value one level (< 4.5 %) off the
    # reference's; such values stay rare.
    far_limit = far.numel() // 1000 if mode.use_logfmt else 0
    detail = f"calc_diff {diff:.3e} (limit 1e-5); {num_far} of {far.numel()} elements off"
    scope.ok("combined_x", diff < 1e-5 and num_far <= far_limit, detail)
    if mode.use_logfmt:  # DeepEP's LogFMT check, against the BF16 combine
        exact = world.combined(fmt, factors)
        diff = ref.calc_diff(combined, exact)
        scope.ok("combined_logfmt_vs_bf16", diff < 9e-4, f"calc_diff {diff:.3e} (limit 9e-4)")
    nowhere = (idx < 0).all(1)
    num_bad = int((combined[nowhere] != 0).sum())
    scope.ok(
        "combined_nowhere_zero", num_bad == 0, f"{num_bad} nonzero values in rows routed nowhere"
    )
    if mode.expert == "identity" and not ref.FORMATS[fmt].get("round_scale", False):
        limit = 9e-4 if ref.is_fp8(fmt) or mode.use_logfmt else 1e-5
        diff = ref.calc_diff(combined, ref.identity_combine_reference(x, idx, weights))
        scope.ok("combined_vs_x", diff < limit, f"calc_diff {diff:.3e} (limit {limit:g})")
