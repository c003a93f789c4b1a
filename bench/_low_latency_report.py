"""bench_low_latency.py's topologies, byte accounting, proxy-path traffic lists, statistics, and
its summary, targets and JSON document (rank 0). Plain Python (no torch): every function takes
numbers, lists, or the per-rank report dicts that bench_low_latency.py gathers."""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence

import _bench_utils as bu

try:
    from tqdm import tqdm
except ImportError:
    tqdm = None

TOPOLOGIES = ("nvlink", "proxy", "mixed")
# UCCL_EP_NUM_LOCAL_RANKS of each topology; None: unset (the ranks of a host form one domain).
TOPOLOGY_NUM_LOCAL_RANKS = {"nvlink": None, "proxy": 1, "mixed": 2}
PROXY_TOPOLOGIES = ("proxy", "mixed")  # the topologies whose Buffer sends through the proxies
TOPOLOGY_ENV = ("UCCL_EP_NUM_LOCAL_RANKS", "UCCL_EP_TRANSPORT", "UCCL_EP_FI_PROVIDER")
OPS = ("dispatch", "combine")
CALLS = ("dispatch", "combine", "dispatch_combine")
HOOK_PARTS = ("send_host", "send_gpu", "recv_host", "recv_gpu")
LL_HIDDEN_SIZES = (2048, 2560, 3072, 4096, 5120, 6144, 7168, 8192)  # DeepEP V1's LL list
LL_MAX_TOPK = 11
FP8_BLOCK = 128
LL_HEADER_BYTES = 16  # a dispatch block's header, and each dispatch message's
SEND_PHASE_TARGET_US = 15.0  # hook-mode send phase, slowest rank's median
FLOOR_RATIO_TARGET = 1.25  # proxy-path latency / transport floor, slowest rank
FLOOR_UNAVAILABLE = "not available in this build"

BYTE_DEFINITIONS = {
    "dispatch": "sum over this rank's (token, k) with topk_idx >= 0 of the message: FP8 "
    "hidden + hidden/128*4 + 16 (values, float32 scales, 16-byte header); BF16 (--no-fp8) "
    "2*hidden + 16 (DeepEP's tests/test_low_latency.py)",
    "combine": "sum over the same (token, k) of 2*hidden (BF16)",
    "dispatch_combine": "dispatch bytes + combine bytes, over the time of both calls",
    "gbps": "bytes / median time / 1e9",
}
TIMING_DEFINITIONS = {
    "full_call": "CUDA events on the current stream around the whole Python call (launch "
    "included), return_recv_hook=False; each iteration after an L2 flush, a device "
    "synchronize and a barrier of all ranks (gloo), so it includes the ranks' barrier-exit skew",
    "send_host": "return_recv_hook=True: host wall-clock from the call to its return",
    "send_gpu": "return_recv_hook=True: CUDA events around the call with the stream held back "
    "by a spin kernel, so they time the GPU work the call enqueued (the send phase), not the "
    "launch",
    "recv_host": "host wall-clock of hook(), called after every rank's send phase finished "
    "on its GPU (synchronize + barrier)",
    "recv_gpu": "CUDA events around hook() with the stream held back as for send_gpu: the "
    "receive phase, with the data of the send phase in flight for about 1 ms already",
    "floor": "uccl.ep._C._testing.transport_floor: this rank's proxy-path operations (the "
    "topology's traffic ops: one write with a fused signal, or a signal alone, each) posted from "
    "one CPU loop on the transport the Buffer used; an iteration ends when this rank's "
    "operations completed and every peer's signals for that iteration arrived (no barrier "
    "between iterations)",
}


# ---------------------------------------------------------------------------------------------
# Settings that depend on the rank count


def fit_num_experts(requested: int, num_ranks: int) -> tuple[int, str | None]:
    """`requested`, or the nearest multiple of `num_ranks` (the lower one on a tie) with a note."""
    if requested % num_ranks == 0:
        return requested, None
    lower = requested // num_ranks * num_ranks
    upper = lower + num_ranks
    chosen = upper if lower == 0 or upper - requested < requested - lower else lower
    note = (
        f"--num-experts {requested} is not a multiple of {num_ranks} ranks: using {chosen}, "
        "the nearest multiple"
    )
    return chosen, note


