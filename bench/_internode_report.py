"""bench_internode.py's pure parts: its flags and settings, ring slot sizes, per-channel stream
counts, byte accounting, the transport floor's operation lists, and the summary, targets,
printing and JSON document (rank 0). Plain Python (no torch): every function takes numbers,
lists, or the per-rank report dicts that bench_internode.py gathers."""

from __future__ import annotations

import argparse
import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass

import _bench_utils as bu
from _low_latency_report import fmt, sample_stats

try:
    from tqdm import tqdm
except ImportError:
    tqdm = None

MODES = ("fp8_dispatch", "bf16_dispatch", "bf16_combine")
TITLES = {"fp8_dispatch": "dispatch (FP8)", "bf16_dispatch": "dispatch (BF16)"}
TITLES["bf16_combine"] = "combine"
FLOOR_RATIO_TARGET = 0.80  # uccl network GB/s / transport peak, slowest rank
FLOOR_UNAVAILABLE = "not available in this build"
NVL_RECV_720_RANKS = (24, 48, 96, 144, 160)  # DeepEP's test: 720 NVL slots there, else 512
MAX_TOPK_GROUPS = 4  # DeepEP's test: num_topk_groups = min(nodes, 4)
SHARED_GPUS_NOTE = "ranks share GPUs (--share-gpus)"

BYTE_DEFINITIONS = {
    "rdma_deepep": "DeepEP's RDMA count: num_rdma_token_sent * hidden * 2 (* (1 + 4/128)/2 for "
    "FP8), num_rdma_token_sent = this rank's (token, node) pairs with >= 1 expert on the node, "
    "its own node included; combine counts the BF16 dispatch's figure",
    "nvl_deepep": "DeepEP's NVL count: recv_x rows * hidden * 2 (* FP8 factor); combine counts "
    "the BF16 dispatch's figure",
    "rdma_network": "rdma_deepep without the own node: (token, node) pairs of the other nodes, "
    "the rows that really cross the network (combine: those coming back to this rank)",
    "wire": "bytes this rank's proxy writes to other nodes in one call: per network stream "
    "(channel, node), chunks of num_max_rdma_chunked_send_tokens rows * ring slot bytes (dispatch: "
    "its own tokens; combine: the forwarded rows it returns); the floor's list moves exactly these",
}
TIMING_DEFINITIONS = {
    "cached": "dispatch(x, handle=, config=): CUDA events around the call with the stream held "
    "back by a spin kernel (GPU time of the barrier + dispatch kernels, no launch), after an L2 "
    "flush, a device synchronize and a barrier of all ranks; DeepEP's tuning loop times this call",
    "full": "dispatch(x, num_tokens_per_rank=, num_tokens_per_rdma_rank=, is_token_in_rank=, "
    "num_tokens_per_expert=, config=), timed the same way: notify, the host wait for the counts, "
    "the launch and the dispatch kernels",
    "combine": "combine(recv_x, handle, config=) (the BF16 dispatch's rows and handle), timed as "
    "cached",
    "floor": "uccl.ep._C._testing.transport_floor: this rank's wire list (chunk-sized writes, "
    "each with a fused signal, to the rank of the same local index on each other node) posted "
    "from one CPU loop on the Buffer's transport; an iteration ends when this rank's writes "
    "completed and every peer's signals arrived",
    "ratio_floor": "floor median / uccl median on the same rank = uccl wire GB/s / transport "
    "peak GB/s for the same bytes",
}


# ---------------------------------------------------------------------------------------------
# Settings and flags


@dataclass(frozen=True)
class Settings:
    """Iteration counts (timed figures and floor) and the --tune grid."""

    warmups: int
    iters: int
    dispatch_nvl: tuple[int, ...]
    combine_nvl: tuple[int, ...]
    rdma: tuple[int, ...]


