"""Bad-argument checks of the intranode suite: each bad call raises a clear error naming the
argument (all ranks make the same calls; the communicating ones come last)."""

from __future__ import annotations

from functools import partial

import torch

try:
    from . import intranode_suite as suite
except ImportError:  # run as a script
    import intranode_suite as suite


def section_bad_inputs(ctx, world) -> None:
    """Bad arguments raise a clear error naming the argument (all ranks do the same)."""
    b, cfg, num_experts = ctx.buffer, ctx.config, world.sc.num_experts
    other = ctx.ep.Config(max(2, ctx.num_sms - 14), 8, 256)  # num_sms differs from the dispatch's
    x, idx, w = world.own("bf16_rand")
    per_rank, _, per_expert, is_in, _ = b.get_dispatch_layout(idx, num_experts)
    lay = {"num_tokens_per_rank": per_rank, "is_token_in_rank": is_in, "config": cfg}
    full = {**lay, "num_tokens_per_expert": per_expert, "topk_idx": idx, "topk_weights": w}
    handle = b.dispatch(x, **full)[4]
    y = suite.ref.expert_transform(b.dispatch(x, handle=handle, config=cfg)[0], ctx.rank)
    scales = torch.ones(x.size(0), max(x.size(1) // 128, 1), device=x.device)
    int_idx = {**full, "topk_idx": idx.int()}
    no_weights = {**full, "topk_weights": None}
    bad_experts = {**lay, "num_tokens_per_expert": torch.cat([per_expert, per_expert[:1]])}
    cached_topk = {"handle": handle, "topk_idx": idx, "topk_weights": w, "config": cfg}
    layout, dispatch_, combine_ = b.get_dispatch_layout, b.dispatch, b.combine
    cases = [  # (check, words the message must name one of, call); communicating ones last
        ("layout_topk_idx_int32", "topk_idx", partial(layout, idx.int(), num_experts)),
        ("layout_num_experts_indivisible", "num_experts", partial(layout, idx, num_experts + 1)),
        ("dispatch_bf16_with_scales", "x", partial(dispatch_, (x, scales), **full)),
        ("dispatch_x_12_byte_rows", "x", partial(dispatch_, x[:, :3].float().contiguous(), **full)),
        ("dispatch_topk_idx_int32", "topk_idx", partial(dispatch_, x, **int_idx)),
        ("dispatch_without_weights", "topk_weights topk_idx", partial(dispatch_, x, **no_weights)),
        (
            "dispatch_num_experts_indivisible",
            "num_experts num_tokens_per_expert",
            partial(dispatch_, x, **bad_experts),
        ),
        ("cached_dispatch_with_topk", "topk_idx handle", partial(dispatch_, x, **cached_topk)),
        ("combine_x_float32", "x", partial(combine_, y.float(), handle, config=cfg)),
        ("combine_num_sms_mismatch", "num_sms config", partial(combine_, y, handle, config=other)),
        (
            "cached_dispatch_num_sms_mismatch",
            "num_sms config",
            partial(dispatch_, x, handle=handle, config=other),
        ),
    ]
    for what, words, call in cases:
        suite.expect_error(
            suite.Scope(ctx, "bad_input", world.sc.name), what, call, tuple(words.split())
        )
