"""Drop-in ``deep_ep`` package backed by uccl-ep (``import deep_ep`` works unmodified).

It replaces DeepEP's package of the same name: installing uccl-ep and DeepEP in one environment
makes both provide ``deep_ep``, so install one of them. Licensed under Apache-2.0, as uccl-ep.
"""

from uccl.ep import Buffer, Config, EventOverlap, topk_idx_t
from uccl.ep.utils import EventHandle

__all__ = ["Buffer", "Config", "EventHandle", "EventOverlap", "topk_idx_t"]
__version__ = "1.2.1+uccl"
