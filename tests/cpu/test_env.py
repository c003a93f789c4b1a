"""The environment-variable registry and its generated documentation."""

import pathlib
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


def test_docs_table_is_generated_from_the_registry():
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_env_docs.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
