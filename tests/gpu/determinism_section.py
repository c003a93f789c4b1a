"""Determinism section of the intranode suite (semantics checklist item 72): identical calls
give bit-identical results, run after run: dispatch rows, top-k, the whole handle, cached
dispatch rows, combine sums and combined weights."""

from __future__ import annotations

import torch

try:
    from . import intranode_suite as suite
except ImportError:  # run as a script
    import intranode_suite as suite

RERUNS = 20


def tensors_of(name: str, value: object) -> dict[str, torch.Tensor]:
    """The tensors in `value` (a tensor, or a tuple / list of them and other things), cloned
    (a later call may reuse the memory), named `name`, `name[i]`."""
    if isinstance(value, torch.Tensor):
        return {name: value.clone()}
    if isinstance(value, (tuple, list)):
        out = {}
        for i, item in enumerate(value):
            out.update(tensors_of(f"{name}[{i}]", item))
        return out
    return {}


def one_run(ctx, world, kind: str, mode) -> tuple[dict[str, torch.Tensor], list]:
    """Dispatch, cached dispatch and combine of `kind`; every tensor they return, and the
    per-expert count list."""
    out = suite.dispatch(ctx, world, kind, mode)
    recv_x, recv_idx, recv_w, counts, handle, _ = out
    cached = ctx.buffer.dispatch(world.own(kind)[0], handle=handle, config=mode.config)[0]
    (combined, combined_w, _), _ = suite.combine(ctx, world, out, mode)
    run = {}
    for name, value in (
        ("recv_x", recv_x),
        ("recv_topk_idx", recv_idx),
        ("recv_topk_weights", recv_w),
        ("handle", handle),
        ("cached_recv_x", cached),
        ("combined_x", combined),
        ("combined_topk_weights", combined_w),
    ):
        run.update(tensors_of(name, value))
    return run, counts


def section_determinism(ctx, world) -> None:
    """RERUNS identical dispatch + cached dispatch + combine calls per kind; every result
    must equal the first run's bit for bit."""
    mode = suite.Mode(ctx.config, num_biases=1)
    for kind in ("bf16_rand", "fp8_f32"):
        scope = suite.Scope(ctx, f"determinism[{kind}]", f"{world.sc.name}, {RERUNS} reruns")
        first, first_counts = one_run(ctx, world, kind, mode)
        scope.ok("has_outputs", len(first) >= 7, f"only {sorted(first)} returned tensors")
        for it in range(1, RERUNS):
            run, counts = one_run(ctx, world, kind, mode)
            scope.ok("same_tensors", run.keys() == first.keys(), f"rerun {it}: {sorted(run)}")
            scope.ok("expert_list", counts == first_counts, f"rerun {it}: {counts}")
            for name in first.keys() & run.keys():
                bad = suite.ref.bitwise_mismatch(run[name], first[name])
                scope.ok(name, bad is None, f"rerun {it}: {bad}")
