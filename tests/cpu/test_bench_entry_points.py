"""The DeepEP-style entry points (bench/test_intranode.py, bench/test_low_latency.py), the MoE
layer examples and tools/plot_bench.py on the CPU, without torch: each CLI parses (--help, and
bad flags named with exit status 2), and the entry points print DeepEP's lines byte for byte."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import _deepep_style as style  # noqa: E402
import test_intranode as ti  # noqa: E402
import test_low_latency as tl  # noqa: E402

SCRIPTS = (
    "bench/test_intranode.py",
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
