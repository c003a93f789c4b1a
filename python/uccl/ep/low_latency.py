"""The low-latency mode: the bodies of Buffer.low_latency_dispatch / low_latency_combine /
clean_low_latency_buffer / get_next_low_latency_combine_buffer (output allocation, streams,
receive hooks and the native calls on ``_C.LowLatencyOps``).

Shapes: T = num_max_dispatch_tokens_per_rank, R ranks, E = num_experts // R local experts,
N = R * T rows per local expert, H hidden, K top-k.
"""

from __future__ import annotations

import operator
from typing import Any, Callable, Optional, Tuple

import torch

from .utils import EventHandle, EventOverlap, current_raw_stream

_SEND, _BOTH = 1, 3  # LowLatencyPhase: 1 send, 2 receive, 3 both


def _index(value: Any, name: str, op: str) -> int:
    """`value` as an int (any integer type); TypeError naming the argument otherwise."""
    if isinstance(value, bool):
        raise TypeError(f"{op}: {name} must be an integer, got bool {value}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            f"{op}: {name} must be an integer, got {type(value).__name__} {value!r}"
        ) from None


def _check_tensor(t: Any, name: str, op: str) -> None:
    if t is not None and not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor or None, got {type(t).__name__}")


def _check_exclusive(async_finish: bool, return_recv_hook: bool, op: str) -> None:
    if async_finish and return_recv_hook:
        raise ValueError(
            f"{op}: async_finish=True and return_recv_hook=True are mutually exclusive (the "
            "hook runs the receive phase on the stream current when it is called)"
        )


def unpack_handle(handle: Any, op: str) -> Tuple[torch.Tensor, torch.Tensor, int, int, int]:
    """(src_info, layout_range, T, hidden, num_experts) of a low-latency dispatch's handle; a
    list works too."""
    if not isinstance(handle, (tuple, list)) or len(handle) != 5:
        got = f"{len(handle)} items" if isinstance(handle, (tuple, list)) else type(handle).__name__
        raise ValueError(
            f"{op}: handle must be the 5-tuple returned by low_latency_dispatch (src_info, "
            f"layout_range, num_max_dispatch_tokens_per_rank, hidden, num_experts), got {got}"
        )
    src_info, layout_range, t, hidden, num_experts = handle
    _check_tensor(src_info, "handle src_info", op)
    _check_tensor(layout_range, "handle layout_range", op)
    return (
        src_info,
        layout_range,
        _index(t, "handle num_max_dispatch_tokens_per_rank", op),
        _index(hidden, "handle hidden", op),
        _index(num_experts, "handle num_experts", op),
    )