def skip_reason(name: str, num_ranks: int, ranks_per_host: int) -> str | None:
    """Why topology `name` cannot run with these ranks, or None."""
    if name == "mixed" and (num_ranks < 4 or num_ranks % 2 or ranks_per_host % 2):
        return (
            f"mixed (UCCL_EP_NUM_LOCAL_RANKS=2) needs >= 4 ranks and an even number per host; "
            f"got {num_ranks} ranks, {ranks_per_host} per host"
        )
    return None


def domain_size(name: str, ranks_per_host: int) -> int:
    """Ranks per NVLink domain in topology `name` (consecutive ranks form a domain)."""
    local = TOPOLOGY_NUM_LOCAL_RANKS[name]
    return ranks_per_host if local is None else local


def topology_env(name: str, transport: str | None, fi_provider: str | None) -> dict:
    """Environment of topology `name` (None: unset): its UCCL_EP_NUM_LOCAL_RANKS and, in the proxy
    topologies, the transport and libfabric provider where given."""
    local = TOPOLOGY_NUM_LOCAL_RANKS[name]
    env = {"UCCL_EP_NUM_LOCAL_RANKS": None if local is None else str(local)}
    if name in PROXY_TOPOLOGIES:
        if transport is not None:
            env["UCCL_EP_TRANSPORT"] = transport
        if fi_provider is not None:
            env["UCCL_EP_FI_PROVIDER"] = fi_provider
    return env


# ---------------------------------------------------------------------------------------------
# Byte accounting and the operations that go through the proxies


def dispatch_message_bytes(hidden: int, use_fp8: bool) -> int:
    """One dispatch message as DeepEP counts it: FP8 values + float32 scales per 128 channels,
    or BF16; + header."""
    return hidden + hidden // FP8_BLOCK * 4 + 16 if use_fp8 else 2 * hidden + 16


def combine_message_bytes(hidden: int) -> int:
    return 2 * hidden


