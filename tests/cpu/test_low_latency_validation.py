"""Argument validation of the low-latency calls through the binding, without a GPU: a valid call
passes, and each broken rule raises the right exception type with a message naming the
argument, its value and the rule (TensorDesc stands in for CUDA tensors)."""

import pytest

from uccl.ep import _C

R, T, H, K, NUM_EXPERTS = 4, 64, 7168, 8, 32
E, N, S = NUM_EXPERTS // R, R * T, H // 128
HINT = _C.get_low_latency_rdma_size_hint(T, H, R, NUM_EXPERTS)


def desc(dtype, shape, strides=None, device="cuda:0"):
    return _C.TensorDesc(dtype, list(shape), strides, device, 0x1000)


def column_major(dtype, e, n, s):
    """[e, n, s] as DeepEP allocates scales: [e, s, n] transposed."""
    return desc(dtype, (e, n, s), strides=[n * s, 1, n])


def info(num_rdma_bytes=HINT, low_latency_mode=True, num_ranks=R):
    return _C.BufferInfo(
        1, num_ranks, 0, 0, num_rdma_bytes=num_rdma_bytes, low_latency_mode=low_latency_mode
    )


def dispatch_kwargs(num_tokens=T, use_fp8=True):
    kw = dict(
        x=desc("bfloat16", (num_tokens, H)),
        topk_idx=desc("int64", (num_tokens, K)),
        num_max_dispatch_tokens_per_rank=T,
        num_experts=NUM_EXPERTS,
        use_fp8=use_fp8,
        recv_x=desc("float8_e4m3fn" if use_fp8 else "bfloat16", (E, N, H)),
        recv_count=desc("int32", (E,)),
        recv_src_info=desc("int32", (E, N)),
        recv_layout_range=desc("int64", (E, R)),
    )
    if use_fp8:
        kw["recv_x_scales"] = column_major("float32", E, N, S)
    return kw


def combine_kwargs(num_tokens=T):
    return dict(
        x=desc("bfloat16", (E, N, H)),
        topk_idx=desc("int64", (num_tokens, K)),
        topk_weights=desc("float32", (num_tokens, K)),
        src_info=desc("int32", (E, N)),
        layout_range=desc("int64", (E, R)),
        num_max_dispatch_tokens_per_rank=T,
        num_experts=NUM_EXPERTS,
        combined_x=desc("bfloat16", (num_tokens, H)),
    )


def test_buffer_info_takes_the_rdma_size_and_mode():
    default = _C.BufferInfo(0, 2, 1024)
    assert default.num_rdma_bytes == 0 and default.low_latency_mode is False
    i = info()
    assert i.num_rdma_bytes == HINT and i.low_latency_mode is True
    i.num_rdma_bytes, i.low_latency_mode = 128, False
    assert i.num_rdma_bytes == 128 and i.low_latency_mode is False


