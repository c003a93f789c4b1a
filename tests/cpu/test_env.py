"""The environment-variable registry and its generated documentation."""

import pathlib
import re
import subprocess
import sys

import pytest

from uccl.ep import _C

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_registry_contents():
    names = [v[0] for v in _C.env_vars()]
    assert "UCCL_EP_TIMEOUT_SECS" in names and "UCCL_EP_LOG_LEVEL" in names
    assert len(names) == len(set(names))


def test_bad_value_is_named(monkeypatch):
    monkeypatch.setenv("UCCL_EP_TIMEOUT_SECS", "soon")
    with pytest.raises(ValueError, match="UCCL_EP_TIMEOUT_SECS='soon'"):
        _C.read_env_settings()
    monkeypatch.setenv("UCCL_EP_TIMEOUT_SECS", "3")
    assert _C.read_env_settings()[0] == 3.0


def test_registry_documents_uccl_ep_variables():
    table = {name: (default, meaning) for name, _, default, meaning in _C.env_vars()}
    expected = {
        "UCCL_SOCKET_IFNAME": ("unset", "FI_TCP_IFACE"),
        "UCCL_IB_GID_INDEX": ("unset", "FI_VERBS_GID_IDX"),
        "UCCL_IB_SL": ("unset", "warning"),
        "UCCL_IB_TC": ("unset", "warning"),
        "UCCL_IB_MAX_INFLIGHT_BYTES": ("unlimited", "proxy threads"),
        "UCCL_IB_MAX_INFLIGHT_NORMAL": ("8", "Normal"),
        "UCCL_IB_MAX_INFLIGHT_LOW_LATENCY": ("32", "Low-latency"),
        "UCCL_EP_ENABLE_AGGRESSIVE_ATOMIC": ("0", "fence.acq_rel.sys"),
    }
    for name, (default, maps_to) in expected.items():
        assert name in table, name
        assert table[name][0] == default, name
        assert maps_to in table[name][1], name


@pytest.mark.parametrize(
    "name, value, rule",
    [
        ("UCCL_SOCKET_IFNAME", "uccl_no_if9", "no network interface named 'uccl_no_if9'"),
        ("UCCL_SOCKET_IFNAME", "eth0,eth1", "a list of interfaces is not supported"),
        ("UCCL_IB_GID_INDEX", "256", "expected an integer in [0, 255]"),
        ("UCCL_IB_SL", "16", "expected an integer in [0, 15]"),
        ("UCCL_IB_TC", "0x68", "expected an integer in [0, 255]"),
        ("UCCL_IB_MAX_INFLIGHT_NORMAL", "0", "expected an integer in [1, 65536]"),
        ("UCCL_IB_MAX_INFLIGHT_LOW_LATENCY", "x", "expected an integer in [1, 65536]"),
        ("UCCL_IB_MAX_INFLIGHT_BYTES", "1.5M", "expected a number of bytes"),
        ("UCCL_EP_ENABLE_AGGRESSIVE_ATOMIC", "true", "expected 0 or 1"),
    ],
)
def test_buffer_creation_rejects_a_bad_variable(monkeypatch, name, value, rule):
    # The native Buffer parses every variable first thing, before any CUDA call (so this runs
    # without a GPU too).
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=re.escape(f"{name}='{value}' is invalid: {rule}")):
        _C.Buffer(
            rank=0, num_ranks=1, num_local_ranks=0, device=0, num_nvl_bytes=1 << 20,
            num_rdma_bytes=0, low_latency_mode=False, host_name="h", all_gather=lambda b: [b],
        )  # fmt: skip


def test_docs_table_is_generated_from_the_registry():
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_env_docs.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
