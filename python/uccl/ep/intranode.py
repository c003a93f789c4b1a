"""The intranode mode: the bodies of Buffer.get_dispatch_layout / dispatch / combine (output
allocation and the native calls on ``_C.IntranodeOps``).

Tensor shapes: T tokens of this rank, N received rows, H hidden, S scales, K top-k,
R ranks, C = config.num_sms // 2 channels, E experts.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import torch

from .utils import EventOverlap, StreamScope

_HANDLE_FIELDS = (
    "rank_prefix_matrix",
    "channel_prefix_matrix",
    "recv_channel_prefix_matrix",
    "recv_src_idx",
    "is_token_in_rank",
    "send_head",
)


def _split_x(x: Any) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    if isinstance(x, tuple):
        if len(x) != 2:
            raise ValueError(f"x as a tuple must be (data, scales), got {len(x)} items")
        return x[0], x[1]
    return x, None


def _check_tensor(t: Any, name: str) -> None:
    if t is not None and not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(t).__name__}")


def _unpack_handle(handle: Any) -> tuple:
    """The handle's 6 tensors as a tuple; a list of them works too (DeepEP unpacks any sequence)."""
    is_sequence = isinstance(handle, (tuple, list))
    if not is_sequence or len(handle) != len(_HANDLE_FIELDS):
        got = f"{len(handle)} items" if is_sequence else type(handle).__name__
        raise ValueError(
            "handle must be the 6-tuple returned by an intranode dispatch "
            f"({', '.join(_HANDLE_FIELDS)}), got {got}"
        )
    handle = tuple(handle)
    for t, name in zip(handle, _HANDLE_FIELDS):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"handle field {name} must be a torch.Tensor, got {type(t).__name__}")
    return handle


