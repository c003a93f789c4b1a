"""Lifecycle of the CPU proxies of this process: ``initialize_uccl`` / ``destroy_uccl``.

GPU kernels push 16-byte commands into queues in pinned host memory; CPU proxy threads execute
them through a transport (libfabric, ipc, ...). ``initialize_uccl`` builds one rank's command
path (the native ``CommandPath``: queues, signal region, transports, proxy threads) around the
caller's RDMA buffer (UCCL-EP calls it the scratch buffer), exchanges transport addresses with
the other ranks through the group, and starts the threads; ``destroy_uccl`` stops them. Every
rank of the group calls both, collectively. A ``Buffer`` with ``num_rdma_bytes > 0`` builds its
own command path; these two functions are for callers that manage the RDMA buffer themselves.

Two calling conventions work: ``h = initialize_uccl(...); destroy_uccl(h)``, and UCCL-EP's
``proxies, workers = initialize_uccl(scratch, ...); destroy_uccl(proxies, workers)``, where
``scratch`` may be a tensor or an address.

torch is imported only when ``group`` is a ``torch.distributed`` process group.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Sequence
from typing import Any, Dict, Iterator, NamedTuple, Optional, Tuple, Union

from . import _C
from ._bootstrap import Bootstrap

__all__ = ["ProxyThread", "UcclHandle", "UcclProxies", "destroy_uccl", "initialize_uccl"]

# Transports that may cross hosts: with these, ranks that all share one host need no proxy
# (same-host peers are reached over NVLink by the kernels themselves).
_NETWORK_TRANSPORTS = ("auto", "libfabric")

_lock = threading.Lock()
_live: Dict[Tuple[int, int, bool], Optional[UcclHandle]] = {}  # None: being initialized


class ProxyThread(NamedTuple):
    """One CPU proxy thread of this rank: its index and the command queues it drains (queue q
    is drained by thread q % num_threads on every rank)."""

    index: int
    queues: Tuple[int, ...]


class UcclProxies(Sequence):
    """``proxies`` of ``proxies, workers = initialize_uccl(...)``: a read-only list of this
    rank's proxy threads (``ProxyThread``; empty when intranode: no proxy runs), with their
    shared ``status``, ``check()`` and ``stats()``. ``destroy_uccl(proxies, workers)`` stops
    them; ``handle`` is the ``UcclHandle`` (``workers``) that owns them."""

    def __init__(self, handle: UcclHandle) -> None:
        self._handle = handle
        path = handle._path
        n = path.num_threads if path is not None else 0
        q = path.num_queues if path is not None else 0
        self._threads = tuple(ProxyThread(t, tuple(range(t, q, n))) for t in range(n))

    @property
    def handle(self) -> UcclHandle:
        """The ``UcclHandle`` these proxies belong to (``workers``)."""
        return self._handle

    @property
    def status(self) -> str:
        """One of "intranode" (no proxy runs), "running", "failed" (``check()`` raises the
        first error) or "destroyed"."""
        if self._handle.destroyed:
            return "destroyed"
        if not self._threads:
            return "intranode"
        try:
            self._handle.check()
        except RuntimeError:
            return "failed"
        return "running"

    def check(self) -> None:
        """Raises RuntimeError with the proxies' first error, if they failed."""
        self._handle.check()

    def stats(self) -> Dict[str, int]:
        """Counters summed over the proxy threads."""
        return self._handle.stats()

    def __len__(self) -> int:
        return len(self._threads)

    def __getitem__(self, index: Any) -> Any:
        return self._threads[index]

    def __repr__(self) -> str:
        h = self._handle
        return f"UcclProxies(rank={h.rank}, {len(self)} thread(s), {self.status})"


