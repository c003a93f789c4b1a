"""The Python side of the internode mode (uccl/ep/internode.py and the Buffer's routing),
without torch or a GPU: the stand-in ``torch`` of test_low_latency_python gives tensors that
only carry shape, strides, dtype and device, and stand-in native objects record the calls. Each
call's keyword tensors go through the real checks (``BufferInfo.check_internode_*``,
``check_layout``), so the outputs Python allocates must have exactly the shapes and dtypes the
C++ side requires."""

from __future__ import annotations

import contextlib
import importlib
import sys
import types

import pytest

import uccl.ep as ep_pkg
from uccl.ep import _C

if not hasattr(_C, "InternodeOps"):
    pytest.skip("uccl.ep._C was built without the internode mode", allow_module_level=True)

from test_low_latency_python import (  # noqa: E402 - the shared stand-ins
    COMM,
    COMPUTE,
    DTYPES,
    FakeDevice,
    FakeEvent,
    FakeStream,
    FakeTensor,
    make_torch,
)

R, L, T, H, K, NUM_EXPERTS, S = 8, 2, 64, 512, 8, 32, 4
N = R // L
NUM_RECV, NUM_RDMA_RECV = 150, 90
PER_EXPERT = [3, 0, 7, 5]
DEV = FakeDevice("cuda", 0)


# ---------------------------------------------------------------- stand-in native objects
class FakeRuntime:
    """The native Buffer: stream helpers and a layout call checked for real."""

    def __init__(self, calls: list, info) -> None:
        self.calls, self.info = calls, info
        self.num_nodes, self.num_local_ranks = info.num_nodes, info.num_local_ranks

    def stream_wait(self, waiter: int, waitee: int) -> None:
        self.calls.append(("stream_wait", waiter, waitee))

    def stream_wait_event(self, waiter: int, event: int) -> None:
        self.calls.append(("stream_wait_event", waiter, event))

    def get_dispatch_layout(self, stream, **kw) -> None:
        self.info.check_layout(**kw)
        self.calls.append(("layout", stream, kw))

    def check(self, op: str = "check") -> None:
        pass


class FakeInternodeOps:
    """Records the calls; each runs the real argument checks on its keywords."""

    def __init__(self, info, calls: list) -> None:
        self.info, self.calls = info, calls

    def notify_dispatch(self, stream, **kw):
        self.info.check_internode_notify(**kw)
        self.calls.append(("notify", stream, kw))
        if kw.get("num_worst_tokens"):
            return -1, -1, []
        return NUM_RECV, NUM_RDMA_RECV, list(PER_EXPERT)

    def dispatch(self, stream, **kw) -> None:
        self.info.check_internode_dispatch(**kw)
        self.calls.append(("dispatch", stream, kw))

    def combine(self, stream, **kw) -> None:
        self.info.check_internode_combine(**kw)
        self.calls.append(("combine", stream, kw))


def info_of(num_local_ranks: int = L):
    return _C.BufferInfo(1, R, 1 << 30, 0, num_rdma_bytes=1 << 30, num_local_ranks=num_local_ranks)


@pytest.fixture
def env(monkeypatch):
    """The modules under test, imported against the stand-in torch (restored afterwards)."""
    state = {"current": COMPUTE, "allocations": 0}
    torch = make_torch(state)
    # What the code under test reads beyond the low-latency mode's needs.
    monkeypatch.setattr(FakeTensor, "size", lambda self, d: self.shape[d], raising=False)
    monkeypatch.setattr(
        FakeTensor,
        "record_stream",
        lambda self, s: state.setdefault("recorded", []).append((self, s.cuda_stream)),
        raising=False,
    )
    monkeypatch.setattr(FakeEvent, "cuda_event", 0x500, raising=False)
    torch.cuda.stream = lambda stream: contextlib.nullcontext()
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch.cuda", torch.cuda)
    monkeypatch.setitem(sys.modules, "torch.distributed", torch.distributed)
    names = ("utils", "intranode", "internode", "low_latency", "buffer")
    for name in names:
        monkeypatch.delitem(sys.modules, f"uccl.ep.{name}", raising=False)
        monkeypatch.setattr(ep_pkg, name, None, raising=False)
    mods = {name: importlib.import_module(f"uccl.ep.{name}") for name in names}
    calls: list = []
    info = info_of()
    made: list = []

    def make_ops(runtime):
        made.append(runtime)
        return FakeInternodeOps(runtime.info, calls)

    fake_c = types.SimpleNamespace(
        InternodeOps=make_ops,
        IntranodeOps=lambda runtime: None,
        Config=_C.Config,
        get_dispatch_config=_C.get_dispatch_config,
        get_combine_config=_C.get_combine_config,
    )
    monkeypatch.setattr(mods["buffer"], "_C", fake_c)
    monkeypatch.setattr(mods["buffer"].Buffer, "num_sms", 24)
    return types.SimpleNamespace(
        torch=torch, state=state, calls=calls, info=info, made=made, **mods
    )


