"""tools/plot_bench.py on small synthetic JSON files of each benchmark, built with the
benchmarks' own summary and document functions (plain Python, no torch): every expected PNG is
written, non-empty and a PNG. Skipped without matplotlib (an optional extra)."""

from __future__ import annotations

import argparse
import json
import os
import sys

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import _internode_report as inter  # noqa: E402
import _internode_tuning as entry_tuning  # noqa: E402
import _intranode_report as intra  # noqa: E402
import _low_latency_report as rep  # noqa: E402
import plot_bench  # noqa: E402
import test_intranode as ti  # noqa: E402
import test_low_latency as tl  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HIDDEN = 7168


def point(label: str, chunk, gbps: float) -> dict:
    us = 1000.0 / gbps
    timings = ("kernel", "e2e", "e2e_cached", "kernel_cached")
    rates = {f"{kind}_{t}": gbps for kind in ("deepep", "nvlink") for t in timings}
    times = {"kernel_us": us, "notify_us": 5.0, "e2e_us": us + 20, "e2e_cached_us": us + 10}
    times["kernel_cached_us"] = us - 1
    return {"label": label, "nvl_chunk": chunk, **times, "max_over_ranks": times, "gbps": rates}


def bench_intranode_doc(num_ranks: int) -> dict:
    reports = []
    for rank in range(num_ranks):
        modes = {}
        for m, mode in enumerate(intra.MODES):
            pts = [point(f"{k}/256", k, 300 + 10 * k + rank + m) for k in (4, 8, 16)]
            pts.append(point("default", None, 280.0))
            modes[mode] = {"points": pts, "best_index": 2}
        nccl = {
            mode: {"us": 40.0, "gbps_deepep": 350.0, "gbps_nvlink": 300.0} for mode in intra.MODES
        }
        ce = {"available": False, "reason": "synthetic"}
        reports.append(
            {"rank": rank, "modes": modes, "nccl": nccl, "copy_engine": ce, "wait_profile": None}
        )
    summary = intra.summarize(reports)
    return {
        "benchmark": "bench_intranode",
        "settings": {"num_ranks": num_ranks, "hidden": HIDDEN},
        "best": summary,
        "targets": intra.evaluate_targets(summary, num_ranks),
        "per_rank": reports,
    }


def bench_internode_doc(num_ranks: int) -> dict:
    nbytes = {"rdma_deepep": 2e7, "nvl_deepep": 4e7, "rdma_network": 1e7, "wire": 1.1e7}
    reports = []
    for rank in range(num_ranks):
        us = rep.sample_stats([100.0 + rank, 110.0, 105.0])
        tune = [{"nvl_chunk": n, "rdma_chunk": r, "us": us} for n in (4, 8) for r in (8, 16)]
        reports.append(
            {
                "rank": rank,
                "modes": {m: {"us": us, "full_us": us} for m in inter.MODES},
                "bytes": {m: nbytes for m in inter.MODES},
                "floor": {m: {"us": rep.sample_stats([80.0, 82.0])} for m in inter.MODES},
                "tune": {m: tune for m in inter.MODES},
            }
        )
    chunks = {m: (8, 16) for m in inter.MODES}
    summary = inter.summarize(reports, 24, chunks)
    targets = inter.evaluate_targets(summary, None, None)
    settings = {"num_ranks": num_ranks, "hidden": HIDDEN}
    return inter.document(["bench_internode.py"], {}, settings, summary, targets, reports)


def ll_entry(status: str, base: float) -> dict:
    entry = {"status": status, "reason": None, "error": None, "latency_us": {}, "hook": {}}
    entry.update(
        env={"UCCL_EP_NUM_LOCAL_RANKS": None}, ranks_per_domain=2, traffic=None, floor=None
    )
    if status != "ok":
        entry["reason"] = "synthetic skip"
        return entry
    for i, call in enumerate(rep.CALLS):
        entry["latency_us"][call] = rep.sample_stats([base + i * 30 + j % 7 for j in range(50)])
    for op in rep.OPS:
        entry["hook"][op] = {
            f"{p}_us": rep.sample_stats([10.0, 12.0, 11.0]) for p in rep.HOOK_PARTS
        }
    entry["hook"]["gpu_held_back"] = True
    return entry


