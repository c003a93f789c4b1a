"""Pytest entry points of the multi-GPU suites: one launch (one spawned process per GPU) per
suite and rank count, failing unless every recorded check passed. Skips without torch or
without enough GPUs (unless ranks may share them, _dist.py). Rank counts: env
UCCL_EP_TEST_RANKS (comma separated), default 2,4,8."""

from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")

RANKS_ENV = "UCCL_EP_TEST_RANKS"
DEFAULT_RANKS = (2, 4, 8)
STALL_RANKS = 2
STALL_DEADLINE_SECS = 300.0


def rank_counts() -> list[int]:
    raw = os.environ.get(RANKS_ENV, "").strip()
    return [int(v) for v in raw.split(",") if v.strip()] if raw else list(DEFAULT_RANKS)


def require_gpus(num_ranks: int) -> None:
    from . import _dist

    if _dist.num_gpus_for(num_ranks) == 0:
        found = torch.cuda.device_count() if torch.cuda.is_available() else 0
        pytest.skip(
            f"needs {num_ranks} GPUs, found {found} "
            f"(or {_dist.SHARE_ENV}=1 with CUDA MPS running to share them)"
        )
    if _dist.ranks_per_gpu(num_ranks) > 1 and not _dist.mps_running():
        pytest.fail(
            f"{num_ranks} ranks share {_dist.num_gpus_for(num_ranks)} GPU(s) "
            f"({_dist.SHARE_ENV}=1) but no CUDA MPS daemon runs (no 'control' pipe in "
            f"{_dist.mps_pipe_directory()}): start one with `nvidia-cuda-mps-control -d` "
            f"(tools/gpu_check.sh does) or unset {_dist.SHARE_ENV}"
        )


def run_and_assert(body, suite: str, num_ranks: int, deadline: float | None = None) -> None:
    from . import _dist

    result = _dist.launch(body, num_ranks, deadline)
    table = result.table(suite)
    print(table)
    report = result.failure_report(suite)
    assert result.num_checks > 0, f"suite '{suite}' recorded no checks\n{report}"
    assert result.ok, f"{report}\n\n{table}"


@pytest.mark.parametrize("num_ranks", rank_counts())
def test_intranode_suite(num_ranks: int) -> None:
    require_gpus(num_ranks)
    from . import intranode_suite

    run_and_assert(intranode_suite.run_suite, "intranode", num_ranks)


def test_stall_suite() -> None:
    require_gpus(STALL_RANKS)
    from . import _dist, stall_suite

    deadline = min(_dist.deadline_secs(), STALL_DEADLINE_SECS)
    run_and_assert(stall_suite.run_suite, "stall", STALL_RANKS, deadline)
