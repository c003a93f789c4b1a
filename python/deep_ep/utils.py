"""``deep_ep.utils`` of DeepEP V1: the event classes and the NVLink check, from uccl-ep."""

from uccl.ep.utils import EventHandle, EventOverlap, check_nvlink_connections

__all__ = ["EventHandle", "EventOverlap", "check_nvlink_connections"]
