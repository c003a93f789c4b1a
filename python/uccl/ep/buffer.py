"""The DeepEP V1-compatible ``Buffer``: the normal mode over NVLink when every rank shares one
NVLink domain (intranode.py), across NVLink domains through the CPU proxies otherwise
(internode.py), and the low-latency mode (low_latency.py); this class routes the calls."""

from __future__ import annotations

import operator
import socket
from typing import Any, List, Optional, Tuple, Union

import torch
import torch.distributed as dist

from . import _C
from . import internode as inter
from ._bootstrap import Bootstrap
from ._low_latency_calls import LowLatencyCalls
from .intranode import cached_dispatch, dispatch_layout, fresh_dispatch, run_combine
from .low_latency import LowLatencyMode
from .utils import EventHandle, EventOverlap, StreamScope, check_nvlink_connections

Config = _C.Config
#: dtype of every ``topk_idx`` argument (DeepEP's ``topk_idx_t``).
topk_idx_t = torch.int64

_Tensor = torch.Tensor
_X = Union[_Tensor, Tuple[_Tensor, _Tensor]]
#: dispatch's result: (recv_x, recv_topk_idx, recv_topk_weights, per-expert list, handle, event)
_DispatchOut = Tuple[
    _X, Optional[_Tensor], Optional[_Tensor], Optional[List[int]], Optional[tuple], EventOverlap
]


def _not_implemented(feature: str) -> NotImplementedError:
    return NotImplementedError(
        f"uccl-ep: {feature} is not implemented yet; this release runs the normal mode "
        "(intranode and internode) and the low-latency mode"
    )