def bench_low_latency_doc(num_ranks: int) -> dict:
    reports = [
        {
            "rank": rank,
            "bytes": rep.call_bytes(1000, HIDDEN, True),
            "topologies": {
                "nvlink": ll_entry("ok", 40.0 + rank),
                "proxy": ll_entry("ok", 90.0 + rank),
                "mixed": ll_entry("skipped", 0),
            },
        }
        for rank in range(num_ranks)
    ]
    summary = rep.summarize(reports, rep.TOPOLOGIES)
    targets = rep.evaluate_targets(summary, None)
    settings = {"num_ranks": num_ranks, "hidden": HIDDEN}
    return rep.document(["bench_low_latency.py"], {}, settings, summary, targets, reports)


def entry_intranode_doc(num_ranks: int) -> dict:
    args = argparse.Namespace(num_tokens=4096, hidden=HIDDEN, share_gpus=True, json="x.json")
    results = []
    for rank in range(num_ranks):
        tuning = {}
        for mode, _ in ti.MODES:
            pts = [
                {
                    "label": f"{k}/256",
                    "nvl_chunk": k,
                    "t_us": 500.0 / k,
                    "min_us": 1.0,
                    "max_us": 9.0,
                    "gbps": 50.0 * k,
                }
                for k in (4, 8, 16)
            ]
            pts.append(
                {
                    "label": "default",
                    "nvl_chunk": None,
                    "t_us": 99.0,
                    "min_us": 1.0,
                    "max_us": 2.0,
                    "gbps": 70.0,
                }
            )
            tuning[mode] = {"bytes": 1e8, "points": pts, "best": pts[2]}
        results.append(
            {"rank": rank, "layout_us": 30.0, "tuning": tuning, "failures": [], "num_failed": 0}
        )
    return ti.build_document(args, {"gpu": "synthetic"}, num_ranks, results)


