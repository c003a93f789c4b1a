"""The one all-gather of uccl.ep: over a ``torch.distributed`` process group, an ``mpi4py``
communicator, or any object with ``allgather(obj) -> list`` (tests use threads). ``Buffer`` and
``initialize_uccl`` exchange everything through it; torch is imported only for a process group.
"""

from __future__ import annotations

import sys
from typing import Any, List


class Bootstrap:
    """All-gather of picklable objects and of bytes over `group` (or `comm`)."""

    def __init__(self, group: Any = None, comm: Any = None, *, who: str = "Buffer") -> None:
        if group is None and comm is None:
            raise ValueError(
                f"{who}: either group (torch.distributed) or comm (mpi4py) is required"
            )
        self._group = group if group is not None else comm
        # A torch.distributed group (it has an `allgather` method of its own, for tensors), or
        # anything with mpi4py's `allgather(obj) -> list`.
        dist = sys.modules.get("torch.distributed")
        self._torch = dist is not None and isinstance(self._group, dist.ProcessGroup)
        if self._torch:
            self.rank, self.size = dist.get_rank(self._group), dist.get_world_size(self._group)
        elif hasattr(self._group, "allgather"):
            self.rank = int(self._group.Get_rank()) if hasattr(self._group, "Get_rank") else None
            self.size = int(self._group.Get_size()) if hasattr(self._group, "Get_size") else None
        else:
            raise TypeError(
                f"{who}: the group must be a torch.distributed process group or have "
                f"allgather(obj) -> list (mpi4py), got {type(self._group).__name__}"
            )

    def all_gather(self, obj: Any) -> List[Any]:
        """Every rank's `obj`, in rank order."""
        if not self._torch:
            return list(self._group.allgather(obj))
        import torch.distributed as dist

        out: List[Any] = [None] * self.size
        dist.all_gather_object(out, obj, group=self._group)
        return out

    def all_gather_bytes(self, data: bytes) -> List[bytes]:
        """Every rank's `data` (the all-gather the native Buffer and CommandPath call)."""
        return [bytes(b) for b in self.all_gather(bytes(data))]

    def barrier(self) -> None:
        self.all_gather(None)
