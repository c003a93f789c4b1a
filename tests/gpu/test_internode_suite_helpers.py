"""CPU tests of the pure-Python parts of the internode stall and LL-compatibility suites
(internode_stall_suite.py, internode_ll_compat_suite.py): the timeout-message checks against
messages in the library's formats, the topologies they run on, the inputs they build. Needs
torch (skips without it), no GPU."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from . import internode_ll_compat_suite as compat  # noqa: E402
from . import internode_stall_suite as stall  # noqa: E402
from . import internode_suite as suite  # noqa: E402
from . import ll_reference as lref  # noqa: E402
from . import reference as ref  # noqa: E402

# The library's timeout messages (src/runtime/error_report.cc describe_error and the host wait
# of src/runtime/health.cc wait_for_sequence), filled in for rank 2 waiting on rank 3.
KERNEL_WAIT = (
    "uccl-ep: rank 2 timed out after 5.0 s waiting for peer 3 (channel 1) at internode notify "
    "record: expected 2, observed 1. The Buffer refuses further work (UCCL_EP_TIMEOUT_SECS=5)"
)
HOST_WAIT = (
    "uccl-ep: rank 2 timed out after 5 s in the internode dispatch waiting for the "
    "received-token counts of all peers (notify) (sequence 2, last seen 1). The Buffer refuses "
    "further work (UCCL_EP_TIMEOUT_SECS=5)"
)


@pytest.mark.parametrize("msg", [KERNEL_WAIT, HOST_WAIT])
def test_library_timeout_messages_pass(msg):
    assert stall.says_timeout(msg)
    assert stall.names_rank(msg, 2)


def test_names_rank_is_exact():
    assert not stall.names_rank(KERNEL_WAIT, 3)  # "peer 3" is not "rank 3"
    assert not stall.names_rank("uccl-ep: rank 12 timed out", 1)
    assert stall.names_rank("uccl-ep: rank 12 timed out", 12)
    assert not stall.says_timeout("dispatch: the Buffer was destroyed")


def test_stalled_rank_is_on_another_node_than_rank_0():
    for num_ranks, local in ((4, 2), (8, 2), (8, 4)):
        assert stall.stalled_rank(num_ranks) // local != 0


def names(topologies):
    return [t.name for t in topologies]


def test_stall_topologies(monkeypatch):
    monkeypatch.delenv(suite.TOPOLOGIES_ENV, raising=False)
    assert names(stall.stall_topologies(4)) == ["L2_ipc"]
    assert names(stall.stall_topologies(8)) == ["L2_ipc", "L4_ipc"]
    assert stall.stall_topologies(2) == []  # 2 ranks form no 2 nodes of 2
    monkeypatch.setenv(suite.TOPOLOGIES_ENV, "L2_tcp")
    assert names(stall.stall_topologies(4)) == ["L2_ipc"]  # the default when none is selected
    monkeypatch.setenv(suite.TOPOLOGIES_ENV, "L4_ipc")
    assert names(stall.stall_topologies(8)) == ["L4_ipc"]


def test_compat_topologies(monkeypatch):
    monkeypatch.delenv(suite.TOPOLOGIES_ENV, raising=False)
    assert names(compat.compat_topologies(4)) == ["L2_ipc"]
    assert names(compat.compat_topologies(8)) == ["L2_ipc", "L4_ipc"]
    monkeypatch.setenv(suite.TOPOLOGIES_ENV, "L2_tcp,L2_ipc")
    assert names(compat.compat_topologies(4)) == ["L2_tcp", "L2_ipc"]
    monkeypatch.setenv(suite.TOPOLOGIES_ENV, "L4_tcp")
    assert compat.compat_topologies(4) == []


@pytest.mark.parametrize("num_ranks", [4, 8])
def test_compat_inputs_are_valid(num_ranks):
    sc = compat.internode_scenario(num_ranks)
    assert sc.num_experts % num_ranks == 0 and sc.hidden * 2 <= suite.MAX_HIDDEN_BYTES
    ref.make_rank_inputs(sc, 0, num_ranks, torch.device("cpu"))

    class FakeLL:
        t, experts_per_rank = compat.LL_TOKENS, compat.LL_EXPERTS_PER_RANK

    FakeLL.num_ranks = num_ranks
    cases = compat.ll_cases(FakeLL)
    assert [c.hidden for c in cases] == [h for h, _ in compat.LL_SHAPES]
    num_experts = compat.LL_EXPERTS_PER_RANK * num_ranks
    for case in cases:
        assert case.num_topk <= 11 and case.hidden <= compat.LL_MAX_HIDDEN
        world = lref.World(case, 1, num_ranks, num_experts, compat.LL_TOKENS, torch.device("cpu"))
        assert world.own()[0].shape == (compat.LL_TOKENS, case.hidden)
