"""``deep_ep.buffer`` of DeepEP V1: ``Buffer``, ``Config`` and ``EventOverlap`` from uccl-ep."""

from uccl.ep import Config
from uccl.ep.buffer import Buffer
from uccl.ep.utils import EventOverlap

__all__ = ["Buffer", "Config", "EventOverlap"]
