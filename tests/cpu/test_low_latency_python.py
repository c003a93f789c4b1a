"""The Python side of the low-latency mode (uccl/ep/low_latency.py and the Buffer's routing),
without torch or a GPU: a stand-in ``torch`` module gives tensors that only carry shape, strides,
dtype and device, and stand-in native objects record the calls. Each call's keyword tensors go
through the real checks (``BufferInfo.check_low_latency_*``), so the outputs Python allocates
must have exactly the shapes, dtypes and strides the C++ side requires."""

from __future__ import annotations

import importlib
import sys
import types

import pytest

import uccl.ep as ep_pkg
from uccl.ep import _C

R, T, H, K, NUM_EXPERTS = 4, 64, 7168, 8, 32
E, N = NUM_EXPERTS // R, R * T
HINT = _C.get_low_latency_rdma_size_hint(T, H, R, NUM_EXPERTS)
COMPUTE, COMM, OTHER = 0x100, 0x200, 0x300  # raw stream handles


# ---------------------------------------------------------------- stand-in torch
class FakeDtype:
    def __init__(self, name: str, size: int) -> None:
        self.name, self.itemsize = name, size

    def __str__(self) -> str:
        return f"torch.{self.name}"

    __repr__ = __str__


class FakeDevice:
    def __init__(self, type_: str, index: int = 0) -> None:
        self.type, self.index = type_, index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FakeDevice) and (self.type, self.index) == (
            other.type,
            other.index,
        )

    def __hash__(self) -> int:
        return hash((self.type, self.index))

    def __str__(self) -> str:
        return f"{self.type}:{self.index}"


def _contiguous(shape: tuple) -> tuple:
    strides, run = [], 1
    for s in reversed(shape):
        strides.insert(0, run)
        run *= s
    return tuple(strides)