class UcclHandle:
    """What ``initialize_uccl`` returns: this rank's proxies. Pass it to ``destroy_uccl``.

    It also unpacks as UCCL-EP's ``proxies, workers``: ``proxies`` is its ``UcclProxies`` view
    of the proxy threads, ``workers`` the handle itself; ``destroy_uccl(proxies, workers)``
    takes both back."""

    def __init__(
        self,
        key: Tuple[int, int, bool],
        group: Any,
        rank: int,
        num_ranks: int,
        num_experts: int,
        is_intranode: bool,
        use_normal_mode: bool,
        path: Optional[Any],
    ) -> None:
        self._key, self._boot = key, group
        self.rank, self.num_ranks, self.num_experts = rank, num_ranks, num_experts
        self.is_intranode, self.use_normal_mode = is_intranode, use_normal_mode
        self._path = path  # the native CommandPath (None when intranode)
        self._scratch: Any = None  # the caller's scratch tensor, kept alive until destroyed
        self.destroyed = False
        self.proxies = UcclProxies(self)

    def __iter__(self) -> Iterator[Any]:
        """``proxies, workers = initialize_uccl(...)``: yields ``self.proxies``, then ``self``."""
        return iter((self.proxies, self))

    @property
    def num_proxy_threads(self) -> int:
        """Proxy threads running for this rank (0 when intranode: nothing to proxy)."""
        return self._path.num_threads if self._path is not None else 0

    @property
    def transport(self) -> str:
        """The transport in use ("" when intranode)."""
        return self._path.transport if self._path is not None else ""

    def check(self) -> None:
        """Raises RuntimeError with the proxies' first error (rank, thread, queue, ticket,
        opcode, peer, transport message, counters), if they failed."""
        if self._path is not None:
            self._path.check()

    def stats(self) -> Dict[str, int]:
        """Counters summed over this rank's proxy threads (commands, posted, completed, ...)."""
        return self._path.stats() if self._path is not None else {}

    def __repr__(self) -> str:
        state = "destroyed" if self.destroyed else f"{self.num_proxy_threads} proxy thread(s)"
        where = self.transport or "intranode"
        return f"UcclHandle(rank={self.rank}/{self.num_ranks}, {where}, {state})"


def _check_args(
    scratch_nbytes: int, rank: int, num_ranks: int, group: Any, num_experts: int
) -> None:
    for name, value in (
        ("scratch_nbytes", scratch_nbytes),
        ("rank", rank),
        ("num_ranks", num_ranks),
        ("num_experts", num_experts),
    ):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"initialize_uccl: {name} must be an int, got {type(value).__name__}")
    if group is None:
        raise ValueError("initialize_uccl: group is required (a torch.distributed process group)")
    if num_ranks < 1 or not 0 <= rank < num_ranks:
        raise ValueError(f"initialize_uccl: rank={rank} must be in [0, num_ranks={num_ranks})")
    if scratch_nbytes <= 0:
        raise ValueError(
            f"initialize_uccl: the RDMA buffer is empty (scratch_nbytes={scratch_nbytes}); "
            "it must be > 0"
        )
    if num_experts < 0 or (num_experts > 0 and num_experts % num_ranks != 0):
        raise ValueError(
            f"initialize_uccl: num_experts={num_experts} must be 0 or a multiple of "
            f"num_ranks={num_ranks}"
        )


def _is_tensor(obj: Any) -> bool:
    """A torch.Tensor, or anything shaped like one (data_ptr, numel, element_size,
    is_contiguous, device): torch is not imported here."""
    return all(
        callable(getattr(obj, m, None))
        for m in ("data_ptr", "numel", "element_size", "is_contiguous")
    ) and hasattr(obj, "device")


def _scratch_address(scratch: Any, scratch_nbytes: int, host_allocated: bool, device: int) -> int:
    """The address of ``scratch`` (an int address, or a tensor checked against the rules)."""
    if isinstance(scratch, int) and not isinstance(scratch, bool):
        address = scratch
    elif _is_tensor(scratch):
        dev = scratch.device
        kind = getattr(dev, "type", str(dev))
        if host_allocated and kind != "cpu":
            raise ValueError(
                f"initialize_uccl: scratch is a {dev} tensor but "
                "rdma_buffer_is_host_allocated=True: pass a (pinned) CPU tensor, or "
                "rdma_buffer_is_host_allocated=False"
            )
        if not host_allocated and kind != "cuda":
            raise ValueError(
                f"initialize_uccl: scratch is a {dev} tensor but "
                "rdma_buffer_is_host_allocated=False: the RDMA buffer must be a CUDA tensor "
                "(or pass rdma_buffer_is_host_allocated=True for pinned host memory)"
            )
        index = getattr(dev, "index", None)
        if kind == "cuda" and device >= 0 and index is not None and index != device:
            raise ValueError(
                f"initialize_uccl: scratch is on cuda:{index} but the current CUDA device is "
                f"{device}: the proxies serve the current device (torch.cuda.set_device)"
            )
        if not scratch.is_contiguous():
            raise ValueError(
                f"initialize_uccl: scratch must be contiguous (shape {tuple(scratch.shape)}, "
                f"stride {tuple(scratch.stride())}): the RDMA buffer is one byte range"
                if hasattr(scratch, "stride")
                else "initialize_uccl: scratch must be contiguous: the RDMA buffer is one "
                "byte range"
            )
        nbytes = int(scratch.numel()) * int(scratch.element_size())
        if nbytes < scratch_nbytes:
            raise ValueError(
                f"initialize_uccl: scratch holds {nbytes} bytes ({scratch.numel()} elements of "
                f"{scratch.element_size()} bytes), fewer than scratch_nbytes={scratch_nbytes}"
            )
        address = int(scratch.data_ptr())
    else:
        raise TypeError(
            "initialize_uccl: scratch must be a tensor (torch.Tensor: data_ptr(), numel(), "
            "element_size(), is_contiguous(), device) or an int address, got "
            f"{type(scratch).__name__}"
        )
    if address == 0:
        raise ValueError(
            f"initialize_uccl: the RDMA buffer is empty (scratch address 0x0, "
            f"scratch_nbytes={scratch_nbytes}); it needs memory"
        )
    return address


