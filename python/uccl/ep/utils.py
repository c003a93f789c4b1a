"""Events and stream helpers shared by the Buffer methods (DeepEP-compatible)."""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Optional

import torch


class EventHandle:
    """A CUDA event recorded on a stream (the current stream by default)."""

    def __init__(self, stream: Optional[torch.cuda.Stream] = None) -> None:
        self.event = torch.cuda.Event()
        self.event.record(stream if stream is not None else torch.cuda.current_stream())

    def current_stream_wait(self) -> None:
        """Makes the current stream wait for the event."""
        torch.cuda.current_stream().wait_event(self.event)


class EventOverlap:
    """An optional event plus tensors kept alive until it is waited on.

    ``with EventOverlap(...):`` runs the body, then makes the current stream wait for the
    event (a no-op without event), so communication overlaps with the body.
    """

    def __init__(
        self, event: Optional[EventHandle] = None, extra_tensors: Optional[tuple] = None
    ) -> None:
        self.event = event
        self.extra_tensors = extra_tensors
        # Raises the recorded error of the Buffer whose call returned this event (set by that
        # call; None for events made elsewhere).
        self._check: Optional[Callable[[], None]] = None

    def current_stream_wait(self) -> None:
        """Makes the current stream wait for the event; raises ``ValueError`` if there is none
        and ``RuntimeError`` if the Buffer that made it recorded an error (its outputs are
        poisoned)."""
        if self.event is None:
            raise ValueError(
                "EventOverlap.current_stream_wait(): no event (the call was not async_finish)"
            )
        if self._check is not None:
            self._check()
        self.event.current_stream_wait()

    def __enter__(self) -> EventOverlap:
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        if self.event is not None:
            if self._check is not None and exc_type is None:
                self._check()
            self.event.current_stream_wait()


_RAW_STREAM = getattr(torch._C, "_cuda_getCurrentRawStream", None)


def current_raw_stream(device_index: int) -> int:
    """The raw handle (cudaStream_t as int) of the current stream of `device_index`, without
    building a ``torch.cuda.Stream`` object (~0.2 us instead of ~5-8 us)."""
    if _RAW_STREAM is not None:
        return int(_RAW_STREAM(device_index))
    return torch.cuda.current_stream(device_index).cuda_stream


def raw_event(handle: EventHandle) -> int:
    """The raw cudaEvent_t of an EventHandle (0 when never recorded)."""
    try:
        return int(handle.event.cuda_event)
    except AttributeError:
        raise TypeError(
            "previous_event.event must be an EventHandle (from Buffer.capture() or a uccl-ep "
            f"call), got {type(handle).__name__}"
        ) from None


class StreamScope:
    """Stream rules of DeepEP's normal kernels, for one call.

    Entering: the communication stream waits for ``previous_event.event`` if any, else for the
    current stream; with ``allocate_on_comm_stream`` the body allocates on the comm stream.
    ``finish(tensors)``: with ``async_finish`` records an event on the comm stream and marks
    every tensor as used by it (and by the compute stream when allocated on the comm stream);
    otherwise makes the current stream wait for the comm stream. The stream waits go through
    `runtime` (the native Buffer's ``stream_wait``: one reused CUDA event) on raw handles; the
    event's ``current_stream_wait`` raises the Buffer's recorded error.
    """

    def __init__(
        self,
        runtime: Any,
        comm_stream: torch.cuda.Stream,
        comm_handle: int,
        device_index: int,
        previous_event: Optional[Any],
        async_finish: bool,
        allocate_on_comm_stream: bool,
    ) -> None:
        # As in DeepEP, the event is previous_event.event: an EventOverlap holding none (what a
        # synchronous call returns) means "no previous event". Objects without `.event` (a
        # torch.cuda.Event, say) are refused rather than silently ignored.
        event = None
        if previous_event is not None:
            if not hasattr(previous_event, "event"):
                raise TypeError(
                    "previous_event must be an EventOverlap (or None), got "
                    f"{type(previous_event).__name__}"
                )
            event = previous_event.event
        if allocate_on_comm_stream and (event is None or not async_finish):
            raise ValueError(
                "allocate_on_comm_stream=True requires previous_event (an EventOverlap holding "
                "an event) and async_finish=True"
            )
        self.runtime = runtime
        self.comm = comm_stream
        self.stream_handle = comm_handle
        self.compute_handle = current_raw_stream(device_index)
        if self.compute_handle == comm_handle:
            raise RuntimeError(
                "uccl-ep calls must not be made from the Buffer's communication stream"
            )
        # The compute stream as an object only where torch needs one (record_stream).
        self.compute = torch.cuda.current_stream(device_index) if allocate_on_comm_stream else None
        self.previous_raw = None if event is None else raw_event(event)
        self.async_finish = async_finish
        self.allocate_on_comm_stream = allocate_on_comm_stream
        self._ctx = None

    def __enter__(self) -> StreamScope:
        if self.previous_raw is not None:
            self.runtime.stream_wait_event(self.stream_handle, self.previous_raw)
        else:
            self.runtime.stream_wait(self.stream_handle, self.compute_handle)
        if self.allocate_on_comm_stream:
            self._ctx = torch.cuda.stream(self.comm)
            self._ctx.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(exc_type, exc_val, exc_tb)
            self._ctx = None

    def finish(self, tensors: Iterable[Optional[torch.Tensor]]) -> EventOverlap:
        if not self.async_finish:
            self.runtime.stream_wait(self.compute_handle, self.stream_handle)
            return EventOverlap(None)
        for t in tensors:
            if isinstance(t, torch.Tensor):
                t.record_stream(self.comm)
                if self.compute is not None:
                    t.record_stream(self.compute)
        overlap = EventOverlap(EventHandle(self.comm))
        overlap._check = self.runtime.check
        return overlap


def check_nvlink_connections(group: Any) -> None:
    """DeepEP V1's check of the GPUs of ``group`` (a ``torch.distributed`` group), made before a
    Buffer is built: on PCIe GPUs (device name containing ``PCIE``) at most 2 ranks, and, when
    ``pynvml`` is installed, an NVLink between the two. Other GPUs pass without a collective.
    Raises ``RuntimeError`` naming the devices otherwise."""
    name = torch.cuda.get_device_name()
    if "PCIE" not in name.upper():
        return
    import torch.distributed as dist

    size = dist.get_world_size(group)
    if size > 2:
        raise RuntimeError(
            f"check_nvlink_connections: {name} is a PCIe GPU; the intranode mode supports at "
            f"most 2 PCIe GPUs (an NVLink-bridged pair), the group has {size} ranks"
        )
    try:
        import pynvml
    except ImportError:
        return
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    index = torch.cuda.current_device()
    ids = [s.strip() for s in visible.split(",") if s.strip()] if visible else []
    physical = int(ids[index]) if index < len(ids) and ids[index].isdigit() else index
    all_ids = [None] * size
    dist.all_gather_object(all_ids, physical, group=group)
    pynvml.nvmlInit()
    try:
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in all_ids]
        for i, a in enumerate(handles):
            for j, b in enumerate(handles):
                if i >= j:
                    continue
                status = pynvml.nvmlDeviceGetP2PStatus(a, b, pynvml.NVML_P2P_CAPS_INDEX_NVLINK)
                if status != pynvml.NVML_P2P_STATUS_OK:
                    raise RuntimeError(
                        f"check_nvlink_connections: GPUs {all_ids[i]} and {all_ids[j]} ({name}) "
                        "are not connected by NVLink"
                    )
    finally:
        pynvml.nvmlShutdown()
