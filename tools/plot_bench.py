#!/usr/bin/env python3
"""Turns the benchmarks' JSON files into PNG plots: bandwidth per mode and EP size (with the
baselines the file holds) and latency distributions.

    python tools/plot_bench.py RESULT.json [RESULT.json ...] --out DIR

Reads the files of bench/bench_intranode.py, bench/bench_internode.py,
bench/bench_low_latency.py, bench/test_intranode.py, bench/test_internode.py and
bench/test_low_latency.py (their field `benchmark` says which). Per benchmark, one bandwidth plot
over all its files (one bar group per mode, one bar per file, labelled by EP size); per file, the
chunk sweep (intranode; internode with --tune, and test_internode), the times at the best
config (bench_intranode), or the latency distribution per call and rank (low latency: box =
p10..p90 from the percentiles of bench_low_latency.py, or the per-iteration samples of
test_low_latency.py). Prints the name of every file written. Needs
matplotlib (`pip install matplotlib`, or the `bench` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict

KINDS = ("bench_intranode", "bench_internode", "bench_low_latency", "test_intranode")
KINDS += ("test_internode", "test_low_latency")
INTRANODE_MODES = ("fp8_dispatch", "bf16_dispatch", "bf16_combine")
LL_CALLS = ("dispatch", "combine", "dispatch_combine")
INTRANODE_TIMES = (  # (key of the summary's stats, label): bench_intranode's best-config times
    ("kernel_us", "kernel"),
    ("notify_us", "notify"),
    ("e2e_us", "e2e"),
    ("e2e_cached_us", "e2e, cached"),
    ("kernel_cached_us", "kernel, cached"),
)


class PlotError(RuntimeError):
    """A file or an environment this tool cannot plot from; the message says why."""


# ---------------------------------------------------------------------------------------------
# Reading


def load(path: str) -> dict:
    """The JSON document of `path`, checked to be one of KINDS."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except OSError as e:
        raise PlotError(f"{path}: cannot read: {e.strerror}") from e
    except json.JSONDecodeError as e:
        raise PlotError(f"{path}: not JSON ({e})") from e
    kind = doc.get("benchmark") if isinstance(doc, dict) else None
    if kind not in KINDS:
        raise PlotError(f"{path}: field 'benchmark' is {kind!r}; this tool plots {KINDS}")
    return doc


def num_ranks(doc: dict) -> int | None:
    return (doc.get("settings") or {}).get("num_ranks", doc.get("num_ranks"))


def _triple(stats: dict | None) -> tuple | None:
    """(avg, min, max) of a min/avg/max dict, None where the average is missing."""
    if not stats or stats.get("avg") is None:
        return None
    return stats["avg"], stats["min"], stats["max"]


def _over(values: list) -> tuple | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    return sum(present) / len(present), min(present), max(present)


def bandwidth_series(doc: dict) -> list[tuple[str, dict, bool]]:
    """[(series name, {category: (avg, min, max) GB/s over ranks}, is_baseline)] of one file."""
    kind = doc["benchmark"]
    if kind == "bench_intranode":
        best = doc["best"]
        uccl = {m: _triple(best[m]["stats"]["gbps_deepep_kernel"]) for m in INTRANODE_MODES}
        nccl = {m: _triple(best[m]["stats"]["nccl_gbps_deepep"]) for m in INTRANODE_MODES}
        out = [("uccl-ep (kernel time)", uccl, False)]
        if any(nccl.values()):
            out.append(("NCCL all_to_all_single", nccl, True))
        return out
    if kind == "bench_internode":
        stats = {m: doc["modes"][m]["stats"] for m in INTRANODE_MODES}
        out = [
            (f"uccl-ep {link} (DeepEP-counted)", {m: _triple(stats[m][key]) for m in stats}, False)
            for link, key in (("RDMA", "rdma_gbps"), ("NVL", "nvl_gbps"))
        ]
        peak = {m: _triple(stats[m]["floor_gbps"]) for m in stats}
        if any(peak.values()):
            out.append(("transport peak (wire bytes)", peak, True))
        return out
    if kind == "test_intranode":
        return [
            ("uccl-ep", {m: _over(doc["best"][m]["gbps_by_rank"]) for m in INTRANODE_MODES}, False)
        ]
    if kind == "test_internode":
        return [
            (f"uccl-ep {link}", {m: _over(doc["best"][m][key]) for m in INTRANODE_MODES}, False)
            for link, key in (("RDMA", "rdma_gbps_by_rank"), ("NVL", "nvl_gbps_by_rank"))
        ]
    if kind == "bench_low_latency":
        values = {}
        for name, t in doc["topologies"].items():
            if t["status"] != "ok":
                continue
            for call in LL_CALLS:
                values[f"{name}\n{call.replace('_', '+')}"] = _triple(t["stats"][f"{call}_gbps"])
        return [("uccl-ep (median latency)", values, False)]
    ranks = doc["per_rank"]  # test_low_latency
    values = {
        "dispatch+combine\n(avg latency)": _over([r["gbps_avg"]["dispatch_combine"] for r in ranks])
    }
    for op in ("dispatch", "combine"):
        values[f"{op}\n(kernel time)"] = _over([r["gbps_kernel"][op] for r in ranks])
    return [("uccl-ep", values, False)]