def bare_buffer(env, num_local_ranks: int = L):
    """A Buffer of R ranks in nodes of `num_local_ranks`, without its native construction."""
    b = env.buffer.Buffer.__new__(env.buffer.Buffer)
    info = info_of(num_local_ranks)
    b.runtime, b._ops, b._inter_ops, b._ll = FakeRuntime(env.calls, info), None, None, None
    b.explicitly_destroy = False
    b.rank, b.group_size, b.num_nvl_bytes, b.num_rdma_bytes = 1, R, 1 << 30, 1 << 30
    b.low_latency_mode = False
    b._num_nodes, b._num_local_ranks = info.num_nodes, info.num_local_ranks
    b._device, b._comm_stream, b._comm_handle = 0, FakeStream(COMM), COMM
    return b


def tensor(shape, dtype: str, strides=None) -> FakeTensor:
    return FakeTensor(shape, DTYPES[dtype], DEV, strides)


def layout(env, b):
    idx = tensor((T, K), "int64")
    return (idx,) + b.get_dispatch_layout(idx, NUM_EXPERTS)


def dispatch(env, b, x=None, with_topk=True, **kw):
    idx, per_rank, per_node, per_expert, is_in, _ = layout(env, b)
    env.calls.clear()
    x = tensor((T, H), "bfloat16") if x is None else x
    args = dict(
        num_tokens_per_rank=per_rank,
        num_tokens_per_rdma_rank=per_node,
        is_token_in_rank=is_in,
        num_tokens_per_expert=per_expert,
    )
    if with_topk:
        args.update(topk_idx=idx, topk_weights=tensor((T, K), "float32"))
    args.update(kw)
    return b.dispatch(x, **args)


# ---------------------------------------------------------------- layout
def test_layout_counts_per_node_only_across_nodes(env):
    b = bare_buffer(env)
    _, per_rank, per_node, per_expert, is_in, event = layout(env, b)
    assert per_node.shape == (N,) and per_node.dtype is DTYPES["int32"]
    assert per_rank.shape == (R,) and per_expert.shape == (NUM_EXPERTS,)
    assert is_in.shape == (T, R) and event.event is None
    assert env.calls[1][2]["num_tokens_per_rdma_rank"] is per_node
    one = bare_buffer(env, num_local_ranks=R)
    assert layout(env, one)[2] is None  # one NVLink domain: DeepEP's None
    assert env.calls[-2][2]["num_tokens_per_rdma_rank"] is None


# ---------------------------------------------------------------- dispatch
def test_dispatch_allocates_from_the_counts_and_returns_the_10_tuple(env):
    b = bare_buffer(env)
    recv_x, recv_idx, recv_w, experts, handle, event = dispatch(env, b, expert_alignment=4)
    assert [c[0] for c in env.calls] == ["stream_wait", "notify", "dispatch", "stream_wait"]
    assert env.calls[0][1:] == (COMM, COMPUTE) and env.calls[-1][1:] == (COMPUTE, COMM)
    assert recv_x.shape == (NUM_RECV, H) and recv_x.dtype is DTYPES["bfloat16"]
    assert recv_idx.shape == (NUM_RECV, K) and recv_idx.dtype is DTYPES["int64"]
    assert recv_w.shape == (NUM_RECV, K) and recv_w.dtype is DTYPES["float32"]
    assert experts == PER_EXPERT and type(experts) is list and event.event is None
    assert env.calls[1][2]["expert_alignment"] == 4
    assert isinstance(handle, tuple) and len(handle) == 10
    shapes = [tuple(t.shape) for t in handle]
    c = 24 // 2
    assert shapes == [
        (T, R),
        (N, c),
        (R, c),
        (N, c),
        (N,),
        (R, c),
        (R,),
        (NUM_RECV, 8),
        (T, N),
        (NUM_RDMA_RECV, L),
    ]
    # The handle's fields went to the kernels by their names, in DeepEP's order.
    kw = env.calls[2][2]
    fields = env.internode.HANDLE_FIELDS
    assert all(kw[name] is t for name, t in zip(fields, handle))
    assert fields[-4] == "recv_gbl_rank_prefix_sum"


def test_fp8_dispatch_returns_scales_and_no_topk(env):
    b = bare_buffer(env)
    data = tensor((T, H), "float8_e4m3fn")
    scales = tensor((T, S), "float32", strides=(1, T))  # column-major, as DeepEP's tests
    (recv, recv_scales), recv_idx, recv_w, experts, handle, _ = dispatch(
        env, b, (data, scales), with_topk=False
    )
    assert recv.shape == (NUM_RECV, H) and recv.dtype is DTYPES["float8_e4m3fn"]
    assert recv_scales.shape == (NUM_RECV, S) and recv_scales.is_contiguous()
    assert recv_idx is None and recv_w is None and experts == PER_EXPERT