FULL = Settings(5, 50, (4, 8, 16, 32), (1, 2, 4, 8), (8, 16, 32))
QUICK = Settings(2, 10, (8, 16), (2, 8), (8, 16))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="uccl.ep internode dispatch/combine bandwidth")
    add = p.add_argument
    add("--json", default=None, help="output file (default bench_internode_ep{R}.json)")
    add("--num-tokens", type=int, default=4096, help="tokens per rank")
    add("--hidden", type=int, default=7168, help="hidden size (multiple of 128)")
    add("--num-topk", type=int, default=8, help="experts per token")
    add("--num-experts", type=int, default=256, help="experts in total (multiple of ranks)")
    add("--num-sms", type=int, default=24, help="Config num_sms (even; 2 blocks per channel)")
    add("--nvl-chunk", type=int, default=8, help="num_max_nvl_chunked_send_tokens")
    add("--nvl-recv", type=int, default=None, help="NVL ring slots (DeepEP's test: 512 or 720)")
    add("--rdma-chunk", type=int, default=16, help="num_max_rdma_chunked_send_tokens (<= 64)")
    add("--rdma-recv", type=int, default=128, help="num_max_rdma_chunked_recv_tokens")
    add("--seed", type=int, default=0, help="inputs of rank r come from seed and r")
    add("--iters", type=int, default=None, help="timed iterations (50; --quick 10)")
    add("--quick", action="store_true", help="few iterations (and a smaller --tune grid)")
    add("--tune", action="store_true", help="also time a small grid of NVL x RDMA chunk sizes")
    add("--local-ranks", type=int, default=None, help="UCCL_EP_NUM_LOCAL_RANKS (emulated nodes)")
    add("--transport", choices=("ipc", "libfabric"), help="UCCL_EP_TRANSPORT (default: auto)")
    add("--fi-provider", help="UCCL_EP_FI_PROVIDER, e.g. 'tcp;ofi_rxm' (libfabric transport)")
    add("--timeout", type=float, default=300.0, help="deadline (s) of the bench's collectives")
    add(
        "--share-gpus",
        action="store_true",
        help="ranks share GPUs (rank r on GPU r %% num_gpus; needs CUDA MPS): gloo instead of "
        "NCCL, SMs split between the ranks of a GPU, targets checked with up to 2 ranks per GPU",
    )
    args = p.parse_args(argv)
    sizes = (args.num_tokens, args.hidden, args.num_topk, args.num_experts, args.num_sms)
    sizes += (args.nvl_chunk, args.rdma_chunk, args.rdma_recv)
    if min(sizes) <= 0 or (args.nvl_recv is not None and args.nvl_recv <= 0):
        p.error("sizes must be positive")
    if args.num_sms % 2 or args.hidden % bu.FP8_BLOCK or args.num_topk > args.num_experts:
        p.error("need an even --num-sms, --hidden % 128 == 0 and --num-topk <= --num-experts")
    if args.rdma_chunk > 64 or 2 * args.rdma_chunk > args.rdma_recv:
        p.error("need --rdma-chunk <= 64 and <= half of --rdma-recv")
    if args.nvl_recv is not None and args.nvl_chunk >= args.nvl_recv:
        p.error("need --nvl-chunk < --nvl-recv")
    if args.fi_provider is not None and args.transport == "ipc":
        p.error("--fi-provider is for the libfabric transport, not --transport ipc")
    if args.iters is not None and args.iters < 2:
        p.error("--iters must be >= 2")
    if args.local_ranks is not None and args.local_ranks < 1:
        p.error("--local-ranks must be >= 1")
    if args.timeout <= 0:
        p.error("--timeout must be positive")
    return args


def apply_env(args) -> None:
    """The topology and transport flags as the environment the Buffer (and the floor) read."""
    for name, value in (
        ("UCCL_EP_NUM_LOCAL_RANKS", args.local_ranks),
        ("UCCL_EP_TRANSPORT", args.transport),
        ("UCCL_EP_FI_PROVIDER", args.fi_provider),
    ):
        if value is not None:
            os.environ[name] = str(value)


def nvl_recv_tokens(args, num_ranks: int) -> int:
    if args.nvl_recv is not None:
        return args.nvl_recv
    return 720 if num_ranks in NVL_RECV_720_RANKS else 512


def tune_points(settings: Settings, mode: str, configured: tuple[int, int]) -> list:
    """(nvl_chunk, rdma_chunk) pairs of the --tune grid, the configured pair first."""
    nvl = settings.combine_nvl if mode.endswith("combine") else settings.dispatch_nvl
    grid = [(n, r) for n in nvl for r in settings.rdma]
    return [configured] + [p for p in grid if p != configured]


