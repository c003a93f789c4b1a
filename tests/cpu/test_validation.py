"""Argument validation through the binding, without a GPU: every broken argument raises the
right exception type with a message naming it (TensorDesc stands in for CUDA tensors)."""

import numpy as np
import pytest

from uccl.ep import _C

R, T, H, K, E = 4, 64, 256, 8, 32


def desc(dtype, shape, strides=None, device="cuda:0"):
    return _C.TensorDesc(dtype, list(shape), strides, device, 0x1000)


def dispatch_kwargs(n=100):
    return dict(
        x=desc("bfloat16", (T, H)),
        topk_idx=desc("int64", (T, K)),
        topk_weights=desc("float32", (T, K)),
        is_token_in_rank=desc("bool", (T, R)),
        rank_prefix_matrix=desc("int32", (R, R)),
        channel_prefix_matrix=desc("int32", (R, 12)),
        num_experts=E,
        config=_C.Config(24, 8, 256),
        recv_x=desc("bfloat16", (n, H)),
        recv_topk_idx=desc("int64", (n, K)),
        recv_topk_weights=desc("float32", (n, K)),
        recv_src_idx=desc("int32", (n,)),
        recv_channel_prefix_matrix=desc("int32", (R, 12)),
        send_head=desc("int32", (T, R)),
    )


def combine_kwargs(n=100):
    return dict(
        x=desc("bfloat16", (n, H)),
        topk_weights=desc("float32", (n, K)),
        rank_prefix_matrix=desc("int32", (R, R)),
        recv_channel_prefix_matrix=desc("int32", (R, 12)),
        recv_src_idx=desc("int32", (n,)),
        is_token_in_rank=desc("bool", (T, R)),
        send_head=desc("int32", (T, R)),
        config=_C.Config(24, 8, 256),
        combined_x=desc("bfloat16", (T, H)),
        combined_topk_weights=desc("float32", (T, K)),
    )


INFO = _C.BufferInfo(1, R, 1 << 30, 0)


def test_valid_calls_pass():
    INFO.check_dispatch(**dispatch_kwargs())
    INFO.check_combine(**combine_kwargs())


def test_fp8_with_column_major_scales_passes():
    kw = dispatch_kwargs()
    kw.update(
        x=desc("float8_e4m3fn", (T, H)),
        x_scales=desc("float32", (T, 2), strides=[1, T]),
        recv_x=desc("float8_e4m3fn", (100, H)),
        recv_x_scales=desc("float32", (100, 2)),
    )
    INFO.check_dispatch(**kw)
    kw.update(x_scales=desc("int32", (T, 2)), recv_x_scales=desc("int32", (100, 2)))
    INFO.check_dispatch(**kw)


@pytest.mark.parametrize(
    "x_dtype", ["float32", "float16", "float64", "float8_e4m3fn", "float8_e5m2", "uint8", "int8"]
)
def test_dispatch_moves_any_element_type_as_raw_bytes(x_dtype):
    # As in DeepEP, rows are raw bytes: any dtype whose row is a multiple of 16 bytes.
    kw = dispatch_kwargs()
    kw.update(x=desc(x_dtype, (T, H)), recv_x=desc(x_dtype, (100, H)))
    INFO.check_dispatch(**kw)


@pytest.mark.parametrize("data", ["uint8", "float8_e5m2", "int8"])
def test_scales_go_with_any_one_byte_data(data):
    kw = dispatch_kwargs()
    kw.update(
        x=desc(data, (T, H)),
        x_scales=desc("float32", (T, 2)),
        recv_x=desc(data, (100, H)),
        recv_x_scales=desc("float32", (100, 2)),
    )
    INFO.check_dispatch(**kw)