def target_gbps(doc: dict) -> float | None:
    """bench_intranode's DeepEP-counted target of this EP size, if the run checked one."""
    if doc["benchmark"] != "bench_intranode":
        return None
    return (doc.get("targets") or {}).get("threshold_gbps_deepep_counted")


def sweep_points(doc: dict) -> dict[str, list[tuple[str, float]]]:
    """{mode: [(config label, GB/s of rank 0)]} of an intranode file (internode: RDMA GB/s of
    the --tune grid, empty without it; test_internode: RDMA GB/s), in sweep order."""
    rank0 = doc["per_rank"][0]
    if doc["benchmark"] == "test_internode":
        return {
            mode: [
                (f"{p['nvl_chunk']}/{p['rdma_chunk']}", p["rdma_gbps"])
                for p in rank0["tuning"][mode]["points"]
            ]
            for mode in INTRANODE_MODES
        }
    if doc["benchmark"] == "bench_internode":
        out = {}
        for mode in INTRANODE_MODES:
            rdma_bytes = rank0["bytes"][mode]["rdma_deepep"]
            out[mode] = [
                (f"{p['nvl_chunk']}/{p['rdma_chunk']}", rdma_bytes / p["rank0_us"] / 1e3)
                for p in doc["modes"][mode]["tune"]
                if p["rank0_us"]
            ]
        return out
    if doc["benchmark"] == "bench_intranode":
        return {
            mode: [(p["label"], p["gbps"]["deepep_kernel"]) for p in rank0["modes"][mode]["points"]]
            for mode in INTRANODE_MODES
        }
    return {
        mode: [
            (p["label"] if p["nvl_chunk"] is not None else "default", p["gbps"])
            for p in rank0["tuning"][mode]["points"]
        ]
        for mode in INTRANODE_MODES
    }


def percentile_boxes(doc: dict) -> dict[str, list[tuple[str, dict]]]:
    """bench_low_latency: {topology: [(label, sample_stats)]}, one per call and rank."""
    out = {}
    for name, t in doc["topologies"].items():
        if t["status"] != "ok":
            continue
        boxes = []
        for call in LL_CALLS:
            for report in doc["per_rank"]:
                stats = report["topologies"][name]["latency_us"].get(call)
                if stats:
                    boxes.append((f"{call.replace('_', '+')}\nr{report['rank']}", stats))
        out[name] = boxes
    return out


def sample_boxes(doc: dict) -> dict[str, list[tuple[str, list]]]:
    """test_low_latency: {call: [(rank label, per-iteration latencies us)]}."""
    return {
        call: [(f"rank {r['rank']}", r["latency_us"][call]) for r in doc["per_rank"]]
        for call in LL_CALLS
    }


# ---------------------------------------------------------------------------------------------
# Drawing


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend, imported on first use."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise PlotError(
            "tools/plot_bench.py needs matplotlib: pip install matplotlib "
            "(or pip install 'uccl-ep[bench]')"
        ) from e
    return plt


def save(plt, fig, path: str, written: list[str]) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)


