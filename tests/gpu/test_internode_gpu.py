"""Pytest entry point of the internode GPU suite (internode_suite.py): one launch per rank count
(UCCL_EP_TEST_RANKS, default 4,8), each running every topology of
UCCL_EP_TEST_INTERNODE_TOPOLOGIES that the ranks form (default: nodes of 2 and 4 ranks over the
ipc transport and libfabric tcp, so 4 ranks run 2 x 2, 8 ranks 4 x 2 and 2 x 4). Skips without
torch or without enough GPUs (unless ranks may share them, _dist.py)."""

from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")

from .test_intranode_gpu import require_gpus, run_and_assert  # noqa: E402

RANKS_ENV = "UCCL_EP_TEST_RANKS"
DEFAULT_RANKS = (4, 8)
SECS_PER_TOPOLOGY = 900.0  # default deadline: this per topology plus SETUP_SECS
SETUP_SECS = 120.0


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
