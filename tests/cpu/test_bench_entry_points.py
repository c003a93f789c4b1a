"""The DeepEP-style entry points (bench/test_intranode.py, test_internode.py, test_low_latency.py),
the MoE layer examples and tools/plot_bench.py on the CPU, without torch: each CLI parses (--help,
and bad flags named with exit status 2), and the entry points print DeepEP's lines byte for byte.
With torch (CPU), test_internode.py's reference is checked against tests/gpu's independent one."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import _deepep_style as style  # noqa: E402
import _internode_check as ic  # noqa: E402
import _internode_tuning as tuning  # noqa: E402
import test_internode as te  # noqa: E402
import test_intranode as ti  # noqa: E402
import test_low_latency as tl  # noqa: E402

try:
    import torch
except ImportError:
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")

SCRIPTS = (
    "bench/test_intranode.py",
    "bench/test_internode.py",
    "bench/test_low_latency.py",
    "examples/moe_layer/moe_layer.py",
    "examples/moe_layer/moe_layer_ll.py",
    "tools/plot_bench.py",
)


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK")}
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_runs_without_a_gpu(script):
    out = run(script, "--help")
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout


@pytest.mark.parametrize(
    ("script", "args", "named"),
    [
        ("bench/test_intranode.py", ["--num-sms", "23"], "--num-sms 23"),
        ("bench/test_intranode.py", ["--hidden", "1000"], "--hidden 1000"),
        ("bench/test_intranode.py", ["--num-tokens=0"], "--num-tokens 0"),
        ("bench/test_internode.py", ["--num-sms", "7"], "--num-sms 7"),
        ("bench/test_internode.py", ["--hidden=100"], "--hidden 100"),
        ("bench/test_internode.py", ["--local-ranks", "0"], "--local-ranks 0"),
        ("bench/test_internode.py", ["--num-topk-groups=0"], "--num-topk-groups 0"),
        (
            "bench/test_internode.py",
            ["--transport", "ipc", "--fi-provider", "tcp"],
            "--fi-provider",
        ),
        ("bench/test_internode.py", ["--transport", "nccl"], "--transport"),
        ("bench/test_low_latency.py", ["--hidden=1000"], "--hidden 1000"),
        ("bench/test_low_latency.py", ["--num-topk", "12"], "--num-topk 12"),
        ("examples/moe_layer/moe_layer.py", ["--num-topk", "20"], "--num-topk 20"),
        ("examples/moe_layer/moe_layer_ll.py", ["--hidden", "1024"], "--hidden 1024"),
        ("tools/plot_bench.py", ["x.json"], "--out"),
    ],
)
def test_bad_flags_are_named(script, args, named):
    out = run(script, *args)
    assert out.returncode == 2
    assert named in out.stderr


def test_readme_commands_parse():
    """UCCL-EP's README spells the flags with '='."""
    args = tl.parse_args(["--num-tokens=128", "--hidden=7168", "--num-topk=8", "--num-experts=288"])
    assert (args.num_tokens, args.hidden, args.num_topk, args.num_experts) == (128, 7168, 8, 288)
    args = ti.parse_args(["--num-tokens=4096", "--hidden=7168", "--test-ll-compatibility"])
    assert args.test_ll_compatibility and args.num_sms == 24 and args.num_experts == 256
    readme = ["--num-tokens=4096", "--hidden=7168", "--num-topk=8", "--num-experts=256"]
    args = te.parse_args([*readme, "--test-ll-compatibility", "--share-gpus", "--quick"])
    assert (args.num_tokens, args.hidden, args.num_topk, args.num_experts) == (4096, 7168, 8, 256)
    assert args.test_ll_compatibility and args.share_gpus and args.quick and args.num_sms == 24
    assert args.num_topk_groups is None and args.local_ranks is None and args.json is None


def test_internode_topology_flags_become_the_environment(monkeypatch):
    """As bench_internode.py: --local-ranks / --transport / --fi-provider are set before the
    Buffer exists (main() sets them, then skips without torch, CUDA or torchrun)."""
    for name in ("UCCL_EP_NUM_LOCAL_RANKS", "UCCL_EP_TRANSPORT", "UCCL_EP_FI_PROVIDER"):
        monkeypatch.setenv(name, "")  # restored (unset) after the test
        monkeypatch.delenv(name)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    flags = ["--local-ranks", "2", "--transport", "libfabric", "--fi-provider", "tcp;ofi_rxm"]
    assert te.main(flags) in (0, 2)
    assert os.environ["UCCL_EP_NUM_LOCAL_RANKS"] == "2"
    assert os.environ["UCCL_EP_TRANSPORT"] == "libfabric"
    assert os.environ["UCCL_EP_FI_PROVIDER"] == "tcp;ofi_rxm"


