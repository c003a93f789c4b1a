"""Summary of bench_intranode.py (rank 0): per-mode figures at the best config over ranks, the
targets, the wait profile of diagnostic builds. Plain Python (no torch): every function takes
the per-rank report dicts bench_intranode.py gathers."""

from __future__ import annotations

import _bench_utils as bu

MODES = ("fp8_dispatch", "bf16_dispatch", "bf16_combine")
TARGET_GBPS = {2: 550.0, 4: 450.0, 8: 400.0}  # DeepEP-counted, slowest rank; reported only
# Counters of a wait-profile build (src/device/wait_profile.cuh): summed wait ns per WaitSite
# (src/protocol/intranode_layout.h), then summed warp run ns per role, then per row copy kind
# {summed row copy ns, rows}.
WAIT_SITES = {
    1: "barrier",
    2: "dispatch_range",
    3: "dispatch_tail",
    4: "dispatch_head",
    5: "combine_tail",
    6: "combine_head",
}
NUM_WAIT_SITES = 16
WARP_ROLES = ("send", "self", "recv", "publish")
COPY_KINDS = ("push", "self", "drain")  # dispatch rows: into a peer's ring, own rows, out of rings
FIRST_COPY_COUNTER = NUM_WAIT_SITES + len(WARP_ROLES)
NUM_COUNTERS = FIRST_COPY_COUNTER + 2 * len(COPY_KINDS)
# Then the block timeline: per block, {role bit mask, SM id, first warp start ns, last warp end ns}.
PROFILED_BLOCKS = 64
BLOCK_FIELDS = 4


def block_timeline(counts: list[int]) -> list[dict]:
    """The blocks that ran in a wait-profile read (one launch since the reset): block index,
    roles of its warps, SM, start and end in us from the earliest block start."""
    first = NUM_COUNTERS
    rows = []
    for b in range(PROFILED_BLOCKS):
        mask, sm, start, end = counts[first + b * BLOCK_FIELDS : first + (b + 1) * BLOCK_FIELDS]
        if mask:
            roles = "+".join(r for i, r in enumerate(WARP_ROLES) if mask >> i & 1)
            rows.append({"block": b, "roles": roles, "sm": sm, "start": start, "end": end})
    t0 = min((r["start"] for r in rows), default=0)
    for r in rows:
        r["start_us"] = (r.pop("start") - t0) / 1e3
        r["end_us"] = (r.pop("end") - t0) / 1e3
    return rows


def timeline_summary(blocks: list[dict]) -> str:
    """Per role mix: how many blocks, their latest start and their end times (min / median /
    max, us from the first block start), and the SMs of the two that ended last."""
    cells = []
    for roles in dict.fromkeys(b["roles"] for b in blocks):
        group = sorted((b for b in blocks if b["roles"] == roles), key=lambda b: b["end_us"])
        ends = [b["end_us"] for b in group]
        late = ", ".join(f"b{b['block']}@sm{b['sm']}" for b in group[-2:])
        cells.append(
            f"{roles} x{len(group)}: start <= {max(b['start_us'] for b in group):.0f}, end "
            f"{ends[0]:.0f}/{ends[len(ends) // 2]:.0f}/{ends[-1]:.0f} (last {late})"
        )
    return "; ".join(cells)