def mps_problem(share_gpus: bool, num_ranks: int, num_gpus: int) -> str | None:
    """Why ranks sharing a GPU cannot run here (no CUDA MPS daemon), or None."""
    if not share_gpus or num_ranks <= max(num_gpus, 1):
        return None
    pipe = os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps")
    if os.path.exists(os.path.join(pipe, "control")):
        return None
    return (
        f"{num_ranks} ranks share {num_gpus} GPU(s) but no CUDA MPS daemon listens in {pipe}: "
        "without it the ranks' kernels time-slice and spin into the timeout "
        "(start one with nvidia-cuda-mps-control -d)"
    )


def steps(args, settings: Settings) -> list[str]:
    out = ["setup", "check", *MODES]
    if args.tune:
        chunks = (args.nvl_chunk, args.rdma_chunk)
        out += [f"tune {m}" for m in MODES for _ in tune_points(settings, m, chunks)]
    return out + ["destroy"] + [f"floor {m}" for m in MODES]


# ---------------------------------------------------------------------------------------------
# Layout (src/protocol/internode_layout.h, src/runtime/internode_ops.cc)


def align16(v: int) -> int:
    return (v + 15) // 16 * 16


def dispatch_slot_bytes(hidden_bytes: int, num_scales: int, num_topk: int) -> int:
    """A dispatch slot: row (padded to 16), scales, top-k ids and weights, 8-byte source record."""
    return align16(align16(hidden_bytes) + 4 * num_scales + 8 * num_topk + 8)


def combine_slot_bytes(hidden_bytes: int, num_topk: int) -> int:
    return align16(align16(hidden_bytes) + 4 * num_topk)


def ring_slot_bytes(hidden_bytes: int, num_scales: int, num_topk: int) -> int:
    """The ring slot of a call: the larger of the dispatch and combine slots."""
    d = dispatch_slot_bytes(hidden_bytes, num_scales, num_topk)
    return max(d, combine_slot_bytes(hidden_bytes, num_topk))


def mode_slot_args(mode: str, hidden: int) -> tuple[int, int, int]:
    """(hidden_bytes, num_scales, num_topk) of the timed call of `mode` (no top-k travels)."""
    if mode == "fp8_dispatch":
        return hidden, hidden // bu.FP8_BLOCK, 0
    return 2 * hidden, 0, 0


