"""initialize_uccl / destroy_uccl without a GPU: ranks are threads of this process over the
fake transport (injected through the test module uccl.ep._C._testing), RDMA buffers are numpy
arrays (or tensors over them), and commands are pushed from Python into host queues (the
test-only path). Both calling conventions: ``h = initialize_uccl(...)`` / ``destroy_uccl(h)``
and UCCL-EP's ``proxies, workers = initialize_uccl(...)`` / ``destroy_uccl(proxies, workers)``.
No torch needed (the group is an in-process all-gather); the tests with real torch tensors
skip without it."""

from __future__ import annotations

import re
import threading
from typing import Any, Callable, List

import numpy as np
import pytest

from uccl.ep import _C, ProxyThread, UcclHandle, UcclProxies, destroy_uccl, initialize_uccl
from uccl.ep import proxy as proxy_module
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


def start(rank: int, group: ThreadGroup, scratch: Any, transport="fake", nbytes=None, **kw):
    """initialize_uccl over `scratch`: a numpy array (passed by address) or a tensor."""
    address = scratch.ctypes.data if isinstance(scratch, np.ndarray) else scratch
    return initialize_uccl(
        address,
        scratch.nbytes if nbytes is None else nbytes,
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
        assert h.proxies.status == "failed"
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
        ({"scratch": 0}, ValueError, r"RDMA buffer is empty \(scratch address 0x0"),
        (
            {"scratch": "0x7f00"},
            TypeError,
            "scratch must be a tensor .* or an int address, got str",
        ),
        ({"scratch": True}, TypeError, "scratch must be a tensor .* got bool"),
        ({"scratch": np.zeros(16, np.uint8)}, TypeError, "got ndarray"),
    ],
)
def test_argument_errors(kwargs, error, match):
    scratch = np.zeros(16, dtype=np.uint8)
    args = dict(
        scratch=scratch.ctypes.data,
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
        ("UCCL_SOCKET_IFNAME", "uccl_no_if9"),
        ("UCCL_SOCKET_IFNAME", "eth0,eth1"),
        ("UCCL_SOCKET_IFNAME", "^docker"),
        ("UCCL_IB_GID_INDEX", "256"),
        ("UCCL_IB_SL", "16"),
        ("UCCL_IB_TC", "-1"),
        ("UCCL_EP_ENABLE_AGGRESSIVE_ATOMIC", "yes"),
    ],
)
def test_bad_environment_is_named(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=re.escape(f"{name}='{value}'")):
        _C.proxy_env_settings()
    scratch = np.zeros(SCRATCH, dtype=np.uint8)
    with pytest.raises(ValueError, match=name):
        run_ranks(1, lambda rank, group: start(rank, group, scratch))


def test_environment_defaults():
    env = _C.proxy_env_settings()
    assert env["num_proxy_threads"] == 2
    assert env["max_inflight_normal"] == 8 and env["max_inflight_low_latency"] == 32
    assert env["max_inflight_bytes"] == 2**64 - 1
    assert env["socket_ifname"] == "" and env["ib_gid_index"] == -1
    assert env["ib_service_level"] == -1 and env["ib_traffic_class"] == -1
    assert env["aggressive_atomic"] is False


def test_environment_of_uccl_ep_is_read(monkeypatch):
    for name, value in (
        ("UCCL_SOCKET_IFNAME", "lo"),
        ("UCCL_IB_GID_INDEX", "3"),
        ("UCCL_IB_SL", "15"),
        ("UCCL_IB_TC", "104"),
        ("UCCL_EP_ENABLE_AGGRESSIVE_ATOMIC", "1"),
        ("UCCL_IB_MAX_INFLIGHT_NORMAL", "4"),
        ("UCCL_IB_MAX_INFLIGHT_LOW_LATENCY", "64"),
        ("UCCL_IB_MAX_INFLIGHT_BYTES", "1572864"),
    ):
        monkeypatch.setenv(name, value)
    env = _C.proxy_env_settings()
    assert env["socket_ifname"] == "lo" and env["ib_gid_index"] == 3
    assert env["ib_service_level"] == 15 and env["ib_traffic_class"] == 104
    assert env["aggressive_atomic"] is True
    assert env["max_inflight_normal"] == 4 and env["max_inflight_low_latency"] == 64
    assert env["max_inflight_bytes"] == 1572864


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


# ---- UCCL-EP's convention: proxies, workers = initialize_uccl(scratch, ...)


