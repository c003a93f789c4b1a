"""bench/bench_internode.py's pure parts: flags, ring slot sizes, the byte accounting on a tiny
synthetic routing computed with tests/gpu/internode_reference.py, the transport floor's operation
lists, and the summary's targets. The torch parts skip without torch (CI has none)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
import _internode_report as rep  # noqa: E402
import bench_internode as bench  # noqa: E402

try:
    import torch
except ImportError:
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


# ------------------------------------------------------------------------------------- flags


def test_defaults_are_deepseek_v3_and_deepeps_config():
    a = rep.parse_args([])
    assert (a.num_tokens, a.hidden, a.num_topk, a.num_experts) == (4096, 7168, 8, 256)
    assert (a.num_sms, a.nvl_chunk, a.rdma_chunk, a.rdma_recv) == (24, 8, 16, 128)
    assert a.local_ranks is None and a.transport is None and a.fi_provider is None
    assert not (a.quick or a.tune or a.share_gpus)
    assert rep.nvl_recv_tokens(a, 4) == 512 and rep.nvl_recv_tokens(a, 24) == 720
    assert rep.nvl_recv_tokens(rep.parse_args(["--nvl-recv", "256"]), 24) == 256


@pytest.mark.parametrize(
    "argv",
    [
        ["--num-sms", "23"],
        ["--hidden", "7100"],
        ["--num-topk", "300"],
        ["--rdma-chunk", "65", "--rdma-recv", "256"],
        ["--rdma-chunk", "80"],
        ["--nvl-chunk", "16", "--nvl-recv", "16"],
        ["--transport", "ipc", "--fi-provider", "tcp;ofi_rxm"],
        ["--transport", "nccl"],
        ["--iters", "1"],
        ["--local-ranks", "0"],
        ["--num-tokens", "0"],
        ["--timeout", "0"],
    ],
)
def test_bad_flags_exit_with_status_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        rep.parse_args(argv)
    assert e.value.code == 2
    assert "error" in capsys.readouterr().err


def test_topology_and_transport_flags_become_the_environment(monkeypatch):
    for name in ("UCCL_EP_NUM_LOCAL_RANKS", "UCCL_EP_TRANSPORT", "UCCL_EP_FI_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    argv = ["--local-ranks", "2", "--transport", "libfabric", "--fi-provider", "tcp;ofi_rxm"]
    rep.apply_env(rep.parse_args(argv))
    assert os.environ["UCCL_EP_NUM_LOCAL_RANKS"] == "2"
    assert os.environ["UCCL_EP_TRANSPORT"] == "libfabric"
    assert os.environ["UCCL_EP_FI_PROVIDER"] == "tcp;ofi_rxm"
    monkeypatch.delenv("UCCL_EP_NUM_LOCAL_RANKS")
    rep.apply_env(rep.parse_args([]))  # unset flags leave the environment alone
    assert "UCCL_EP_NUM_LOCAL_RANKS" not in os.environ


def test_tune_grid_starts_with_the_configured_pair_once():
    pts = rep.tune_points(rep.QUICK, "fp8_dispatch", (8, 16))
    assert pts[0] == (8, 16) and len(pts) == len(set(pts))
    assert set(pts) == {(8, 16)} | {(n, r) for n in (8, 16) for r in (8, 16)}
    combine = rep.tune_points(rep.FULL, "bf16_combine", (8, 16))
    assert {n for n, _ in combine[1:]} == set(rep.FULL.combine_nvl)
    args = rep.parse_args(["--tune", "--quick"])
    steps = rep.steps(args, rep.QUICK)
    assert steps[:5] == ["setup", "check", *rep.MODES]
    assert steps.count("tune fp8_dispatch") == len(pts)
    assert steps[-4:] == ["destroy"] + [f"floor {m}" for m in rep.MODES]


def test_shared_gpus_without_mps_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path))
    assert rep.mps_problem(False, 4, 1) is None
    assert rep.mps_problem(True, 2, 2) is None
    assert "no CUDA MPS daemon" in rep.mps_problem(True, 4, 1)
    (tmp_path / "control").touch()
    assert rep.mps_problem(True, 4, 1) is None


# ------------------------------------------------------------------------------------ layout


def test_slot_sizes_follow_the_internode_layout():
    # BF16 row of 7168: 14336 + 8-byte source record -> 14352 (dispatch), 14336 (combine)
    assert rep.dispatch_slot_bytes(14336, 0, 0) == 14352
    assert rep.combine_slot_bytes(14336, 0) == 14336
    assert rep.ring_slot_bytes(*rep.mode_slot_args("bf16_dispatch", 7168)) == 14352
    assert rep.ring_slot_bytes(*rep.mode_slot_args("bf16_combine", 7168)) == 14352
    # FP8: 7168 + 56 float32 scales + 8 -> 7400, padded to 7408
    assert rep.mode_slot_args("fp8_dispatch", 7168) == (7168, 56, 0)
    assert rep.ring_slot_bytes(7168, 56, 0) == 7408
    # with top-8 ids and weights (the checked dispatch): 14336 + 64 + 8 -> 14416
    assert rep.ring_slot_bytes(14336, 0, 8) == 14416
    assert rep.combine_slot_bytes(100, 3) == 112 + 16


def test_channel_ranges_and_counts():
    assert [rep.channel_token_range(10, 3, c) for c in range(3)] == [(0, 4), (4, 8), (8, 10)]
    assert [rep.channel_token_range(2, 4, c) for c in range(4)] == [(0, 1), (1, 2), (2, 2)] + [
        (2, 2)
    ]
    in_node = [[1, 0], [1, 1], [0, 1], [1, 1], [0, 0]]  # 5 tokens, 2 nodes, channels 3+2
    assert rep.channel_counts(in_node, 2) == [[2, 1], [2, 1]]
    assert rep.counts_from_prefix([[2, 3, 3], [0, 4, 9]]) == [[2, 1, 0], [0, 4, 5]]
    assert rep.ranks_per_host(["a", "a", "b", "b"]) == 2 and rep.ranks_per_host(["a"]) == 1
    assert [rep.num_topk_groups(n) for n in (2, 4, 8)] == [2, 4, 4]


# ------------------------------------------------------------------------- floor operations


def traffic(rank=1, local=2, send=((5, 3), (20, 9)), recv=((4, 4), (7, 0)), num_recv=30):
    prefix = [[sum(r[: c + 1]) for c in range(len(r))] for r in send]
    recv_prefix = [[sum(r[: c + 1]) for c in range(len(r))] for r in recv]
    return rep.Traffic.from_prefix(rank, local, prefix, recv_prefix, num_recv)


def test_floor_ops_are_interleaved_chunks_to_the_same_local_index():
    t = traffic()  # rank 1 = node 0, local 1; node 1's rank of local index 1 is rank 3
    assert (t.node, t.local) == (0, 1)
    assert t.send_rows == ((5, 3), (20, 9)) and t.recv_rows == ((4, 4), (7, 0))
    slot = 16
    ops = t.floor_ops("bf16_dispatch", 8, slot)
    # streams (c0 -> n1: 20 rows) and (c1 -> n1: 9 rows), chunk 0 of both, then chunk 1, ...
    assert ops == [(3, 8 * slot), (3, 8 * slot), (3, 8 * slot), (3, 1 * slot), (3, 4 * slot)]
    assert sum(b for _, b in ops) == t.network_rows * slot == 29 * slot
    assert t.floor_ops("bf16_combine", 8, slot) == [(3, 7 * slot)]  # node 1's rows returned
    assert t.return_rows == 7 and t.num_rdma_token_sent == 37
    assert traffic(send=((5, 3), (0, 0))).floor_ops("fp8_dispatch", 8, slot) == []


def test_bytes_count_as_deepep_and_on_the_wire():
    t, hidden = traffic(), 256
    bf16 = t.bytes_for("bf16_dispatch", hidden, 528)
    assert bf16["rdma_deepep"] == 37 * hidden * 2  # own node included
    assert bf16["rdma_network"] == 29 * hidden * 2  # other nodes only
    assert bf16["nvl_deepep"] == 30 * hidden * 2
    assert bf16["wire"] == 29 * 528
    fp8 = t.bytes_for("fp8_dispatch", hidden, 288)
    assert fp8["rdma_deepep"] == pytest.approx(37 * (hidden + hidden // 128 * 4))
    assert fp8["nvl_deepep"] == pytest.approx(30 * (hidden + hidden // 128 * 4))
    combine = t.bytes_for("bf16_combine", hidden, 528)
    assert {k: combine[k] for k in ("rdma_deepep", "nvl_deepep", "rdma_network")} == {
        k: bf16[k] for k in ("rdma_deepep", "nvl_deepep", "rdma_network")
    }
    assert combine["wire"] == 7 * 528  # what this rank sends back


# -------------------------------------------------------------------------- summary, targets


def fake_report(rank: int, us: float, floor_us: float) -> dict:
    def st(v):
        return {"median": v, "p10": v, "p90": v}

    nbytes = {"rdma_deepep": 2e6, "nvl_deepep": 4e6, "rdma_network": 1e6, "wire": 1e6}
    return {
        "rank": rank,
        "error": None,
        "bytes": {m: dict(nbytes) for m in rep.MODES},
        "modes": {m: {"us": st(us), "full_us": st(2 * us)} for m in rep.MODES},
        "tune": {},
        "floor": {
            "available": True,
            "reason": None,
            **{m: {"us": st(floor_us)} for m in rep.MODES},
        },
    }


def test_summary_ratio_and_targets():
    reports = [fake_report(0, 100.0, 90.0), fake_report(1, 100.0, 70.0)]
    chunks = {m: (8, 16) for m in rep.MODES}
    summary = rep.summarize(reports, 24, chunks)
    s = summary["bf16_dispatch"]
    assert s["stats"]["rdma_gbps"]["max"] == pytest.approx(2e6 / 100e-6 / 1e9)
    assert s["stats"]["ratio_floor"]["min"] == pytest.approx(0.7)
    assert s["stats"]["floor_gbps"]["max"] == pytest.approx(1e6 / 70e-6 / 1e9)
    assert s["best"]["nvl_chunk"] == 8 and s["best"]["rank0_us"] == 100.0
    checked = rep.evaluate_targets(summary, None, None)
    assert checked["modes"]["fp8_dispatch"]["pass"] is False  # 0.7 < 0.8 on rank 1
    good = rep.summarize([fake_report(0, 100.0, 85.0)], 24, chunks)
    assert rep.evaluate_targets(good, None, None)["modes"]["bf16_combine"]["pass"] is True
    crowded = rep.evaluate_targets(good, "4 ranks share a GPU", None)
    assert crowded["modes"]["bf16_combine"]["pass"] is None and not crowded["checked"]


def test_tuning_line_is_deepeps():
    point = {"num_sms": 24, "nvl_chunk": 8, "rdma_chunk": 16, "us": 1234.5}
    assert rep.tuning_line(point, (45.678, 120.0)) == (
        "SMs 24, NVL chunk 8, RDMA chunk 16: 45.68 GB/s (RDMA), 120.00 GB/s (NVL), t: 1234.5 us"
    )


def test_targets_printed_as_pass_fail_or_not_checked(capsys):
    summary = rep.summarize([fake_report(0, 100.0, 85.0)], 24, {m: (8, 16) for m in rep.MODES})
    rep.print_targets(rep.evaluate_targets(summary, None, None))
    assert capsys.readouterr().out.count("PASS") == 3
    rep.print_targets(rep.evaluate_targets(summary, "4 ranks share a GPU, more than 2", None))
    assert capsys.readouterr().out.count("target not checked (4 ranks share") == 3
    rep.print_targets(rep.evaluate_targets(summary, None, rep.FLOOR_UNAVAILABLE))
    assert "floor not measured: not available in this build" in capsys.readouterr().out


# ------------------------------------------------------------------ with torch and the reference


def routing(num_ranks, num_local, **kw):
    sizes = dict(num_tokens=37, hidden=256, num_topk=3, num_experts=16, seed=5)
    args = rep.parse_args([f"--{k.replace('_', '-')}={v}" for k, v in {**sizes, **kw}.items()])
    nodes = num_ranks // num_local
    cpu = torch.device("cpu")
    return args, [bench.routing_of(s, args, nodes, cpu) for s in range(num_ranks)]


@needs_torch
def test_routing_is_group_limited_and_reproducible():
    args, routes = routing(8, 1, num_experts=32, num_topk=6)  # 8 nodes, top-4 groups
    for topk_idx, weights in routes:
        nodes = (topk_idx // 4).tolist()  # 4 experts per node
        assert all(len(set(row)) <= 4 for row in nodes)
        assert all(len(set(row)) == 6 for row in topk_idx.tolist())
        assert topk_idx.dtype == torch.int64 and bool((weights >= 0.5).all())
    again = bench.routing_of(3, args, 8, torch.device("cpu"))[0]
    assert torch.equal(again, routes[3][0]) and not torch.equal(routes[2][0], routes[3][0])
    x = bench.x_of(1, args, torch.device("cpu"))
    assert x.dtype == torch.bfloat16 and torch.equal(x, bench.x_of(1, args, torch.device("cpu")))


@needs_torch
@pytest.mark.parametrize("num_ranks,num_local", [(4, 2), (8, 2), (8, 4), (4, 1)])
def test_byte_accounting_matches_the_reference(num_ranks, num_local):
    iref = bench.load_reference()
    args, routes = routing(num_ranks, num_local)
    layouts = [iref.dispatch_layout(t, args.num_experts, num_ranks, num_local) for t, _ in routes]
    topk, weights = [t for t, _ in routes], [w for _, w in routes]
    channels, slot, chunk = 3, 528, 4
    total_sent = total_returned = 0
    for r in range(num_ranks):
        node, local = divmod(r, num_local)
        send = rep.channel_counts(layouts[r].is_token_in_node.tolist(), channels)
        recv = [
            rep.channel_counts(layouts[m * num_local + local].is_token_in_node.tolist(), channels)[
                node
            ]
            for m in range(num_ranks // num_local)
        ]
        want = iref.expected_dispatch(layouts, topk, weights, args.num_experts, num_local, r)

        def prefix(rows):
            return [[sum(row[: c + 1]) for c in range(channels)] for row in rows]

        t = rep.Traffic.from_prefix(r, num_local, prefix(send), prefix(recv), want.num_recv)
        assert t.num_rdma_token_sent == layouts[r].num_rdma_token_sent
        assert t.network_rows == layouts[r].num_network_rows(node)
        assert sum(map(sum, t.recv_rows)) == want.num_rdma_recv  # rows it forwards
        nbytes = t.bytes_for("bf16_dispatch", args.hidden, slot)
        assert nbytes["rdma_deepep"] == layouts[r].num_rdma_token_sent * args.hidden * 2
        assert nbytes["nvl_deepep"] == want.num_recv * args.hidden * 2
        for mode in ("bf16_dispatch", "bf16_combine"):
            ops = t.floor_ops(mode, chunk, slot)
            assert all(p % num_local == local and p // num_local != node for p, _ in ops)
            assert all(0 < b <= chunk * slot for _, b in ops)
            rows = t.return_rows if mode == "bf16_combine" else t.network_rows
            assert sum(b for _, b in ops) == rows * slot
        total_sent += t.network_rows
        total_returned += t.return_rows
    assert total_sent == total_returned  # every row crossing out comes back in combine


@needs_torch
def test_source_rows_stand_in_for_every_ranks_combine_input():
    """The check's combine expectation (each rank's block only) equals the reference's with
    every rank's full received rows."""
    iref = bench.load_reference()
    num_ranks, num_local = 4, 2
    args, routes = routing(num_ranks, num_local)
    topk, weights = [t for t, _ in routes], [w for _, w in routes]
    layouts = [iref.dispatch_layout(t, args.num_experts, num_ranks, num_local) for t in topk]
    xs = [bench.x_of(s, args, torch.device("cpu")) for s in range(num_ranks)]
    exp = [
        iref.expected_dispatch(layouts, topk, weights, args.num_experts, num_local, d)
        for d in range(num_ranks)
    ]
    full = [e.select(xs) for e in exp]
    w = [e.recv_topk_weights for e in exp]
    for src in range(num_ranks):
        in_rank = layouts[src].is_token_in_rank
        blocks = [
            bench._SourceRows(xs[src], torch.nonzero(in_rank[:, d]).flatten())
            for d in range(num_ranks)
        ]
        a = iref.expected_combine(src, layouts, blocks, args.hidden, num_local, (), w)
        b = iref.expected_combine(src, layouts, full, args.hidden, num_local, (), w)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(IndexError):
        bench._SourceRows(xs[0], torch.arange(3))[0:5]