def plot_bandwidth(plt, kind: str, runs: list[tuple[str, dict]], path: str, written: list) -> None:
    """Grouped bars: one group per category (mode, or topology and call), one bar per series of
    every run (bar = average over ranks, error bar = min..max), a target tick where given."""
    series = []  # (label, values, is_baseline, target)
    for label, doc in runs:
        for name, values, baseline in bandwidth_series(doc):
            series.append((f"{label}: {name}", values, baseline, target_gbps(doc)))
    categories = list(dict.fromkeys(c for _, values, _, _ in series for c in values))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(categories) * max(1, len(series)) / 2), 4.5))
    width = 0.8 / max(1, len(series))
    for i, (label, values, baseline, target) in enumerate(series):
        xs, heights, lows, highs = [], [], [], []
        for c, category in enumerate(categories):
            v = values.get(category)
            if v is None:
                continue
            xs.append(c - 0.4 + width * (i + 0.5))
            heights.append(v[0])
            lows.append(v[0] - v[1])
            highs.append(v[2] - v[0])
        bars = ax.bar(
            xs,
            heights,
            width,
            yerr=[lows, highs],
            capsize=3,
            label=label,
            hatch="//" if baseline else None,
            alpha=0.6 if baseline else 0.9,
        )
        if target is not None and not baseline:
            ax.scatter(xs, [target] * len(xs), marker="_", s=300, color="black", zorder=3)
            bars.set_label(f"{label} (tick: target {target:.0f})")
    ax.set_xticks(range(len(categories)))
    ax.set_xticklabels([c.replace("_", " ") for c in categories], fontsize=8)
    ax.set_ylabel("GB/s per rank (DeepEP-counted)")
    ax.set_title(f"{kind}: bandwidth\n(bar: average over ranks, whisker: min..max)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    save(plt, fig, path, written)


def plot_sweep(plt, title: str, points: dict, path: str, written: list) -> None:
    """GB/s against the config of the sweep, one line per mode."""
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for mode, pts in points.items():
        if pts:
            ax.plot(range(len(pts)), [g for _, g in pts], marker="o", label=mode)
    labels = max(points.values(), key=len)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels([lab for lab, _ in labels], rotation=60, fontsize=7)
    ax.set_xlabel("NVL chunk (/ ring tokens) of the sweep, x labels of the longest sweep")
    ax.set_ylabel("GB/s (rank 0, DeepEP-counted)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save(plt, fig, path, written)


def plot_times(plt, title: str, best: dict, path: str, written: list) -> None:
    """bench_intranode: times at each mode's best config, average over ranks, min..max."""
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(INTRANODE_TIMES)
    for i, (key, label) in enumerate(INTRANODE_TIMES):
        xs, hs, lo, hi = [], [], [], []
        for m, mode in enumerate(INTRANODE_MODES):
            v = _triple(best[mode]["stats"].get(key))
            if v is not None:
                xs.append(m - 0.4 + width * (i + 0.5))
                hs.append(v[0])
                lo.append(v[0] - v[1])
                hi.append(v[2] - v[0])
        if xs:
            ax.bar(xs, hs, width, yerr=[lo, hi], capsize=3, label=label)
    ax.set_xticks(range(len(INTRANODE_MODES)))
    ax.set_xticklabels(INTRANODE_MODES)
    ax.set_ylabel("us per call")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    save(plt, fig, path, written)


def plot_percentiles(plt, title: str, groups: dict, path: str, written: list) -> None:
    """One panel per topology; each box: p10..p90, line: median, whiskers: min..max (us)."""
    fig, axes = plt.subplots(len(groups), 1, figsize=(10, 3.2 * len(groups)), squeeze=False)
    for ax, (name, boxes) in zip(axes[:, 0], groups.items()):
        stats = [
            {
                "label": lab,
                "med": s["median"],
                "q1": s["p10"],
                "q3": s["p90"],
                "whislo": s["min"],
                "whishi": s["max"],
                "fliers": [],
            }
            for lab, s in boxes
        ]
        if stats:
            ax.bxp(stats, showfliers=False)
        ax.set_title(
            f"{name}: latency per call and rank (box p10..p90, whiskers min..max)", fontsize=9
        )
        ax.set_ylabel("us")
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    save(plt, fig, path, written)


def plot_samples(plt, title: str, groups: dict, path: str, written: list) -> None:
    """One panel per call: a box per rank over its per-iteration latencies (whiskers 1.5 IQR,
    outliers drawn)."""
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 4), squeeze=False)
    for ax, (call, boxes) in zip(axes[0], groups.items()):
        ax.boxplot([s for _, s in boxes], showfliers=True)
        ax.set_xticks(range(1, len(boxes) + 1))
        ax.set_xticklabels([lab for lab, _ in boxes], fontsize=7)
        ax.set_title(call.replace("_", " + "), fontsize=9)
        ax.set_ylabel("us per iteration")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    save(plt, fig, path, written)