def move_and_check(rank: int, group: ThreadGroup, path: Any, scratch: List[np.ndarray]) -> None:
    """Rank 0 writes 4 KiB with a signal to rank 1; rank 1 checks bytes and signal."""
    if rank == 0:
        T.push(path, 1, *T.encode_write_signal(1, 0, 65536, 4096, slot=7, value=3))
        T.push(path, 1, *T.encode_fence(1))
        T.wait_fence(path, 1, 1)
    group.allgather(None)
    if rank == 1:
        assert T.signal(path, 7) == 3
        np.testing.assert_array_equal(scratch[1][65536 : 65536 + 4096], scratch[0][:4096])


def test_proxies_workers_unpack_move_data_and_destroy():
    scratch = [np.zeros(SCRATCH, dtype=np.uint8) for _ in range(2)]
    scratch[0][:4096] = np.arange(4096) % 251

    def body(rank: int, group: ThreadGroup):
        proxies, workers = start(rank, group, scratch[rank], num_experts=8)
        assert isinstance(proxies, UcclProxies) and isinstance(workers, UcclHandle)
        assert proxies.handle is workers and workers.proxies is proxies
        n, q = workers.num_proxy_threads, workers._path.num_queues
        assert len(proxies) == n >= 1 and proxies.status == "running"
        assert [p.index for p in proxies] == list(range(n))
        assert isinstance(proxies[0], ProxyThread) and proxies[-1] is proxies[n - 1]
        # Queue qi is drained by thread qi % n, every queue by exactly one thread.
        assert sorted(qi for p in proxies for qi in p.queues) == list(range(q))
        assert all(qi % n == p.index for p in proxies for qi in p.queues)
        move_and_check(rank, group, workers._path, scratch)
        assert proxies.stats()["completed"] == (1 if rank == 0 else 0)
        proxies.check()
        destroy_uccl(proxies, workers)
        assert workers.destroyed and proxies.status == "destroyed"
        with pytest.raises(RuntimeError, match=f"handle of rank {rank} was already destroyed"):
            destroy_uccl(proxies, workers)

    run_ranks(2, body)


def test_both_conventions_side_by_side():
    scratch = np.zeros(SCRATCH, dtype=np.uint8)

    def body(rank: int, group: ThreadGroup):
        h = start(rank, group, scratch)  # low-latency mode
        proxies, workers = start(rank, group, scratch, use_normal_mode=True)
        assert workers is not h and list(h) == [h.proxies, h]
        destroy_uccl(h)
        assert h.destroyed and not workers.destroyed
        destroy_uccl(proxies)  # the proxies alone name their handle too
        assert workers.destroyed
        # A second round, destroyed through the other convention each.
        proxies, workers = start(rank, group, scratch)
        destroy_uccl(workers)
        h = start(rank, group, scratch)
        destroy_uccl(h.proxies, h)

    run_ranks(1, body)


def test_destroy_refuses_proxies_and_workers_of_different_calls():
    scratch = np.zeros(SCRATCH, dtype=np.uint8)

    def body(rank: int, group: ThreadGroup):
        p_ll, w_ll = start(rank, group, scratch)
        p_ht, w_ht = start(rank, group, scratch, use_normal_mode=True)
        with pytest.raises(ValueError, match="come from different initialize_uccl calls"):
            destroy_uccl(p_ll, w_ht)
        with pytest.raises(TypeError, match="workers must be .* got UcclProxies"):
            destroy_uccl(w_ll, p_ll)  # swapped
        with pytest.raises(TypeError, match="workers must be .* got str"):
            destroy_uccl(p_ll, "workers")
        with pytest.raises(TypeError, match="expected a UcclHandle .* got NoneType"):
            destroy_uccl(None, w_ll)
        assert not w_ll.destroyed and not w_ht.destroyed  # nothing was stopped by mistake
        destroy_uccl(p_ll, w_ll)
        destroy_uccl(p_ht, w_ht)

    run_ranks(1, body)


def test_intranode_proxies_are_an_empty_list(monkeypatch):
    monkeypatch.setenv("UCCL_EP_TRANSPORT", "auto")
    scratch = np.zeros(SCRATCH, dtype=np.uint8)

    def body(rank: int, group: ThreadGroup):
        proxies, workers = start(rank, group, scratch, transport=None)
        assert len(proxies) == 0 and list(proxies) == [] and proxies.status == "intranode"
        assert workers.is_intranode
        destroy_uccl(proxies, workers)
        assert proxies.status == "destroyed"

    run_ranks(2, body)


class FakeDevice:
    def __init__(self, kind: str, index: Any = None) -> None:
        self.type, self.index = kind, index

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"