def test_worst_tokens_size_received_and_forwarded_rows(env):
    b = bare_buffer(env)
    recv_x, recv_idx, _, experts, handle, _ = dispatch(env, b, num_worst_tokens=500)
    assert recv_x.shape[0] == recv_idx.shape[0] == 500 and experts == []
    assert handle[7].shape == (500, 8) and handle[9].shape == (500, L)


def test_async_finish_records_every_tensor_on_the_comm_stream(env):
    b = bare_buffer(env)
    prev = b.capture()
    out = dispatch(env, b, async_finish=True, previous_event=prev, allocate_on_comm_stream=True)
    event, handle = out[5], out[4]
    assert event.event.event.recorded_on == COMM
    assert env.calls[0][0] == "stream_wait_event" and env.calls[-1][0] == "dispatch"
    recorded = {id(t) for t, _ in env.state["recorded"]}
    assert all(id(t) in recorded for t in handle) and id(out[0]) in recorded


def test_cached_dispatch_reads_the_handle_and_never_writes_it(env):
    b = bare_buffer(env)
    _, _, _, _, handle, _ = dispatch(env, b)
    env.calls.clear()
    x = tensor((T, H), "bfloat16")
    out = b.dispatch(x, handle=list(handle), num_worst_tokens=7)  # ignored, as in DeepEP
    assert out[1:5] == (None, None, None, None) and out[0].shape == (NUM_RECV, H)
    ((name, stream, kw),) = [c for c in env.calls if c[0] == "dispatch"]
    assert kw["cached"] is True and stream == COMM and "num_worst_tokens" not in kw
    for i, field in enumerate(env.internode.HANDLE_FIELDS):
        if field in ("recv_src_meta", "send_nvl_head"):  # written: scratch of the same shape
            assert kw[field] is not handle[i] and kw[field].shape == handle[i].shape
        else:
            assert kw[field] is handle[i]


def test_combine_passes_the_handle_and_biases(env):
    b = bare_buffer(env)
    _, _, recv_w, _, handle, _ = dispatch(env, b)
    env.calls.clear()
    y = tensor((NUM_RECV, H), "bfloat16")
    b0, b1 = tensor((T, H), "bfloat16"), tensor((T, H), "bfloat16")
    combined, combined_w, event = b.combine(y, handle, topk_weights=recv_w, bias=(b0, b1))
    assert combined.shape == (T, H) and combined.dtype is DTYPES["bfloat16"]
    assert combined_w.shape == (T, K) and event.event is None
    ((_, stream, kw),) = [c for c in env.calls if c[0] == "combine"]
    assert kw["bias0"] is b0 and kw["bias1"] is b1 and stream == COMM
    assert all(kw[f] is t for f, t in zip(env.internode.HANDLE_FIELDS, handle))
    combined, combined_w, _ = b.internode_combine(y, handle, bias=b0)
    assert combined_w is None and env.calls[-2][2]["bias1"] is None


def test_ops_are_built_once_per_buffer(env):
    b = bare_buffer(env)
    dispatch(env, b)
    dispatch(env, b)
    assert env.made == [b.runtime]


# ---------------------------------------------------------------- bad arguments
def test_bad_handles_and_missing_counts_are_named(env):
    b = bare_buffer(env)
    _, _, _, _, handle, _ = dispatch(env, b)
    y = tensor((NUM_RECV, H), "bfloat16")
    with pytest.raises(ValueError, match="handle must be the 10-tuple .* got 6 items"):
        b.combine(y, handle[:6])
    with pytest.raises(ValueError, match="handle must be the 10-tuple .* got dict"):
        b.dispatch(y, handle={})
    with pytest.raises(TypeError, match="handle field send_rdma_head must be a torch.Tensor"):
        b.combine(y, handle[:8] + (None,) + handle[9:])
    with pytest.raises(ValueError, match="num_tokens_per_rdma_rank is required without a handle"):
        dispatch(env, b, num_tokens_per_rdma_rank=None)
    with pytest.raises(ValueError, match="takes no topk_idx/topk_weights"):
        b.dispatch(y, handle=handle, topk_idx=handle[0])
    # The native checks see what Python passes: a combine config with other channels.
    with pytest.raises(ValueError, match="config.num_sms=20 gives 10 channels but"):
        b.combine(y, handle, config=_C.Config(20, 8, 256))


def test_modes_are_routed_by_the_topology(env):
    one = bare_buffer(env, num_local_ranks=R)
    x = tensor((T, H), "bfloat16")
    with pytest.raises(ValueError, match="internode_dispatch needs a Buffer whose ranks span"):
        one.internode_dispatch(x)
    with pytest.raises(ValueError, match="internode_combine needs a Buffer whose ranks span"):
        one.internode_combine(x, None)
    with pytest.raises(ValueError, match="num_tokens_per_rdma_rank must be None for the intra"):
        one.dispatch(x, num_tokens_per_rdma_rank=tensor((N,), "int32"))