def test_intranode_lines_match_deepep():
    assert style.config_line(4096, 7168, 8) == "[config] num_tokens=4096, hidden=7168, num_topk=8"
    assert style.layout_line(0.000123) == "[layout] Kernel performance: 0.123 ms"
    assert (
        style.testing_line(True, False, True, False)
        == "[testing] Running with FP8, without top-k (async=True, previous=False) ..."
    )
    assert (
        style.tuning_line(24, 8, 437.01, 709.27e-6)
        == "[tuning] SMs 24, NVL chunk 8: 437.01 GB/s (NVL), avg_t: 709.27 us"
    )
    assert style.tuning_line(24, None, 1.0, 1e-6).startswith("[tuning] SMs 24, NVL chunk default:")
    assert (
        style.best_dispatch_line(True, 24, 30, 352.43, 453.49e-6)
        == "[tuning] Best dispatch (FP8): SMs 24, NVL chunk 30, 352.43 GB/s (NVL), t: 453.49 us"
    )
    assert (
        style.best_combine_line(24, 16, 36.64, 1e-3)
        == "[tuning] Best combine: SMs 24, NVL chunk 16: 36.64 GB/s (NVL), t: 1000.00 us"
    )


def test_internode_lines_match_deepep():
    assert (
        style.config_line(4096, 7168, 8, num_topk_groups=2)
        == "[config] num_tokens=4096, hidden=7168, num_topk_groups=2, num_topk=8"
    )
    assert style.internode_tuning_line(24, (8, 16), (45.5, 150.25), 812.34e-6) == (
        "[tuning] SMs 24, NVL chunk 8, RDMA chunk 16: 45.50 GB/s (RDMA), 150.25 GB/s (NVL), "
        "t: 812.3 us"
    )
    line = style.internode_tuning_line(24, (4, 32), (1.0, 2.0), 1e-3, best="dispatch (FP8)")
    assert line.startswith("[tuning] Best dispatch (FP8): SMs 24, NVL chunk 4, RDMA chunk 32: ")
    line = style.internode_tuning_line(24, (1, 12), (1.0, 2.0), 1e-3, best="combine")
    assert line.startswith("[tuning] Best combine: SMs 24, NVL chunk 1, RDMA chunk 12: 1.00 GB/s")
    assert style.ll_testing_line("fp8") == (
        "[testing] Running low-latency fp8 dispatch, BF16 combine (return_recv_hook=False) ..."
    )


def test_internode_tuning_grid_is_deepeps():
    dispatch = tuning.grid("fp8_dispatch", 2, quick=False)
    assert len(dispatch) == 11 * 8 and dispatch[0] == (4, 4) and dispatch[-1] == (44, 32)
    assert tuning.grid("bf16_dispatch", 4, quick=False) == dispatch
    combine = tuning.grid("bf16_combine", 2, quick=False)
    assert {n for n, _ in combine} == set(range(1, 8))
    assert sorted({r for _, r in combine}) == [12, 16, 20, 24, 28, 32]  # 2 nodes: from 12
    assert min(r for _, r in tuning.grid("bf16_combine", 4, quick=False)) == 8
    assert all(len(tuning.grid(m, 2, quick=True)) == 4 for m in tuning.MODES)


def test_internode_best_is_rank_zeros_line():
    def result(gbps: float) -> dict:
        best = {"nvl_chunk": 8, "rdma_chunk": 16, "t_us": 1.0, "rdma_gbps": gbps, "nvl_gbps": 2}
        return {"tuning": {mode: {"best": best} for mode in tuning.MODES}, "num_failed": 1}

    best = tuning.summarize([result(40.0), result(30.0)])
    assert best["fp8_dispatch"]["rdma_gbps"] == 40.0
    assert best["bf16_combine"]["rdma_gbps_by_rank"] == [40.0, 30.0]
    assert best["bf16_combine"]["chunks_by_rank"] == [[8, 16], [8, 16]]
    args = te.parse_args(["--local-ranks", "2", "--json", "x.json"])
    doc = tuning.document(args, {}, {"num_ranks": 2}, [result(40.0), result(30.0)])
    assert doc["benchmark"] == "test_internode" and doc["num_ranks"] == 2
    assert doc["failed_checks"] == 2 and not doc["figures_are_network"]
    assert "json" not in doc["settings"]