def channel_token_range(num_tokens: int, num_channels: int, channel: int) -> tuple[int, int]:
    """[begin, end) of the tokens channel `channel` owns (ceil-divided contiguous ranges)."""
    per = -(-num_tokens // num_channels)
    begin = min(per * channel, num_tokens)
    return begin, min(begin + per, num_tokens)


def channel_counts(in_node: Sequence[Sequence[bool]], num_channels: int) -> list[list[int]]:
    """[N][C]: tokens of each channel that reach node n (`in_node[t][n]`)."""
    num_tokens, num_nodes = len(in_node), len(in_node[0]) if in_node else 0
    out = [[0] * num_channels for _ in range(num_nodes)]
    for c in range(num_channels):
        begin, end = channel_token_range(num_tokens, num_channels, c)
        for t in range(begin, end):
            for n, hit in enumerate(in_node[t]):
                out[n][c] += bool(hit)
    return out


def counts_from_prefix(matrix: Sequence[Sequence[int]]) -> list[list[int]]:
    """Row-wise differences of an inclusive-over-channels prefix matrix [N][C]."""
    return [[v - (row[c - 1] if c else 0) for c, v in enumerate(row)] for row in matrix]


def ranks_per_host(hosts: Sequence[str]) -> int:
    """Consecutive ranks on the host of rank 0 (the runtime's default NVLink domain size)."""
    run = 1
    while run < len(hosts) and hosts[run] == hosts[0]:
        run += 1
    return run


def num_topk_groups(num_nodes: int) -> int:
    return min(num_nodes, MAX_TOPK_GROUPS)


# ---------------------------------------------------------------------------------------------
# Traffic of one rank


@dataclass(frozen=True)
class Traffic:
    """One rank's network streams, read from its handle: `send_rows[n][c]` rows of its tokens to
    node n in channel c (handle[1]), `recv_rows[m][c]` network-stage rows it receives from node
    m's rank of its local index and forwards (handle[3]), `num_recv` rows of recv_x."""

    rank: int
    num_local_ranks: int
    send_rows: tuple[tuple[int, ...], ...]
    recv_rows: tuple[tuple[int, ...], ...]
    num_recv: int

    @classmethod
    def from_prefix(cls, rank, num_local_ranks, send_prefix, recv_prefix, num_recv) -> Traffic:
        def rows(m):
            return tuple(tuple(r) for r in counts_from_prefix(m))

        return cls(rank, num_local_ranks, rows(send_prefix), rows(recv_prefix), int(num_recv))

    @property
    def node(self) -> int:
        return self.rank // self.num_local_ranks

    @property
    def local(self) -> int:
        return self.rank % self.num_local_ranks

    @property
    def num_rdma_token_sent(self) -> int:
        """(token, node) pairs, own node included (DeepEP's RDMA row count)."""
        return sum(map(sum, self.send_rows))

    @property
    def network_rows(self) -> int:
        """Rows of this rank's tokens that go to other nodes."""
        return sum(sum(r) for n, r in enumerate(self.send_rows) if n != self.node)

    @property
    def return_rows(self) -> int:
        """Forwarded rows from other nodes, which combine sends back."""
        return sum(sum(r) for m, r in enumerate(self.recv_rows) if m != self.node)

    def bytes_for(self, mode: str, hidden: int, slot_bytes: int) -> dict[str, float]:
        """Bytes of one call of `mode` (BYTE_DEFINITIONS)."""
        factor = bu.FP8_FACTOR if mode.startswith("fp8") else 1.0
        row = 2 * hidden * factor
        wire_rows = self.return_rows if mode.endswith("combine") else self.network_rows
        return {
            "rdma_deepep": self.num_rdma_token_sent * row,
            "nvl_deepep": self.num_recv * row,
            "rdma_network": self.network_rows * row,
            "wire": float(wire_rows * slot_bytes),
        }

    def floor_ops(self, mode: str, chunk: int, slot_bytes: int) -> list[tuple[int, int]]:
        """The writes the proxy posts for one call of `mode`: per network stream to another node
        (dispatch: send_rows, combine: recv_rows back to their source), chunks of `chunk` rows
        (the last one partial) of `slot_bytes` each, to the rank of this local index there. The
        streams' chunks are interleaved (chunk 0 of every stream, then chunk 1, ...), as the
        channels run at once."""
        rows = self.recv_rows if mode.endswith("combine") else self.send_rows
        streams = [
            (n * self.num_local_ranks + self.local, per_channel[c])
            for c in range(len(rows[0]) if rows else 0)
            for n, per_channel in enumerate(rows)
            if n != self.node and per_channel[c] > 0
        ]
        ops, g = [], 0
        while True:
            batch = [
                (peer, min(chunk, total - g * chunk) * slot_bytes)
                for peer, total in streams
                if g * chunk < total
            ]
            if not batch:
                return ops
            ops += batch
            g += 1

    def to_json(self) -> dict:
        return {
            "send_rows": [list(r) for r in self.send_rows],
            "recv_rows": [list(r) for r in self.recv_rows],
            "num_recv": self.num_recv,
            "num_rdma_token_sent": self.num_rdma_token_sent,
            "network_rows": self.network_rows,
            "return_rows": self.return_rows,
        }


# ---------------------------------------------------------------------------------------------
# Summary over ranks

ROW_KEYS = (
    ("us", "time us (median)", 1),
    ("p10_us", "time us (p10)", 1),
    ("p90_us", "time us (p90)", 1),
    ("rdma_gbps", "RDMA GB/s (DeepEP-counted)", 2),
    ("nvl_gbps", "NVL GB/s (DeepEP-counted)", 2),
    ("network_gbps", "RDMA GB/s, other nodes only", 2),
    ("full_us", "non-cached dispatch us (median)", 1),
    ("full_rdma_gbps", "non-cached RDMA GB/s (DeepEP)", 2),
    ("floor_us", "transport floor us (median)", 1),
    ("floor_gbps", "transport peak GB/s (wire)", 2),
    ("wire_gbps", "uccl GB/s (wire)", 2),
    ("ratio_floor", "uccl / transport peak", 3),
)


def _median(stats: dict | None):
    return None if stats is None else stats.get("median")


def mode_row(report: dict, mode: str) -> dict:
    """One rank's figures of `mode` at the configured config (None: not measured)."""
    m = (report.get("modes") or {}).get(mode) or {}
    nbytes = (report.get("bytes") or {}).get(mode) or {}
    floor = ((report.get("floor") or {}).get(mode)) or {}
    us, full = _median(m.get("us")), _median(m.get("full_us"))
    floor_us = _median(floor.get("us"))

    def rate(key: str, t):
        return bu.gbps(nbytes[key], t / 1e6) if key in nbytes and t else None

    return {
        "rank": report["rank"],
        "us": us,
        "p10_us": (m.get("us") or {}).get("p10"),
        "p90_us": (m.get("us") or {}).get("p90"),
        "rdma_gbps": rate("rdma_deepep", us),
        "nvl_gbps": rate("nvl_deepep", us),
        "network_gbps": rate("rdma_network", us),
        "full_us": full,
        "full_rdma_gbps": rate("rdma_deepep", full),
        "floor_us": floor_us,
        "floor_gbps": rate("wire", floor_us),
        "wire_gbps": rate("wire", us),
        "ratio_floor": bu.ratio(floor_us, us),
    }


def tune_table(reports: list[dict], mode: str) -> list[dict]:
    """Per swept config of `mode`: chunks, the slowest rank's median and rank 0's figures."""
    points = [r.get("tune", {}).get(mode) or [] for r in reports]
    out = []
    for i, p in enumerate(points[0] if points else []):
        medians = [_median(pts[i]["us"]) if i < len(pts) else None for pts in points]
        out.append(
            {
                "nvl_chunk": p["nvl_chunk"],
                "rdma_chunk": p["rdma_chunk"],
                "max_us": None if None in medians else max(medians),
                "rank0_us": medians[0],
            }
        )
    return out


def summarize(reports: list[dict], num_sms: int, chunks: dict) -> dict:
    """Per mode: per-rank rows, min/avg/max over ranks, and the best config (the configured one,
    or with --tune the lowest slowest-rank median) with rank 0's GB/s at it."""
    out = {}
    for mode in MODES:
        rows = [mode_row(r, mode) for r in reports]
        stats = {k: bu.min_avg_max([row[k] for row in rows]) for k, _, _ in ROW_KEYS}
        table = tune_table(reports, mode)
        timed = [p for p in table if p["max_us"] is not None]
        nbytes = (reports[0].get("bytes") or {}).get(mode)
        if timed:
            best = min(timed, key=lambda p: p["max_us"])
            nvl, rdma, us = best["nvl_chunk"], best["rdma_chunk"], best["rank0_us"]
        else:
            (nvl, rdma), us = chunks[mode], rows[0]["us"]
        seconds = None if us is None else us / 1e6
        out[mode] = {
            "per_rank": rows,
            "stats": stats,
            "tune": table,
            "best": {
                "num_sms": num_sms,
                "nvl_chunk": nvl,
                "rdma_chunk": rdma,
                "rank0_us": us,
                "rank0_rdma_gbps": bu.gbps(nbytes["rdma_deepep"], seconds) if nbytes else None,
                "rank0_nvl_gbps": bu.gbps(nbytes["nvl_deepep"], seconds) if nbytes else None,
            },
        }
    return out


def evaluate_targets(summary: dict, unchecked_reason: str | None, floor_reason) -> dict:
    """Per mode, the slowest rank's uccl / transport-peak ratio against FLOOR_RATIO_TARGET;
    verdicts None when not measured or `unchecked_reason` is given."""
    checked = unchecked_reason is None
    modes = {}
    for mode in MODES:
        ratio = summary[mode]["stats"]["ratio_floor"]["min"]
        modes[mode] = {
            "ratio_slowest_rank": ratio,
            "pass": None if not checked or ratio is None else ratio >= FLOOR_RATIO_TARGET,
        }
    return {
        "floor_ratio_target": FLOOR_RATIO_TARGET,
        "checked": checked,
        "unchecked_reason": unchecked_reason,
        "floor_reason": floor_reason,
        "modes": modes,
    }


def tuning_line(point: dict, gbps: tuple) -> str:
    """DeepEP's tuning line: SMs, chunks, RDMA and NVL GB/s, time."""
    return (
        f"SMs {point['num_sms']}, NVL chunk {point['nvl_chunk']}, RDMA chunk "
        f"{point['rdma_chunk']}: {fmt(gbps[0], 2)} GB/s (RDMA), {fmt(gbps[1], 2)} GB/s (NVL), "
        f"t: {fmt(point['us'])} us"
    )


def print_summary(summary: dict, targets: dict, errors: dict) -> None:
    for rank, text in errors.items():
        print(f"ERROR on rank {rank}: {text.splitlines()[0]}")
    if errors:
        return
    print()
    for mode in MODES:
        best = summary[mode]["best"]
        point = {**best, "us": best["rank0_us"]}
        gbps = (best["rank0_rdma_gbps"], best["rank0_nvl_gbps"])
        print(f"[tuning] Best {TITLES[mode]}: {tuning_line(point, gbps)}")
    print("(rank 0's figures, DeepEP-counted; dispatch times are cached dispatches)")
    for mode in MODES:
        print(f"\n== {TITLES[mode]} ==")
        print(f"{'over ranks':44s}{'min':>10s}{'avg':>10s}{'max':>10s}")
        for key, title, digits in ROW_KEYS:
            cells = summary[mode]["stats"][key]
            if all(v is None for v in cells.values()):
                continue
            print(f"{title:44s}" + "".join(f"{fmt(v, digits):>10s}" for v in cells.values()))
    print_targets(targets)


def print_targets(targets: dict) -> None:
    limit = targets["floor_ratio_target"]
    print(f"\nTargets (network GB/s >= {limit:.2f} x transport peak, slowest rank, not asserted):")
    for mode, r in targets["modes"].items():
        head = f"  [{mode}] uccl / transport peak >= {limit:.2f}:"
        if targets["floor_reason"] is not None:
            print(f"{head} no target check (floor not measured: {targets['floor_reason']})")
        elif not targets["checked"]:
            print(
                f"{head} {fmt(r['ratio_slowest_rank'], 3)}, target not checked "
                f"({targets['unchecked_reason']})"
            )
        elif r["pass"] is None:
            print(f"{head} no target check (not measured)")
        else:
            print(f"{head} {fmt(r['ratio_slowest_rank'], 3)} {'PASS' if r['pass'] else 'FAIL'}")


def document(command, hardware: dict, settings: dict, summary, targets, reports) -> dict:
    """The JSON file's contents."""
    return {
        "benchmark": "bench_internode",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "command": command,
        "hardware": hardware,
        "settings": {
            **settings,
            "byte_definitions": BYTE_DEFINITIONS,
            "timing_definitions": TIMING_DEFINITIONS,
        },
        "status": "error" if any(r.get("error") for r in reports) else "ok",
        "errors": {str(r["rank"]): r["error"] for r in reports if r.get("error")},
        "modes": summary,
        "targets": targets,
        "per_rank": reports,
    }


def stats_us(seconds: Sequence[float]) -> dict | None:
    return sample_stats([1e6 * s for s in seconds])


class Progress:
    """Rank 0's progress bar (tqdm where installed, else one line per step)."""

    def __init__(self, steps: Sequence[str], enabled: bool) -> None:
        self.enabled, self.total, self.done = enabled, len(steps), 0
        self.bar = None
        if enabled and tqdm is not None:
            self.bar = tqdm(total=len(steps), desc="bench_internode", dynamic_ncols=True)

    def step(self, label: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix_str(label)
            self.bar.update(1)
        elif self.enabled:
            print(f"[{self.done}/{self.total}] {label}", flush=True)

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
