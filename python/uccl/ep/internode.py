"""The internode mode: the bodies of Buffer.dispatch / combine for a Buffer whose ranks span
several NVLink domains (nodes): output allocation and the native calls on ``_C.InternodeOps``.
get_dispatch_layout is intranode.dispatch_layout with the per-node counts.

Tensor shapes: T tokens of this rank, Nr received rows, Nf network-stage rows this rank forwards
(rows of ``send_nvl_head``), H hidden, S scales, K top-k, R ranks, L ranks per node, N = R / L
nodes, C = config.num_sms // 2 channels, E experts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import torch

from .intranode import _alloc_recv_x, _check_tensor, _empty, _split_x
from .utils import EventOverlap, StreamScope

#: DeepEP V1's internode handle, in its order (handle[-4] is recv_gbl_rank_prefix_sum).
HANDLE_FIELDS = (
    "is_token_in_rank",
    "rdma_channel_prefix_matrix",
    "gbl_channel_prefix_matrix",
    "recv_rdma_channel_prefix_matrix",
    "recv_rdma_rank_prefix_sum",
    "recv_gbl_channel_prefix_matrix",
    "recv_gbl_rank_prefix_sum",
    "recv_src_meta",
    "send_rdma_head",
    "send_nvl_head",
)
_META_BYTES = 8  # recv_src_meta row: int32 source node, int32 bitmask of its local ranks


@dataclass(frozen=True)
class Nodes:
    """The group's shape: R ranks in N nodes of L ranks."""

    num_ranks: int
    num_local_ranks: int

    @property
    def num_nodes(self) -> int:
        return self.num_ranks // self.num_local_ranks


def unpack_handle(handle: Any) -> tuple:
    """The handle's 10 tensors as a tuple; a list of them works too (DeepEP unpacks any
    sequence)."""
    is_sequence = isinstance(handle, (tuple, list))
    if not is_sequence or len(handle) != len(HANDLE_FIELDS):
        got = f"{len(handle)} items" if is_sequence else type(handle).__name__
        raise ValueError(
            "handle must be the 10-tuple returned by an internode dispatch "
            f"({', '.join(HANDLE_FIELDS)}), got {got}"
        )
    handle = tuple(handle)
    for t, name in zip(handle, HANDLE_FIELDS):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"handle field {name} must be a torch.Tensor, got {type(t).__name__}")
    return handle


def _handle_kwargs(handle: tuple) -> dict:
    return dict(zip(HANDLE_FIELDS, handle))