TABLE_ROWS = (
    ("gbps_deepep_kernel", "uccl GB/s DeepEP-counted (kernel time)"),
    ("gbps_nvlink_kernel", "uccl GB/s over NVLink (kernel time)"),
    ("gbps_deepep_e2e", "uccl GB/s DeepEP-counted (e2e time)"),
    ("gbps_nvlink_e2e", "uccl GB/s over NVLink (e2e time)"),
    ("gbps_deepep_e2e_cached", "uccl GB/s DeepEP-counted (e2e, cached)"),
    ("gbps_deepep_kernel_cached", "uccl GB/s DeepEP-counted (kernel, cached)"),
    ("kernel_us", "kernel time us"),
    ("notify_us", "notify kernel time us"),
    ("e2e_us", "e2e time us"),
    ("e2e_cached_us", "e2e time us, cached dispatch"),
    ("kernel_cached_us", "kernel time us, cached dispatch"),
    ("nccl_gbps_deepep", "NCCL a2a GB/s DeepEP-counted"),
    ("nccl_gbps_nvlink", "NCCL a2a GB/s over NVLink"),
    ("nccl_us", "NCCL a2a time us"),
    ("ratio_nccl_kernel", "uccl/NCCL (uccl kernel time)"),
    ("ratio_nccl_e2e", "uccl/NCCL (uccl e2e time)"),
    ("ce_alltoall_gbps", "CE all-to-all GB/s per GPU"),
    ("ratio_ce_alltoall", "uccl NVLink / CE all-to-all (avg)"),
    ("ratio_ce_single_pair", "uccl NVLink / CE single pair"),
)