class FakeTensor:
    """What the code under test and the binding read of a torch.Tensor."""

    _next_ptr = 0x10000

    def __init__(self, shape, dtype, device, strides=None) -> None:
        self._shape = tuple(int(s) for s in shape)
        self._strides = tuple(strides) if strides is not None else _contiguous(self._shape)
        self._dtype, self._device = dtype, device
        FakeTensor._next_ptr += 0x1000
        self._ptr = FakeTensor._next_ptr

    # On the class, as torch defines them (the binding looks for them on the type).
    shape = property(lambda self: self._shape)
    dtype = property(lambda self: self._dtype)
    device = property(lambda self: self._device)
    is_cuda = property(lambda self: self.device.type == "cuda")

    def data_ptr(self) -> int:
        return self._ptr

    def stride(self) -> tuple:
        return self._strides

    def get_device(self) -> int:
        return self.device.index if self.is_cuda else -1

    def dim(self) -> int:
        return len(self._shape)

    def is_contiguous(self) -> bool:
        return self._strides == _contiguous(self._shape)

    def transpose(self, a: int, b: int) -> FakeTensor:
        shape, strides = list(self._shape), list(self._strides)
        shape[a], shape[b] = shape[b], shape[a]
        strides[a], strides[b] = strides[b], strides[a]
        return FakeTensor(shape, self.dtype, self.device, strides)

    def view(self, dtype: FakeDtype) -> FakeTensor:
        assert self.dim() == 1 and self._shape[0] * self.dtype.itemsize % dtype.itemsize == 0
        return FakeTensor(
            (self._shape[0] * self.dtype.itemsize // dtype.itemsize,), dtype, self.device
        )

    def as_strided(self, shape, strides) -> FakeTensor:
        return FakeTensor(shape, self.dtype, self.device, strides)


class FakeStream:
    def __init__(self, handle: int) -> None:
        self.cuda_stream = handle


class FakeEvent:
    def __init__(self) -> None:
        self.recorded_on = None

    def record(self, stream: FakeStream) -> None:
        self.recorded_on = stream.cuda_stream


# One object per dtype for the whole session (the binding caches dtype objects it has seen).
DTYPES = {
    name: FakeDtype(name, size)
    for name, size in (
        ("bfloat16", 2),
        ("float8_e4m3fn", 1),
        ("float32", 4),
        ("int32", 4),
        ("int64", 8),
        ("uint8", 1),
        ("bool", 1),
    )
}


def make_torch(state: dict) -> types.ModuleType:
    torch = types.ModuleType("torch")
    for name, dtype in DTYPES.items():
        setattr(torch, name, dtype)
    torch.Tensor = FakeTensor
    torch.device = FakeDevice

    def empty(*shape, dtype, device):
        state["allocations"] += 1
        return FakeTensor(shape, dtype, device)

    torch.empty = empty
    torch.from_dlpack = lambda raw: raw
    cuda = types.ModuleType("torch.cuda")
    cuda.Stream, cuda.Event = FakeStream, FakeEvent
    cuda.current_stream = lambda device=None: FakeStream(state["current"])
    torch.cuda = cuda
    torch._C = types.SimpleNamespace(_cuda_getCurrentRawStream=lambda d: state["current"])
    dist = types.ModuleType("torch.distributed")
    dist.ProcessGroup = type("ProcessGroup", (), {})
    torch.distributed = dist
    return torch


# ---------------------------------------------------------------- stand-in native objects
class FakeRuntime:
    def __init__(self, calls: list) -> None:
        self.calls = calls

    def stream_wait(self, waiter: int, waitee: int) -> None:
        self.calls.append(("stream_wait", waiter, waitee))

    def check(self, op: str = "check") -> None:
        pass


class FakeOps:
    """Records the calls; dispatch/combine run the real argument checks on their keywords."""

    def __init__(self, info, calls: list) -> None:
        self.info, self.calls, self.next_half = info, calls, 0

    def _half(self) -> int:
        half, self.next_half = self.next_half, self.next_half ^ 1
        return half

    def dispatch(self, phase, stream, **kw):
        self.info.check_low_latency_dispatch(**kw)
        self.calls.append(("dispatch", phase, stream, kw))
        return self._half()

    def dispatch_recv(self, half, stream, **kw):
        self.info.check_low_latency_dispatch(**kw)
        self.calls.append(("dispatch_recv", half, stream, kw))

    def combine(self, phase, stream, **kw):
        self.info.check_low_latency_combine(**kw)
        self.calls.append(("combine", phase, stream, kw))
        return self._half()

    def combine_recv(self, half, stream, **kw):
        self.info.check_low_latency_combine(**kw)
        self.calls.append(("combine_recv", half, stream, kw))

    def clean(self, t, hidden, num_experts, stream):
        self.calls.append(("clean", t, hidden, num_experts, stream))

    def update_mask(self, rank, masked, stream):
        self.calls.append(("update_mask", rank, masked, stream))

    def query_mask(self, out, stream):
        self.calls.append(("query_mask", out, stream))

    def clean_mask(self, stream):
        self.calls.append(("clean_mask", stream))

    def next_combine_buffer(self, t, hidden, num_experts):
        row = (2 * hidden + 4 * (hidden // 128)) // 2  # a combine message in bf16 elements
        e, n = num_experts // R, R * t
        raw = FakeTensor((e * n * row * 2,), DTYPES["uint8"], FakeDevice("cuda", 0))
        return raw, (e, n, hidden), (n * row, row, 1)


@pytest.fixture
def env(monkeypatch):
    """The modules under test, imported against the stand-in torch (restored afterwards)."""
    state = {"current": COMPUTE, "allocations": 0}
    torch = make_torch(state)
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch.cuda", torch.cuda)
    monkeypatch.setitem(sys.modules, "torch.distributed", torch.distributed)
    names = ("utils", "intranode", "internode", "low_latency", "buffer")
    for name in names:
        monkeypatch.delitem(sys.modules, f"uccl.ep.{name}", raising=False)
        monkeypatch.setattr(ep_pkg, name, None, raising=False)
    mods = {name: importlib.import_module(f"uccl.ep.{name}") for name in names}
    calls: list = []
    info = _C.BufferInfo(1, R, 0, 0, num_rdma_bytes=HINT, low_latency_mode=True)
    mode = mods["low_latency"].LowLatencyMode(
        FakeOps(info, calls), FakeRuntime(calls), info, FakeStream(COMM), COMM, 0
    )
    return types.SimpleNamespace(torch=torch, state=state, calls=calls, mode=mode, **mods)


def inputs(env, num_tokens=T, hidden=H):
    dev = FakeDevice("cuda", 0)
    return (
        FakeTensor((num_tokens, hidden), env.torch.bfloat16, dev),
        FakeTensor((num_tokens, K), env.torch.int64, dev),
    )


def dispatch(env, x, topk_idx, t=T, num_experts=NUM_EXPERTS, **kw):
    args = dict(
        cumulative_local_expert_recv_stats=None,
        dispatch_wait_recv_cost_stats=None,
        use_fp8=True,
        round_scale=False,
        use_ue8m0=False,
        async_finish=False,
        return_recv_hook=False,
    )
    args.update(kw)
    return env.mode.dispatch(x, topk_idx, t, num_experts, *args.values())


def combine(env, x, topk_idx, weights, handle, **kw):
    args = dict(
        use_logfmt=False,
        zero_copy=False,
        async_finish=False,
        return_recv_hook=False,
        out=None,
        combine_wait_recv_cost_stats=None,
    )
    args.update(kw)
    return env.mode.combine(x, topk_idx, weights, handle, *args.values())


# ---------------------------------------------------------------- dispatch
def test_bf16_dispatch_returns_deepep_outputs_and_orders_the_streams(env):
    x, idx = inputs(env)
    recv_x, count, handle, event, hook = dispatch(env, x, idx, use_fp8=False)
    assert recv_x.shape == (E, N, H) and recv_x.dtype is env.torch.bfloat16
    assert count.shape == (E,) and count.dtype is env.torch.int32
    src_info, layout_range, t, hidden, num_experts = handle
    assert (src_info.shape, src_info.dtype) == ((E, N), env.torch.int32)
    assert (layout_range.shape, layout_range.dtype) == ((E, R), env.torch.int64)
    assert (t, hidden, num_experts) == (T, H, NUM_EXPERTS) and isinstance(handle, tuple)
    assert event.event is None and hook is None
    assert x in event.extra_tensors and recv_x in event.extra_tensors
    # The comm stream waits for the current one, runs both phases, then the current one waits.
    assert [c[:3] for c in env.calls] == [
        ("stream_wait", COMM, COMPUTE),
        ("dispatch", 3, COMM),
        ("stream_wait", COMPUTE, COMM),
    ]


@pytest.mark.parametrize("ue8m0", [False, True])
def test_fp8_dispatch_returns_column_major_scales(env, ue8m0):
    x, idx = inputs(env)
    (data, scales), *_ = dispatch(env, x, idx, round_scale=ue8m0, use_ue8m0=ue8m0)
    s = H // 512 if ue8m0 else H // 128
    assert data.shape == (E, N, H) and data.dtype is env.torch.float8_e4m3fn
    assert scales.shape == (E, N, s) and scales.stride() == (N * s, 1, N)
    assert scales.dtype is (env.torch.int32 if ue8m0 else env.torch.float32)


def test_async_finish_returns_an_event_on_the_comm_stream(env):
    x, idx = inputs(env)
    _, _, _, event, hook = dispatch(env, x, idx, async_finish=True)
    assert hook is None and event.event.event.recorded_on == COMM
    assert [c[0] for c in env.calls] == ["stream_wait", "dispatch"]  # the current stream runs on


def test_recv_hook_runs_the_receive_phase_on_the_stream_current_then(env):
    x, idx = inputs(env)
    _, _, _, event, hook = dispatch(env, x, idx, return_recv_hook=True)
    assert event.event is None and callable(hook)
    assert [c[:3] for c in env.calls] == [("dispatch", 1, COMPUTE)]
    env.state["current"] = OTHER
    hook()
    name, half, stream, kw = env.calls[-1]
    assert (name, half, stream) == ("dispatch_recv", 0, OTHER)
    assert kw == env.calls[0][3]  # the same tensors
    with pytest.raises(RuntimeError, match="receive hook of this call already ran"):
        hook()


def test_hook_and_async_finish_are_exclusive(env):
    x, idx = inputs(env)
    with pytest.raises(ValueError, match="async_finish=True and return_recv_hook=True"):
        dispatch(env, x, idx, async_finish=True, return_recv_hook=True)
    with pytest.raises(ValueError, match="async_finish=True and return_recv_hook=True"):
        combine(env, None, idx, idx, (None,) * 5, async_finish=True, return_recv_hook=True)
    assert env.calls == []


def test_too_many_tokens_per_rank_raise_before_allocating(env):
    x, idx = inputs(env)
    with pytest.raises(ValueError, match="num_max_dispatch_tokens_per_rank=8192 too large"):
        dispatch(env, x, idx, t=8192)
    assert env.state["allocations"] == 0 and env.calls == []


def test_bad_arguments_are_named(env):
    x, idx = inputs(env)
    with pytest.raises(TypeError, match="num_max_dispatch_tokens_per_rank must be an integer"):
        dispatch(env, x, idx, t=64.0)
    with pytest.raises(TypeError, match="x must be a torch.Tensor or None, got tuple"):
        dispatch(env, (x, x), idx)
    with pytest.raises(ValueError, match=r"x.shape\[1\]=1024 \(hidden\) is not supported"):
        dispatch(env, *inputs(env, hidden=1024))
    with pytest.raises(RuntimeError, match="must not be made from the Buffer's communication"):
        env.state["current"] = COMM
        dispatch(env, x, idx)


def test_clean_runs_on_the_current_stream(env):
    env.mode.clean(T, H, NUM_EXPERTS)
    assert env.calls == [("clean", T, H, NUM_EXPERTS, COMPUTE)]
    with pytest.raises(TypeError, match="hidden must be an integer, got str"):
        env.mode.clean(T, "7168", NUM_EXPERTS)


# ---------------------------------------------------------------- combine
def test_combine_returns_bf16_rows_and_writes_out(env):
    x, idx = inputs(env)
    _, _, handle, _, _ = dispatch(env, x, idx, use_fp8=False)
    y = FakeTensor((E, N, H), env.torch.bfloat16, FakeDevice("cuda", 0))
    w = FakeTensor((T, K), env.torch.float32, FakeDevice("cuda", 0))
    combined, event, hook = combine(env, y, idx, w, handle)
    assert combined.shape == (T, H) and combined.dtype is env.torch.bfloat16
    assert event.event is None and hook is None
    assert env.calls[-2][:3] == ("combine", 3, COMM)
    out = FakeTensor((T, H), env.torch.bfloat16, FakeDevice("cuda", 0))
    assert combine(env, y, idx, w, list(handle), out=out)[0] is out
    bad_dtype = FakeTensor((T, H), env.torch.float32, FakeDevice("cuda", 0))
    with pytest.raises(TypeError, match="out must have dtype torch.bfloat16, got torch.float32"):
        combine(env, y, idx, w, handle, out=bad_dtype)
    bad_shape = FakeTensor((T - 1, H), env.torch.bfloat16, FakeDevice("cuda", 0))
    with pytest.raises(ValueError, match=r"out has shape \(63, 7168\), expected \(64, 7168\)"):
        combine(env, y, idx, w, handle, out=bad_shape)
    # A hook: send now on the current stream, receive later.
    _, _, hook = combine(env, y, idx, w, handle, return_recv_hook=True)
    assert env.calls[-1][:3] == ("combine", 1, COMPUTE)
    hook()
    assert env.calls[-1][0] == "combine_recv"


def test_combine_rejects_inconsistent_arguments(env):
    x, idx = inputs(env)
    _, _, handle, _, _ = dispatch(env, x, idx)
    y = FakeTensor((E, N, H), env.torch.bfloat16, FakeDevice("cuda", 0))
    w = FakeTensor((T, K), env.torch.float32, FakeDevice("cuda", 0))
    combine(env, y, idx, w, handle, use_logfmt=True)
    launched = [c for c in env.calls if c[0] == "combine"]
    assert launched[-1][3]["use_logfmt"] is True
    with pytest.raises(ValueError, match="use_logfmt=true and zero_copy=true cannot be combined"):
        combine(env, y, idx, w, handle, use_logfmt=True, zero_copy=True)
    with pytest.raises(ValueError, match="handle must be the 5-tuple .* got 6 items"):
        combine(env, y, idx, w, handle + (None,))
    half = FakeTensor((E, N, H // 2), env.torch.bfloat16, FakeDevice("cuda", 0))
    with pytest.raises(ValueError, match=r"x.shape\[2\]=3584 must equal the hidden size .*7168"):
        combine(env, half, idx, w, handle)
    # zero_copy: x may be left out (its rows are in the combine buffer already).
    combined, _, _ = combine(env, None, idx, w, handle, zero_copy=True)
    assert combined.shape == (T, H)


def test_next_combine_buffer_is_a_strided_bf16_view(env):
    x, idx = inputs(env)
    _, _, handle, _, _ = dispatch(env, x, idx)
    view = env.mode.next_combine_buffer(handle)
    row = (2 * H + 4 * (H // 128)) // 2
    assert view.shape == (E, N, H) and view.dtype is env.torch.bfloat16
    assert view.stride() == (N * row, row, 1)


# ---------------------------------------------------------------- Buffer routing
def bare_buffer(env, low_latency_mode: bool, enable_shrink: bool = False):
    b = env.buffer.Buffer.__new__(env.buffer.Buffer)
    b.enable_shrink = enable_shrink
    b.runtime, b._ops, b._ll = FakeRuntime(env.calls), None, None
    b.explicitly_destroy = False
    b.rank, b.group_size, b.num_nvl_bytes, b.num_rdma_bytes = 1, R, 0, HINT
    b.low_latency_mode, b.allow_nvlink_for_low_latency_mode = low_latency_mode, False
    b._device, b._comm_stream, b._comm_handle = 0, FakeStream(COMM), COMM
    return b


def test_low_latency_calls_need_low_latency_mode(env):
    b = bare_buffer(env, low_latency_mode=False)
    x, idx = inputs(env)
    with pytest.raises(ValueError, match="low_latency_dispatch needs a Buffer built with"):
        b.low_latency_dispatch(x, idx, T, NUM_EXPERTS)
    with pytest.raises(ValueError, match="clean_low_latency_buffer needs a Buffer built with"):
        b.clean_low_latency_buffer(T, H, NUM_EXPERTS)


def test_buffer_builds_the_ops_once_with_its_settings(env, monkeypatch):
    made = []

    def make_ops(runtime, allow_nvlink, enable_shrink):  # no num_sms: every SM (as DeepEP)
        made.append((runtime, allow_nvlink, enable_shrink))
        return FakeOps(_C.BufferInfo(1, R, 0, 0, HINT, True), env.calls)

    fake_c = types.SimpleNamespace(LowLatencyOps=make_ops, BufferInfo=_C.BufferInfo)
    monkeypatch.setattr(env.buffer, "_C", fake_c)
    monkeypatch.setattr(env.buffer.Buffer, "num_sms", 24)
    b = bare_buffer(env, low_latency_mode=True)
    x, idx = inputs(env)
    recv_x, _, handle, _, _ = b.low_latency_dispatch(x, idx, T, NUM_EXPERTS, use_fp8=False)
    b.low_latency_combine(recv_x, idx, FakeTensor((T, K), env.torch.float32, x.device), handle)
    assert made == [(b.runtime, False, False)]
    assert b._ll.info.num_rdma_bytes == HINT and b._ll.info.low_latency_mode


@pytest.mark.parametrize(
    "call",
    [
        lambda b: b.low_latency_update_mask_buffer(1, True),
        lambda b: b.low_latency_query_mask_buffer(None),
        lambda b: b.low_latency_clean_mask_buffer(),
    ],
)
def test_mask_apis_need_enable_shrink(env, call):
    with pytest.raises(ValueError, match="needs a Buffer built with enable_shrink=True"):
        call(bare_buffer(env, low_latency_mode=True))


def test_mask_apis_reach_the_ops_on_the_current_stream(env):
    b = bare_buffer(env, low_latency_mode=True, enable_shrink=True)
    b._ll = env.mode
    b.low_latency_update_mask_buffer(R - 1, True)
    assert env.calls[-1] == ("update_mask", R - 1, True, COMPUTE)
    status = FakeTensor((R,), env.torch.int32, FakeDevice("cuda", 0))
    b.low_latency_query_mask_buffer(status)
    assert env.calls[-1] == ("query_mask", status, COMPUTE)
    b.low_latency_clean_mask_buffer()
    assert env.calls[-1] == ("clean_mask", COMPUTE)
    with pytest.raises(ValueError, match=rf"rank_to_mask={R} must be in \[0, {R}\)"):
        b.low_latency_update_mask_buffer(R, True)
    with pytest.raises(TypeError, match="rank_to_mask must be an integer, got bool"):
        b.low_latency_update_mask_buffer(True, True)
    with pytest.raises(TypeError, match="mask_status must be a torch.Tensor"):
        b.low_latency_query_mask_buffer([0] * R)