# ---------------------------------------------------------------------------------------------
# Driver


def run_labels(entries: list[tuple[str, dict]]) -> list[str]:
    """ "EP<R>" per file, with the file name where two files of a benchmark share an EP size."""
    eps = [f"EP{num_ranks(doc)}" for _, doc in entries]
    return [
        ep if eps.count(ep) == 1 else f"{ep} ({os.path.basename(path)})"
        for ep, (path, _) in zip(eps, entries)
    ]


def stems(paths: list[str]) -> dict[str, str]:
    """A distinct file-name stem per input path (a suffix where two names clash)."""
    out, seen = {}, defaultdict(int)
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        seen[stem] += 1
        out[path] = stem if seen[stem] == 1 else f"{stem}_{seen[stem]}"
    return out


def plot_one(plt, doc: dict, title: str, base: str, written: list) -> None:
    """The per-file plots of `doc`, named `<base>_<what>.png`."""
    kind = doc["benchmark"]
    if kind in ("bench_intranode", "bench_internode", "test_intranode", "test_internode"):
        points = sweep_points(doc)
        if any(points.values()):
            plot_sweep(plt, f"{title}: GB/s per config", points, f"{base}_sweep.png", written)
    if kind == "bench_intranode":
        title = f"{title}: times at the best config"
        plot_times(plt, title, doc["best"], f"{base}_times.png", written)
    elif kind == "bench_low_latency":
        groups = percentile_boxes(doc)
        if groups:
            plot_percentiles(plt, title, groups, f"{base}_latency.png", written)
    elif kind == "test_low_latency":
        title = f"{title}: latency per iteration"
        plot_samples(plt, title, sample_boxes(doc), f"{base}_latency.png", written)


def plot_files(paths: list[str], out_dir: str) -> list[str]:
    """Every plot of the files `paths` into `out_dir`; returns the paths written."""
    docs = [(path, load(path)) for path in paths]
    plt = pyplot()
    os.makedirs(out_dir, exist_ok=True)
    written: list[str] = []
    names = stems(paths)
    by_kind = defaultdict(list)
    for path, doc in docs:
        by_kind[doc["benchmark"]].append((path, doc))
    for kind, entries in by_kind.items():
        entries.sort(key=lambda e: (num_ranks(e[1]) or 0, e[0]))
        labels = run_labels(entries)
        runs = list(zip(labels, (doc for _, doc in entries)))
        where = ", ".join(path for path, _ in entries)
        try:
            plot_bandwidth(plt, kind, runs, os.path.join(out_dir, f"{kind}_bandwidth.png"), written)
            for (path, doc), label in zip(entries, labels):
                where = path
                plot_one(plt, doc, f"{kind} {label}", os.path.join(out_dir, names[path]), written)
        except (KeyError, IndexError, TypeError, ValueError) as e:
            why = f"{type(e).__name__}: {e}"
            raise PlotError(f"{where}: not a {kind} document as expected ({why})") from e
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="PNG plots of uccl-ep benchmark JSON files")
    p.add_argument("files", nargs="+", metavar="RESULT.json", help="JSON files of the benchmarks")
    p.add_argument("--out", required=True, help="folder for the PNG files (made if missing)")
    args = p.parse_args(argv)
    try:
        written = plot_files(args.files, args.out)
    except PlotError as e:
        print(f"plot_bench.py: {e}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
