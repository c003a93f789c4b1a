"""The low-latency calls of ``Buffer`` (a mixin: ``Buffer`` supplies ``_low_latency`` and
``enable_shrink``); their bodies are in low_latency.py (docs/low_latency.md)."""

from __future__ import annotations

from typing import Callable, Optional, Tuple, Union

import torch

from .low_latency import LowLatencyMode
from .utils import EventOverlap

_X = Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]


class LowLatencyCalls:
    """DeepEP V1's low-latency methods of ``Buffer``."""

    enable_shrink: bool
    _low_latency: Callable[[str], LowLatencyMode]  # Buffer's: the mode's state, checked

    def clean_low_latency_buffer(
        self, num_max_dispatch_tokens_per_rank: int, hidden: int, num_experts: int
    ) -> None:
        """Collective: zeroes the low-latency signals of both buffer halves between two
        barriers of all ranks, on the current stream (after normal-mode kernels used the RDMA
        buffer, or after an error)."""
        self._low_latency("clean_low_latency_buffer").clean(
            num_max_dispatch_tokens_per_rank, hidden, num_experts
        )

    def low_latency_dispatch(
        self,
        x: torch.Tensor,
        topk_idx: torch.Tensor,
        num_max_dispatch_tokens_per_rank: int,
        num_experts: int,
        cumulative_local_expert_recv_stats: Optional[torch.Tensor] = None,
        dispatch_wait_recv_cost_stats: Optional[torch.Tensor] = None,
        use_fp8: bool = True,
        round_scale: bool = False,
        use_ue8m0: bool = False,
        async_finish: bool = False,
        return_recv_hook: bool = False,
    ) -> Tuple[_X, torch.Tensor, tuple, EventOverlap, Optional[Callable[[], None]]]:
        """Sends each (token, expert) pair to the rank owning the expert (docs/low_latency.md).

        ``x``: bf16 [T', H] with T' <= T = ``num_max_dispatch_tokens_per_rank`` and H one of
        2048, 2560, 3072, 4096, 5120, 6144, 7168, 8192; ``topk_idx``: int64 [T', K], K <= 11,
        -1 for none. Returns ``(recv_x, recv_count, handle, event, hook)``: ``recv_x`` bf16
        [E, N, H] (E = num_experts / R local experts, N = R * T), or with ``use_fp8`` the tuple
        (float8_e4m3fn [E, N, H], scales float32 [E, N, H / 128], or int32 [E, N, H / 512]
        with ``use_ue8m0``, column-major in the last two dimensions); ``recv_count`` int32 [E]
        valid rows per local expert; ``handle`` = (src_info int32 [E, N], layout_range int64
        [E, R], T, H, num_experts). ``return_recv_hook``: only the send phase runs now, on the
        current stream; ``hook()`` runs the receive phase. At most two results may be pending.
        """
        return self._low_latency("low_latency_dispatch").dispatch(
            x,
            topk_idx,
            num_max_dispatch_tokens_per_rank,
            num_experts,
            cumulative_local_expert_recv_stats,
            dispatch_wait_recv_cost_stats,
            use_fp8,
            round_scale,
            use_ue8m0,
            async_finish,
            return_recv_hook,
        )

    def low_latency_combine(
        self,
        x: torch.Tensor,
        topk_idx: torch.Tensor,
        topk_weights: torch.Tensor,
        handle: tuple,
        use_logfmt: bool = False,
        zero_copy: bool = False,
        async_finish: bool = False,
        return_recv_hook: bool = False,
        out: Optional[torch.Tensor] = None,
        combine_wait_recv_cost_stats: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, EventOverlap, Optional[Callable[[], None]]]:
        """Returns expert outputs to the tokens' ranks and reduces them with the top-k weights.

        ``x``: bf16 [E, N, H] in the dispatch's layout (not read with ``zero_copy``: it was
        written into ``get_next_low_latency_combine_buffer(handle)``); ``topk_idx`` /
        ``topk_weights`` (int64 / float32 [T', K]) the routing of the dispatch that made
        ``handle``. Returns ``(combined_x, event, hook)`` with ``combined_x[t] = sum over valid
        k of topk_weights[t, k] * y`` (bf16 [T', H]; written into ``out`` when given).
        ``use_logfmt=True`` sends the rows as LogFMT-10 (10 bits per value in each 128-channel
        group whose magnitudes are below 1, docs/low_latency.md); not with ``zero_copy``.
        """
        return self._low_latency("low_latency_combine").combine(
            x,
            topk_idx,
            topk_weights,
            handle,
            use_logfmt,
            zero_copy,
            async_finish,
            return_recv_hook,
            out,
            combine_wait_recv_cost_stats,
        )

    def get_next_low_latency_combine_buffer(self, handle: tuple) -> torch.Tensor:
        """The send buffer the next low-latency combine uses, as a bf16 [E, N, H] view with row
        stride (2H + 4H/128) / 2 elements: fill it, then ``low_latency_combine(...,
        zero_copy=True)``."""
        return self._low_latency("get_next_low_latency_combine_buffer").next_combine_buffer(handle)

    def low_latency_update_mask_buffer(self, rank_to_mask: int, mask: bool = False) -> None:
        """Masks (``mask=True``) or unmasks ``rank_to_mask`` for the low-latency calls, by a
        kernel on the current stream (needs ``enable_shrink=True``). Masked ranks are neither
        sent to nor waited for; combine treats their experts like ``-1``."""
        self._mask_ops("low_latency_update_mask_buffer").update_mask(rank_to_mask, mask)

    def low_latency_query_mask_buffer(self, mask_status: torch.Tensor) -> None:
        """Copies the rank mask (1 = masked, whether by ``low_latency_update_mask_buffer`` or
        by a missed deadline) into ``mask_status`` (int32 [num_ranks] on this device), on the
        current stream (needs ``enable_shrink=True``)."""
        self._mask_ops("low_latency_query_mask_buffer").query_mask(mask_status)

    def low_latency_clean_mask_buffer(self) -> None:
        """Unmasks every rank, on the current stream (needs ``enable_shrink=True``)."""
        self._mask_ops("low_latency_clean_mask_buffer").clean_mask()

    def _mask_ops(self, op: str) -> LowLatencyMode:
        if not self.enable_shrink:
            raise ValueError(f"{op} needs a Buffer built with enable_shrink=True")
        return self._low_latency(op)
