"""Pytest entry points of the runtime suite (runtime_suite.py): the Buffer's topology, its RDMA
domain over the ipc and libfabric transports between emulated nodes, and its destroy barrier.
Skips without torch or GPUs like the other GPU suites."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from .test_intranode_gpu import rank_counts, require_gpus, run_and_assert  # noqa: E402


@pytest.mark.parametrize("num_ranks", [r for r in rank_counts() if r <= 4])
def test_runtime_suite(num_ranks: int) -> None:
    require_gpus(num_ranks)
    from . import runtime_suite

    run_and_assert(runtime_suite.run_suite, "runtime", num_ranks)