def fmt(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def mode_row(report: dict, mode: str, ce_peak: dict) -> dict:
    """One rank's figures at the best config of `mode`, with its baselines and ratios. The CE
    ratios divide by the all-to-all figure averaged over ranks (the copy engines share the
    fabric unevenly, so one rank's own figure is a noisy yardstick) and by the single pair."""
    sweep = report["modes"][mode]
    point = sweep["points"][sweep["best_index"]]
    rates, nccl = point["gbps"], report["nccl"][mode]
    return {
        "rank": report["rank"],
        "gbps_deepep_kernel": rates["deepep_kernel"],
        "gbps_nvlink_kernel": rates["nvlink_kernel"],
        "gbps_deepep_e2e": rates["deepep_e2e"],
        "gbps_nvlink_e2e": rates["nvlink_e2e"],
        "gbps_deepep_e2e_cached": rates["deepep_e2e_cached"],
        "gbps_deepep_kernel_cached": rates["deepep_kernel_cached"],
        "kernel_us": point["kernel_us"],
        "notify_us": point["notify_us"],
        "e2e_us": point["e2e_us"],
        "e2e_cached_us": point["e2e_cached_us"],
        "kernel_cached_us": point["kernel_cached_us"],
        "nccl_gbps_deepep": nccl["gbps_deepep"],
        "nccl_gbps_nvlink": nccl["gbps_nvlink"],
        "nccl_us": nccl["us"],
        "ratio_nccl_kernel": bu.ratio(rates["deepep_kernel"], nccl["gbps_deepep"]),
        "ratio_nccl_e2e": bu.ratio(rates["deepep_e2e"], nccl["gbps_deepep"]),
        "ce_alltoall_gbps": report["copy_engine"].get("alltoall_gbps"),
        "ratio_ce_alltoall": bu.ratio(rates["nvlink_kernel"], ce_peak["alltoall_avg"]),
        "ratio_ce_single_pair": bu.ratio(rates["nvlink_kernel"], ce_peak["single_pair"]),
    }


def summarize(reports: list[dict]) -> dict:
    """Per mode: the best config, per-rank figures at it, and min/avg/max over ranks."""
    alltoall = [report["copy_engine"].get("alltoall_gbps") for report in reports]
    ce_peak = {
        "alltoall_avg": bu.min_avg_max(alltoall)["avg"],
        "single_pair": reports[0]["copy_engine"].get("single_pair_gbps"),
    }
    summary = {"copy_engine": ce_peak}
    for mode in MODES:
        rows = [mode_row(report, mode, ce_peak) for report in reports]
        sweep = reports[0]["modes"][mode]
        best = sweep["points"][sweep["best_index"]]
        stats = {key: bu.min_avg_max([row[key] for row in rows]) for key, _ in TABLE_ROWS}
        summary[mode] = {
            "best_label": best["label"],
            "best_nvl_chunk": best["nvl_chunk"],
            "per_rank": rows,
            "stats": stats,
        }
    return summary


def evaluate_targets(summary: dict, num_ranks: int, with_threshold: bool = True) -> dict:
    """Slowest rank's DeepEP-counted GB/s (kernel time; e2e alongside) against the target
    (none without `with_threshold`: a smoke run on shared GPUs)."""
    threshold = TARGET_GBPS.get(num_ranks) if with_threshold else None
    modes = {}
    for mode in MODES:
        stats = summary[mode]["stats"]
        kernel, e2e = stats["gbps_deepep_kernel"]["min"], stats["gbps_deepep_e2e"]["min"]
        # DeepEP's test_intranode.py tunes (and reports) dispatch with the cached call.
        cached = stats["gbps_deepep_kernel_cached"]["min"]
        modes[mode] = {
            "gbps_kernel_min_over_ranks": kernel,
            "gbps_e2e_min_over_ranks": e2e,
            "gbps_kernel_cached_min_over_ranks": cached,
            "pass_kernel": None if threshold is None else kernel >= threshold,
            "pass_e2e": None if threshold is None else e2e >= threshold,
            "pass_kernel_cached": None
            if threshold is None or cached is None
            else cached >= threshold,
        }
    return {"num_ranks": num_ranks, "threshold_gbps_deepep_counted": threshold, "modes": modes}


# Which row size of bench/direct_a2a_bound.cu each mode compares with.
BOUND_ROWS = {"fp8_dispatch": "fp8", "bf16_dispatch": "bf16", "bf16_combine": "bf16"}


def evaluate_bound(summary: dict, bound: dict | None, num_ranks: int) -> dict | None:
    """Slowest rank's DeepEP-counted GB/s (kernel time; cached dispatch alongside) over the SM
    direct-write all-to-all bound that bench/direct_a2a_bound.cu measured on the same GPUs
    (its JSON document), or None without one. The bound must be for `num_ranks` GPUs."""
    if bound is None:
        return None
    if bound.get("gpus") != num_ranks:
        raise ValueError(
            f"the direct-write bound was measured on {bound.get('gpus')} GPUs, "
            f"the benchmark ran {num_ranks} ranks"
        )
    by_rows = {r["rows"]: r["gbps_deepep_median"] for r in bound["results"]}
    modes = {}
    for mode in MODES:
        limit = by_rows[BOUND_ROWS[mode]]
        stats = summary[mode]["stats"]
        kernel = stats["gbps_deepep_kernel"]["min"]
        cached = stats["gbps_deepep_kernel_cached"]["min"]
        modes[mode] = {
            "bound_gbps_deepep": limit,
            "ratio_kernel": None if kernel is None else kernel / limit,
            "ratio_kernel_cached": None if cached is None else cached / limit,
        }
    return {"num_ranks": num_ranks, "sms": bound.get("sms"), "modes": modes}


def print_bound(bound: dict | None, targets: dict) -> None:
    if bound is None:
        return
    threshold = targets["threshold_gbps_deepep_counted"]
    print(
        f"\nDirect-write all-to-all bound ({bound['sms']} SMs per GPU, same GPUs; "
        "bench/direct_a2a_bound.cu), slowest rank:"
    )
    for mode, r in bound["modes"].items():
        cached = r["ratio_kernel_cached"]
        note = "" if cached is None else f", cached dispatch {fmt(cached, 3)}"
        over = ""
        if threshold is not None and threshold > r["bound_gbps_deepep"]:
            over = " (the target is above the bound)"
        print(
            f"  {mode:14s} bound {fmt(r['bound_gbps_deepep'])} GB/s{over}; "
            f"uccl / bound {fmt(r['ratio_kernel'], 3)}{note}"
        )


def print_summary(summary: dict, targets: dict, reports: list[dict]) -> None:
    print("\nGB/s below use kernel time; best config = lowest slowest-rank kernel time.")
    for mode in MODES:
        for row in summary[mode]["per_rank"]:
            print(
                f"[{mode}] rank {row['rank']}: best nvl_chunk {summary[mode]['best_label']}: "
                f"{fmt(row['gbps_deepep_kernel'], 2)} GB/s (DeepEP-counted), "
                f"{fmt(row['gbps_nvlink_kernel'], 2)} GB/s (over NVLink), "
                f"kernel {fmt(row['kernel_us'])} us, notify {fmt(row['notify_us'])} us, "
                f"e2e {fmt(row['e2e_us'])} us"
            )
    for mode in MODES:
        print(f"\n== {mode}: best nvl_chunk {summary[mode]['best_label']} ==")
        print(f"{'':42s}{'min':>10s}{'avg':>10s}{'max':>10s}")
        for key, title in TABLE_ROWS:
            digits = 3 if key.startswith("ratio") else 1
            cells = "".join(f"{fmt(v, digits):>10s}" for v in summary[mode]["stats"][key].values())
            print(f"{title:42s}{cells}")
    ce = reports[0]["copy_engine"]
    if ce["available"]:
        peak = summary["copy_engine"]
        print(
            f"\nCE all-to-all, avg over ranks: {fmt(peak['alltoall_avg'])} GB/s per GPU; "
            f"single pair rank 0 -> 1: {fmt(peak['single_pair'])} GB/s"
        )
    else:
        print(f"\nCE peak not measured: {ce['reason']}")
    threshold = targets["threshold_gbps_deepep_counted"]
    print(f"\nTargets (EP{targets['num_ranks']}, DeepEP-counted, slowest rank, not asserted):")
    for mode, result in targets["modes"].items():
        if threshold is None:
            print(f"  {mode:14s} no target for this run")
            continue
        verdict = "PASS" if result["pass_kernel"] else "MISS"
        e2e_verdict = "PASS" if result["pass_e2e"] else "MISS"
        cached = result["gbps_kernel_cached_min_over_ranks"]
        cached_note = ""
        if cached is not None:
            cached_verdict = "PASS" if result["pass_kernel_cached"] else "MISS"
            cached_note = f"; cached-dispatch kernel {fmt(cached)} GB/s: {cached_verdict}"
        print(
            f"  {mode:14s} {fmt(result['gbps_kernel_min_over_ranks'])} GB/s >= {threshold:.0f}: "
            f"{verdict}   (e2e {fmt(result['gbps_e2e_min_over_ranks'])} GB/s: {e2e_verdict}"
            f"{cached_note})"
        )


def print_wait_profile(reports: list[dict]) -> None:
    """Per mode and rank: warp-microseconds per call each role ran, and the share of it spent in
    each wait (a role that barely waits is the one that limits the kernel)."""
    if any(r["wait_profile"] is None for r in reports) or not reports:
        print("\nwait profile: not a wait-profile build (-Ccmake.define.UCCL_EP_WAIT_PROFILE=ON)")
        return
    waits_of = {  # role -> the wait sites its warps use
        "send": ("dispatch_head", "combine_head"),
        "recv": ("dispatch_range", "dispatch_tail", "combine_tail"),
    }
    for mode in MODES:
        print(f"\n== wait profile, {mode} (warp-us per call at the best config) ==")
        for report in reports:
            p = report["wait_profile"][mode]
            cells = []
            for role in WARP_ROLES:
                run = p[f"run_{role}_us"]
                if run <= 0:
                    continue
                waits = ", ".join(
                    f"{site} {100 * p[f'wait_{site}_us'] / run:.0f}%"
                    for site in waits_of.get(role, ())
                    if p[f"wait_{site}_us"] > 0
                )
                cells.append(f"{role} {run:.0f}" + (f" ({waits})" if waits else ""))
            print(f"  rank {report['rank']}: " + "; ".join(cells))
            rows = [
                f"{kind} {p[f'copy_{kind}_us'] / p[f'copy_{kind}_rows']:.2f}"
                for kind in COPY_KINDS
                if p.get(f"copy_{kind}_rows")
            ]
            if rows:
                print(f"    row copy, us per row and warp: {', '.join(rows)}")
            if p.get("blocks"):
                print(f"    one call, blocks: {timeline_summary(p['blocks'])}")
