"""CPU unit tests of internode_reference.py, the reference of the internode normal-mode GPU
suite: hand-computed layouts, receive orders, prefix sums, forwarding plans and combines on
2 x 2 and 3 x 2 topologies, and random scenarios on many topologies against brute-force
re-derivations written with plain Python loops. Needs torch (skips without it), no GPU."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from . import internode_reference as iref  # noqa: E402
from . import reference as ref  # noqa: E402

EPS = 2.0**-8  # half a bf16 ulp at 1.0


def idx(rows: list[list[int]], k: int) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.int64).view(len(rows), k)


def layouts_of(topk: list[torch.Tensor], num_experts: int, num_local_ranks: int):
    return [iref.dispatch_layout(t, num_experts, len(topk), num_local_ranks) for t in topk]


def ints(t: torch.Tensor) -> list:
    return t.tolist()


# ----------------------------------------------------------------------------- 4 ranks = 2 x 2
# E = 8: experts 2r, 2r+1 on rank r; experts 0-3 on node 0 (ranks 0, 1), 4-7 on node 1 (2, 3).
TOPK_2X2 = [
    idx([[0, 5], [6, 7], [-1, -1], [3, -1]], 2),  # t1: both experts on rank 3 (node 1 only)
    idx([[4, 2], [-1, 1], [7, 4]], 2),  # t2: two ranks of node 1
    idx([[-1, -1], [-1, -1]], 2),  # rank 2 sends nothing
    idx([[0, 4], [5, 6]], 2),  # t1: ranks 2 and 3, one node
]


def weights_2x2() -> list[torch.Tensor]:
    # weight of (rank s, token t, slot k) = s + t / 4 + k / 8: distinct, exact in float32
    return [
        torch.tensor(
            [[s + t / 4 + k / 8 for k in range(2)] for t in range(x.size(0))],
            dtype=torch.float32,
        ).view(x.size(0), 2)
        for s, x in enumerate(TOPK_2X2)
    ]


def test_layout_2x2_by_hand():
    lay = layouts_of(TOPK_2X2, 8, 2)
    assert [ints(x.num_tokens_per_rank) for x in lay] == [
        [1, 1, 1, 1],
        [1, 1, 2, 1],
        [0, 0, 0, 0],
        [1, 0, 2, 1],
    ]
    assert [ints(x.num_tokens_per_rdma_rank) for x in lay] == [[2, 2], [2, 2], [0, 0], [1, 2]]
    assert ints(lay[0].num_tokens_per_expert) == [1, 0, 0, 1, 0, 1, 1, 1]
    assert ints(lay[1].num_tokens_per_expert) == [0, 1, 1, 0, 2, 0, 0, 1]
    assert ints(lay[3].num_tokens_per_expert) == [1, 0, 0, 0, 1, 1, 1, 0]
    assert ints(lay[0].is_token_in_node) == [[1, 1], [0, 1], [0, 0], [1, 0]]
    assert [x.num_rdma_token_sent for x in lay] == [4, 4, 0, 3]
    assert [x.num_network_rows(r // 2) for r, x in enumerate(lay)] == [2, 2, 0, 1]
    for x in lay:
        assert x.num_tokens_per_rdma_rank.dtype == torch.int32
        assert x.num_tokens_per_rank.dtype == torch.int32
        assert x.is_token_in_node.dtype == torch.bool


def test_dispatch_2x2_by_hand_rank2():
    lay = layouts_of(TOPK_2X2, 8, 2)
    w = weights_2x2()
    exp = iref.expected_dispatch(lay, TOPK_2X2, w, 8, 2, dst=2)
    # rank 2 holds experts 4 (local 0) and 5 (local 1)
    assert [ints(r) for r in exp.rows] == [[0], [0, 2], [], [0, 1]]
    assert ints(exp.recv_gbl_rank_prefix_sum) == [1, 3, 3, 5]
    assert exp.recv_gbl_rank_prefix_sum.dtype == torch.int32
    assert ints(exp.recv_topk_idx) == [[-1, 1], [0, -1], [-1, 0], [-1, 0], [1, -1]]
    assert exp.recv_topk_weights.tolist() == [
        [0.0, 0.125],
        [1.0, 0.0],
        [0.0, 1.625],
        [0.0, 3.125],
        [3.25, 0.0],
    ]
    assert exp.expert_counts == [3, 2]
    assert exp.expert_list(1) == [3, 2]
    assert exp.expert_list(2) == [4, 2]
    assert exp.expert_list(4) == [4, 4]
    assert exp.num_recv == 5
    # the network stage: rank 2 = (node 1, local 0) gets rank 0's and rank 2's node-1 tokens
    assert [ints(r) for r in exp.forwarded] == [[0, 1], []]
    assert ints(exp.recv_rdma_rank_prefix_sum) == [2, 2]
    assert exp.num_rdma_recv == 2


def test_dispatch_2x2_by_hand_rank0_and_rank1():
    lay = layouts_of(TOPK_2X2, 8, 2)
    w = weights_2x2()
    r0 = iref.expected_dispatch(lay, TOPK_2X2, w, 8, 2, dst=0)
    assert [ints(r) for r in r0.rows] == [[0], [1], [], [0]]
    assert ints(r0.recv_topk_idx) == [[0, -1], [-1, 1], [0, -1]]
    assert r0.expert_counts == [2, 1] and r0.expert_list(2) == [2, 2]
    assert ints(r0.recv_gbl_rank_prefix_sum) == [1, 2, 2, 3]
    r1 = iref.expected_dispatch(lay, TOPK_2X2, w, 8, 2, dst=1)
    assert [ints(r) for r in r1.rows] == [[3], [0], [], []]
    assert ints(r1.recv_topk_idx) == [[1, -1], [-1, 0]]
    assert ints(r1.recv_gbl_rank_prefix_sum) == [1, 2, 2, 2]


def test_forwarding_plan_2x2_by_hand():
    lay = layouts_of(TOPK_2X2, 8, 2)
    want = {  # dst: (rows per source node, recv_rdma_rank_prefix_sum)
        0: ([[0, 3], []], [2, 2]),  # from ranks 0 and 2
        1: ([[0, 1], [0]], [2, 3]),  # from ranks 1 and 3
        2: ([[0, 1], []], [2, 2]),
        3: ([[0, 2], [0, 1]], [2, 4]),
    }
    w = weights_2x2()
    total = 0
    for dst, (rows, prefix) in want.items():
        exp = iref.expected_dispatch(lay, TOPK_2X2, w, 8, 2, dst)
        assert [ints(r) for r in exp.forwarded] == rows
        assert ints(exp.recv_rdma_rank_prefix_sum) == prefix
        total += exp.num_rdma_recv
    assert total == sum(x.num_rdma_token_sent for x in lay) == 11


# ----------------------------------------------------------------------------- 6 ranks = 3 x 2
# E = 12: experts 2r, 2r+1 on rank r; node n holds experts 4n..4n+3 (ranks 2n, 2n+1).
TOPK_3X2 = [
    idx([[11, 10], [2, 8], [-1, 6]], 2),  # t0: one rank of node 2
    idx([], 2),  # no tokens
    idx([[-1, -1]], 2),  # one token routed nowhere
    idx([], 2),
    idx([[0, 7], [9, -1]], 2),
    idx([[4, 5]], 2),  # to rank 2; forwarded through rank 3 (same local index as rank 5)
]


def test_layout_3x2_by_hand():
    lay = layouts_of(TOPK_3X2, 12, 2)
    assert ints(lay[0].num_tokens_per_rank) == [0, 1, 0, 1, 1, 1]
    assert ints(lay[0].num_tokens_per_rdma_rank) == [1, 1, 2]
    assert ints(lay[4].num_tokens_per_rdma_rank) == [1, 1, 1]
    assert ints(lay[5].num_tokens_per_rdma_rank) == [0, 1, 0]
    assert ints(lay[2].num_tokens_per_rdma_rank) == [0, 0, 0]
    assert lay[1].num_tokens_per_rdma_rank.shape == (3,)
    assert lay[1].is_token_in_node.shape == (0, 3)
    assert [x.num_rdma_token_sent for x in lay] == [4, 0, 0, 0, 3, 1]


def test_dispatch_3x2_by_hand():
    lay = layouts_of(TOPK_3X2, 12, 2)
    w = [torch.full((t.size(0), 2), float(s + 1)) for s, t in enumerate(TOPK_3X2)]
    r3 = iref.expected_dispatch(lay, TOPK_3X2, w, 12, 2, dst=3)
    assert [ints(r) for r in r3.rows] == [[2], [], [], [], [0], []]
    assert ints(r3.recv_gbl_rank_prefix_sum) == [1, 1, 1, 1, 2, 2]
    assert ints(r3.recv_topk_idx) == [[-1, 0], [-1, 1]]
    assert r3.recv_topk_weights.tolist() == [[0.0, 1.0], [0.0, 5.0]]
    assert [ints(r) for r in r3.forwarded] == [[], [], [0]]  # rank 5's token, bound for rank 2
    assert ints(r3.recv_rdma_rank_prefix_sum) == [0, 0, 1]
    r5 = iref.expected_dispatch(lay, TOPK_3X2, w, 12, 2, dst=5)
    assert ints(r5.recv_topk_idx) == [[1, 0]]
    assert r5.expert_counts == [1, 1]
    plan = {0: [[1], [], [0]], 1: [[], [], []], 2: [[2], [], [0]], 4: [[0, 1], [], [1]]}
    for dst, rows in plan.items():
        got = iref.expected_dispatch(lay, TOPK_3X2, w, 12, 2, dst).forwarded
        assert [ints(r) for r in got] == rows


# ----------------------------------------------------------------------------- combine by hand


def combine_case():
    """4 ranks = 2 x 2, E = 4 (expert r on rank r), K = 3, H = 2. Rank 0's token 0 goes to
    ranks 0, 1 (node 0) and 2 (node 1); its token 1 nowhere; other ranks send nothing."""
    topk = [idx([[0, 1, 2], [-1, -1, -1]], 3)] + [idx([], 3) for _ in range(3)]
    lay = layouts_of(topk, 4, 2)
    bf = torch.bfloat16
    returned = [
        torch.tensor([[1.0, 3.0]], dtype=bf),
        torch.tensor([[EPS, 5.0]], dtype=bf),
        torch.tensor([[EPS, 7.0]], dtype=bf),
        torch.zeros(0, 2, dtype=bf),
    ]
    weights = [
        torch.tensor([[0.5, 0.0, 0.0]]),
        torch.tensor([[0.0, 0.25, 0.0]]),
        torch.tensor([[0.0, 0.0, 0.125]]),
        torch.zeros(0, 3),
    ]
    return lay, returned, weights


def test_combine_rounds_each_node_partial_by_hand():
    lay, returned, weights = combine_case()
    out, out_w = iref.expected_combine(0, lay, returned, 2, 2, (), weights)
    # node 0: bf16(1 + 2^-8) = 1 (tie to even); + node 1's 2^-8 = 1 + 2^-8 -> bf16 1.0
    assert out.dtype == torch.bfloat16
    assert out.float().tolist() == [[1.0, 15.0], [0.0, 0.0]]
    assert out_w.tolist() == [[0.5, 0.25, 0.125], [0.0, 0.0, 0.0]]
    # the one-rounding intranode rule would give 1 + 2^-7 here
    single, _ = ref.expected_combine(0, lay, returned, 2)
    assert single.float().tolist() == [[1.0 + 2 * EPS, 15.0], [0.0, 0.0]]


def test_combine_adds_biases_before_node_partials_by_hand():
    lay, returned, _ = combine_case()
    b0 = torch.tensor([[EPS, 0.0], [1.0, 2.0]], dtype=torch.bfloat16)
    b1 = torch.tensor([[0.0, 0.5], [0.25, 0.0]], dtype=torch.bfloat16)
    out, out_w = iref.expected_combine(0, lay, returned, 2, 2, (b0, b1))
    # (2^-8 + 0) + 1 + 2^-8 = 1 + 2^-7, exact in bf16; token 1 (sent nowhere) = b0 + b1
    assert out.float().tolist() == [[1.0 + 2 * EPS, 15.5], [1.25, 2.0]]
    assert out_w is None
    out1, _ = iref.expected_combine(0, lay, returned, 2, 2, (b1,))
    assert out1.float().tolist() == [[1.0, 15.5], [0.25, 0.0]]


def test_combine_negative_zero_biases_stay_negative_zero():
    lay, returned, _ = combine_case()
    nz = torch.full((2, 2), -0.0, dtype=torch.bfloat16)
    out, _ = iref.expected_combine(0, lay, returned, 2, 2, (nz, nz))
    assert bool(torch.signbit(out[1]).all())  # b0 + b1 = -0.0, no node adds a +0.0
    out, _ = iref.expected_combine(0, lay, returned, 2, 2, (nz,))
    assert not bool(torch.signbit(out[1]).any())  # the missing bias reads +0.0


def test_bad_topology_and_bias_count():
    with pytest.raises(ValueError, match="does not divide"):
        iref.num_nodes(6, 4)
    with pytest.raises(ValueError):
        iref.dispatch_layout(idx([[0]], 1), 6, 6, 0)
    lay, returned, _ = combine_case()
    b = torch.zeros(2, 2, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="at most 2"):
        iref.expected_combine(0, lay, returned, 2, 2, (b, b, b))


# ----------------------------------------------------------------------------- brute force


def brute_dispatch(topk: list[list[list[int]]], num_experts: int, num_ranks: int, nl: int):
    """Per destination rank: received (source, token) pairs, local top-k ids, expert counts,
    and the (source node, token) pairs of its network stage; all by plain loops."""
    per_rank = num_experts // num_ranks
    per_node = per_rank * nl
    out = []
    for d in range(num_ranks):
        rows, local_ids, counts = [], [], [0] * per_rank
        for s in range(num_ranks):
            for t, experts in enumerate(topk[s]):
                if any(e >= 0 and e // per_rank == d for e in experts):
                    rows.append((s, t))
                    ids = [
                        e - d * per_rank if e >= 0 and e // per_rank == d else -1 for e in experts
                    ]
                    local_ids.append(ids)
                    for i in ids:
                        if i >= 0:
                            counts[i] += 1
        forwarded = []
        for m in range(num_ranks // nl):
            s = m * nl + d % nl
            for t, experts in enumerate(topk[s]):
                if any(e >= 0 and e // per_node == d // nl for e in experts):
                    forwarded.append((m, t))
        out.append({"rows": rows, "ids": local_ids, "counts": counts, "forwarded": forwarded})
    return out


def brute_combine(src, topk, disp, returned, nl, biases, weights, hidden, num_topk):
    """Rank `src`'s combine by loops: per token, per node, per local rank."""
    num_ranks = len(topk)
    out, out_w = [], []
    for t in range(len(topk[src])):
        acc = torch.zeros(hidden)
        if biases:
            acc = biases[0][t].float() + (biases[1][t].float() if len(biases) > 1 else acc)
        acc_w = torch.zeros(num_topk)
        for n in range(num_ranks // nl):
            part, part_w, hit = torch.zeros(hidden), torch.zeros(num_topk), False
            for d in range(n * nl, (n + 1) * nl):
                if (src, t) in disp[d]["rows"]:
                    pos = disp[d]["rows"].index((src, t))
                    part = part + returned[d][pos].float()
                    part_w = part_w + weights[d][pos]
                    hit = True
            if hit:
                acc = acc + part.bfloat16().float()
                acc_w = acc_w + part_w
        out.append(acc.bfloat16())
        out_w.append(acc_w)
    if not out:
        return torch.zeros(0, hidden, dtype=torch.bfloat16), torch.zeros(0, num_topk)
    return torch.stack(out), torch.stack(out_w)


TOPOLOGIES = [(4, 2), (6, 2), (6, 3), (8, 4), (8, 2), (4, 1), (4, 4), (2, 1)]


def random_world(num_ranks: int, nl: int, seed: int):
    tokens = tuple((7 * r + 3 * seed) % 13 for r in range(num_ranks))
    sc = ref.Scenario(
        name=f"r{num_ranks}l{nl}s{seed}",
        tokens=tokens,
        hidden=128,
        num_experts=3 * num_ranks,
        num_topk=4,
        seed=seed,
        drop_prob=0.3,
        empty_row_prob=0.15,
        silent_rank=seed % num_ranks,
        unpicked_rank=(seed + 1) % num_ranks if num_ranks > 2 else None,
    )
    cpu = torch.device("cpu")
    inputs = [ref.make_rank_inputs(sc, r, num_ranks, cpu) for r in range(num_ranks)]
    x, topk, w = (list(col) for col in zip(*inputs))
    return sc, x, topk, w


@pytest.mark.parametrize("num_ranks,nl", TOPOLOGIES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_against_brute_force(num_ranks, nl, seed):
    sc, x, topk, w = random_world(num_ranks, nl, seed)
    lists = [t.tolist() for t in topk]
    disp = brute_dispatch(lists, sc.num_experts, num_ranks, nl)
    nodes = num_ranks // nl
    per_node = sc.num_experts // nodes
    lay = layouts_of(topk, sc.num_experts, nl)
    for s in range(num_ranks):  # layout: node counts and DeepEP's num_rdma_token_sent
        node_sets = [{e // per_node for e in row if e >= 0} for row in lists[s]]
        assert ints(lay[s].num_tokens_per_rdma_rank) == [
            sum(n in ns for ns in node_sets) for n in range(nodes)
        ]
        assert lay[s].num_rdma_token_sent == sum(len(ns) for ns in node_sets)
    for d in range(num_ranks):
        exp = iref.expected_dispatch(lay, topk, w, sc.num_experts, nl, d)
        want_rows = disp[d]["rows"]
        assert [(s, t) for s, r in enumerate(exp.rows) for t in r.tolist()] == want_rows
        assert exp.recv_topk_idx.tolist() == disp[d]["ids"]
        want_w = [
            [w[s][t, k].item() if i >= 0 else 0.0 for k, i in enumerate(ids)]
            for (s, t), ids in zip(want_rows, disp[d]["ids"])
        ]
        assert exp.recv_topk_weights.tolist() == want_w
        assert exp.expert_counts == disp[d]["counts"]
        assert exp.expert_list(3) == [-(-c // 3) * 3 for c in disp[d]["counts"]]
        prefix, run = [], 0
        for s in range(num_ranks):
            run += sum(1 for src, _ in want_rows if src == s)
            prefix.append(run)
        assert ints(exp.recv_gbl_rank_prefix_sum) == prefix
        got_fwd = [(m, t) for m, r in enumerate(exp.forwarded) for t in r.tolist()]
        assert got_fwd == disp[d]["forwarded"]
        per_src = [sum(1 for m, _ in got_fwd if m == n) for n in range(nodes)]
        assert ints(exp.recv_rdma_rank_prefix_sum) == torch.tensor(per_src).cumsum(0).tolist()
    # every (token, node) pair is delivered once by the network stage
    total = sum(len(disp[d]["forwarded"]) for d in range(num_ranks))
    assert total == sum(x.num_rdma_token_sent for x in lay)
    # combine: rank d returns a rank-dependent transform of its received rows
    returned, weights = [], []
    for d in range(num_ranks):
        rows = torch.stack([x[s][t] for s, t in disp[d]["rows"]]) if disp[d]["rows"] else None
        rows = rows if rows is not None else torch.zeros(0, sc.hidden, dtype=torch.bfloat16)
        returned.append(ref.expert_transform(rows, d))
        weights.append(
            iref.expected_dispatch(lay, topk, w, sc.num_experts, nl, d).recv_topk_weights
        )
    gen = torch.Generator().manual_seed(seed)
    for s in range(num_ranks):
        shape = (sc.tokens[s], sc.hidden)
        biases = tuple(torch.randn(shape, generator=gen).bfloat16() for _ in range(seed % 3))
        got, got_w = iref.expected_combine(s, lay, returned, sc.hidden, nl, biases, weights)
        want, want_w = brute_combine(s, lists, disp, returned, nl, biases, weights, sc.hidden, 4)
        assert ref.bitwise_mismatch(got, want) is None
        assert torch.equal(got_w, want_w)
        # weights round-trip: the original weights where a slot's expert was selected
        sent = lay[s].is_token_in_rank.any(1)
        orig = w[s].masked_fill(topk[s] < 0, 0.0)
        assert torch.equal(got_w[sent], orig[sent])


@pytest.mark.parametrize("num_ranks", [2, 4, 6])
def test_single_rank_nodes_equal_intranode_combine(num_ranks):
    # With one rank per node a node partial is one bf16 row: no extra rounding.
    sc, x, topk, w = random_world(num_ranks, 1, 5)
    world = iref.InternodeScenarioRef(sc, 0, x, topk, w, num_local_ranks=1)
    plain = ref.ScenarioRef(sc, 0, x, topk, w)
    for kind in ("bf16_rand", "fp8_f32"):
        for nb in (0, 2):
            got, got_w = world.expected_combine(kind, world.biases(nb), True)
            want, want_w = plain.expected_combine(kind, plain.biases(nb), True)
            assert ref.bitwise_mismatch(got, want) is None
            assert torch.equal(got_w, want_w)


@pytest.mark.parametrize("num_ranks,nl", [(4, 2), (8, 4), (8, 2)])
def test_combine_within_rounding_of_single_rounding(num_ranks, nl):
    # Two-level and one-level sums differ only by roundings: with u = 2^-8 (bf16), S the sum of
    # |rows| and E the exact sum, |two - one| <= u * S + 2u * |E| (to first order).
    sc, x, topk, w = random_world(num_ranks, nl, 4)
    world = iref.InternodeScenarioRef(sc, 1, x, topk, w, num_local_ranks=nl)
    returned = [ref.expert_transform(world.expected_x("bf16_rand", d), d) for d in range(num_ranks)]
    two, _ = iref.expected_combine(1, world.layouts, returned, sc.hidden, nl)
    one, _ = ref.expected_combine(1, world.layouts, returned, sc.hidden)
    abs_sum, _ = ref.expected_combine(1, world.layouts, [r.abs() for r in returned], sc.hidden)
    bound = 2.0**-8 * (abs_sum.float() + 2 * one.float().abs()) * 1.05 + 1e-6
    assert bool(((two.float() - one.float()).abs() <= bound).all())
    assert ref.calc_diff(two, one) < 1e-4


def test_scenario_ref_rows_and_rdma_count():
    sc, x, topk, w = random_world(6, 3, 7)
    world = iref.InternodeScenarioRef(sc, 4, x, topk, w, num_local_ranks=3)
    assert world.num_nodes == 2
    disp = brute_dispatch([t.tolist() for t in topk], sc.num_experts, 6, 3)
    for d in range(6):
        want = [x[s][t] for s, t in disp[d]["rows"]]
        got = world.expected_x("bf16_rand", d)
        assert got.shape == (len(want), sc.hidden)
        if want:
            assert torch.equal(got, torch.stack(want))
        fp8, scales = world.expected_x("fp8_f32", d)
        assert fp8.dtype == torch.float8_e4m3fn and scales.shape == (len(want), sc.hidden // 128)
    assert isinstance(world.expected(2), iref.InternodeDispatchRef)
    # DeepEP's count: per token the distinct nodes of its experts (test_internode.py)
    own = topk[4]
    node_idx = (own // (sc.num_experts // 2)).masked_fill(own < 0, -1)
    distinct = sum(len({n for n in row if n >= 0}) for row in node_idx.tolist())
    assert world.num_rdma_token_sent() == distinct
