"""Drop-in ``deep_ep`` package backed by uccl-ep (``import deep_ep`` works unmodified)."""

from uccl.ep import Buffer, Config, EventOverlap, topk_idx_t
from uccl.ep.utils import EventHandle

__all__ = ["Buffer", "Config", "EventHandle", "EventOverlap", "topk_idx_t"]
__version__ = "1.2.1+uccl"