class LowLatencyMode:
    """The low-latency operations of one Buffer (built on its first low-latency call).

    Without a hook a call runs on the Buffer's communication stream, which first waits for the
    current stream; then either the current stream waits for it (``async_finish=False``) or the
    returned ``EventOverlap`` holds an event on it. With ``return_recv_hook`` the send phase
    runs on the current stream and ``hook()`` runs the receive phase on the stream current when
    it is called. Every returned ``EventOverlap`` holds the call's tensors in
    ``extra_tensors`` (DeepEP's way of keeping them alive, graph-friendly).
    """

    def __init__(
        self,
        ops: Any,
        runtime: Any,
        info: Any,
        comm_stream: torch.cuda.Stream,
        comm_handle: int,
        device_index: int,
    ) -> None:
        self.ops = ops
        self.runtime = runtime
        self.info = info  # _C.BufferInfo: the checks without launching anything
        self.num_ranks = info.num_ranks
        self.comm_stream = comm_stream
        self.comm_handle = comm_handle
        self.device_index = device_index
        self.device = torch.device("cuda", device_index)

    # ------------------------------------------------------------------ streams
    def _launch_stream(self, return_recv_hook: bool) -> Tuple[int, int]:
        """(stream to launch on, current stream); the comm stream waits for the current one."""
        compute = current_raw_stream(self.device_index)
        if return_recv_hook:
            return compute, compute
        if compute == self.comm_handle:
            raise RuntimeError(
                "uccl-ep calls must not be made from the Buffer's communication stream"
            )
        self.runtime.stream_wait(self.comm_handle, compute)
        return self.comm_handle, compute

    def _finish(
        self, compute: int, async_finish: bool, return_recv_hook: bool, tensors: tuple
    ) -> EventOverlap:
        if return_recv_hook:
            return EventOverlap(None, tensors)
        if not async_finish:
            self.runtime.stream_wait(compute, self.comm_handle)
            return EventOverlap(None, tensors)
        overlap = EventOverlap(EventHandle(self.comm_stream), tensors)
        overlap._check = self.runtime.check
        return overlap

    def _hook(
        self, recv: Callable[..., None], half: int, kwargs: dict, op: str
    ) -> Callable[[], None]:
        state = {"ran": False}

        def hook() -> None:
            if state["ran"]:
                raise RuntimeError(f"{op}: the receive hook of this call already ran")
            state["ran"] = True
            recv(half, current_raw_stream(self.device_index), **kwargs)

        return hook

    # ------------------------------------------------------------------ calls
    def clean(self, num_max_dispatch_tokens_per_rank: Any, hidden: Any, num_experts: Any) -> None:
        op = "clean_low_latency_buffer"
        self.ops.clean(
            _index(num_max_dispatch_tokens_per_rank, "num_max_dispatch_tokens_per_rank", op),
            _index(hidden, "hidden", op),
            _index(num_experts, "num_experts", op),
            current_raw_stream(self.device_index),
        )

    def dispatch(
        self,
        x: torch.Tensor,
        topk_idx: torch.Tensor,
        num_max_dispatch_tokens_per_rank: Any,
        num_experts: Any,
        cumulative_local_expert_recv_stats: Optional[torch.Tensor],
        dispatch_wait_recv_cost_stats: Optional[torch.Tensor],
        use_fp8: bool,
        round_scale: bool,
        use_ue8m0: bool,
        async_finish: bool,
        return_recv_hook: bool,
    ) -> tuple:
        op = "low_latency_dispatch"
        _check_exclusive(async_finish, return_recv_hook, op)
        t = _index(num_max_dispatch_tokens_per_rank, "num_max_dispatch_tokens_per_rank", op)
        num_experts = _index(num_experts, "num_experts", op)
        for v, name in (
            (x, "x"),
            (topk_idx, "topk_idx"),
            (cumulative_local_expert_recv_stats, "cumulative_local_expert_recv_stats"),
            (dispatch_wait_recv_cost_stats, "dispatch_wait_recv_cost_stats"),
        ):
            _check_tensor(v, name, op)
        use_fp8, round_scale, use_ue8m0 = bool(use_fp8), bool(round_scale), bool(use_ue8m0)
        kwargs = dict(
            x=x,
            topk_idx=topk_idx,
            num_max_dispatch_tokens_per_rank=t,
            num_experts=num_experts,
            use_fp8=use_fp8,
            round_scale=round_scale,
            use_ue8m0=use_ue8m0,
            cumulative_local_expert_recv_stats=cumulative_local_expert_recv_stats,
            dispatch_wait_recv_cost_stats=dispatch_wait_recv_cost_stats,
        )
        r = self.num_ranks
        hidden = x.shape[1] if x is not None and x.dim() == 2 else 0
        e, n = max(num_experts, 0) // r, r * t
        # A call whose BF16 output alone outgrows the RDMA buffer cannot fit it (the buffer
        # holds at least twice the received rows): check it before allocating the outputs.
        if t < 1 or 2 * e * n * hidden > self.info.num_rdma_bytes:
            self.info.check_low_latency_dispatch(**kwargs)
            raise RuntimeError(
                f"{op}: T={t}, hidden={hidden}, num_experts={num_experts} outgrow the RDMA "
                f"buffer (num_rdma_bytes={self.info.num_rdma_bytes}) but passed its checks"
            )
        dev = self.device
        recv_x = torch.empty(
            e, n, hidden, dtype=torch.float8_e4m3fn if use_fp8 else torch.bfloat16, device=dev
        )
        scales = None
        if use_fp8:
            # Column-major in the last two dimensions (TMA-friendly, as DeepEP returns them).
            if use_ue8m0:
                scales = torch.empty(e, hidden // 512, n, dtype=torch.int32, device=dev)
            else:
                scales = torch.empty(e, hidden // 128, n, dtype=torch.float32, device=dev)
            scales = scales.transpose(1, 2)
        recv_count = torch.empty(e, dtype=torch.int32, device=dev)
        src_info = torch.empty(e, n, dtype=torch.int32, device=dev)
        layout_range = torch.empty(e, r, dtype=torch.int64, device=dev)
        kwargs.update(
            recv_x=recv_x,
            recv_x_scales=scales,
            recv_count=recv_count,
            recv_src_info=src_info,
            recv_layout_range=layout_range,
        )
        stream, compute = self._launch_stream(return_recv_hook)
        half = self.ops.dispatch(_SEND if return_recv_hook else _BOTH, stream, **kwargs)
        tensors = (
            x,
            topk_idx,
            recv_x,
            scales,
            recv_count,
            src_info,
            layout_range,
            cumulative_local_expert_recv_stats,
            dispatch_wait_recv_cost_stats,
        )
        event = self._finish(compute, async_finish, return_recv_hook, tensors)
        hook = self._hook(self.ops.dispatch_recv, half, kwargs, op) if return_recv_hook else None
        handle = (src_info, layout_range, t, hidden, num_experts)
        recv = (recv_x, scales) if use_fp8 else recv_x
        return recv, recv_count, handle, event, hook

    def combine(
        self,
        x: Optional[torch.Tensor],
        topk_idx: torch.Tensor,
        topk_weights: torch.Tensor,
        handle: Any,
        use_logfmt: bool,
        zero_copy: bool,
        async_finish: bool,
        return_recv_hook: bool,
        out: Optional[torch.Tensor],
        combine_wait_recv_cost_stats: Optional[torch.Tensor],
    ) -> tuple:
        op = "low_latency_combine"
        _check_exclusive(async_finish, return_recv_hook, op)
        src_info, layout_range, t, hidden, num_experts = unpack_handle(handle, op)
        use_logfmt, zero_copy = bool(use_logfmt), bool(zero_copy)
        for v, name in (
            (x, "x"),
            (topk_idx, "topk_idx"),
            (topk_weights, "topk_weights"),
            (out, "out"),
            (combine_wait_recv_cost_stats, "combine_wait_recv_cost_stats"),
        ):
            _check_tensor(v, name, op)
        if x is not None and x.dim() == 3 and x.shape[2] != hidden:
            raise ValueError(
                f"{op}: x.shape[2]={x.shape[2]} must equal the hidden size of the dispatch that "
                f"made the handle ({hidden})"
            )
        num_tokens = topk_idx.shape[0] if topk_idx is not None and topk_idx.dim() == 2 else 0
        if out is None:
            combined_x = torch.empty(num_tokens, hidden, dtype=torch.bfloat16, device=self.device)
        else:
            self._check_out(out, num_tokens, hidden, op)
            combined_x = out
        kwargs = dict(
            x=x,
            topk_idx=topk_idx,
            topk_weights=topk_weights,
            src_info=src_info,
            layout_range=layout_range,
            num_max_dispatch_tokens_per_rank=t,
            num_experts=num_experts,
            use_logfmt=use_logfmt,
            zero_copy=zero_copy,
            combine_wait_recv_cost_stats=combine_wait_recv_cost_stats,
            combined_x=combined_x,
        )
        stream, compute = self._launch_stream(return_recv_hook)
        half = self.ops.combine(_SEND if return_recv_hook else _BOTH, stream, **kwargs)
        tensors = (
            x,
            topk_idx,
            topk_weights,
            src_info,
            layout_range,
            combined_x,
            combine_wait_recv_cost_stats,
        )
        event = self._finish(compute, async_finish, return_recv_hook, tensors)
        hook = self._hook(self.ops.combine_recv, half, kwargs, op) if return_recv_hook else None
        return combined_x, event, hook

    def _check_out(self, out: torch.Tensor, num_tokens: int, hidden: int, op: str) -> None:
        if out.dtype != torch.bfloat16:
            raise TypeError(f"{op}: out must have dtype torch.bfloat16, got {out.dtype}")
        if tuple(out.shape) != (num_tokens, hidden):
            raise ValueError(
                f"{op}: out has shape {tuple(out.shape)}, expected ({num_tokens}, {hidden}) "
                "(num_tokens of topk_idx, hidden of the handle)"
            )
        if not out.is_contiguous():
            raise ValueError(f"{op}: out must be contiguous, got strides {out.stride()}")
        if out.device != self.device:
            raise ValueError(
                f"{op}: out must be on {self.device} (the Buffer's device), got {out.device}"
            )

    # ------------------------------------------------------------------ rank mask
    def update_mask(self, rank_to_mask: int, mask: bool) -> None:
        op = "low_latency_update_mask_buffer"
        rank = _index(rank_to_mask, "rank_to_mask", op)
        if not 0 <= rank < self.num_ranks:
            raise ValueError(f"{op}: rank_to_mask={rank} must be in [0, {self.num_ranks})")
        self.ops.update_mask(rank, bool(mask), current_raw_stream(self.device_index))

    def query_mask(self, mask_status: torch.Tensor) -> None:
        op = "low_latency_query_mask_buffer"
        if not isinstance(mask_status, torch.Tensor):
            raise TypeError(f"{op}: mask_status must be a torch.Tensor, got {type(mask_status)}")
        self.ops.query_mask(mask_status, current_raw_stream(self.device_index))

    def clean_mask(self) -> None:
        self.ops.clean_mask(current_raw_stream(self.device_index))

    def next_combine_buffer(self, handle: Any) -> torch.Tensor:
        """The send buffer of the next combine as a BF16 [E, N, H] strided view."""
        _, _, t, hidden, num_experts = unpack_handle(handle, "get_next_low_latency_combine_buffer")
        raw, shape, strides = self.ops.next_combine_buffer(t, hidden, num_experts)
        return torch.from_dlpack(raw).view(torch.bfloat16).as_strided(shape, strides)
