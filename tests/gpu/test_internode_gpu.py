"""Pytest entry points of the internode GPU suites, one launch per suite and rank count
(UCCL_EP_TEST_RANKS, default 4,8): internode_suite.py on every topology of
UCCL_EP_TEST_INTERNODE_TOPOLOGIES that the ranks form (default: nodes of 2 and 4 ranks over the
ipc transport and libfabric tcp, so 4 ranks run 2 x 2, 8 ranks 4 x 2 and 2 x 4); the
stalled-rank test internode_stall_suite.py (L2_ipc); one Buffer in both the internode and the
low-latency mode, internode_ll_compat_suite.py (the ipc topologies). Skips without torch or
without enough GPUs (unless ranks may share them, _dist.py)."""

from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")

from .test_intranode_gpu import require_gpus, run_and_assert  # noqa: E402

RANKS_ENV = "UCCL_EP_TEST_RANKS"
DEFAULT_RANKS = (4, 8)
SECS_PER_TOPOLOGY = 900.0  # default deadline: this per topology plus SETUP_SECS
SETUP_SECS = 120.0
STALL_DEADLINE_SECS = 300.0
COMPAT_SECS_PER_TOPOLOGY = 300.0


def rank_counts() -> list[int]:
    raw = os.environ.get(RANKS_ENV, "").strip()
    return [int(v) for v in raw.split(",") if v.strip()] if raw else list(DEFAULT_RANKS)


def suite_deadline(num_topologies: int) -> float:
    """UCCL_EP_TEST_DEADLINE_SECS when set, else one that grows with the topologies run."""
    from . import _dist

    if os.environ.get(_dist.DEADLINE_ENV, "").strip():
        return _dist.deadline_secs()
    return SETUP_SECS + SECS_PER_TOPOLOGY * num_topologies


@pytest.mark.parametrize("num_ranks", rank_counts())
def test_internode_suite(num_ranks: int) -> None:
    from . import internode_suite

    topologies = internode_suite.selected_topologies(num_ranks)  # a typo in the env fails here
    if not topologies:
        pytest.skip(f"no selected topology forms several nodes of {num_ranks} ranks")
    require_gpus(num_ranks)
    deadline = suite_deadline(len(topologies))
    run_and_assert(internode_suite.run_suite, "internode", num_ranks, deadline)


@pytest.mark.parametrize("num_ranks", rank_counts())
def test_internode_stall(num_ranks: int) -> None:
    from . import _dist, internode_stall_suite

    if not internode_stall_suite.stall_topologies(num_ranks):
        pytest.skip(f"{num_ranks} ranks form no 2 nodes of 2 ranks")
    require_gpus(num_ranks)
    deadline = min(_dist.deadline_secs(), STALL_DEADLINE_SECS)
    run_and_assert(internode_stall_suite.run_suite, "internode_stall", num_ranks, deadline)


@pytest.mark.parametrize("num_ranks", rank_counts())
def test_internode_ll_compat(num_ranks: int) -> None:
    from . import _dist, internode_ll_compat_suite

    topologies = internode_ll_compat_suite.compat_topologies(num_ranks)
    if not topologies:
        pytest.skip(f"no selected ipc topology forms several nodes of {num_ranks} ranks")
    require_gpus(num_ranks)
    if os.environ.get(_dist.DEADLINE_ENV, "").strip():
        deadline = _dist.deadline_secs()
    else:
        deadline = SETUP_SECS + COMPAT_SECS_PER_TOPOLOGY * len(topologies)
    run_and_assert(internode_ll_compat_suite.run_suite, "internode_ll_compat", num_ranks, deadline)