class TensorLike:
    """What initialize_uccl reads of a torch.Tensor, over a numpy array (no torch here)."""

    def __init__(self, array: np.ndarray, device: str = "cpu", index: Any = None) -> None:
        self.array, self.device = array, FakeDevice(device, index)
        self.shape = array.shape

    def data_ptr(self) -> int:
        return self.array.ctypes.data

    def numel(self) -> int:
        return self.array.size

    def element_size(self) -> int:
        return self.array.itemsize

    def is_contiguous(self) -> bool:
        return bool(self.array.flags["C_CONTIGUOUS"])

    def stride(self) -> tuple:
        return tuple(s // self.array.itemsize for s in self.array.strides)


def test_a_tensor_scratch_is_taken_by_its_data_and_kept_alive():
    scratch = [np.zeros(SCRATCH // 4, dtype=np.float32) for _ in range(2)]
    bytes_of = [s.view(np.uint8) for s in scratch]
    bytes_of[0][:4096] = np.arange(4096) % 241

    def body(rank: int, group: ThreadGroup):
        tensor = TensorLike(scratch[rank])
        proxies, workers = start(rank, group, tensor, nbytes=SCRATCH)
        assert workers._scratch is tensor  # the memory stays alive while the proxies run
        move_and_check(rank, group, workers._path, bytes_of)
        destroy_uccl(proxies, workers)
        assert workers._scratch is None

    run_ranks(2, body)


@pytest.mark.parametrize(
    "tensor, host_allocated, nbytes, match",
    [
        (TensorLike(np.zeros(64, np.uint8), "cuda", 0), True, 64,
         r"scratch is a cuda:0 tensor but rdma_buffer_is_host_allocated=True"),
        (TensorLike(np.zeros(64, np.uint8), "cpu"), False, 64,
         r"scratch is a cpu tensor but rdma_buffer_is_host_allocated=False: the RDMA buffer "
         r"must be a CUDA tensor"),
        (TensorLike(np.zeros((8, 8), np.uint8)[:, ::2]), True, 32,
         r"scratch must be contiguous \(shape \(8, 4\), stride \(8, 2\)\)"),
        (TensorLike(np.zeros(4, np.float32)), True, 32,
         r"scratch holds 16 bytes \(4 elements of 4 bytes\), fewer than scratch_nbytes=32"),
        (TensorLike(np.zeros(0, np.uint8)), True, 1, r"scratch holds 0 bytes"),
    ],
)  # fmt: skip
def test_tensor_scratch_errors_name_the_rule(tensor, host_allocated, nbytes, match):
    with pytest.raises(ValueError, match=match):
        initialize_uccl(
            tensor, nbytes, 0, 1, ThreadGroup(1),
            rdma_buffer_is_host_allocated=host_allocated, _transport="fake", _host_queues=True,
        )  # fmt: skip


def test_tensor_on_another_device_than_the_current_one(monkeypatch):
    monkeypatch.setattr(proxy_module._C, "current_cuda_device", lambda: 0)
    tensor = TensorLike(np.zeros(64, np.uint8), "cuda", 1)
    with pytest.raises(ValueError, match="scratch is on cuda:1 but the current CUDA device is 0"):
        initialize_uccl(tensor, 64, 0, 1, ThreadGroup(1))


def test_torch_tensors_as_scratch():
    torch = pytest.importorskip("torch")
    scratch = [torch.zeros(SCRATCH, dtype=torch.uint8) for _ in range(2)]
    scratch[0][:4096] = torch.arange(4096) % 239
    arrays = [s.numpy() for s in scratch]  # views of the same memory

    def body(rank: int, group: ThreadGroup):
        proxies, workers = start(rank, group, scratch[rank], nbytes=SCRATCH)
        move_and_check(rank, group, workers._path, arrays)
        destroy_uccl(proxies, workers)

    run_ranks(2, body)
    assert torch.equal(scratch[1][65536 : 65536 + 4096], scratch[0][:4096])
    group = ThreadGroup(1)
    group.bind(0)
    args = dict(rank=0, num_ranks=1, group=group, _transport="fake", _host_queues=True)
    with pytest.raises(ValueError, match=r"scratch must be contiguous \(shape \(64, 32\)"):
        initialize_uccl(torch.zeros(64, 64)[:, ::2], 16, rdma_buffer_is_host_allocated=True, **args)
    with pytest.raises(ValueError, match=r"scratch holds 16 bytes \(4 elements of 4 bytes\)"):
        initialize_uccl(torch.zeros(4), 32, rdma_buffer_is_host_allocated=True, **args)
    with pytest.raises(ValueError, match="scratch is a cpu tensor but .*=False"):
        initialize_uccl(torch.zeros(64), 64, **args)