class Buffer(LowLatencyCalls):
    """Communication buffer for expert-parallel dispatch and combine (DeepEP V1 API).

    One process per GPU; every rank of ``group`` constructs it collectively. The normal
    (high-throughput) kernels run on an internal communication stream, over NVLink when every
    rank shares one NVLink domain, else across domains through the CPU proxies (internode).

    Args:
        group: ``torch.distributed`` process group (or None with ``comm``).
        num_nvl_bytes: NVLink buffer bytes per rank (multiple of 128); size it with
            ``Config.get_nvl_buffer_size_hint``.
        num_rdma_bytes: RDMA buffer bytes per rank (multiple of 128): needs ranks on several
            NVLink domains (nodes; ``UCCL_EP_NUM_LOCAL_RANKS`` emulates them on one host) or
            ``low_latency_mode``; size it with ``get_low_latency_rdma_size_hint`` for the
            low-latency mode, with ``uccl.ep._C.internode_rdma_bytes`` for the internode
            normal mode (docs/internode.md). With it the Buffer starts this rank's CPU proxies.
        low_latency_mode: enables the low-latency calls (``low_latency_dispatch`` / ``combine``;
            in progress, see docs/low_latency.md).
        allow_nvlink_for_low_latency_mode: low-latency calls write the peers of this rank's
            NVLink domain directly (else every peer goes through the CPU proxies).
        enable_shrink: the low-latency rank mask (``low_latency_*_mask_buffer``): masked ranks
            are neither sent to nor waited for, and a peer that misses the deadline
            (``UCCL_EP_TIMEOUT_SECS``) is masked instead of failing the call.
        use_fabric: must stay False for now (not implemented yet).
        num_qps_per_rank, allow_mnnvl: accepted and stored (they configure NVSHMEM in DeepEP,
            which uccl-ep does not use).
        explicitly_destroy: if True, ``destroy()`` must be called; otherwise memory is freed
            when the object is collected. Either way the ranks meet (on the GPU, with the
            deadline ``UCCL_EP_TIMEOUT_SECS``) before memory is freed.
        comm: ``mpi4py`` communicator used instead of ``group`` for bootstrap.

    Construction is collective: an exception on one rank (bad argument, out of memory, CUDA IPC
    failure) raises on every rank, naming the failed rank. Every wait has a deadline; after an
    error (a timeout, a dead peer, inputs the GPU found inconsistent) the Buffer is aborted:
    its kernels fill their outputs with NaN / -1 / zero counts, ``check()`` and every later
    call raise ``RuntimeError``.
    """

    #: SMs used by the default configs of the normal modes (``set_num_sms`` changes it; the
    #: low-latency kernels take up to every SM of the device, as DeepEP's).
    num_sms: int = 20
    #: NVLink domains (nodes) the ranks span, and ranks per domain (set from the runtime).
    _num_nodes: int = 1
    _num_local_ranks: int = 1

    def __init__(
        self,
        group: Optional[dist.ProcessGroup] = None,
        num_nvl_bytes: int = 0,
        num_rdma_bytes: int = 0,
        low_latency_mode: bool = False,
        num_qps_per_rank: int = 24,
        allow_nvlink_for_low_latency_mode: bool = True,
        allow_mnnvl: bool = False,
        explicitly_destroy: bool = False,
        enable_shrink: bool = False,
        comm: Any = None,
        *,
        use_fabric: bool = False,
    ) -> None:
        self.runtime = None
        self._ops = None
        self._inter_ops = None
        self._ll: Optional[LowLatencyMode] = None
        boot = Bootstrap(group, comm)
        self.rank, self.group_size = boot.rank, boot.size
        self.group = group if group is not None else comm
        try:
            self.num_nvl_bytes, self.num_rdma_bytes = int(num_nvl_bytes), int(num_rdma_bytes)
            self.low_latency_mode = bool(low_latency_mode)
            self.num_qps_per_rank = int(num_qps_per_rank)
            self.allow_nvlink_for_low_latency_mode = bool(allow_nvlink_for_low_latency_mode)
            self.allow_mnnvl = bool(allow_mnnvl)
            self.explicitly_destroy = bool(explicitly_destroy)
            self.enable_shrink = bool(enable_shrink)
            self._check_modes(use_fabric)
            if group is not None:
                check_nvlink_connections(group)
            self._device = torch.cuda.current_device()
        except Exception as e:
            # Tell the peers, which are entering the Buffer's first all-gather, then raise.
            boot.all_gather_bytes(_C.buffer_setup_failure(self.rank, f"{type(e).__name__}: {e}"))
            raise
        self.runtime = _C.Buffer(
            rank=self.rank,
            num_ranks=self.group_size,
            num_local_ranks=0,
            device=self._device,
            num_nvl_bytes=self.num_nvl_bytes,
            num_rdma_bytes=self.num_rdma_bytes,
            low_latency_mode=self.low_latency_mode,
            host_name=socket.gethostname(),
            all_gather=boot.all_gather_bytes,
        )
        self._num_nodes = int(self.runtime.num_nodes)
        self._num_local_ranks = int(self.runtime.num_local_ranks)
        self._comm_stream = torch.cuda.Stream(device=self._device, priority=-1)
        self._comm_handle = self._comm_stream.cuda_stream

    def _check_modes(self, use_fabric: bool) -> None:
        if self.num_qps_per_rank < 1:
            raise ValueError(f"num_qps_per_rank={self.num_qps_per_rank} must be >= 1")
        # allow_mnnvl only configures NVSHMEM in DeepEP V1, which the intranode mode does not
        # use: accepted, without effect, as there. low_latency_mode and the sizes are checked
        # by the native Buffer.
        if use_fabric:
            raise _not_implemented("use_fabric=True")

    # ------------------------------------------------------------------ lifecycle
    def destroy(self) -> None:
        """Frees the buffer (collective: the ranks meet on the GPU, with the deadline
        ``UCCL_EP_TIMEOUT_SECS``, before memory is freed; past it the memory is freed anyway
        and ``RuntimeError`` names who did not arrive). Only with ``explicitly_destroy=True``;
        once."""
        if not self.explicitly_destroy:
            raise RuntimeError("destroy() needs Buffer(..., explicitly_destroy=True)")
        if self.runtime is None:
            raise RuntimeError("destroy(): the Buffer was already destroyed")
        runtime, self.runtime, self._ops, self._ll = self.runtime, None, None, None
        self._inter_ops = None
        runtime.destroy()

    def __del__(self) -> None:
        runtime = getattr(self, "runtime", None)
        if runtime is not None and self.explicitly_destroy:
            print(f"[uccl-ep] rank {self.rank}: Buffer collected without destroy(); freeing it")

    def check(self) -> None:
        """Raises ``RuntimeError`` with the recorded error (a wait past its deadline, a failed
        CPU proxy, inputs the GPU found inconsistent), if any; returns None otherwise. A CUDA
        graph replay that failed is seen here once its kernels finished."""
        self._live("check").check("check")

    def _live(self, op: str) -> Any:
        if self.runtime is None:
            raise RuntimeError(f"{op}: the Buffer was destroyed")
        return self.runtime

    def _intranode(self, op: str) -> Any:
        """The intranode operations (built on first use: NotImplementedError when the ranks
        span several NVLink domains)."""
        runtime = self._live(op)
        if self._ops is None:
            self._ops = _C.IntranodeOps(runtime)
        return self._ops

    @property
    def _spans_nodes(self) -> bool:
        """Whether the ranks span several NVLink domains (the internode mode's calls)."""
        return self._num_nodes > 1

    def _internode(self, op: str) -> Any:
        """The internode operations (built on first use); ValueError on a Buffer whose ranks
        all share one NVLink domain."""
        runtime = self._live(op)
        if not self._spans_nodes:
            raise ValueError(
                f"{op} needs a Buffer whose ranks span several NVLink domains; all "
                f"{self.group_size} ranks of this one share one (use dispatch / combine, which "
                "run the intranode mode here)"
            )
        if self._inter_ops is None:
            self._inter_ops = _C.InternodeOps(runtime)
        return self._inter_ops

    def _nodes(self) -> inter.Nodes:
        return inter.Nodes(self.group_size, self._num_local_ranks)

    def _low_latency(self, op: str) -> LowLatencyMode:
        """The low-latency operations, built on first use (their kernels take up to every SM
        of the device, as DeepEP's; ``Buffer.num_sms`` does not apply); ValueError on a Buffer
        built without ``low_latency_mode``."""
        if self._ll is not None:
            return self._ll
        runtime = self._live(op)
        if not self.low_latency_mode:
            raise ValueError(
                f"{op} needs a Buffer built with low_latency_mode=True (this one has "
                "low_latency_mode=False)"
            )
        ops = _C.LowLatencyOps(
            runtime,
            allow_nvlink=self.allow_nvlink_for_low_latency_mode,
            enable_shrink=self.enable_shrink,
        )
        info = _C.BufferInfo(
            self.rank,
            self.group_size,
            self.num_nvl_bytes,
            self._device,
            num_rdma_bytes=self.num_rdma_bytes,
            low_latency_mode=True,
        )
        self._ll = LowLatencyMode(
            ops, runtime, info, self._comm_stream, self._comm_handle, self._device
        )
        return self._ll

    # ------------------------------------------------------------------ static helpers
    @staticmethod
    def is_sm90_compiled() -> bool:
        """True when the extension was built for SM90+ (FP8 paths)."""
        return bool(_C.sm90_compiled)

    @staticmethod
    def set_num_sms(new_num_sms: int) -> None:
        """Sets ``Buffer.num_sms``, the SM count of the normal modes' default configs (the
        low-latency kernels do not use it); a positive even integer (a channel is two SMs). Any
        integer type (``operator.index``) is accepted."""
        try:
            value = operator.index(new_num_sms)
        except TypeError:
            raise TypeError(
                f"set_num_sms(new_num_sms={new_num_sms!r}): the SM count must be an integer, "
                f"got {type(new_num_sms).__name__}"
            ) from None
        if isinstance(new_num_sms, bool) or value <= 0 or value % 2 != 0:
            raise ValueError(
                f"set_num_sms(new_num_sms={new_num_sms!r}): the SM count must be a positive "
                "even integer"
            )
        Buffer.num_sms = value

    @staticmethod
    def capture() -> EventOverlap:
        """Records an event on the current stream."""
        return EventOverlap(EventHandle())

    @staticmethod
    def get_low_latency_rdma_size_hint(
        num_max_dispatch_tokens_per_rank: int, hidden: int, num_ranks: int, num_experts: int
    ) -> int:
        """Bytes DeepEP V1 asks for a low-latency RDMA buffer."""
        return _C.get_low_latency_rdma_size_hint(
            num_max_dispatch_tokens_per_rank, hidden, num_ranks, num_experts
        )

    @staticmethod
    def get_dispatch_config(num_ranks: int) -> Config:
        """DeepEP's tuned dispatch config for ``num_ranks`` with ``Buffer.num_sms`` SMs."""
        return _C.get_dispatch_config(num_ranks, Buffer.num_sms)

    @staticmethod
    def get_combine_config(num_ranks: int) -> Config:
        """DeepEP's tuned combine config for ``num_ranks`` with ``Buffer.num_sms`` SMs."""
        return _C.get_combine_config(num_ranks, Buffer.num_sms)

    def _scope(
        self,
        runtime: Any,
        previous_event: Optional[EventOverlap],
        async_finish: bool,
        allocate_on_comm_stream: bool,
    ) -> StreamScope:
        return StreamScope(
            runtime,
            self._comm_stream,
            self._comm_handle,
            self._device,
            previous_event,
            async_finish,
            allocate_on_comm_stream,
        )

    def get_comm_stream(self) -> torch.cuda.Stream:
        """The internal communication stream."""
        return self._comm_stream

    def get_local_buffer_tensor(
        self,
        dtype: torch.dtype,
        size: Optional[torch.Size] = None,
        offset: int = 0,
        use_rdma_buffer: bool = False,
    ) -> torch.Tensor:
        """1-D view of this rank's NVLink buffer (or, with ``use_rdma_buffer``, its RDMA buffer)
        as ``dtype``, starting ``offset`` bytes in.

        Unlike DeepEP the length is clamped to the buffer: ``(num_bytes - offset) // itemsize``
        elements. With ``size``, the first ``size.numel()`` elements reshaped. Without an RDMA
        buffer (``num_rdma_bytes == 0``) ``use_rdma_buffer=True`` gives an empty tensor, as
        DeepEP returns then.
        """
        itemsize = torch.empty((), dtype=dtype).element_size()
        runtime = self._live("get_local_buffer_tensor")
        num_bytes = self.num_rdma_bytes if use_rdma_buffer else self.num_nvl_bytes
        if num_bytes == 0:
            t = torch.empty(0, dtype=dtype, device=torch.device("cuda", self._device))
        else:
            name = "num_rdma_bytes" if use_rdma_buffer else "num_nvl_bytes"
            if not 0 <= offset <= num_bytes or offset % itemsize:
                raise ValueError(
                    f"offset={offset} must be in [0, {name}={num_bytes}] and a multiple of the "
                    f"element size {itemsize} ({dtype})"
                )
            view = runtime.rdma_buffer() if use_rdma_buffer else runtime.nvl_buffer()
            raw = torch.from_dlpack(view)
            count = (num_bytes - offset) // itemsize
            t = raw[offset : offset + count * itemsize].view(dtype)
        if size is None:
            return t
        size = torch.Size(size)
        if size.numel() > t.numel():
            raise ValueError(f"size {tuple(size)} needs {size.numel()} elements, have {t.numel()}")
        return t[: size.numel()].view(size)

    # ------------------------------------------------------------------ layout
    def get_dispatch_layout(
        self,
        topk_idx: torch.Tensor,
        num_experts: int,
        previous_event: Optional[EventOverlap] = None,
        async_finish: bool = False,
        allocate_on_comm_stream: bool = False,
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor, torch.Tensor, EventOverlap]:
        """Counts tokens per rank and per expert from ``topk_idx`` [num_tokens, num_topk].

        Returns ``(num_tokens_per_rank [R] int32, num_tokens_per_rdma_rank, num_tokens_per_expert
        [E] int32, is_token_in_rank [num_tokens, R] bool, event)``; ``-1`` entries are ignored.
        ``num_tokens_per_rdma_rank`` is int32 [N] (tokens with an expert on node n, once per
        node) when the ranks span N > 1 NVLink domains, else None. Unlike DeepEP, whose nodes
        always have 8 GPUs, N = R / (ranks per NVLink domain) for any node size.
        """
        runtime = self._live("get_dispatch_layout")
        with self._scope(runtime, previous_event, async_finish, allocate_on_comm_stream) as scope:
            return dispatch_layout(
                runtime, scope, topk_idx, num_experts, self.group_size, self._num_nodes
            )

    # ------------------------------------------------------------------ dispatch / combine
    def dispatch(
        self,
        x: _X,
        handle: Optional[tuple] = None,
        num_tokens_per_rank: Optional[torch.Tensor] = None,
        num_tokens_per_rdma_rank: Optional[torch.Tensor] = None,
        is_token_in_rank: Optional[torch.Tensor] = None,
        num_tokens_per_expert: Optional[torch.Tensor] = None,
        topk_idx: Optional[torch.Tensor] = None,
        topk_weights: Optional[torch.Tensor] = None,
        expert_alignment: int = 1,
        num_worst_tokens: int = 0,
        config: Optional[Config] = None,
        previous_event: Optional[EventOverlap] = None,
        async_finish: bool = False,
        allocate_on_comm_stream: bool = False,
    ) -> _DispatchOut:
        """Sends each token to the ranks holding its experts (docs/intranode.md; across NVLink
        domains docs/internode.md).

        ``x``: bf16 [T, H], or ``(float8_e4m3fn [T, H], scales [T, S] float32|int32)``. As in
        DeepEP, rows move as raw bytes: any dtype works when ``H * itemsize`` is a multiple of
        16, and scales go with any 1-byte data (``combine`` takes bf16 only).
        Returns ``(recv_x, recv_topk_idx, recv_topk_weights, num_recv_tokens_per_expert_list,
        handle, event)``; received rows are grouped by source rank, then source token index.
        With ``handle`` (cached mode) returns ``(recv_x, None, None, None, None, event)``; the
        row count then comes from the handle and ``num_worst_tokens`` is ignored (as in DeepEP).
        ``previous_event``: an ``EventOverlap`` to start after (one holding no event, as a
        synchronous call returns, means none), else the current stream.
        When the ranks span several NVLink domains this is ``internode_dispatch``:
        ``num_tokens_per_rdma_rank`` (from ``get_dispatch_layout``) is then required and the
        handle is DeepEP's internode 10-tuple; otherwise it must be None.
        """
        if self._spans_nodes:
            self._live("dispatch")
            args = dict(locals())  # only the arguments are bound yet
            del args["self"]
            return self.internode_dispatch(**args)
        ops = self._intranode("dispatch")
        runtime = self.runtime
        config = config if config is not None else self.get_dispatch_config(self.group_size)
        if num_tokens_per_rdma_rank is not None:
            raise ValueError("num_tokens_per_rdma_rank must be None for the intranode mode")
        with self._scope(runtime, previous_event, async_finish, allocate_on_comm_stream) as scope:
            if handle is not None:
                if topk_idx is not None or topk_weights is not None:
                    raise ValueError(
                        "cached dispatch (handle given) takes no topk_idx/topk_weights"
                    )
                return cached_dispatch(ops, scope, x, handle, config, num_worst_tokens)
            return fresh_dispatch(
                self.group_size,
                ops,
                scope,
                x,
                num_tokens_per_rank,
                is_token_in_rank,
                num_tokens_per_expert,
                topk_idx,
                topk_weights,
                expert_alignment,
                num_worst_tokens,
                config,
            )

    def combine(
        self,
        x: torch.Tensor,
        handle: tuple,
        topk_weights: Optional[torch.Tensor] = None,
        bias: Union[None, torch.Tensor, Tuple[torch.Tensor, torch.Tensor]] = None,
        config: Optional[Config] = None,
        previous_event: Optional[EventOverlap] = None,
        async_finish: bool = False,
        allocate_on_comm_stream: bool = False,
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor], EventOverlap]:
        """Returns expert outputs to the tokens' ranks and sums them there.

        ``x``: bf16 [N, H], row i answering dispatch's received row i. ``combined_x[t] =
        bias0[t] + bias1[t] + sum over ranks r that received t of x_r[row of t]`` (fp32,
        ascending rank order, one cast). No top-k weights are applied; ``topk_weights``
        [N, K] float32 are summed the same way into ``combined_topk_weights`` [T, K].
        """
        if self._spans_nodes:
            self._live("combine")
            args = dict(locals())  # only the arguments are bound yet
            del args["self"]
            return self.internode_combine(**args)
        ops = self._intranode("combine")
        runtime = self.runtime
        config = config if config is not None else self.get_combine_config(self.group_size)
        with self._scope(runtime, previous_event, async_finish, allocate_on_comm_stream) as scope:
            return run_combine(ops, scope, x, handle, topk_weights, bias, config)

    # ------------------------------------------------------------------ internode mode
    def internode_dispatch(
        self,
        x: _X,
        handle: Optional[tuple] = None,
        num_tokens_per_rank: Optional[torch.Tensor] = None,
        num_tokens_per_rdma_rank: Optional[torch.Tensor] = None,
        is_token_in_rank: Optional[torch.Tensor] = None,
        num_tokens_per_expert: Optional[torch.Tensor] = None,
        topk_idx: Optional[torch.Tensor] = None,
        topk_weights: Optional[torch.Tensor] = None,
        expert_alignment: int = 1,
        num_worst_tokens: int = 0,
        config: Optional[Config] = None,
        previous_event: Optional[EventOverlap] = None,
        async_finish: bool = False,
        allocate_on_comm_stream: bool = False,
    ) -> _DispatchOut:
        """``dispatch`` across NVLink domains (docs/internode.md); ``dispatch`` calls it when the
        ranks span several. Arguments and results as ``dispatch``, with
        ``num_tokens_per_rdma_rank`` int32 [N] required without a handle. The handle is DeepEP's
        10-tuple ``(is_token_in_rank, rdma_channel_prefix_matrix, gbl_channel_prefix_matrix,
        recv_rdma_channel_prefix_matrix, recv_rdma_rank_prefix_sum,
        recv_gbl_channel_prefix_matrix, recv_gbl_rank_prefix_sum, recv_src_meta, send_rdma_head,
        send_nvl_head)``; ``handle[-4]`` [R] int32 is the inclusive prefix of the rows received
        per source rank. ``num_worst_tokens > 0`` sizes the received rows and the forwarded
        rows (``send_nvl_head``) to it without waiting for the counts (as DeepEP V1); it must
        bound both. ``config`` defaults to ``get_dispatch_config(group_size)``.
        """
        ops = self._internode("internode_dispatch")
        runtime = self.runtime
        config = config if config is not None else self.get_dispatch_config(self.group_size)
        with self._scope(runtime, previous_event, async_finish, allocate_on_comm_stream) as scope:
            if handle is not None:
                if topk_idx is not None or topk_weights is not None:
                    raise ValueError(
                        "cached dispatch (handle given) takes no topk_idx/topk_weights"
                    )
                return inter.cached_dispatch(ops, scope, x, handle, config)
            return inter.fresh_dispatch(
                self._nodes(),
                ops,
                scope,
                x,
                num_tokens_per_rank,
                num_tokens_per_rdma_rank,
                is_token_in_rank,
                num_tokens_per_expert,
                topk_idx,
                topk_weights,
                expert_alignment,
                num_worst_tokens,
                config,
            )

    def internode_combine(
        self,
        x: torch.Tensor,
        handle: tuple,
        topk_weights: Optional[torch.Tensor] = None,
        bias: Union[None, torch.Tensor, Tuple[torch.Tensor, torch.Tensor]] = None,
        config: Optional[Config] = None,
        previous_event: Optional[EventOverlap] = None,
        async_finish: bool = False,
        allocate_on_comm_stream: bool = False,
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor], EventOverlap]:
        """``combine`` across NVLink domains (docs/internode.md); ``combine`` calls it when the
        ranks span several. ``handle``: an internode dispatch's 10-tuple (only read). Each
        node first sums its ranks' rows for a token in fp32 and rounds that partial to bf16;
        the token's rank then adds the biases and the node partials (ascending node) in fp32
        and casts once. ``config`` defaults to ``get_combine_config(group_size)``; its num_sms
        must equal the dispatch's.
        """
        ops = self._internode("internode_combine")
        runtime = self.runtime
        config = config if config is not None else self.get_combine_config(self.group_size)
        with self._scope(runtime, previous_event, async_finish, allocate_on_comm_stream) as scope:
            return inter.run_combine(ops, scope, x, handle, topk_weights, bias, config)
