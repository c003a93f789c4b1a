"""CPU tests of the internode GPU suite's own checks (internode_suite.py): the channel prefix
sums by hand, and outputs built from the reference pass every dispatch check while a corrupted
handle field fails the check named after it. Needs torch (skips without it), no GPU."""

from __future__ import annotations

import types

import pytest

torch = pytest.importorskip("torch")

from . import internode_reference as iref  # noqa: E402
from . import internode_suite as suite  # noqa: E402
from . import intranode_suite as intra  # noqa: E402
from . import reference as ref  # noqa: E402
from ._dist import Recorder  # noqa: E402

CHANNELS = 3


@pytest.fixture(autouse=True)
def on_cpu(monkeypatch):
    monkeypatch.setattr(intra, "device", lambda: torch.device("cpu"))


def test_by_channel_by_hand():
    # 7 tokens in 3 channels of ceil(7 / 3) = 3 tokens: [0, 3), [3, 6), [6, 7).
    mask = torch.tensor([[1, 0], [1, 1], [0, 0], [1, 0], [0, 0], [0, 1], [1, 1]], dtype=torch.bool)
    assert suite.by_channel(mask, CHANNELS).tolist() == [[2, 3, 4], [1, 2, 3]]
    assert suite.by_channel(mask, CHANNELS, inclusive=False).tolist() == [[0, 2, 3], [0, 1, 2]]
    assert suite.by_channel(mask[:0], CHANNELS).tolist() == [[0] * CHANNELS] * 2


def world_of(num_ranks: int, local: int, rank: int) -> iref.InternodeScenarioRef:
    tokens = (37, 0, 50, 21, 9, 64, 3, 40)[:num_ranks]
    sc = ref.Scenario("s", tokens, 256, 64, seed=3, empty_row_prob=0.2)
    inputs = [ref.make_rank_inputs(sc, r, num_ranks, torch.device("cpu")) for r in range(num_ranks)]
    x, idx, w = (list(t) for t in zip(*inputs))
    return iref.InternodeScenarioRef(sc, rank, x, idx, w, local)


def reference_output(ctx, world, mode) -> list:
    """dispatch's 6-tuple as a correct implementation returns it (head positions made up)."""
    want = suite.expected_handle(ctx, world, CHANNELS)
    exp = world.expected(ctx.rank)
    meta = want["recv_src_meta"].contiguous().view(torch.uint8).view(exp.num_recv, 8)
    handle = [world.layouts[ctx.rank].is_token_in_rank]
    handle += [want[name] for name in suite.HANDLE_FIELDS[1:7]]
    handle += [meta, torch.where(want["send_rdma_head_sent"], 0, -1).int()]
    handle += [torch.where(want["send_nvl_head_sent"], 2, -1).int()]
    recv_x = world.expected_x("bf16_rand", ctx.rank)
    expert_list = exp.expert_list(mode.alignment)
    event = types.SimpleNamespace(event=None)
    return [recv_x, exp.recv_topk_idx, exp.recv_topk_weights, expert_list, handle, event]


def failed_checks(num_ranks: int, local: int, corrupt=None) -> set:
    names = set()
    for rank in range(num_ranks):
        checks = []
        config = types.SimpleNamespace(num_sms=2 * CHANNELS)
        ctx = suite.Ctx(rank, num_ranks, Recorder(rank, checks.append), None, 6, config)
        ctx.local_ranks = local
        world = world_of(num_ranks, local, rank)
        mode = intra.Mode(config)
        out = reference_output(ctx, world, mode)
        if corrupt is not None:
            corrupt(out[4])
        out[4] = tuple(out[4])
        suite.check_dispatch(intra.Scope(ctx, "d", "test"), world, "bf16_rand", out, mode)
        assert checks, "no check was made"
        names |= {c.name for c in checks if not c.ok}
    return names


@pytest.mark.parametrize("num_ranks,local", [(4, 2), (8, 2), (8, 4), (8, 1)])
def test_reference_outputs_pass(num_ranks, local):
    assert failed_checks(num_ranks, local) == set()


def bump(index: int, value):
    def corrupt(handle: list) -> None:
        handle[index] = handle[index].clone()
        handle[index].view(-1)[:1] = value
        if index == 7:  # one source node off by one
            handle[index].view(-1)[:1] += 1

    return corrupt


@pytest.mark.parametrize(
    "index,value,check",
    [
        (3, 99, "d.handle_recv_rdma_channel_prefix_matrix"),
        (5, 99, "d.handle_recv_gbl_channel_prefix_matrix"),
        (6, 99, "d.handle_recv_gbl_rank_prefix_sum"),
        (7, 0, "d.handle_recv_src_meta"),
        (8, -1, "d.handle_send_rdma_head_sent"),
        (9, -1, "d.handle_send_nvl_head_sent"),
    ],
)
def test_a_corrupted_field_fails_its_check(index, value, check):
    assert check in failed_checks(4, 2, bump(index, value))