def fresh_dispatch(
    nodes: Nodes,
    ops: Any,
    scope: StreamScope,
    x: Any,
    num_tokens_per_rank: Optional[torch.Tensor],
    num_tokens_per_rdma_rank: Optional[torch.Tensor],
    is_token_in_rank: Optional[torch.Tensor],
    num_tokens_per_expert: Optional[torch.Tensor],
    topk_idx: Optional[torch.Tensor],
    topk_weights: Optional[torch.Tensor],
    expert_alignment: int,
    num_worst_tokens: int,
    config: Any,
) -> tuple:
    """Non-cached dispatch: count exchange (notify, which fills the handle's prefix sums and
    send_rdma_head), allocation from the counts, then the dispatch kernels."""
    data, scales = _split_x(x)
    counts = (
        (num_tokens_per_rank, "num_tokens_per_rank"),
        (num_tokens_per_rdma_rank, "num_tokens_per_rdma_rank"),
        (is_token_in_rank, "is_token_in_rank"),
        (num_tokens_per_expert, "num_tokens_per_expert"),
    )
    for t, name in counts + (
        (data, "x"),
        (scales, "x scales"),
        (topk_idx, "topk_idx"),
        (topk_weights, "topk_weights"),
    ):
        _check_tensor(t, name)
    for t, name in counts:
        if t is None:
            raise ValueError(f"{name} is required without a handle (from get_dispatch_layout)")
    if data is None:
        raise ValueError("x is required")
    r, n, c = nodes.num_ranks, nodes.num_nodes, max(config.num_sms // 2, 0)
    dev = data.device
    # Everything that does not depend on the received counts is allocated before the host waits
    # for them: after the wait, the GPU idles until the dispatch kernels are launched.
    prefixes = dict(
        rdma_channel_prefix_matrix=_empty((n, c), torch.int32, dev),
        gbl_channel_prefix_matrix=_empty((r, c), torch.int32, dev),
        recv_rdma_channel_prefix_matrix=_empty((n, c), torch.int32, dev),
        recv_rdma_rank_prefix_sum=_empty((n,), torch.int32, dev),
        recv_gbl_channel_prefix_matrix=_empty((r, c), torch.int32, dev),
        recv_gbl_rank_prefix_sum=_empty((r,), torch.int32, dev),
        send_rdma_head=_empty((data.shape[0] if data.dim() else 0, n), torch.int32, dev),
    )
    inputs = dict(
        x=data,
        x_scales=scales,
        topk_idx=topk_idx,
        topk_weights=topk_weights,
        num_experts=num_tokens_per_expert.size(0),
        num_worst_tokens=int(num_worst_tokens),
        config=config,
        is_token_in_rank=is_token_in_rank,
        **prefixes,
    )
    num_recv, num_rdma_recv, per_expert = ops.notify_dispatch(
        num_tokens_per_rank=num_tokens_per_rank,
        num_tokens_per_rdma_rank=num_tokens_per_rdma_rank,
        num_tokens_per_expert=num_tokens_per_expert,
        expert_alignment=int(expert_alignment),
        stream=scope.stream_handle,
        **inputs,
    )
    if num_worst_tokens > 0:  # as DeepEP: both row counts are the worst case
        num_recv = num_rdma_recv = int(num_worst_tokens)
    recv_x, recv_scales = _alloc_recv_x(num_recv, data, scales)
    recv_topk_idx = recv_topk_weights = None
    if topk_idx is not None:
        recv_topk_idx = _empty((num_recv, topk_idx.shape[1]), topk_idx.dtype, dev)
        recv_topk_weights = _empty((num_recv, topk_idx.shape[1]), torch.float32, dev)
    recv_src_meta = _empty((num_recv, _META_BYTES), torch.uint8, dev)
    send_nvl_head = _empty((num_rdma_recv, nodes.num_local_ranks), torch.int32, dev)
    ops.dispatch(
        recv_x=recv_x,
        recv_x_scales=recv_scales,
        recv_topk_idx=recv_topk_idx,
        recv_topk_weights=recv_topk_weights,
        recv_src_meta=recv_src_meta,
        send_nvl_head=send_nvl_head,
        stream=scope.stream_handle,
        **inputs,
    )
    handle = (
        is_token_in_rank,
        prefixes["rdma_channel_prefix_matrix"],
        prefixes["gbl_channel_prefix_matrix"],
        prefixes["recv_rdma_channel_prefix_matrix"],
        prefixes["recv_rdma_rank_prefix_sum"],
        prefixes["recv_gbl_channel_prefix_matrix"],
        prefixes["recv_gbl_rank_prefix_sum"],
        recv_src_meta,
        prefixes["send_rdma_head"],
        send_nvl_head,
    )
    event = scope.finish(
        (data, scales, topk_idx, topk_weights, num_tokens_per_rank, num_tokens_per_rdma_rank)
        + (num_tokens_per_expert, recv_x, recv_scales, recv_topk_idx, recv_topk_weights)
        + handle
    )
    recv = (recv_x, recv_scales) if scales is not None else recv_x
    expert_list: List[int] = list(per_expert) if num_worst_tokens == 0 else []
    return recv, recv_topk_idx, recv_topk_weights, expert_list, handle, event


def cached_dispatch(ops: Any, scope: StreamScope, x: Any, handle: Any, config: Any) -> tuple:
    """Dispatch reusing a handle's layout: no count exchange, no host synchronisation; the row
    counts come from the handle (so ``num_worst_tokens`` does not apply, as in DeepEP V1). The
    handle is only read: the dispatch kernels' row records go to scratch tensors."""
    fields = unpack_handle(handle)
    data, scales = _split_x(x)
    _check_tensor(data, "x")
    _check_tensor(scales, "x scales")
    if data is None:
        raise ValueError("x is required")
    kwargs = _handle_kwargs(fields)
    recv_src_meta, send_nvl_head = kwargs["recv_src_meta"], kwargs["send_nvl_head"]
    dev = data.device
    kwargs["recv_src_meta"] = _empty(tuple(recv_src_meta.shape), recv_src_meta.dtype, dev)
    kwargs["send_nvl_head"] = _empty(tuple(send_nvl_head.shape), send_nvl_head.dtype, dev)
    recv_x, recv_scales = _alloc_recv_x(recv_src_meta.shape[0], data, scales)
    ops.dispatch(
        x=data,
        x_scales=scales,
        cached=True,
        config=config,
        recv_x=recv_x,
        recv_x_scales=recv_scales,
        stream=scope.stream_handle,
        **kwargs,
    )
    event = scope.finish(
        (data, scales, recv_x, recv_scales, kwargs["recv_src_meta"], kwargs["send_nvl_head"])
        + fields
    )
    recv = (recv_x, recv_scales) if scales is not None else recv_x
    return recv, None, None, None, None, event


def _split_bias(bias: Any) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    bias0 = bias1 = None
    if isinstance(bias, tuple):
        if len(bias) != 2:
            raise ValueError(f"bias as a tuple must hold 2 tensors, got {len(bias)}")
        bias0, bias1 = bias
    else:
        bias0 = bias
    _check_tensor(bias0, "bias")
    _check_tensor(bias1, "bias[1]")
    return bias0, bias1


def run_combine(
    ops: Any,
    scope: StreamScope,
    x: torch.Tensor,
    handle: Any,
    topk_weights: Optional[torch.Tensor],
    bias: Any,
    config: Any,
) -> Tuple[torch.Tensor, Optional[torch.Tensor], EventOverlap]:
    """Combine with the layout of ``handle`` (never modified); optional 1 or 2 biases [T, H]."""
    fields = unpack_handle(handle)
    _check_tensor(x, "x")
    _check_tensor(topk_weights, "topk_weights")
    if x is None:
        raise ValueError("x is required")
    bias0, bias1 = _split_bias(bias)
    num_tokens, dev = fields[0].shape[0], x.device
    combined_x = _empty((num_tokens, x.shape[1] if x.dim() == 2 else 0), x.dtype, dev)
    combined_w = None
    if topk_weights is not None:
        combined_w = _empty((num_tokens, topk_weights.shape[-1]), torch.float32, dev)
    ops.combine(
        x=x,
        topk_weights=topk_weights,
        bias0=bias0,
        bias1=bias1,
        config=config,
        combined_x=combined_x,
        combined_topk_weights=combined_w,
        stream=scope.stream_handle,
        **_handle_kwargs(fields),
    )
    event = scope.finish((x, topk_weights, bias0, bias1, combined_x, combined_w) + fields)
    return combined_x, combined_w, event
