"""Events and stream helpers shared by the Buffer methods (DeepEP-compatible)."""

from __future__ import annotations

from typing import Any, Iterable, Optional

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

    def current_stream_wait(self) -> None:
        """Makes the current stream wait for the event; raises if there is none."""
        if self.event is None:
            raise ValueError(
                "EventOverlap.current_stream_wait(): no event (the call was not async_finish)"
            )
        self.event.current_stream_wait()

    def __enter__(self) -> EventOverlap:
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        if self.event is not None:
            self.event.current_stream_wait()


def dl(t: Optional[torch.Tensor]) -> Any:
    """Hands a tensor to the extension as DLPack without any stream synchronisation.

    ``stream=-1`` tells PyTorch not to make another stream wait (the extension takes the
    stream explicitly). Tensors a DLPack producer cannot export (e.g. requiring grad, or a
    dtype the installed PyTorch does not export) fall back to an explicit TensorDesc.
    """
    if t is None:
        return None
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor or None, got {type(t).__name__}")
    try:
        return t.__dlpack__(stream=-1)
    except (BufferError, RuntimeError, TypeError):
        from . import _C

        device = f"cuda:{t.device.index}" if t.is_cuda else "cpu"
        return _C.TensorDesc(str(t.dtype), list(t.shape), list(t.stride()), device, t.data_ptr())


class StreamScope:
    """Stream rules of DeepEP's normal kernels, for one call.

    Entering: the communication stream waits for ``previous_event`` if given, else for the
    current stream; with ``allocate_on_comm_stream`` the body allocates on the comm stream.
    ``finish(tensors)``: with ``async_finish`` records an event on the comm stream and marks
    every tensor as used by it (and by the compute stream when allocated on the comm stream);
    otherwise makes the current stream wait for the comm stream.
    """

    def __init__(
        self,
        comm_stream: torch.cuda.Stream,
        previous_event: Optional[Any],
        async_finish: bool,
        allocate_on_comm_stream: bool,
    ) -> None:
        if allocate_on_comm_stream and (previous_event is None or not async_finish):
            raise ValueError(
                "allocate_on_comm_stream=True requires previous_event and async_finish=True"
            )
        if previous_event is not None and not isinstance(previous_event, EventOverlap):
            raise TypeError(
                f"previous_event must be an EventOverlap or None, got {type(previous_event)}"
            )
        if previous_event is not None and previous_event.event is None:
            raise ValueError("previous_event holds no event (it came from a synchronous call)")
        self.comm = comm_stream
        self.compute = torch.cuda.current_stream()
        if self.comm == self.compute:
            raise RuntimeError(
                "uccl-ep calls must not be made from the Buffer's communication stream"
            )
        self.previous_event = previous_event
        self.async_finish = async_finish
        self.allocate_on_comm_stream = allocate_on_comm_stream
        self._ctx = None

    def __enter__(self) -> StreamScope:
        if self.previous_event is not None:
            self.comm.wait_event(self.previous_event.event.event)
        else:
            self.comm.wait_stream(self.compute)
        if self.allocate_on_comm_stream:
            self._ctx = torch.cuda.stream(self.comm)
            self._ctx.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(exc_type, exc_val, exc_tb)
            self._ctx = None

    @property
    def stream_handle(self) -> int:
        return self.comm.cuda_stream

    def finish(self, tensors: Iterable[Optional[torch.Tensor]]) -> EventOverlap:
        if not self.async_finish:
            self.compute.wait_stream(self.comm)
            return EventOverlap(None)
        for t in tensors:
            if isinstance(t, torch.Tensor):
                t.record_stream(self.comm)
                if self.allocate_on_comm_stream:
                    t.record_stream(self.compute)
        return EventOverlap(EventHandle(self.comm))
