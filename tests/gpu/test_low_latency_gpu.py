"""Pytest entry points of the low-latency (LL) suites: low_latency_suite.py on every topology
of UCCL_EP_TEST_LL_TOPOLOGIES, and the stalled-rank test ll_stall_suite.py; one launch per
suite and rank count (UCCL_EP_TEST_RANKS, default 2,4,8). Skips without torch or without enough
GPUs (unless ranks may share them, _dist.py)."""

from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")

from .test_intranode_gpu import rank_counts, require_gpus, run_and_assert  # noqa: E402

SECS_PER_TOPOLOGY = 300.0  # default deadline: this per topology plus SETUP_SECS
SETUP_SECS = 120.0
STALL_DEADLINE_SECS = 300.0


def suite_deadline(num_topologies: int) -> float:
    """UCCL_EP_TEST_DEADLINE_SECS when set, else one that grows with the topologies run."""
    from . import _dist

    if os.environ.get(_dist.DEADLINE_ENV, "").strip():
        return _dist.deadline_secs()
    return SETUP_SECS + SECS_PER_TOPOLOGY * num_topologies


@pytest.mark.parametrize("num_ranks", rank_counts())
def test_low_latency_suite(num_ranks: int) -> None:
    require_gpus(num_ranks)
    from . import low_latency_suite

    topologies = low_latency_suite.selected_topologies(num_ranks)  # a typo in the env fails here
    deadline = suite_deadline(len(topologies))
    run_and_assert(low_latency_suite.run_suite, "low_latency", num_ranks, deadline)


@pytest.mark.parametrize("num_ranks", rank_counts())
def test_low_latency_stall(num_ranks: int) -> None:
    require_gpus(num_ranks)
    from . import _dist, ll_stall_suite

    deadline = min(_dist.deadline_secs(), STALL_DEADLINE_SECS)
    run_and_assert(ll_stall_suite.run_suite, "low_latency_stall", num_ranks, deadline)