def dispatch_slot_bytes(hidden: int) -> int:
    """Stride of a dispatch message slot in the LL layout (src/protocol/low_latency_layout.h):
    16-byte header + max(BF16 row, FP8 row + float32 scales), whatever the call's dtype."""
    return LL_HEADER_BYTES + max(2 * hidden, hidden + hidden // FP8_BLOCK * 4)


def combine_slot_bytes(hidden: int) -> int:
    """Stride of a combine row in the LL layout: 4H/128 + 2H."""
    return hidden // FP8_BLOCK * 4 + 2 * hidden


def call_bytes(num_selections: int, hidden: int, use_fp8: bool) -> dict[str, int]:
    """Bytes of one call as DeepEP's test counts them; `num_selections`: valid (token, k)."""
    dispatch = num_selections * dispatch_message_bytes(hidden, use_fp8)
    combine = num_selections * combine_message_bytes(hidden)
    return {"dispatch": dispatch, "combine": combine, "dispatch_combine": dispatch + combine}


def token_counts(topk_rows: Sequence[Sequence[int]], num_experts: int) -> list[int]:
    """Per global expert, the tokens whose top-k row contains it (a token counts once per
    expert; -1 entries are masked): the messages a rank's dispatch sends to that expert."""
    counts = [0] * num_experts
    for row in topk_rows:
        for expert in set(row):
            if expert >= 0:
                counts[expert] += 1
    return counts


def expected_recv_counts(expert_counts: Sequence[Sequence[int]], rank: int, num_local: int):
    """recv_count this rank's dispatch must return: per local expert, the tokens of all ranks
    that chose it. `expert_counts[s][g]`: rank s's tokens choosing global expert g
    (token_counts)."""
    first = rank * num_local
    return [sum(row[first + e] for row in expert_counts) for e in range(num_local)]


def traffic_plan(
    rank: int,
    ranks_per_domain: int,
    num_local: int,
    expert_counts: Sequence[Sequence[int]],
    hidden: int,
) -> dict:
    """What this rank's dispatch and combine send through the CPU proxies when NVLink domains are
    `ranks_per_domain` consecutive ranks (docs/low_latency.md): per op, `ops` [(peer, bytes)],
    each one transport operation carrying a signal of 1 (a write with the signal fused, or the
    signal alone when bytes is 0), and `direct_messages` (messages to ranks of its own domain,
    itself included, which the kernels store directly).

    Dispatch: per global expert e owned outside the domain, in expert order, one write of the
    16-byte block header + count_e message slots (count_e = expert_counts[rank][e]; the slot
    stride whatever the dtype). Combine: per (local expert, source rank outside the domain), in
    that order, one write of the rows received from the source for the expert (count combine
    slots, count = expert_counts[src][rank * num_local + e_local]), or the signal alone when the
    count is 0. `expert_counts[s][g]`: rank s's tokens choosing global expert g."""
    num_ranks = len(expert_counts)
    home = rank // ranks_per_domain
    proxied = [peer // ranks_per_domain != home for peer in range(num_ranks)]
    slot = dispatch_slot_bytes(hidden)
    ops, direct = [], 0
    for expert, count in enumerate(expert_counts[rank]):
        owner = expert // num_local
        if proxied[owner]:
            ops.append((owner, LL_HEADER_BYTES + count * slot))
        else:
            direct += count
    dispatch = {"ops": ops, "direct_messages": direct}
    slot = combine_slot_bytes(hidden)
    ops, direct = [], 0
    for e in range(num_local):
        for src in range(num_ranks):
            rows = expert_counts[src][rank * num_local + e]
            if proxied[src]:
                ops.append((src, rows * slot))
            else:
                direct += rows
    combine = {"ops": ops, "direct_messages": direct}
    return {"dispatch": dispatch, "combine": combine}


def traffic_summary(plan: dict) -> dict:
    """The plan's counts (for the JSON file): proxy-path operations (each carries one signal),
    of which writes with a fused signal and signals alone, bytes written, peers, and the
    messages stored directly."""
    out = {}
    for op, p in plan.items():
        ops = p["ops"]
        writes = sum(1 for _, nbytes in ops if nbytes > 0)
        out[op] = {
            "proxy_ops": len(ops),
            "proxy_writes": writes,
            "proxy_signals_alone": len(ops) - writes,
            "proxy_bytes": sum(nbytes for _, nbytes in ops),
            "proxy_peers": len({peer for peer, _ in ops}),
            "direct_messages": p["direct_messages"],
        }
    return out


# ---------------------------------------------------------------------------------------------
# Statistics


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def sample_stats(samples: Sequence[float]) -> dict | None:
    """median, p10, p90, mean, min, max and count of `samples` (us), or None if empty."""
    if not samples:
        return None
    s = sorted(samples)
    return {
        "median": quantile(s, 0.5),
        "p10": quantile(s, 0.1),
        "p90": quantile(s, 0.9),
        "mean": sum(s) / len(s),
        "min": s[0],
        "max": s[-1],
        "n": len(s),
    }


def _get(stats: dict | None, key: str):
    return None if stats is None else stats.get(key)


# ---------------------------------------------------------------------------------------------
# Summary over ranks

TABLE_ROWS = (
    ("dispatch_us", "dispatch us (median)"),
    ("dispatch_p10_us", "dispatch us (p10)"),
    ("dispatch_p90_us", "dispatch us (p90)"),
    ("dispatch_gbps", "dispatch GB/s (DeepEP-counted)"),
    ("combine_us", "combine us (median)"),
    ("combine_p10_us", "combine us (p10)"),
    ("combine_p90_us", "combine us (p90)"),
    ("combine_gbps", "combine GB/s (DeepEP-counted)"),
    ("dispatch_combine_us", "dispatch+combine us (median)"),
    ("dispatch_combine_p10_us", "dispatch+combine us (p10)"),
    ("dispatch_combine_p90_us", "dispatch+combine us (p90)"),
    ("dispatch_combine_gbps", "dispatch+combine GB/s (DeepEP-counted)"),
    ("hook_dispatch_send_host_us", "hook dispatch: send call, host us"),
    ("hook_dispatch_send_gpu_us", "hook dispatch: send phase, GPU us"),
    ("hook_dispatch_recv_host_us", "hook dispatch: hook(), host us"),
    ("hook_dispatch_recv_gpu_us", "hook dispatch: hook(), GPU us"),
    ("hook_combine_send_host_us", "hook combine: send call, host us"),
    ("hook_combine_send_gpu_us", "hook combine: send phase, GPU us"),
    ("hook_combine_recv_host_us", "hook combine: hook(), host us"),
    ("hook_combine_recv_gpu_us", "hook combine: hook(), GPU us"),
    ("floor_dispatch_us", "transport floor, dispatch list, us"),
    ("floor_combine_us", "transport floor, combine list, us"),
    ("ratio_floor_dispatch", "dispatch / floor"),
    ("ratio_floor_combine", "combine / floor"),
)


def topology_row(report: dict, name: str) -> dict:
    """One rank's figures in topology `name` (medians unless named p10/p90; None: not measured)."""
    t = report["topologies"][name]
    latency, hook = t.get("latency_us") or {}, t.get("hook") or {}
    floor = t.get("floor") or {}
    row = {"rank": report["rank"]}
    for call in CALLS:
        stats = latency.get(call)
        median = _get(stats, "median")
        row[f"{call}_us"] = median
        row[f"{call}_p10_us"] = _get(stats, "p10")
        row[f"{call}_p90_us"] = _get(stats, "p90")
        row[f"{call}_gbps"] = bu.gbps(
            report["bytes"][call], None if median is None else median / 1e6
        )
    for op in OPS:
        for part in HOOK_PARTS:
            row[f"hook_{op}_{part}_us"] = _get((hook.get(op) or {}).get(f"{part}_us"), "median")
        floor_us = _get(floor.get(op), "median") if floor.get("available") else None
        row[f"floor_{op}_us"] = floor_us
        row[f"ratio_floor_{op}"] = bu.ratio(row[f"{op}_us"], floor_us)
    return row


def _floor_state(entries: list[dict], name: str) -> dict:
    """Whether the floor was measured in topology `name`, and why not."""
    if name not in PROXY_TOPOLOGIES:
        return {"available": None, "reason": "no proxy path in this topology"}
    floors = [e.get("floor") for e in entries]
    if any(f is None for f in floors):
        return {"available": None, "reason": "the topology did not reach the floor step"}
    if not all(f["available"] for f in floors):
        reasons = {f["reason"] for f in floors if not f["available"]}
        return {"available": False, "reason": "; ".join(sorted(reasons))}
    return {"available": True, "reason": None}


def summarize(reports: list[dict], topologies: Sequence[str]) -> dict:
    """Per topology: status (error if any rank failed), errors by rank, per-rank rows and
    min/avg/max over ranks of every row."""
    out = {}
    for name in topologies:
        entries = [r["topologies"][name] for r in reports]
        statuses = {e["status"] for e in entries}
        if "error" in statuses:
            status = "error"
        else:
            status = "skipped" if statuses == {"skipped"} else "ok"
        rows = [topology_row(r, name) for r in reports]
        out[name] = {
            "status": status,
            "reason": entries[0].get("reason"),
            "env": entries[0].get("env"),
            "ranks_per_domain": entries[0].get("ranks_per_domain"),
            "errors": {str(r["rank"]): e["error"] for r, e in zip(reports, entries) if e["error"]},
            "floor": _floor_state(entries, name),
            "gpu_held_back": all((e.get("hook") or {}).get("gpu_held_back", True) for e in entries),
            "per_rank": rows,
            "stats": {key: bu.min_avg_max([row[key] for row in rows]) for key, _ in TABLE_ROWS},
        }
    return out


def floor_section(summary: dict, reports: list[dict]) -> dict:
    """The JSON file's `floor`: per proxy topology, whether it was measured (else why), the
    floor and the ratios over ranks, and each rank's list sizes and floor figures."""
    out = {}
    for name, s in summary.items():
        if name not in PROXY_TOPOLOGIES or s["status"] == "skipped":
            continue
        keys = ("floor_dispatch_us", "floor_combine_us", "ratio_floor_dispatch")
        keys += ("ratio_floor_combine",)
        out[name] = {
            **s["floor"],
            "stats": {key: s["stats"][key] for key in keys},
            "per_rank": [
                {
                    "rank": r["rank"],
                    "traffic": r["topologies"][name].get("traffic"),
                    "floor": r["topologies"][name].get("floor"),
                }
                for r in reports
            ],
        }
    return out


def document(
    command: list, hardware: dict, settings: dict, summary: dict, targets: dict, reports: list
) -> dict:
    """The JSON file's contents."""
    return {
        "benchmark": "bench_low_latency",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "command": command,
        "hardware": hardware,
        "settings": {
            **settings,
            "byte_definitions": BYTE_DEFINITIONS,
            "timing_definitions": TIMING_DEFINITIONS,
        },
        "topologies": summary,
        "floor": floor_section(summary, reports),
        "targets": targets,
        "per_rank": reports,
    }


def _at_most(value: float | None, limit: float, checked: bool) -> bool | None:
    return None if not checked or value is None else value <= limit


def evaluate_targets(summary: dict, unchecked_reason: str | None) -> dict:
    """Slowest rank's hook-mode send phase (host and GPU) against SEND_PHASE_TARGET_US, and in the
    proxy topologies the slowest rank's proxy-path / floor ratio against FLOOR_RATIO_TARGET.
    Verdicts are None ("no target check") when not measured or `unchecked_reason` is given."""
    checked = unchecked_reason is None
    topologies = {}
    for name, s in summary.items():
        if s["status"] == "skipped":
            continue
        stats = s["stats"]
        entry = {"send_phase": {}}
        for op in OPS:
            host = stats[f"hook_{op}_send_host_us"]["max"]
            gpu = stats[f"hook_{op}_send_gpu_us"]["max"]
            entry["send_phase"][op] = {
                "host_us_slowest_rank": host,
                "gpu_us_slowest_rank": gpu,
                "pass_host": _at_most(host, SEND_PHASE_TARGET_US, checked),
                "pass_gpu": _at_most(gpu, SEND_PHASE_TARGET_US, checked),
            }
        if name in PROXY_TOPOLOGIES:
            entry["floor_ratio"] = {}
            for op in OPS:
                ratio = stats[f"ratio_floor_{op}"]["max"]
                entry["floor_ratio"][op] = {
                    "ratio_slowest_rank": ratio,
                    "pass": _at_most(ratio, FLOOR_RATIO_TARGET, checked),
                    "floor_reason": s["floor"]["reason"],
                }
        topologies[name] = entry
    return {
        "send_phase_target_us": SEND_PHASE_TARGET_US,
        "floor_ratio_target": FLOOR_RATIO_TARGET,
        "checked": checked,
        "unchecked_reason": unchecked_reason,
        "topologies": topologies,
    }


# ---------------------------------------------------------------------------------------------
# Printing


def fmt(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def describe(name: str, s: dict) -> str:
    if s.get("env") is None:  # skipped before its environment was set
        return name
    cells = [f"{k}={v}" for k, v in s["env"].items() if v is not None] or ["no UCCL_EP_* set"]
    domain = s.get("ranks_per_domain")
    where = "" if domain is None else f"; ranks per NVLink domain: {domain}"
    return f"{name} ({', '.join(cells)}{where})"


def _rank_line(name: str, row: dict) -> str:
    def call(c: str) -> str:
        return (
            f"{c.replace('_', '+')} {fmt(row[f'{c}_us'])} us [{fmt(row[f'{c}_p10_us'])}, "
            f"{fmt(row[f'{c}_p90_us'])}] {fmt(row[f'{c}_gbps'], 2)} GB/s"
        )

    hooks = ", ".join(
        f"{op} {fmt(row[f'hook_{op}_send_gpu_us'])} + {fmt(row[f'hook_{op}_recv_gpu_us'])} us"
        for op in OPS
    )
    return (
        f"[{name}] rank {row['rank']}: "
        + " | ".join(call(c) for c in CALLS)
        + f" | hook send + recv (GPU): {hooks}"
    )


def print_summary(summary: dict) -> None:
    for name, s in summary.items():
        print(f"\n== {describe(name, s)} ==")
        if s["status"] == "skipped":
            print(f"  skipped: {s['reason']}")
            continue
        for rank, text in s["errors"].items():
            print(f"  ERROR on rank {rank}: {text.splitlines()[0]}")
        measured = [row for row in s["per_rank"] if row["dispatch_us"] is not None]
        if not measured:
            continue
        print("per rank: median us [p10, p90] GB/s (DeepEP-counted)")
        for row in measured:
            print(_rank_line(name, row))
        print(f"{'over ranks':42s}{'min':>10s}{'avg':>10s}{'max':>10s}")
        for key, title in TABLE_ROWS:
            if key.startswith(("floor", "ratio")) and name not in PROXY_TOPOLOGIES:
                continue
            digits = 3 if key.startswith("ratio") else (2 if key.endswith("gbps") else 1)
            cells = "".join(f"{fmt(v, digits):>10s}" for v in s["stats"][key].values())
            print(f"{title:42s}{cells}")
        if not s["gpu_held_back"]:
            print("  (torch.cuda._sleep missing: the hook rows' GPU times include the launch)")


def print_floor(summary: dict) -> None:
    lines = []
    for name, s in summary.items():
        if name not in PROXY_TOPOLOGIES or s["status"] == "skipped":
            continue
        if not s["floor"]["available"]:
            lines.append(f"  [{name}] not measured: {s['floor']['reason']}")
            continue
        for op in OPS:
            st = s["stats"]
            lines.append(
                f"  [{name}] {op}: floor {fmt(st[f'floor_{op}_us']['max'])} us, uccl "
                f"{fmt(st[f'{op}_us']['max'])} us, uccl / floor "
                f"{fmt(st[f'ratio_floor_{op}']['max'], 3)} (slowest rank)"
            )
    if lines:
        print("\nTransport floor (the proxy path's operations posted from one CPU loop):")
        print("\n".join(lines))


def _verdict(passed: bool | None) -> str:
    return "PASS" if passed else "MISS"


def print_targets(targets: dict) -> None:
    limit, ratio_limit = targets["send_phase_target_us"], targets["floor_ratio_target"]
    print("\nTargets (slowest rank's median, not asserted):")
    for name, entry in targets["topologies"].items():
        for op, r in entry["send_phase"].items():
            head = f"  [{name}] {op} send phase (hook) <= {limit:.0f} us:"
            if not targets["checked"]:
                print(f"{head} no target check ({targets['unchecked_reason']})")
            elif r["pass_host"] is None and r["pass_gpu"] is None:
                print(f"{head} no target check (not measured)")
            else:
                print(
                    f"{head} host {fmt(r['host_us_slowest_rank'])} us "
                    f"{_verdict(r['pass_host'])}, GPU {fmt(r['gpu_us_slowest_rank'])} us "
                    f"{_verdict(r['pass_gpu'])}"
                )
        for op, r in entry.get("floor_ratio", {}).items():
            head = f"  [{name}] {op} proxy path / transport floor <= {ratio_limit}:"
            if r["pass"] is not None:
                print(f"{head} {fmt(r['ratio_slowest_rank'], 3)} {_verdict(r['pass'])}")
            elif r["floor_reason"] is not None:
                print(f"{head} no target check (floor not measured: {r['floor_reason']})")
            elif not targets["checked"]:
                print(f"{head} no target check ({targets['unchecked_reason']})")
            else:
                print(f"{head} no target check (not measured)")


class Progress:
    """Rank 0's progress bar over every step of every topology (tqdm where installed)."""

    def __init__(self, num_topologies: int, enabled: bool, steps: Sequence[str]) -> None:
        self.enabled = enabled
        self.steps_per_topology = len(steps)
        self.bar = None
        if enabled and tqdm is not None:
            total = num_topologies * len(steps)
            self.bar = tqdm(total=total, desc="bench_low_latency", dynamic_ncols=True)
        self.done = self.finished = 0

    def step(self, name: str, label: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix_str(f"{name}: {label}")
            self.bar.update(1)

    def finish_topology(self) -> None:
        """Advance past the steps a topology skipped (skipped, failed, no floor)."""
        self.finished += 1
        rest = self.finished * self.steps_per_topology - self.done
        self.done += rest
        if self.bar is not None and rest:
            self.bar.update(rest)

    def log(self, line: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(line)  # keeps the progress bar intact
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