def initialize_uccl(
    scratch: Any,
    scratch_nbytes: int,
    rank: int,
    num_ranks: int,
    group: Any,
    num_experts: int = 0,
    is_intranode: Optional[bool] = None,
    use_normal_mode: bool = False,
    rdma_buffer_is_host_allocated: bool = False,
    *,
    _transport: Optional[str] = None,
    _host_queues: bool = False,
) -> UcclHandle:
    """Starts this rank's CPU proxies. Collective over ``group``.

    Args:
        scratch: this rank's RDMA buffer (UCCL-EP's name: scratch): a contiguous tensor of at
            least ``scratch_nbytes`` bytes (any dtype; CUDA on the current device, or CPU when
            ``rdma_buffer_is_host_allocated``; kept alive until ``destroy_uccl``), or its
            address as an int. Every rank's has the same size and layout.
        scratch_nbytes: its size in bytes (at most 64 GiB).
        rank, num_ranks: this rank and the group size (``group``'s).
        group: ``torch.distributed`` process group (or an object with ``allgather(obj)``,
            e.g. an mpi4py communicator) used once to exchange transport addresses.
        num_experts: experts of the model (0: unknown); must divide evenly over the ranks.
        is_intranode: True: every peer is reached over NVLink, no proxy starts. None: True
            when all ranks share one host and the transport crosses hosts (auto, libfabric);
            with UCCL_EP_TRANSPORT=ipc (emulated nodes on one host) proxies run.
        use_normal_mode: normal (high-throughput) mode: the per-queue in-flight limit is
            UCCL_IB_MAX_INFLIGHT_NORMAL; else UCCL_IB_MAX_INFLIGHT_LOW_LATENCY.
        rdma_buffer_is_host_allocated: the RDMA buffer is pinned host memory.
        _transport, _host_queues: tests only (a transport name overriding UCCL_EP_TRANSPORT;
            queues in plain host memory, pushed from Python).

    Returns:
        A ``UcclHandle`` for ``destroy_uccl(handle)``. It also unpacks as UCCL-EP's
        ``proxies, workers``: ``proxies`` is a ``UcclProxies``, a read-only list of the proxy
        threads (``ProxyThread(index, queues)``; empty when intranode) with ``status``,
        ``check()`` and ``stats()``; ``workers`` is the handle itself. Both go back to
        ``destroy_uccl(proxies, workers)``.

    Raises:
        RuntimeError: already initialized for this rank and device and mode, or the transport
            failed to start. ValueError / TypeError: bad arguments (a tensor ``scratch`` that
            is not contiguous, too small, or on the wrong device) or environment variables.
    """
    _check_args(scratch_nbytes, rank, num_ranks, group, num_experts)
    device = -1 if _host_queues else _C.current_cuda_device()
    scratch_ptr = _scratch_address(scratch, scratch_nbytes, rdma_buffer_is_host_allocated, device)
    env = _C.proxy_env_settings()  # ValueError naming a variable that does not parse
    transport = _transport or env["transport"]
    key = (device, rank, bool(use_normal_mode))
    with _lock:
        if key in _live:
            raise RuntimeError(
                f"initialize_uccl: already initialized for rank {rank} on CUDA device {device} "
                f"({'normal' if use_normal_mode else 'low-latency'} mode); call "
                "destroy_uccl(handle) first"
            )
        _live[key] = None  # reserved while this call runs
    try:
        handle = _start(
            key, scratch_ptr, scratch_nbytes, rank, num_ranks, group, num_experts,
            is_intranode, use_normal_mode, rdma_buffer_is_host_allocated, transport,
            _host_queues,
        )  # fmt: skip
    except BaseException:
        with _lock:
            _live.pop(key, None)
        raise
    handle._scratch = None if isinstance(scratch, int) else scratch
    with _lock:
        _live[key] = handle
    return handle


