"""uccl.ep._bootstrap.Bootstrap: the one all-gather of Buffer and initialize_uccl, over an
mpi4py-style communicator (no torch needed); refuses objects that are neither that nor a
torch.distributed process group."""

from __future__ import annotations

import pytest

from uccl.ep._bootstrap import Bootstrap


class FakeComm:
    """mpi4py's Comm as Buffer(comm=...) uses it: rank 1 of 3, allgather of objects."""

    def Get_rank(self) -> int:  # noqa: N802 - mpi4py's names
        return 1

    def Get_size(self) -> int:  # noqa: N802
        return 3

    def allgather(self, obj):
        return [f"r0:{obj}", obj, f"r2:{obj}"]


def test_mpi_style_comm_gathers_objects_and_bytes():
    boot = Bootstrap(None, FakeComm())
    assert (boot.rank, boot.size) == (1, 3)
    assert boot.all_gather("x") == ["r0:x", "x", "r2:x"]
    got = Bootstrap(None, type("C", (), {"allgather": lambda self, o: [o, o]})()).all_gather_bytes(
        b"\x01\x02"
    )
    assert got == [b"\x01\x02", b"\x01\x02"] and all(type(b) is bytes for b in got)


def test_refuses_no_group_and_objects_without_allgather():
    with pytest.raises(ValueError, match="either group"):
        Bootstrap(None, None)
    with pytest.raises(TypeError, match="must be a torch.distributed process group"):
        Bootstrap(object())
