"""initialize_uccl / destroy_uccl without a GPU: ranks are threads of this process over the
fake transport (injected through the test module uccl.ep._C._testing), RDMA buffers are numpy
arrays, and commands are pushed from Python into host queues (the test-only path). No torch:
the group is an in-process all-gather."""

from __future__ import annotations

import threading
from typing import Any, Callable, List

import numpy as np
import pytest

from uccl.ep import _C, destroy_uccl, initialize_uccl
from uccl.ep._C import _testing as T

SCRATCH = 1 << 20
TIMEOUT = 20.0


class ThreadGroup:
    """An all-gather between threads of this process (what a process group is to processes)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._barrier = threading.Barrier(size, timeout=TIMEOUT)
        self._slots: List[Any] = [None] * size
        self._rank = threading.local()

    def bind(self, rank: int) -> None:
        self._rank.value = rank

    def allgather(self, obj: Any) -> List[Any]:
        self._slots[self._rank.value] = obj
        self._barrier.wait()
        out = list(self._slots)
        self._barrier.wait()
        return out


def run_ranks(size: int, body: Callable[[int, ThreadGroup], Any]) -> List[Any]:
    """Runs body(rank, group) on `size` threads; re-raises the first exception."""
    group = ThreadGroup(size)
    results: List[Any] = [None] * size
    errors: List[BaseException] = []

    def main(rank: int) -> None:
        group.bind(rank)
        try:
            results[rank] = body(rank, group)
        except BaseException as e:  # noqa: B036 - re-raised in the caller
            errors.append(e)
            group._barrier.abort()

    threads = [threading.Thread(target=main, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT * 2)
    assert not any(t.is_alive() for t in threads), "a rank hangs"
    if errors:
        raise errors[0]
    return results


@pytest.fixture(autouse=True)
def short_deadlines(monkeypatch):
    monkeypatch.setenv("UCCL_EP_TIMEOUT_SECS", "3")
    monkeypatch.setenv("UCCL_EP_DISABLE_CPU_AFFINITY", "1")


def start(rank: int, group: ThreadGroup, scratch: np.ndarray, transport="fake", **kw):
    return initialize_uccl(
        scratch.ctypes.data,
        scratch.nbytes,
        rank,
        group.size,
        group,
        rdma_buffer_is_host_allocated=True,
        _transport=transport,
        _host_queues=True,
        **kw,
    )


def test_two_ranks_move_data_and_signals_then_destroy():
    scratch = [np.zeros(SCRATCH, dtype=np.uint8) for _ in range(2)]
    scratch[0][:4096] = np.arange(4096, dtype=np.uint32).astype(np.uint8)

    def body(rank: int, group: ThreadGroup):
        h = start(rank, group, scratch[rank], num_experts=8)
        assert h.num_proxy_threads >= 1 and h.transport == "fake" and not h.is_intranode
        if rank == 0:
            p = h._path
            T.push(p, 1, *T.encode_write_signal(1, 0, 65536, 4096, slot=7, value=3))
            T.push(p, 1, *T.encode_atomic_add(1, 8, -5))
            T.push(p, 1, *T.encode_fence(1))
            T.wait_fence(p, 1, 1)
            assert h.stats()["completed"] == 2
        group.allgather(None)
        if rank == 1:
            assert T.signal(h._path, 7) == 3 and T.signal(h._path, 8) == -5
            np.testing.assert_array_equal(scratch[1][65536 : 65536 + 4096], scratch[0][:4096])
        destroy_uccl(h)
        assert h.destroyed
        with pytest.raises(RuntimeError, match="already destroyed"):
            destroy_uccl(h)

    run_ranks(2, body)


def test_barrier_of_all_ranks_through_python():
    scratch = [np.zeros(SCRATCH, dtype=np.uint8) for _ in range(3)]

    def body(rank: int, group: ThreadGroup):
        h = start(rank, group, scratch[rank])
        for k in (1, 2):
            T.push(h._path, 0, *T.encode_barrier(0, k))
            T.wait_barrier(h._path, 0, k)
        destroy_uccl(h)

    run_ranks(3, body)


def test_initialize_twice_and_destroy_before_initialize():
    with pytest.raises(RuntimeError, match="nothing to destroy"):
        destroy_uccl(None)
    with pytest.raises(TypeError, match="UcclHandle"):
        destroy_uccl(object())
    scratch = np.zeros(SCRATCH, dtype=np.uint8)

    def body(rank: int, group: ThreadGroup):
        h = start(rank, group, scratch)
        with pytest.raises(RuntimeError, match="already initialized for rank 0"):
            start(rank, group, scratch)
        other_mode = start(rank, group, scratch, use_normal_mode=True)  # a second mode is fine
        destroy_uccl(other_mode)
        destroy_uccl(h)
        destroy_uccl(start(rank, group, scratch))  # initialize again after destroy

    run_ranks(1, body)


def test_proxy_failure_is_raised_by_check_and_destroy():
    scratch = [np.zeros(SCRATCH, dtype=np.uint8) for _ in range(2)]

    def body(rank: int, group: ThreadGroup):
        h = start(rank, group, scratch[rank])
        group.allgather(None)
        if rank == 1:
            destroy_uccl(h)
            return None
        # WRITE beyond the peer's RDMA buffer: the proxy records the transport's refusal.
        T.push(h._path, 0, *T.encode_write(1, 0, SCRATCH, 16))
        T.push(h._path, 0, *T.encode_fence(1))
        with pytest.raises(RuntimeError, match="reported error 3"):
            T.wait_fence(h._path, 0, 1)
        with pytest.raises(RuntimeError, match=r"rank 0.*queue 0.*ticket 0.*WRITE.*peer 1"):
            h.check()
        with pytest.raises(RuntimeError, match="exceeds its RDMA buffer"):
            destroy_uccl(h)
        assert h.destroyed
        with pytest.raises(RuntimeError, match="already destroyed"):
            destroy_uccl(h)
        return None

    # rank 1 destroys first (its barrier partner is rank 0's failed destroy, which skips it)
    group_done = run_ranks(2, body)
    assert group_done == [None, None]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"rank": 2}, ValueError, r"rank=2 must be in \[0, num_ranks=2\)"),
        ({"scratch_nbytes": 0}, ValueError, "RDMA buffer is empty"),
        ({"num_experts": 3}, ValueError, "num_experts=3 must be 0 or a multiple"),
        ({"group": None}, ValueError, "group is required"),
        ({"rank": 0.5}, TypeError, "rank must be an int"),
    ],
)
def test_argument_errors(kwargs, error, match):
    scratch = np.zeros(16, dtype=np.uint8)
    args = dict(
        scratch_ptr=scratch.ctypes.data,
        scratch_nbytes=16,
        rank=0,
        num_ranks=2,
        group=ThreadGroup(2),
        rdma_buffer_is_host_allocated=True,
    )
    args.update(kwargs)
    with pytest.raises(error, match=match):
        initialize_uccl(**args)


@pytest.mark.parametrize(
    "name, value",
    [
        ("UCCL_EP_NUM_PROXY_THREADS", "0"),
        ("UCCL_IB_MAX_INFLIGHT_NORMAL", "many"),
        ("UCCL_IB_MAX_INFLIGHT_BYTES", "99999999999999999999"),
        ("UCCL_EP_DISABLE_CPU_AFFINITY", "yes"),
    ],
)
def test_bad_environment_is_named(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=f"{name}='{value}'"):
        _C.proxy_env_settings()
    scratch = np.zeros(SCRATCH, dtype=np.uint8)
    with pytest.raises(ValueError, match=name):
        run_ranks(1, lambda rank, group: start(rank, group, scratch))


def test_environment_defaults():
    env = _C.proxy_env_settings()
    assert env["num_proxy_threads"] == 2
    assert env["max_inflight_normal"] == 8 and env["max_inflight_low_latency"] == 32
    assert env["max_inflight_bytes"] == 2**64 - 1


def test_encoders_check_their_limits():
    assert T.encode_fence(5)[0] & 0xF == 4
    with pytest.raises(ValueError, match="multiple of 16"):
        T.encode_write(1, 0, 0, 10)
    with pytest.raises(ValueError, match="WRITE_SIGNAL value=256"):
        T.encode_write_signal(1, 0, 0, 16, 0, 256)


def test_single_host_with_a_network_transport_is_intranode(monkeypatch):
    # All ranks on one host and UCCL_EP_TRANSPORT=auto: kernels reach every peer over NVLink,
    # so no proxy starts (and no transport is needed).
    monkeypatch.setenv("UCCL_EP_TRANSPORT", "auto")
    scratch = np.zeros(SCRATCH, dtype=np.uint8)

    def body(rank: int, group: ThreadGroup):
        h = start(rank, group, scratch, transport=None)
        assert h.is_intranode and h.num_proxy_threads == 0 and h.stats() == {}
        h.check()
        destroy_uccl(h)

    run_ranks(2, body)
