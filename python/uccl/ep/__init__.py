"""uccl.ep: expert-parallel dispatch/combine with the DeepEP V1 ``Buffer`` API.

``Buffer``, ``EventOverlap`` and ``topk_idx_t`` need PyTorch (any version with DLPack) and are
imported on first use; ``Config`` and the native core ``uccl.ep._C`` do not need it.
``initialize_uccl`` / ``destroy_uccl`` (the CPU proxies of this process) are imported on first
use too; they import torch only when given a ``torch.distributed`` group.
"""

from typing import Any

from ._C import Config

__all__ = [
    "Buffer",
    "Config",
    "EventHandle",
    "EventOverlap",
    "ProxyThread",
    "UcclHandle",
    "UcclProxies",
    "destroy_uccl",
    "initialize_uccl",
    "topk_idx_t",
]
__version__ = "0.1.0"

_LAZY_ATTRS = {
    "Buffer": "buffer",
    "topk_idx_t": "buffer",
    "EventHandle": "utils",
    "EventOverlap": "utils",
    "initialize_uccl": "proxy",
    "destroy_uccl": "proxy",
    "UcclHandle": "proxy",
    "UcclProxies": "proxy",
    "ProxyThread": "proxy",
}


def __getattr__(name: str) -> Any:
    module = _LAZY_ATTRS.get(name)
    if module is None:
        raise AttributeError(f"module 'uccl.ep' has no attribute '{name}'")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