def _start(
    key: Tuple[int, int, bool],
    scratch_ptr: int,
    scratch_nbytes: int,
    rank: int,
    num_ranks: int,
    group: Any,
    num_experts: int,
    is_intranode: Optional[bool],
    use_normal_mode: bool,
    host_allocated: bool,
    transport: str,
    host_queues: bool,
) -> UcclHandle:
    # Hosts (local rank, intranode) and a job token: rank 0's names the fake fabric, so that
    # several jobs (or modes) in one process never share one.
    boot = Bootstrap(group, who="initialize_uccl")
    peers = boot.all_gather((socket.gethostname(), uuid.uuid4().hex))
    if len(peers) != num_ranks:
        raise ValueError(f"initialize_uccl: num_ranks={num_ranks} but the group has {len(peers)}")
    hosts = [p[0] for p in peers]
    local_rank = sum(1 for r in range(rank) if hosts[r] == hosts[rank])
    if is_intranode is None:
        is_intranode = len(set(hosts)) == 1 and transport in _NETWORK_TRANSPORTS
    if is_intranode:
        return UcclHandle(key, boot, rank, num_ranks, num_experts, True, use_normal_mode, None)
    # The native constructor is collective: a failure on any rank raises on every rank.
    if transport == "fake":
        from ._C import _testing

        path = _testing.fake_command_path(
            fabric_key=f"python-{peers[0][1]}", rank=rank, num_ranks=num_ranks,
            rdma_buffer=scratch_ptr, rdma_buffer_bytes=scratch_nbytes,
            low_latency_mode=not use_normal_mode, all_gather=boot.all_gather_bytes,
        )  # fmt: skip
    else:
        path = _C.CommandPath(
            rank=rank, num_ranks=num_ranks, local_rank=local_rank, rdma_buffer=scratch_ptr,
            rdma_buffer_bytes=scratch_nbytes, rdma_buffer_on_device=not host_allocated,
            device=key[0], low_latency_mode=not use_normal_mode, transport=transport,
            host_queues=host_queues, all_gather=boot.all_gather_bytes,
        )  # fmt: skip
    return UcclHandle(key, boot, rank, num_ranks, num_experts, False, use_normal_mode, path)


def _handle_of(handle: Any, workers: Any) -> UcclHandle:
    """The UcclHandle that ``destroy_uccl(handle)`` or ``destroy_uccl(proxies, workers)``
    names, checked."""
    if handle is None and workers is None:
        raise RuntimeError(
            "destroy_uccl(None): nothing to destroy; pass the handle initialize_uccl() returned "
            "(destroy before initialize?)"
        )
    if isinstance(handle, UcclProxies):
        owner = handle.handle
    elif isinstance(handle, UcclHandle):
        owner = handle
    else:
        raise TypeError(
            "destroy_uccl: expected a UcclHandle (or the proxies of proxies, workers = "
            f"initialize_uccl(...)), got {type(handle).__name__}"
        )
    if workers is not None and workers is not owner:
        if not isinstance(workers, UcclHandle):
            raise TypeError(
                "destroy_uccl: workers must be the second value initialize_uccl returned (a "
                f"UcclHandle), got {type(workers).__name__}"
            )
        raise ValueError(
            f"destroy_uccl: proxies ({handle!r}) and workers ({workers!r}) come from different "
            "initialize_uccl calls; pass the two values one call returned"
        )
    return owner


def destroy_uccl(
    handle: Union[UcclHandle, UcclProxies], workers: Optional[UcclHandle] = None
) -> None:
    """Stops the proxies started by ``initialize_uccl``: ``destroy_uccl(handle)``, or UCCL-EP's
    ``destroy_uccl(proxies, workers)`` with the two values the handle unpacked into. Collective
    over the handle's group (no rank stops while a peer may still need its progress; if the
    group itself fails, e.g. a dead peer, the proxies are stopped anyway).

    Raises:
        RuntimeError: nothing to destroy (None), the handle was already destroyed, or the
            proxies failed (the message is their first error; the handle is destroyed anyway).
        TypeError: ``handle`` is not a UcclHandle or UcclProxies, or ``workers`` is not a
            UcclHandle.
        ValueError: ``proxies`` and ``workers`` come from different ``initialize_uccl`` calls.
    """
    handle = _handle_of(handle, workers)
    with _lock:
        if handle.destroyed:
            raise RuntimeError(
                f"destroy_uccl: the handle of rank {handle.rank} was already destroyed"
            )
        handle.destroyed = True
    try:
        path = handle._path
        if path is None:
            return
        try:
            handle._boot.barrier()  # no rank stops while peers still send
        except Exception:  # noqa: BLE001 - a dead peer: stop anyway, the proxies report it
            pass
        status, message = path.stop(drain=True)
        if status == "failed":
            raise RuntimeError(message)
        if status == "abandoned":
            raise RuntimeError(f"destroy_uccl: {message}")
    finally:
        handle._scratch = None
        with _lock:
            if _live.get(handle._key) is handle:
                del _live[handle._key]
