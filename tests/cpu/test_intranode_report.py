"""bench/_intranode_report.py's comparison with the direct-write all-to-all bound (plain Python;
the figures are made up, the expected ratios computed here by hand)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
import _intranode_report as report  # noqa: E402


def summary_with(kernel: dict, cached: dict) -> dict:
    """A summary as summarize() returns it, reduced to the two statistics the bound reads."""
    return {
        mode: {
            "stats": {
                "gbps_deepep_kernel": {"min": kernel[mode], "avg": 0.0, "max": 0.0},
                "gbps_deepep_kernel_cached": {"min": cached.get(mode), "avg": 0.0, "max": 0.0},
            }
        }
        for mode in report.MODES
    }


BOUND_EP4 = {
    "gpus": 4,
    "sms": 24,
    "results": [
        {"rows": "bf16", "row_bytes": 14336, "gbps_deepep_median": 400.0},
        {"rows": "fp8", "row_bytes": 7392, "gbps_deepep_median": 500.0},
    ],
}


def test_each_mode_is_divided_by_the_bound_of_its_row_size():
    summary = summary_with(
        {"fp8_dispatch": 250.0, "bf16_dispatch": 300.0, "bf16_combine": 360.0},
        {"fp8_dispatch": 275.0, "bf16_dispatch": 320.0},
    )
    out = report.evaluate_bound(summary, BOUND_EP4, 4)
    modes = out["modes"]
    assert modes["fp8_dispatch"]["bound_gbps_deepep"] == 500.0
    assert modes["fp8_dispatch"]["ratio_kernel"] == pytest.approx(0.5)
    assert modes["fp8_dispatch"]["ratio_kernel_cached"] == pytest.approx(0.55)
    assert modes["bf16_dispatch"]["ratio_kernel"] == pytest.approx(0.75)
    assert modes["bf16_dispatch"]["ratio_kernel_cached"] == pytest.approx(0.8)
    assert modes["bf16_combine"]["bound_gbps_deepep"] == 400.0
    assert modes["bf16_combine"]["ratio_kernel"] == pytest.approx(0.9)
    assert modes["bf16_combine"]["ratio_kernel_cached"] is None
    assert out["sms"] == 24


def test_no_bound_gives_none():
    summary = summary_with({m: 1.0 for m in report.MODES}, {})
    assert report.evaluate_bound(summary, None, 2) is None


def test_a_bound_of_another_gpu_count_is_refused():
    summary = summary_with({m: 1.0 for m in report.MODES}, {})
    with pytest.raises(ValueError, match="measured on 4 GPUs, the benchmark ran 2 ranks"):
        report.evaluate_bound(summary, BOUND_EP4, 2)


def test_printed_lines_say_when_the_target_is_above_the_bound(capsys):
    summary = summary_with(
        {"fp8_dispatch": 250.0, "bf16_dispatch": 300.0, "bf16_combine": 360.0}, {}
    )
    bound = report.evaluate_bound(summary, BOUND_EP4, 4)
    report.print_bound(bound, {"threshold_gbps_deepep_counted": 450.0})
    lines = capsys.readouterr().out.splitlines()
    fp8 = next(line for line in lines if "fp8_dispatch" in line)
    bf16 = next(line for line in lines if "bf16_dispatch" in line)
    assert "above the bound" not in fp8 and "0.500" in fp8  # 450 < 500
    assert "(the target is above the bound)" in bf16 and "0.750" in bf16  # 450 > 400


def targets_summary(kernel: float, e2e: float) -> dict:
    stat = lambda v: {"min": v, "avg": 0.0, "max": 0.0}  # noqa: E731
    return {
        mode: {
            "stats": {
                "gbps_deepep_kernel": stat(kernel),
                "gbps_deepep_e2e": stat(e2e),
                "gbps_deepep_kernel_cached": stat(None),
            }
        }
        for mode in report.MODES
    }


def test_targets_judge_the_slowest_rank_against_the_rank_count_threshold():
    out = report.evaluate_targets(targets_summary(460.0, 440.0), 4)
    assert out["threshold_gbps_deepep_counted"] == 450.0
    fp8 = out["modes"]["fp8_dispatch"]
    assert fp8["pass_kernel"] is True and fp8["pass_e2e"] is False
    assert fp8["pass_kernel_cached"] is None


def test_a_shared_gpu_smoke_run_has_no_targets():
    out = report.evaluate_targets(targets_summary(460.0, 440.0), 8, with_threshold=False)
    assert out["threshold_gbps_deepep_counted"] is None
    assert all(m["pass_kernel"] is None and m["pass_e2e"] is None for m in out["modes"].values())