@pytest.mark.parametrize(
    "change, exc, words",
    [
        (dict(x=desc("float32", (T, H))), TypeError, "recv_x must have dtype float32, got bf"),
        (dict(x=desc("float32", (T, 6)), recv_x=desc("float32", (100, 6))), ValueError, "24 bytes"),
        (dict(x_scales=desc("float32", (T, 2))), TypeError, "needs 1-byte data .*got bfloat16"),
        (dict(x=desc("bfloat16", (T, H), device="cpu")), ValueError, "x must be on cuda:0"),
        (dict(x=desc("bfloat16", (T, H), device="cuda:1")), ValueError, "got cuda:1"),
        (dict(x=desc("bfloat16", (T, H), strides=[1, T])), ValueError, "x must be contiguous"),
        (dict(x=desc("bfloat16", (T, 4))), ValueError, "multiple of 16"),
        (dict(topk_idx=desc("int32", (T, K))), TypeError, "topk_idx must have dtype int64"),
        (dict(topk_weights=None), ValueError, "must be given together"),
        (dict(topk_weights=desc("float32", (T, K + 1))), ValueError, "topk_weights has shape"),
        (dict(num_experts=30), ValueError, "num_experts=30 must be a positive multiple"),
        (dict(config=_C.Config(20, 8, 256)), ValueError, "made with 12 channels"),
        (dict(cached=True), ValueError, "takes no topk_idx"),
        (dict(num_worst_tokens=3), ValueError, "must equal num_worst_tokens=3"),
        (
            dict(is_token_in_rank=desc("int32", (T, R))),
            TypeError,
            "is_token_in_rank must have dtype bool",
        ),
        (dict(send_head=None), ValueError, "send_head is required"),
        (dict(x=np.zeros((T, H), dtype=np.complex64)), TypeError, "does not handle"),
        (dict(x="not a tensor"), TypeError, "x must be a tensor"),
        (dict(bogus=1), TypeError, "unexpected keyword argument 'bogus'"),
    ],
)
def test_dispatch_rejects(change, exc, words):
    kw = dispatch_kwargs()
    kw.update(change)
    with pytest.raises(exc, match=words):
        INFO.check_dispatch(**kw)


def test_dispatch_rejects_a_small_buffer():
    small = _C.BufferInfo(0, R, 1 << 20, 0)
    with pytest.raises(ValueError, match="num_nvl_bytes=1048576"):
        small.check_dispatch(**dispatch_kwargs())


def test_notify_checks_dispatch_inputs_before_any_work():
    kw = {k: v for k, v in dispatch_kwargs().items() if not k.startswith(("recv", "send"))}
    kw.update(num_tokens_per_rank=desc("int32", (R,)), num_tokens_per_expert=desc("int32", (E,)))
    INFO.check_notify(**kw)
    INFO.check_notify(**{**kw, "x": desc("float32", (T, H))})  # any dtype: raw bytes
    with pytest.raises(TypeError, match="needs 1-byte data"):
        INFO.check_notify(**{**kw, "x_scales": desc("float32", (T, 2))})
    with pytest.raises(ValueError, match="expert_alignment=0"):
        INFO.check_notify(**kw, expert_alignment=0)
    with pytest.raises(ValueError, match="must equal num_experts"):
        INFO.check_notify(**{**kw, "num_tokens_per_expert": desc("int32", (E + R,))})


@pytest.mark.parametrize(
    "change, exc, words",
    [
        (dict(x=desc("float32", (100, H))), TypeError, "x must have dtype bfloat16, got float32"),
        (dict(x=desc("bfloat16", (99, H))), ValueError, r"x.shape\[0\]=99 must equal"),
        (dict(config=_C.Config(20, 8, 256)), ValueError, "use the num_sms of the dispatch"),
        (dict(bias0=desc("bfloat16", (T + 1, H))), ValueError, r"bias\[0\] has shape"),
        (dict(bias1=desc("float32", (T, H))), TypeError, r"bias\[1\] must have dtype bfloat16"),
        (dict(combined_topk_weights=None), ValueError, "combined_topk_weights is required"),
        (dict(config=_C.Config(24, 16, 30)), ValueError, r"send_tokens \+ 24"),
    ],
)
def test_combine_rejects(change, exc, words):
    kw = combine_kwargs()
    kw.update(change)
    with pytest.raises(exc, match=words):
        INFO.check_combine(**kw)


def test_layout():
    kw = dict(
        topk_idx=desc("int64", (T, K)),
        num_experts=E,
        num_tokens_per_rank=desc("int32", (R,)),
        num_tokens_per_expert=desc("int32", (E,)),
        is_token_in_rank=desc("bool", (T, R)),
    )
    INFO.check_layout(**kw)
    with pytest.raises(ValueError, match="num_experts=6"):
        INFO.check_layout(**{**kw, "num_experts": 6})
    with pytest.raises(TypeError, match="topk_idx must have dtype int64, got int32"):
        INFO.check_layout(**{**kw, "topk_idx": np.zeros((T, K), dtype=np.int32)})
    with pytest.raises(ValueError, match="topk_idx must be on cuda:0.*got cpu"):
        INFO.check_layout(**{**kw, "topk_idx": np.zeros((T, K), dtype=np.int64)})


