"""The wait-profile hook of diagnostic builds: empty in normal builds, a clear error for a
kernel it does not know."""

import pytest

from uccl.ep import _C


def test_wait_profile_is_empty_in_a_normal_build_and_checks_its_argument():
    assert _C._testing.wait_profile("dispatch", False) == []
    assert _C._testing.wait_profile("combine") == []
    with pytest.raises(ValueError, match="kernel='notify' must be 'dispatch' or 'combine'"):
        _C._testing.wait_profile("notify")