def test_valid_dispatch_variants_pass():
    ok = info()
    ok.check_low_latency_dispatch(**dispatch_kwargs())
    ok.check_low_latency_dispatch(**dispatch_kwargs(use_fp8=False))
    ok.check_low_latency_dispatch(**dispatch_kwargs(num_tokens=0))
    ok.check_low_latency_dispatch(**dispatch_kwargs(), round_scale=True)
    ue8m0 = {**dispatch_kwargs(), "recv_x_scales": column_major("int32", E, N, H // 512)}
    ok.check_low_latency_dispatch(**ue8m0, round_scale=True, use_ue8m0=True)
    ok.check_low_latency_dispatch(
        **dispatch_kwargs(),
        cumulative_local_expert_recv_stats=desc("int32", (E,)),
        dispatch_wait_recv_cost_stats=desc("int64", (R,)),
    )


def test_use_fp8_defaults_to_true_as_in_deepep():
    kw = dispatch_kwargs(use_fp8=False)
    del kw["use_fp8"]
    with pytest.raises(TypeError, match="recv_x must have dtype float8_e4m3fn, got bfloat16"):
        info().check_low_latency_dispatch(**kw)


@pytest.mark.parametrize(
    "change, exc, words",
    [
        (dict(x=desc("float32", (T, H))), TypeError, "x must have dtype bfloat16, got float32"),
        (
            dict(x=desc("bfloat16", (T, 1024))),
            ValueError,
            r"x.shape\[1\]=1024 \(hidden\) is not supported by the low-latency kernels; "
            r"supported: 2048, 2560, 3072, 4096, 5120, 6144, 7168, 8192",
        ),
        (
            dict(x=desc("bfloat16", (T + 1, H)), topk_idx=desc("int64", (T + 1, K))),
            ValueError,
            r"x.shape\[0\]=65 \(num_tokens\) must be <= num_max_dispatch_tokens_per_rank=64",
        ),
        (dict(x=desc("bfloat16", (T, H), strides=[1, T])), ValueError, "x must be contiguous"),
        (
            dict(x=desc("bfloat16", (T, H), device="cpu")),
            ValueError,
            r"x must be on cuda:0 \(the Buffer's device\), got cpu",
        ),
        (dict(topk_idx=desc("int32", (T, K))), TypeError, "topk_idx must have dtype int64"),
        (dict(topk_idx=None), ValueError, "topk_idx is required"),
        (
            dict(topk_idx=desc("int64", (T, 12))),
            ValueError,
            r"topk_idx.shape\[1\]=12 \(num_topk\) must be in \[1, 11\]",
        ),
        (
            dict(num_experts=30),
            ValueError,
            r"num_experts=30 must be a positive multiple of the number of ranks \(4\)",
        ),
        (
            dict(num_max_dispatch_tokens_per_rank=0),
            ValueError,
            "num_max_dispatch_tokens_per_rank=0 must be >= 1",
        ),
        (
            dict(use_fp8=False, recv_x=desc("bfloat16", (E, N, H))),
            ValueError,
            "recv_x_scales must not be given without use_fp8",
        ),
        (dict(round_scale=False, use_ue8m0=True), ValueError, "use_ue8m0=true needs use_fp8=true"),
        (
            dict(recv_x_scales=desc("float32", (E, N, S))),
            ValueError,
            r"recv_x_scales has strides \[14336, 56, 1\], expected \[14336, 1, 256\]",
        ),
        (dict(recv_x_scales=None), ValueError, "recv_x_scales is required"),
        (
            dict(recv_x=desc("bfloat16", (E, N, H))),
            TypeError,
            "recv_x must have dtype float8_e4m3fn, got bfloat16",
        ),
        (
            dict(recv_x=desc("float8_e4m3fn", (E, T, H))),
            ValueError,
            r"recv_x has shape \[8, 64, 7168\], expected \[8, 256, 7168\]",
        ),
        (
            dict(recv_count=desc("int32", (NUM_EXPERTS,))),
            ValueError,
            r"recv_count has shape \[32\]",
        ),
        (
            dict(recv_layout_range=desc("int32", (E, R))),
            TypeError,
            "recv_layout_range must have dtype int64, got int32",
        ),
        (
            dict(recv_src_info=desc("int32", (E, N), device="cuda:1")),
            ValueError,
            "recv_src_info must be on cuda:0 .*got cuda:1",
        ),
        (
            dict(cumulative_local_expert_recv_stats=desc("int64", (E,))),
            TypeError,
            "cumulative_local_expert_recv_stats must have dtype int32, got int64",
        ),
        (
            dict(dispatch_wait_recv_cost_stats=desc("int64", (R, R))),
            ValueError,
            r"dispatch_wait_recv_cost_stats has shape \[4, 4\], expected \[4\] \(num_ranks\)",
        ),
        (dict(bogus=1), TypeError, "unexpected keyword argument 'bogus'"),
        (dict(x="not a tensor"), TypeError, "x must be a tensor"),
    ],
)
def test_dispatch_rejects(change, exc, words):
    kw = dispatch_kwargs()
    kw.update(change)
    with pytest.raises(exc, match=words):
        info().check_low_latency_dispatch(**kw)


def test_round_scale_and_ue8m0_need_fp8():
    kw = dispatch_kwargs(use_fp8=False)
    with pytest.raises(ValueError, match="round_scale=true needs use_fp8=true"):
        info().check_low_latency_dispatch(**kw, round_scale=True)
    with pytest.raises(ValueError, match="use_ue8m0=true needs use_fp8=true and round_scale=true"):
        info().check_low_latency_dispatch(**kw, use_ue8m0=True)
    ue8m0 = {**dispatch_kwargs(), "recv_x_scales": column_major("float32", E, N, S)}
    with pytest.raises(TypeError, match="recv_x_scales must have dtype int32, got float32"):
        info().check_low_latency_dispatch(**ue8m0, round_scale=True, use_ue8m0=True)


def test_ranks_times_tokens_must_be_a_multiple_of_4():
    three = info(num_ranks=3)
    kw = dispatch_kwargs()
    kw.update(num_experts=24, num_max_dispatch_tokens_per_rank=33)
    with pytest.raises(
        ValueError,
        match=r"num_ranks \* num_max_dispatch_tokens_per_rank = 3 \* 33 = 99 must be a multiple "
        "of 4",
    ):
        three.check_low_latency_dispatch(**kw)


def test_calls_need_a_low_latency_buffer():
    normal = info(low_latency_mode=False)
    with pytest.raises(
        ValueError,
        match=r"low_latency_dispatch needs a Buffer built with low_latency_mode=True \(this one "
        "has low_latency_mode=false\\)",
    ):
        normal.check_low_latency_dispatch(**dispatch_kwargs())
    with pytest.raises(ValueError, match="low_latency_combine needs a Buffer built with"):
        normal.check_low_latency_combine(**combine_kwargs())


def test_buffer_must_hold_the_tokens_per_rank():
    info(HINT).check_low_latency_dispatch(**dispatch_kwargs())
    small = info(HINT - 128)
    words = (
        f"num_max_dispatch_tokens_per_rank=64 too large for the buffer: T=64, hidden=7168, "
        f"num_experts=32 need num_rdma_bytes >= {HINT} \\(get_low_latency_rdma_size_hint\\) but "
        f"the Buffer has num_rdma_bytes={HINT - 128}"
    )
    with pytest.raises(ValueError, match=words):
        small.check_low_latency_dispatch(**dispatch_kwargs())
    with pytest.raises(ValueError, match="num_max_dispatch_tokens_per_rank=64 too large"):
        small.check_low_latency_combine(**combine_kwargs())


def test_valid_combine_variants_pass():
    ok = info()
    ok.check_low_latency_combine(**combine_kwargs())
    ok.check_low_latency_combine(**combine_kwargs(num_tokens=3))
    ok.check_low_latency_combine(
        **combine_kwargs(), combine_wait_recv_cost_stats=desc("int64", (R,))
    )
    # zero_copy: x is not read; it may be left out or be the strided combine-buffer view.
    ok.check_low_latency_combine(**{**combine_kwargs(), "x": None}, zero_copy=True)
    view = desc("bfloat16", (E, N, H), strides=[N * (H + 32), H + 32, 1])
    ok.check_low_latency_combine(**{**combine_kwargs(), "x": view}, zero_copy=True)


@pytest.mark.parametrize(
    "change, exc, words",
    [
        (dict(x=None), ValueError, "x is required"),
        (
            dict(x=desc("float32", (E, N, H))),
            TypeError,
            "x must have dtype bfloat16, got float32",
        ),
        (
            dict(x=desc("bfloat16", (E, T, H))),
            ValueError,
            r"x has shape \[8, 64, 7168\], expected \[8, 256, 7168\]",
        ),
        (
            dict(x=desc("bfloat16", (E, N, H), strides=[N * (H + 32), H + 32, 1])),
            ValueError,
            "x must be contiguous",
        ),
        (
            dict(
                topk_idx=desc("int64", (T + 1, K)),
                topk_weights=desc("float32", (T + 1, K)),
                combined_x=desc("bfloat16", (T + 1, H)),
            ),
            ValueError,
            r"topk_idx.shape\[0\]=65 \(num_tokens\) must be <= num_max_dispatch_tokens_per_rank=64",
        ),
        (
            dict(topk_weights=desc("bfloat16", (T, K))),
            TypeError,
            "topk_weights must have dtype float32, got bfloat16",
        ),
        (
            dict(topk_weights=desc("float32", (T, K + 1))),
            ValueError,
            r"topk_weights has shape \[64, 9\], expected \[64, 8\]",
        ),
        (
            dict(src_info=desc("int32", (E, T))),
            ValueError,
            r"src_info has shape \[8, 64\], expected \[8, 256\]",
        ),
        (
            dict(layout_range=desc("int32", (E, R))),
            TypeError,
            "layout_range must have dtype int64",
        ),
        (
            dict(combined_x=desc("bfloat16", (T, H // 2))),
            ValueError,
            r"combined_x has shape \[64, 3584\], expected \[64, 7168\]",
        ),
        (
            dict(combine_wait_recv_cost_stats=desc("int32", (R,))),
            TypeError,
            "combine_wait_recv_cost_stats must have dtype int64, got int32",
        ),
        (
            dict(use_logfmt=True, zero_copy=True),
            ValueError,
            "use_logfmt=true and zero_copy=true cannot be combined",
        ),
        (dict(handle=None), TypeError, "unexpected keyword argument 'handle'"),
    ],
)
def test_combine_rejects(change, exc, words):
    kw = combine_kwargs()
    kw.update(change)
    with pytest.raises(exc, match=words):
        info().check_low_latency_combine(**kw)


def test_low_latency_ops_binding_has_the_calls():
    ops = _C.LowLatencyOps
    for name in (
        "dispatch",
        "dispatch_recv",
        "combine",
        "combine_recv",
        "clean",
        "next_combine_buffer",
        "peer_is_direct",
    ):
        assert callable(getattr(ops, name)), name
    assert "phase" in ops.dispatch.__doc__ and "stream" in ops.dispatch.__doc__
    # num_sms is an optional cap of the C++ API: 0 (the default) = every SM, as DeepEP.
    assert "num_sms: int = 0" in ops.__init__.__doc__