def _empty(shape: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # Sizes as separate arguments: ~30 % less host time than a shape tuple (torch 2.11).
    return torch.empty(*shape, dtype=dtype, device=device)


def _alloc_recv_x(n: int, data: torch.Tensor, scales: Optional[torch.Tensor]) -> tuple:
    """Received rows [n, H] of the data's dtype, and [n, S] scales of the scales' dtype."""
    recv_x = _empty((n, data.shape[1]), data.dtype, data.device)
    recv_scales = (
        None if scales is None else _empty((n, scales.shape[1]), scales.dtype, data.device)
    )
    return recv_x, recv_scales


def dispatch_layout(
    runtime: Any,
    scope: StreamScope,
    topk_idx: Any,
    num_experts: int,
    num_ranks: int,
    num_nodes: int = 1,
) -> tuple:
    """get_dispatch_layout: counts per rank, per node (when the ranks span ``num_nodes`` > 1
    NVLink domains; else None) and per expert, and the token-to-rank map."""
    if not isinstance(topk_idx, torch.Tensor):
        raise TypeError(f"topk_idx must be a torch.Tensor, got {type(topk_idx).__name__}")
    dev = topk_idx.device
    per_rank = _empty((num_ranks,), torch.int32, dev)
    per_node = _empty((num_nodes,), torch.int32, dev) if num_nodes > 1 else None
    per_expert = _empty((max(int(num_experts), 0),), torch.int32, dev)
    in_rank = _empty((topk_idx.size(0), num_ranks), torch.bool, dev)
    runtime.get_dispatch_layout(
        topk_idx=topk_idx,
        num_experts=int(num_experts),
        num_tokens_per_rank=per_rank,
        num_tokens_per_rdma_rank=per_node,
        num_tokens_per_expert=per_expert,
        is_token_in_rank=in_rank,
        stream=scope.stream_handle,
    )
    event = scope.finish((topk_idx, per_rank, per_node, per_expert, in_rank))
    return per_rank, per_node, per_expert, in_rank, event


def fresh_dispatch(
    num_ranks: int,
    ops: Any,
    scope: StreamScope,
    x: Any,
    num_tokens_per_rank: Optional[torch.Tensor],
    is_token_in_rank: Optional[torch.Tensor],
    num_tokens_per_expert: Optional[torch.Tensor],
    topk_idx: Optional[torch.Tensor],
    topk_weights: Optional[torch.Tensor],
    expert_alignment: int,
    num_worst_tokens: int,
    config: Any,
) -> tuple:
    """Non-cached dispatch: count exchange (notify), allocation, then the dispatch kernel."""
    data, scales = _split_x(x)
    for t, name in (
        (data, "x"),
        (scales, "x scales"),
        (num_tokens_per_rank, "num_tokens_per_rank"),
        (is_token_in_rank, "is_token_in_rank"),
        (num_tokens_per_expert, "num_tokens_per_expert"),
        (topk_idx, "topk_idx"),
        (topk_weights, "topk_weights"),
    ):
        _check_tensor(t, name)
    for t, name in (
        (num_tokens_per_rank, "num_tokens_per_rank"),
        (is_token_in_rank, "is_token_in_rank"),
        (num_tokens_per_expert, "num_tokens_per_expert"),
    ):
        if t is None:
            raise ValueError(f"{name} is required without a handle (from get_dispatch_layout)")
    if data is None:
        raise ValueError("x is required")
    r, c = num_ranks, config.num_sms // 2
    dev = data.device
    # Everything that does not depend on the received count is allocated before the host waits
    # for it: after the wait, the GPU idles until the dispatch kernel is launched.
    rank_prefix = _empty((r, r), torch.int32, dev)
    channel_prefix = _empty((r, max(c, 0)), torch.int32, dev)
    recv_channel_prefix = _empty((r, max(c, 0)), torch.int32, dev)
    send_head = _empty((data.shape[0] if data.dim() else 0, r), torch.int32, dev)

    inputs = dict(
        x=data,
        x_scales=scales,
        topk_idx=topk_idx,
        topk_weights=topk_weights,
        is_token_in_rank=is_token_in_rank,
        rank_prefix_matrix=rank_prefix,
        channel_prefix_matrix=channel_prefix,
        num_experts=num_tokens_per_expert.size(0),
        num_worst_tokens=int(num_worst_tokens),
        config=config,
    )
    num_recv, per_expert = ops.notify_dispatch(
        num_tokens_per_rank=num_tokens_per_rank,
        num_tokens_per_expert=num_tokens_per_expert,
        expert_alignment=int(expert_alignment),
        stream=scope.stream_handle,
        **inputs,
    )
    n = num_recv if num_worst_tokens == 0 else int(num_worst_tokens)
    recv_x, recv_scales = _alloc_recv_x(n, data, scales)
    recv_topk_idx = recv_topk_weights = None
    if topk_idx is not None:
        recv_topk_idx = _empty((n, topk_idx.shape[1]), topk_idx.dtype, dev)
        recv_topk_weights = _empty((n, topk_idx.shape[1]), torch.float32, dev)
    recv_src_idx = _empty((n,), torch.int32, dev)
    ops.dispatch(
        recv_x=recv_x,
        recv_x_scales=recv_scales,
        recv_topk_idx=recv_topk_idx,
        recv_topk_weights=recv_topk_weights,
        recv_src_idx=recv_src_idx,
        recv_channel_prefix_matrix=recv_channel_prefix,
        send_head=send_head,
        stream=scope.stream_handle,
        **inputs,
    )
    handle = (
        rank_prefix,
        channel_prefix,
        recv_channel_prefix,
        recv_src_idx,
        is_token_in_rank,
        send_head,
    )
    event = scope.finish(
        (data, scales, topk_idx, topk_weights, num_tokens_per_rank, num_tokens_per_expert)
        + (recv_x, recv_scales, recv_topk_idx, recv_topk_weights)
        + handle
    )
    recv = (recv_x, recv_scales) if scales is not None else recv_x
    expert_list: List[int] = list(per_expert) if num_worst_tokens == 0 else []
    return recv, recv_topk_idx, recv_topk_weights, expert_list, handle, event


def cached_dispatch(
    ops: Any, scope: StreamScope, x: Any, handle: Any, config: Any, num_worst_tokens: int
) -> tuple:
    """Dispatch reusing a handle's layout: no count exchange, no host synchronisation. The row
    count comes from the handle, so ``num_worst_tokens`` is ignored, as in DeepEP V1."""
    del num_worst_tokens
    rank_prefix, channel_prefix, _, recv_src_idx, is_token_in_rank, _ = _unpack_handle(handle)
    data, scales = _split_x(x)
    _check_tensor(data, "x")
    _check_tensor(scales, "x scales")
    if data is None:
        raise ValueError("x is required")
    n = recv_src_idx.shape[0]
    recv_x, recv_scales = _alloc_recv_x(n, data, scales)
    ops.dispatch(
        x=data,
        x_scales=scales,
        is_token_in_rank=is_token_in_rank,
        rank_prefix_matrix=rank_prefix,
        channel_prefix_matrix=channel_prefix,
        cached=True,
        config=config,
        recv_x=recv_x,
        recv_x_scales=recv_scales,
        stream=scope.stream_handle,
    )
    event = scope.finish((data, scales, recv_x, recv_scales) + tuple(handle))
    recv = (recv_x, recv_scales) if scales is not None else recv_x
    return recv, None, None, None, None, event


def run_combine(
    ops: Any,
    scope: StreamScope,
    x: torch.Tensor,
    handle: Any,
    topk_weights: Optional[torch.Tensor],
    bias: Any,
    config: Any,
) -> Tuple[torch.Tensor, Optional[torch.Tensor], EventOverlap]:
    """Combine with the layout of ``handle``; optional 1 or 2 biases [T, H]."""
    rank_prefix, _, recv_channel_prefix, recv_src_idx, is_token_in_rank, send_head = _unpack_handle(
        handle
    )
    _check_tensor(x, "x")
    _check_tensor(topk_weights, "topk_weights")
    if x is None:
        raise ValueError("x is required")
    bias0 = bias1 = None
    if isinstance(bias, tuple):
        if len(bias) != 2:
            raise ValueError(f"bias as a tuple must hold 2 tensors, got {len(bias)}")
        bias0, bias1 = bias
    else:
        bias0 = bias
    _check_tensor(bias0, "bias")
    _check_tensor(bias1, "bias[1]")
    num_tokens, dev = is_token_in_rank.shape[0], x.device
    combined_x = _empty((num_tokens, x.shape[1] if x.dim() == 2 else 0), x.dtype, dev)
    combined_w = None
    if topk_weights is not None:
        combined_w = _empty((num_tokens, topk_weights.shape[-1]), torch.float32, dev)
    ops.combine(
        x=x,
        topk_weights=topk_weights,
        bias0=bias0,
        bias1=bias1,
        rank_prefix_matrix=rank_prefix,
        recv_channel_prefix_matrix=recv_channel_prefix,
        recv_src_idx=recv_src_idx,
        is_token_in_rank=is_token_in_rank,
        send_head=send_head,
        config=config,
        combined_x=combined_x,
        combined_topk_weights=combined_w,
        stream=scope.stream_handle,
    )
    event = scope.finish((x, topk_weights, bias0, bias1, combined_x, combined_w) + tuple(handle))
    return combined_x, combined_w, event