def test_tensor_desc_rejects_unknown_dtype_and_device():
    with pytest.raises(ValueError, match="unknown dtype 'complex64'"):
        desc("complex64", (1,))
    with pytest.raises(ValueError, match="must be 'cpu' or 'cuda:N'"):
        desc("int32", (1,), device="mps")


class FakeDtype:
    """Prints like a torch dtype ("torch.bfloat16")."""

    def __init__(self, name):
        self.name = name

    def __str__(self):
        return f"torch.{self.name}"


_NAMES = ("bfloat16", "float16", "int32", "int64", "float32", "bool", "complex64")
DTYPES = {n: FakeDtype(n) for n in _NAMES}


class FakeTensor:
    """The attributes of torch.Tensor that the binding reads (data_ptr(), shape, stride(),
    dtype, is_cuda, get_device(), device.type), defined on the class as torch defines them,
    with values the test chooses."""

    class _Device:
        def __init__(self, type_):
            self.type = type_

    def __init__(self, dtype, shape, strides=None, device="cuda:0", ptr=0x2000):
        self._dtype, self._shape = DTYPES[dtype], tuple(shape)
        if strides is None:
            strides, run = [], 1
            for s in reversed(shape):
                strides.insert(0, run)
                run *= s
        self._strides, self._ptr = tuple(strides), ptr
        kind, _, index = device.partition(":")
        self._kind, self._index = kind, int(index) if index else -1

    dtype = property(lambda self: self._dtype)
    shape = property(lambda self: self._shape)
    is_cuda = property(lambda self: self._kind == "cuda")
    device = property(lambda self: self._Device(self._kind))

    def data_ptr(self):
        return self._ptr

    def stride(self):
        return self._strides

    def get_device(self):
        return self._index


def test_torch_like_tensors_are_read_from_their_attributes():
    # Every argument as a torch-like object instead of a TensorDesc: the same checks apply.
    kw = {k: v for k, v in dispatch_kwargs().items()}
    for k, v in list(kw.items()):
        if isinstance(v, _C.TensorDesc):
            kw[k] = FakeTensor(v.dtype, v.shape)
    INFO.check_dispatch(**kw)
    cases = [
        (dict(x=FakeTensor("float32", (T, H))), TypeError, "recv_x must have dtype float32"),
        (dict(x=FakeTensor("bfloat16", (T, H), device="cuda:1")), ValueError, "got cuda:1"),
        (dict(x=FakeTensor("bfloat16", (T, H), device="cpu")), ValueError, "got cpu"),
        (dict(x=FakeTensor("bfloat16", (T, H), device="meta")), ValueError, "x must be on cuda:0"),
        (dict(x=FakeTensor("bfloat16", (T, H), strides=(1, T))), ValueError, "contiguous"),
        (dict(x=FakeTensor("complex64", (T, H))), TypeError, "x has dtype torch.complex64"),
        (dict(x=FakeTensor("bfloat16", (1, 1, 1, 1, T))), ValueError, "x has 5 dimensions"),
        (dict(send_head=FakeTensor("int32", (T, R + 1))), ValueError, "send_head"),
    ]
    for change, exc, words in cases:
        with pytest.raises(exc, match=words):
            INFO.check_dispatch(**{**kw, **change})


def test_torch_like_tensor_with_broken_attributes_raises_type_error():
    class NoAddress(FakeTensor):
        def data_ptr(self):
            raise RuntimeError("sparse tensors do not have storage")

    class FloatShape(FakeTensor):
        def stride(self):
            return (1.5, 1)

    kw = dispatch_kwargs()
    with pytest.raises(TypeError, match="x: cannot read the tensor.*sparse"):
        INFO.check_dispatch(**{**kw, "x": NoAddress("bfloat16", (T, H))})
    with pytest.raises(TypeError, match="x: its shape, strides"):
        INFO.check_dispatch(**{**kw, "x": FloatShape("bfloat16", (T, H))})
