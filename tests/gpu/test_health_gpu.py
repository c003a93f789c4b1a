"""Pytest entry point of the aborted-buffer (health) test, health_suite.py: one launch of 2
ranks (the last one faulty or absent), failing unless every recorded check passed. Skips
without torch or without 2 GPUs (unless ranks may share them, _dist.py)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

HEALTH_RANKS = 2
HEALTH_DEADLINE_SECS = 300.0


def test_health_suite() -> None:
    from . import _dist, health_suite
    from .test_intranode_gpu import require_gpus, run_and_assert

    require_gpus(HEALTH_RANKS)
    deadline = min(_dist.deadline_secs(), HEALTH_DEADLINE_SECS)
    run_and_assert(health_suite.run_suite, "health", HEALTH_RANKS, deadline)
