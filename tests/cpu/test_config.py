"""Config, tuned tables and size hints through the Python binding (no GPU, no torch)."""

import pytest

from uccl.ep import _C

HIDDEN_BYTES = 7168 * 2


def test_config_defaults_and_repr():
    c = _C.Config()
    assert (c.num_sms, c.num_max_nvl_chunked_send_tokens, c.num_max_nvl_chunked_recv_tokens) == (
        20,
        6,
        256,
    )
    assert c.num_max_rdma_chunked_send_tokens == 6
    assert c.num_max_rdma_chunked_recv_tokens == 258  # DeepEP rounds 256 up to a multiple of 6
    assert "num_sms=20" in repr(c)


def test_config_positional_and_keywords():
    a = _C.Config(24, 8, 256)
    b = _C.Config(
        num_sms=24, num_max_nvl_chunked_send_tokens=8, num_max_nvl_chunked_recv_tokens=256
    )
    assert repr(a) == repr(b)


@pytest.mark.parametrize(
    "args, words",
    [
        (
            (20, 8, 8),
            "num_max_nvl_chunked_send_tokens=8 must be < num_max_nvl_chunked_recv_tokens=8",
        ),
        ((20, 6, 256, 8, 6), "at most half"),
        ((-2,), "num_sms=-2"),
        ((20, 0, 256), "num_max_nvl_chunked_send_tokens=0"),
    ],
)
def test_config_rejects(args, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        _C.Config(*args)


def test_nvl_hint_byte_exact():
    assert _C.Config(20, 6, 256, 6, 128).get_nvl_buffer_size_hint(HIDDEN_BYTES, 8) == 335_709_824
    assert _C.Config(24, 6, 256, 6, 128).get_nvl_buffer_size_hint(HIDDEN_BYTES, 8) == 402_851_712
    ep16 = _C.get_dispatch_config(16, 20)
    assert ep16.get_nvl_buffer_size_hint(HIDDEN_BYTES, 16) == 377_673_984


def test_rdma_hint_byte_exact():
    assert _C.get_dispatch_config(8, 20).get_rdma_buffer_size_hint(HIDDEN_BYTES, 8) == 0
    assert _C.get_dispatch_config(16, 20).get_rdma_buffer_size_hint(HIDDEN_BYTES, 16) == 91_887_744
    assert _C.get_combine_config(16, 20).get_rdma_buffer_size_hint(HIDDEN_BYTES, 16) == 86_637_184


def test_hint_rejects_rank_counts():
    with pytest.raises(ValueError, match="num_ranks=12"):
        _C.Config().get_nvl_buffer_size_hint(HIDDEN_BYTES, 12)


def test_tables_follow_num_sms_and_reject_unknown_sizes():
    assert _C.get_dispatch_config(2, 24).num_max_nvl_chunked_send_tokens == 24
    assert _C.get_combine_config(8, 24).num_max_nvl_chunked_send_tokens == 4
    assert _C.get_combine_config(8, 24).num_sms == 24
    with pytest.raises(ValueError, match="num_ranks=6 has no tuned config"):
        _C.get_dispatch_config(6, 20)


def test_low_latency_hint():
    for r in (2, 8, 16, 160):
        assert _C.get_low_latency_rdma_size_hint(128, 7168, r, 256) == 1_908_410_496
    assert _C.get_low_latency_rdma_size_hint(16, 5120, 8, 256) == 170_395_776


def test_module_flags():
    assert _C.topk_idx_bits == 64
    assert isinstance(_C.sm90_compiled, bool)