def entry_internode_doc(num_ranks: int) -> dict:
    args = argparse.Namespace(num_tokens=4096, hidden=HIDDEN, share_gpus=True, local_ranks=2)
    results = []
    for rank in range(num_ranks):
        tuning = {}
        for mode in entry_tuning.MODES:
            pts = [
                {
                    "nvl_chunk": n,
                    "rdma_chunk": r,
                    "t_us": 900.0 / n,
                    "min_us": 1.0,
                    "max_us": 9.0,
                    "rdma_gbps": 10.0 * n + r,
                    "nvl_gbps": 20.0 * n + rank,
                }
                for n in (4, 8)
                for r in (8, 16)
            ]
            tuning[mode] = {"bytes": {"rdma": 1e8, "nvl": 2e8}, "points": pts, "best": pts[-1]}
        results.append({"rank": rank, "tuning": tuning, "failures": [], "num_failed": 0})
    topology = {"num_ranks": num_ranks, "num_local_ranks": 2, "num_nodes": num_ranks // 2}
    return entry_tuning.document(args, {"gpu": "synthetic"}, topology, results)


def entry_low_latency_doc(num_ranks: int) -> dict:
    args = argparse.Namespace(num_tokens=128, hidden=HIDDEN, share_gpus=False, json="x.json")
    results = []
    for rank in range(num_ranks):
        samples = {
            call: [50.0 + i * 40 + (j * 7) % 11 for j in range(40)]
            for i, call in enumerate(tl.CALLS)
        }
        nbytes = tl.call_bytes(1000, HIDDEN, use_logfmt=False)
        results.append(
            {
                "rank": rank,
                "bytes": nbytes,
                "latency_us": samples,
                "stats": {c: rep.sample_stats(s) for c, s in samples.items()},
                "gbps_avg": {c: nbytes[c] / (sum(s) / len(s)) / 1e3 for c, s in samples.items()},
                "kernel_us": {"dispatch": 30.0, "combine": 40.0},
                "gbps_kernel": {"dispatch": 250.0, "combine": 350.0},
                "failures": [],
                "num_failed": 0,
            }
        )
    return tl.build_document(args, {}, num_ranks, {"buffer_num_sms": 20}, results)


def write(tmp_path, name: str, doc: dict) -> str:
    path = str(tmp_path / name)
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


def assert_pngs(paths: list, expected: set) -> None:
    assert {os.path.basename(p) for p in paths} == expected
    for path in paths:
        with open(path, "rb") as f:
            head = f.read(8)
        assert os.path.getsize(path) > 1000, path
        assert head == PNG_SIGNATURE, path


@pytest.fixture
def _matplotlib():
    pytest.importorskip("matplotlib")


def test_every_schema_gives_its_plots(tmp_path, _matplotlib, capsys):
    files = [
        write(tmp_path, "bench_intranode_ep2.json", bench_intranode_doc(2)),
        write(tmp_path, "bench_intranode_ep4.json", bench_intranode_doc(4)),
        write(tmp_path, "bench_low_latency_ep2.json", bench_low_latency_doc(2)),
        write(tmp_path, "bench_internode_ep4.json", bench_internode_doc(4)),
        write(tmp_path, "ti_ep2.json", entry_intranode_doc(2)),
        write(tmp_path, "te_ep4.json", entry_internode_doc(4)),
        write(tmp_path, "tl_ep4.json", entry_low_latency_doc(4)),
    ]
    out = tmp_path / "plots"
    assert plot_bench.main([*files, "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    expected = {
        "bench_intranode_bandwidth.png",
        "bench_intranode_ep2_sweep.png",
        "bench_intranode_ep2_times.png",
        "bench_intranode_ep4_sweep.png",
        "bench_intranode_ep4_times.png",
        "bench_low_latency_bandwidth.png",
        "bench_internode_bandwidth.png",
        "bench_internode_ep4_sweep.png",
        "bench_low_latency_ep2_latency.png",
        "test_intranode_bandwidth.png",
        "ti_ep2_sweep.png",
        "test_internode_bandwidth.png",
        "te_ep4_sweep.png",
        "test_low_latency_bandwidth.png",
        "tl_ep4_latency.png",
    }
    assert_pngs(printed, expected)


def test_same_stem_in_two_folders_gets_two_names(tmp_path, _matplotlib):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    doc = entry_low_latency_doc(2)
    paths = [write(tmp_path, "a/r.json", doc), write(tmp_path, "b/r.json", doc)]
    written = plot_bench.plot_files(paths, str(tmp_path / "out"))
    expected = {"test_low_latency_bandwidth.png", "r_latency.png", "r_2_latency.png"}
    assert_pngs(written, expected)


def test_unknown_or_broken_files_name_the_file(tmp_path, capsys):
    other = write(tmp_path, "other.json", {"benchmark": "something_else"})
    assert plot_bench.main([other, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "other.json" in err and "benchmark" in err
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    assert plot_bench.main([str(broken), "--out", str(tmp_path)]) == 2
    assert "not JSON" in capsys.readouterr().err


def test_a_document_missing_fields_names_the_file(tmp_path, _matplotlib, capsys):
    doc = entry_intranode_doc(2)
    del doc["best"]
    path = write(tmp_path, "cut.json", doc)
    assert plot_bench.main([path, "--out", str(tmp_path / "o")]) == 2
    assert "cut.json" in capsys.readouterr().err


def test_missing_matplotlib_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(plot_bench.PlotError, match="needs matplotlib"):
        plot_bench.pyplot()