def test_low_latency_lines_match_deepep():
    assert style.ll_dispatch_combine_line(3, 2e6, 100e-6, 90e-6, 120e-6) == (
        "[rank 3] Dispatch + combine bandwidth: 20.00 GB/s, avg_t=100.00 us, "
        "min_t=90.00 us, max_t=120.00 us"
    )
    assert style.ll_kernel_line(0, 1e6, 50e-6, 3e6, 75e-6) == (
        "[rank 0] Dispatch bandwidth: 20.00 GB/s, avg_t=50.00 us | "
        "Combine bandwidth: 40.00 GB/s, avg_t=75.00 us"
    )
    assert style.ll_hook_line(1, (10e-6, 20e-6), (30e-6, 40e-6)) == (
        "[rank 1] Dispatch send/recv time: 10.00 + 20.00 us | "
        "Combine send/recv time: 30.00 + 40.00 us"
    )


def test_low_latency_bytes_are_deepeps():
    b = tl.call_bytes(10, 7168, use_logfmt=False)
    assert b["dispatch"] == 10 * (7168 + 7168 // 128 * 4 + 16)
    assert b["combine"] == 10 * 7168 * 2
    assert tl.call_bytes(10, 7168, use_logfmt=True)["combine"] == 10 * (7168 * 10 / 8 + 56 * 4)


def test_check_log_gives_each_case_its_verdict(capsys):
    from types import SimpleNamespace

    log = style.CheckLog(rank=2)
    log.mark()
    log(SimpleNamespace(ok=True, name="a", detail=""))
    assert log.verdict() == " passed"
    log(SimpleNamespace(ok=False, name="b", detail="wrong rows"))
    assert log.verdict() == " FAILED (1 checks on rank 2)"
    assert "[rank 2] FAILED b: wrong rows" in capsys.readouterr().err
    log.mark()
    assert log.verdict() == " passed" and log.failures == ["b: wrong rows"]


def test_intranode_best_is_rank_zeros_line():
    def tuning(gbps: float) -> dict:
        best = {"nvl_chunk": 8, "gbps": gbps, "t_us": 1.0}
        return {mode: {"best": best} for mode, _ in ti.MODES}

    best = ti.summarize([{"tuning": tuning(100.0)}, {"tuning": tuning(90.0)}])
    assert best["fp8_dispatch"]["gbps"] == 100.0
    assert best["bf16_combine"]["gbps_by_rank"] == [100.0, 90.0]


# ------------------------------------------------------------------ test_internode's reference


@pytest.fixture
def gpu_reference(monkeypatch):
    """tests/gpu's independent internode reference and expected handle, on the CPU."""
    monkeypatch.syspath_prepend(os.path.join(ROOT, "tests", "gpu"))
    import internode_reference as iref
    import internode_suite as suite

    monkeypatch.setattr(suite, "device", lambda: torch.device("cpu"))
    return iref, suite


def small_args():
    return te.parse_args(["--num-tokens=37", "--hidden=256", "--num-topk=4", "--num-experts=16"])


def gpu_dispatch(iref, suite, world, kind: str, num_channels: int, num_worst: int = 0):
    """What a correct internode dispatch returns on world.rank (tests/gpu's reference, in the
    library's encoding: recv_src_meta as bytes, the heads -1 where nothing was sent)."""
    r, big_l, num_experts = world.rank, world.num_local_ranks, world.args.num_experts
    idx, weights = [i for i, _ in world.routes], [w for _, w in world.routes]
    lays = [iref.dispatch_layout(i, num_experts, world.num_ranks, big_l) for i in idx]
    ctx = SimpleNamespace(rank=r, local_ranks=big_l, num_nodes=world.num_ranks // big_l)
    source = SimpleNamespace(
        layouts=lays,
        expected=lambda d: iref.expected_dispatch(lays, idx, weights, num_experts, big_l, d),
    )
    want, exp = suite.expected_handle(ctx, source, num_channels), source.expected(r)
    n, rows = exp.num_recv, num_worst or exp.num_recv

    def pad(t, fill=0):
        return torch.cat([t, torch.full((rows - n, *t.shape[1:]), fill, dtype=t.dtype)])

    xs = [ic.x_of(world.args, kind, s, "cpu") for s in range(world.num_ranks)]
    if kind.startswith("fp8"):
        recv = tuple(pad(torch.cat([x[i][k] for x, k in zip(xs, exp.rows)])) for i in (0, 1))
    else:
        recv = pad(torch.cat([x[k] for x, k in zip(xs, exp.rows)]))
    nvl_head = torch.where(want["send_nvl_head_sent"], 0, -1).int()
    nvl_head = torch.cat([nvl_head, torch.full((max(num_worst - nvl_head.size(0), 0), big_l), -1)])
    handle = (lays[r].is_token_in_rank, *(want[f] for f in ic.HANDLE_FIELDS[1:7]))
    handle += (pad(want["recv_src_meta"].int().contiguous().view(torch.uint8).view(n, 8)),)
    handle += (torch.where(want["send_rdma_head_sent"], 0, -1).int(), nvl_head.int())
    experts = [] if num_worst else exp.expert_list()
    out = (recv, pad(exp.recv_topk_idx, -1), pad(exp.recv_topk_weights), experts, handle, None)
    return out, lays, exp


@needs_torch
@pytest.mark.parametrize(("num_ranks", "num_local_ranks"), [(4, 2), (8, 2), (4, 1)])
def test_internode_reference_agrees_with_the_gpu_suites(gpu_reference, num_ranks, num_local_ranks):
    iref, suite = gpu_reference
    args, nodes = small_args(), num_ranks // num_local_ranks
    worlds = [
        ic.World(args, r, num_ranks, num_local_ranks, min(nodes, 4), 3, "cpu")
        for r in range(num_ranks)
    ]
    for world in worlds:
        out, lays, exp = gpu_dispatch(iref, suite, world, "bf16_rand", 3)
        for name in te.LAYOUT:
            assert torch.equal(
                getattr(world.layouts[world.rank], name), getattr(lays[world.rank], name)
            )
        assert [k.tolist() for k in world.rows] == [k.tolist() for k in exp.rows]
        log = style.CheckLog(world.rank)
        ic.check_dispatch(ic.Checks(log), world, "bf16_rand", out, with_topk=True)
        assert log.failures == []
        returned = [ic.combine_input(w.recv_x("fp8_colmajor")) for w in worlds]
        weights = [w.recv_topk()[1] for w in worlds]
        want, want_w = iref.expected_combine(
            world.rank, lays, returned, args.hidden, num_local_ranks, world.biases, weights
        )
        in_rank = lays[world.rank].is_token_in_rank
        own = ic.combine_input(world.own("fp8_colmajor"))
        mine = ic.expected_combine(own, in_rank, num_local_ranks, world.biases)
        assert torch.equal(mine.view(torch.int16), want.view(torch.int16))  # bit for bit
        ic.check_combine(ic.Checks(log), world, "fp8_colmajor", (want, want_w, None), True)
        assert log.failures == []


@needs_torch
def test_internode_checks_name_what_is_wrong(gpu_reference, capsys):
    iref, suite = gpu_reference
    args = small_args()
    world = ic.World(args, 1, 4, 2, 2, 3, "cpu")
    worst = args.num_tokens * 4
    out, _, _ = gpu_dispatch(iref, suite, world, "fp8_colmajor", 3, num_worst=worst)
    log = style.CheckLog(1)
    ic.check_dispatch(ic.Checks(log, "w: "), world, "fp8_colmajor", out, True, num_worst=worst)
    assert log.failures == []
    out, _, _ = gpu_dispatch(iref, suite, world, "bf16_rand", 3)
    handle = list(out[4])
    handle[3] = handle[3] + 1  # recv_rdma_channel_prefix_matrix
    out[0][5, 7] += 1
    ic.check_dispatch(ic.Checks(log), world, "bf16_rand", (*out[:4], tuple(handle), None), False)
    assert [f.split(":")[0] for f in log.failures] == [
        "recv_x",
        "handle[3] recv_rdma_channel_prefix_matrix",
    ]
    assert "[rank 1] FAILED recv_x: 1 of" in capsys.readouterr().err


@needs_torch
def test_channel_prefix_splits_tokens_as_the_kernels_do():
    mask = torch.tensor([[1, 0], [1, 1], [0, 1], [1, 1], [1, 0]], dtype=torch.bool)  # T=5, C=2
    assert ic.channel_prefix(mask, 2).tolist() == [[2, 4], [2, 3]]  # channel 0: tokens 0..2
    assert ic.channel_prefix(mask, 2, inclusive=False).tolist() == [[0, 2], [0, 2]]
    assert ic.calc_diff(torch.ones(3), torch.ones(3)) == pytest.approx(0.0, abs=1e-12)
