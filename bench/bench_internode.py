"""Internode normal-mode dispatch / combine bandwidth of uccl.ep (ranks in several NVLink domains,
the network stage through the CPU proxies), counted as DeepEP's tests/test_internode.py counts
it, after a check against the pure-torch reference, with the transport's own peak for the same
bytes measured in the same run.

    torchrun --nproc_per_node=N bench/bench_internode.py [--json PATH] [--quick] [--tune]
        [--num-tokens 4096 --hidden 7168 --num-topk 8 --num-experts 256 --num-sms 24]
        [--local-ranks L] [--transport ipc|libfabric] [--fi-provider P] [--share-gpus]

bench/README.md says what every figure counts. --local-ranks L emulates nodes of L ranks on one
host (UCCL_EP_NUM_LOCAL_RANKS); --share-gpus runs more ranks than GPUs (CUDA MPS; targets checked
with up to 2 ranks per GPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import json
import os
import socket
import sys
import traceback
from dataclasses import asdict, dataclass
from typing import Any

try:
    import torch
    import torch.distributed as dist
except ImportError:  # reported by main(), which then exits 0
    torch = None
    dist = None

import _bench_utils as bu
import _internode_report as rep
from bench_intranode import environment, import_uccl_ep, init_distributed, shared_num_sms
from bench_low_latency import PeerFailed, RankSync, destroy_after_failure, hold_back

FLOOR_HOOK = "transport_floor"  # in uccl.ep._C._testing (older builds lack it)
COMBINE_X_TOLERANCE = 5e-6  # DeepEP's calc_diff bound of combined rows
COMBINE_W_TOLERANCE = 1e-9  # and of combined top-k weights
SIZE_MARGIN = 1.10  # Buffer sizes: the largest call's need + 10 %, in whole MiB
MIB = 1 << 20


# ---------------------------------------------------------------------------------------------
# Inputs: every rank can rebuild any rank's inputs (the check needs no data exchange)


def _generator(seed: int, src: int, stream: int, device):
    gen = torch.Generator(device=device)
    gen.manual_seed((seed * 1_000_003 + src) * 2 + stream)
    return gen


def group_limited_topk(scores, num_nodes: int, num_groups: int, num_topk: int):
    """DeepSeek's group-limited gating as in DeepEP's test: each token keeps its `num_groups`
    nodes with the highest best score, then takes its top-k experts among theirs. Scores must be
    positive (experts of the other nodes are masked with 0)."""
    num_tokens, num_experts = scores.shape
    per_node = scores.view(num_tokens, num_nodes, num_experts // num_nodes)
    nodes = per_node.amax(dim=-1).topk(num_groups, dim=-1).indices
    keep = torch.zeros(num_tokens, num_nodes, dtype=torch.bool, device=scores.device)
    keep.scatter_(1, nodes, True)
    masked = per_node.masked_fill(~keep.unsqueeze(-1), 0.0).view(num_tokens, num_experts)
    return masked.topk(num_topk, dim=-1).indices.contiguous()


def routing_of(src: int, args, num_nodes: int, device):
    """Rank `src`'s (topk_idx int64 [T, K], topk_weights float32 [T, K]): scores |randn| + 1."""
    gen = _generator(args.seed, src, 0, device)
    shape = (args.num_tokens, args.num_experts)
    scores = torch.randn(shape, generator=gen, device=device).abs() + 1
    groups = rep.num_topk_groups(num_nodes)
    topk_idx = group_limited_topk(scores, num_nodes, groups, args.num_topk)
    weights = torch.rand((args.num_tokens, args.num_topk), generator=gen, device=device) + 0.5
    return topk_idx, weights


def x_of(src: int, args, device):
    """Rank `src`'s BF16 x [T, H] (randn)."""
    gen = _generator(args.seed, src, 1, device)
    return torch.randn((args.num_tokens, args.hidden), generator=gen, device=device).bfloat16()


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equality of two tensors wherever they live (the reference runs on any device)."""
    return tuple(a.shape) == tuple(b.shape) and torch.equal(a.cpu(), b.cpu())


def load_reference():
    """tests/gpu/internode_reference.py of this checkout (its sibling reference.py with it)."""
    here = os.path.dirname(os.path.abspath(__file__))
    folder = os.path.join(os.path.dirname(here), "tests", "gpu")
    if not os.path.isfile(os.path.join(folder, "internode_reference.py")):
        raise FileNotFoundError(f"the check needs {folder}/internode_reference.py")
    if folder not in sys.path:
        sys.path.append(folder)
    return importlib.import_module("internode_reference")


class _SourceRows:
    """Rank d's combine input as the reference reads it on this rank: only the block of rows d
    received from this rank, which are this rank's rows that reach d (checked by the dispatch
    check), so no rank needs another's received rows."""

    def __init__(self, x, tokens) -> None:
        self.x, self.tokens = x, tokens  # the rows are gathered when read

    def __getitem__(self, key):
        if not isinstance(key, slice) or key.stop - key.start != self.tokens.numel():
            raise IndexError(f"reference read {key}, this rank's block has {self.tokens.numel()}")
        return self.x[self.tokens]


# ---------------------------------------------------------------------------------------------
# The measurement


@dataclass
class Context:
    args: argparse.Namespace
    settings: rep.Settings
    ep: Any
    rank: int
    num_ranks: int
    num_local_ranks: int
    device: Any
    sync: RankSync
    flush: Any
    progress: rep.Progress

    @property
    def num_nodes(self) -> int:
        return self.num_ranks // self.num_local_ranks


def library_slot_bytes(ep, hidden_bytes: int, num_scales: int, num_topk: int) -> int:
    """The ring slot bytes the library uses, from internode_rdma_bytes: two configs of one
    channel, 2 nodes of 1 rank and chunks of 1 slot differ by 2 rings x 2 nodes x 2 slots."""
    small, large = ep.Config(2, 1, 2, 1, 2), ep.Config(2, 1, 2, 1, 4)
    need = ep._C.internode_rdma_bytes
    diff = need(large, 2, 1, hidden_bytes, num_scales, num_topk)
    return (diff - need(small, 2, 1, hidden_bytes, num_scales, num_topk)) // 8


def buffer_sizes(ctx: Context, configs: list) -> tuple[int, int]:
    """(num_nvl_bytes, num_rdma_bytes) covering every call with every config, plus a margin."""
    a, c_mod = ctx.args, ctx.ep._C
    calls = [(2 * a.hidden, 0, a.num_topk), (a.hidden, a.hidden // bu.FP8_BLOCK, a.num_topk)]
    rdma = max(
        c_mod.internode_rdma_bytes(c, ctx.num_ranks, ctx.num_local_ranks, *call)
        for c in configs
        for call in calls
    )
    nvl = max(
        c_mod.internode_nvl_bytes(c, ctx.num_local_ranks, *call) for c in configs for call in calls
    )
    return (-(-int(nvl * SIZE_MARGIN) // MIB) * MIB, -(-int(rdma * SIZE_MARGIN) // MIB) * MIB)


class InternodeBench:
    """This rank's Buffer, inputs and layout; after check(), the BF16 dispatch's handle."""

    def __init__(self, ctx: Context) -> None:
        a, dev = ctx.args, ctx.device
        self.ctx = ctx
        self.nvl_recv = rep.nvl_recv_tokens(a, ctx.num_ranks)
        self.config = self.make_config(a.nvl_chunk, a.rdma_chunk)
        self.chunks = {m: (a.nvl_chunk, a.rdma_chunk) for m in rep.MODES}
        configs = [self.config]
        if a.tune:
            pts = {p for m in rep.MODES for p in rep.tune_points(ctx.settings, m, self.chunks[m])}
            configs += [self.make_config(*p) for p in sorted(pts)]
        self.num_nvl_bytes, self.num_rdma_bytes = buffer_sizes(ctx, configs)
        self.topk_idx, self.topk_weights = routing_of(ctx.rank, a, ctx.num_nodes, dev)
        self.x = x_of(ctx.rank, a, dev)
        self.x_fp8 = bu.per_token_cast_to_fp8(self.x)
        self.recv_x = self.handle = self.traffic = None
        self.buffer = ctx.ep.Buffer(
            ctx.sync.group,
            num_nvl_bytes=self.num_nvl_bytes,
            num_rdma_bytes=self.num_rdma_bytes,
            low_latency_mode=False,
            num_qps_per_rank=1,
            explicitly_destroy=True,
        )
        rt = self.buffer.runtime
        got = (int(rt.num_local_ranks), int(rt.num_nodes))
        if got != (ctx.num_local_ranks, ctx.num_nodes):
            raise RuntimeError(
                f"the Buffer's topology is {rt.topology} (num_local_ranks, num_nodes = {got}), "
                f"the benchmark expected {(ctx.num_local_ranks, ctx.num_nodes)}"
            )
        self.transport = str(getattr(rt, "transport", ""))
        self.topology = str(getattr(rt, "topology", ""))
        per_rank, per_rdma, per_expert, in_rank, _ = self.buffer.get_dispatch_layout(
            self.topk_idx, a.num_experts
        )
        self.layout = {
            "num_tokens_per_rank": per_rank,
            "num_tokens_per_rdma_rank": per_rdma,
            "is_token_in_rank": in_rank,
            "num_tokens_per_expert": per_expert,
        }

    def make_config(self, nvl_chunk: int, rdma_chunk: int):
        a = self.ctx.args
        return self.ctx.ep.Config(a.num_sms, nvl_chunk, self.nvl_recv, rdma_chunk, a.rdma_recv)

    # -- correctness ----------------------------------------------------------------------------

    def check(self) -> dict:
        """One BF16 dispatch with top-k, one FP8 dispatch and one combine against the reference:
        the layout, every source rank's block of rows (bitwise), top-k, expert counts, the
        handle's prefix sums and per-channel stream counts, and the two-level combine within
        DeepEP's tolerance. Raises RuntimeError listing every mismatch."""
        ctx, a, dev = self.ctx, self.ctx.args, self.ctx.device
        iref = load_reference()
        ref = iref.ref
        r, big_l, num_r = ctx.rank, ctx.num_local_ranks, ctx.num_ranks
        routes = [routing_of(s, a, ctx.num_nodes, dev) for s in range(num_r)]
        topk_all, weights_all = [t for t, _ in routes], [w for _, w in routes]
        layouts = [iref.dispatch_layout(t, a.num_experts, num_r, big_l) for t in topk_all]
        bad = []

        def expect(name: str, ok: bool, detail: str = "") -> None:
            if not ok:
                bad.append(f"{name}{': ' + detail if detail else ''}")

        mine = layouts[r]
        for key, want in (
            ("num_tokens_per_rank", mine.num_tokens_per_rank),
            ("num_tokens_per_rdma_rank", mine.num_tokens_per_rdma_rank),
            ("num_tokens_per_expert", mine.num_tokens_per_expert),
            ("is_token_in_rank", mine.is_token_in_rank),
        ):
            got = self.layout[key]
            expect(f"get_dispatch_layout {key}", _same(got.to(want.dtype), want))
        recv_x, recv_idx, recv_w, experts, handle, _ = self.buffer.dispatch(
            self.x,
            topk_idx=self.topk_idx,
            topk_weights=self.topk_weights,
            config=self.config,
            **self.layout,
        )
        exp = [
            iref.expected_dispatch(layouts, topk_all, weights_all, a.num_experts, big_l, d)
            for d in range(num_r)
        ]
        me = exp[r]
        prefix = handle[6]
        expect("recv_x rows", recv_x.size(0) == me.num_recv, f"{recv_x.size(0)} != {me.num_recv}")
        expect("recv_gbl_rank_prefix_sum", _same(prefix, me.recv_gbl_rank_prefix_sum))
        expect("recv_rdma_rank_prefix_sum", _same(handle[4], me.recv_rdma_rank_prefix_sum))
        expect("send_nvl_head rows", handle[9].size(0) == me.num_rdma_recv)
        expect("num_recv_tokens_per_expert_list", list(experts) == me.expert_list())
        expect("recv_topk_idx", _same(recv_idx.long(), me.recv_topk_idx))
        expect("recv_topk_weights", _same(recv_w, me.recv_topk_weights))
        recv8, scales8 = self.buffer.dispatch(self.x_fp8, config=self.config, **self.layout)[0]
        bounds = [0] + prefix.tolist()
        for s in range(num_r):
            rows = me.rows[s]
            x_s = self.x if s == r else x_of(s, a, dev)
            lo, hi = bounds[s], bounds[s + 1]
            same = hi - lo == rows.numel()
            same = same and _same(recv_x[lo:hi].view(torch.int16), x_s[rows].view(torch.int16))
            expect(f"BF16 rows from rank {s}", same)
            fp8, scales = self.x_fp8 if s == r else bu.per_token_cast_to_fp8(x_s)
            ok = recv8.size(0) == recv_x.size(0)
            ok = ok and _same(recv8[lo:hi].view(torch.uint8), fp8[rows].view(torch.uint8))
            ok = ok and _same(scales8[lo:hi], scales[rows])
            expect(f"FP8 rows and scales from rank {s}", ok)
            del x_s
        num_channels = a.num_sms // 2
        self.traffic = rep.Traffic.from_prefix(
            r, big_l, handle[1].tolist(), handle[3].tolist(), recv_x.size(0)
        )
        node, local = divmod(r, big_l)
        sends = rep.channel_counts(mine.is_token_in_node.tolist(), num_channels)
        recvs = [
            rep.channel_counts(layouts[m * big_l + local].is_token_in_node.tolist(), num_channels)[
                node
            ]
            for m in range(ctx.num_nodes)
        ]
        expect("rdma_channel_prefix_matrix", [list(x) for x in self.traffic.send_rows] == sends)
        expect(
            "recv_rdma_channel_prefix_matrix", [list(x) for x in self.traffic.recv_rows] == recvs
        )
        expect(
            "num_rdma_token_sent",
            self.traffic.num_rdma_token_sent == mine.num_rdma_token_sent,
            f"{self.traffic.num_rdma_token_sent} != {mine.num_rdma_token_sent}",
        )
        combined, combined_w, _ = self.buffer.combine(
            recv_x, handle, topk_weights=recv_w, config=self.config
        )
        in_rank = mine.is_token_in_rank
        returned = [
            _SourceRows(self.x, torch.nonzero(in_rank[:, d]).flatten()) for d in range(num_r)
        ]
        want_x, want_w = iref.expected_combine(
            r, layouts, returned, a.hidden, big_l, (), [e.recv_topk_weights for e in exp]
        )
        want_x, want_w = want_x.to(combined.device), want_w.to(combined_w.device)
        diff_x, diff_w = ref.calc_diff(combined, want_x), ref.calc_diff(combined_w, want_w)
        expect("combined x", diff_x < COMBINE_X_TOLERANCE, f"calc_diff {diff_x:.3g}")
        expect("combined topk_weights", diff_w < COMBINE_W_TOLERANCE, f"calc_diff {diff_w:.3g}")
        mismatch = ref.bitwise_mismatch(combined, want_x)
        if bad:
            raise RuntimeError(f"rank {r}: check against the reference failed: " + "; ".join(bad))
        self.recv_x, self.handle = recv_x, handle
        return {
            "ok": True,
            "combine_calc_diff": diff_x,
            "combine_bit_exact": mismatch is None,
            "combine_mismatch": mismatch,
            "weights_calc_diff": diff_w,
        }

    # -- timing ---------------------------------------------------------------------------------

    def call(self, mode: str, config, cached: bool = True):
        if mode.endswith("combine"):
            return lambda: self.buffer.combine(self.recv_x, self.handle, config=config)
        x = self.x_fp8 if mode.startswith("fp8") else self.x
        if cached:
            return lambda: self.buffer.dispatch(x, handle=self.handle, config=config)
        return lambda: self.buffer.dispatch(x, config=config, **self.layout)

    def time_calls(self, fn) -> tuple[dict, bool]:
        """Per iteration (after an L2 flush, a synchronize and a barrier): CUDA events around
        fn() with the stream held back, so they time its GPU work. (stats in us, held back)."""
        ctx = self.ctx
        for _ in range(ctx.settings.warmups):
            fn()
        events, held = [], True
        for _ in range(ctx.settings.iters):
            ctx.flush()
            ctx.sync()
            held &= hold_back()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            events.append((start, end))
        ctx.sync()
        return rep.stats_us([s.elapsed_time(e) / 1e3 for s, e in events]), held

    def measure(self, mode: str) -> dict:
        us, held = self.time_calls(self.call(mode, self.config))
        out = {"us": us, "full_us": None, "gpu_held_back": held}
        if not mode.endswith("combine"):
            out["full_us"], _ = self.time_calls(self.call(mode, self.config, cached=False))
        return out

    def tune(self, mode: str, traffic_bytes: dict) -> list:
        """The cached call of `mode` at every point of the --tune grid (rank 0 logs a line each)."""
        points, ctx = [], self.ctx
        for nvl, rdma in rep.tune_points(ctx.settings, mode, self.chunks[mode]):
            with bu.phase(f"tune {mode}, NVL chunk {nvl}, RDMA chunk {rdma}"):
                us, _ = self.time_calls(self.call(mode, self.make_config(nvl, rdma)))
            points.append({"nvl_chunk": nvl, "rdma_chunk": rdma, "us": us})
            t = us["median"] / 1e6
            gbps = (
                bu.gbps(traffic_bytes["rdma_deepep"], t),
                bu.gbps(traffic_bytes["nvl_deepep"], t),
            )
            point = {"num_sms": ctx.args.num_sms, "nvl_chunk": nvl, "rdma_chunk": rdma}
            line = rep.tuning_line({**point, "us": us["median"]}, gbps)
            ctx.progress.log(f"[tuning] {rep.TITLES[mode]}: {line} (rank 0)")
            ctx.progress.step(f"tune {mode}")
        return points


def measure_floor(ctx: Context, traffic: rep.Traffic, slots: dict, chunk: int) -> dict:
    """The transport's peak for each mode's wire list (Traffic.floor_ops), posted by
    `uccl.ep._C._testing.transport_floor` on the Buffer's transport (collective; the hook's
    contract is in bench_low_latency.measure_transport_floor)."""
    testing = getattr(importlib.import_module("uccl.ep._C"), "_testing", None)
    hook = getattr(testing, FLOOR_HOOK, None)
    if hook is None:
        return {"available": False, "reason": rep.FLOOR_UNAVAILABLE}
    out = {"available": True, "reason": None}
    for mode in rep.MODES:
        ops = traffic.floor_ops(mode, chunk, slots[mode])
        ctx.sync()
        with bu.phase(f"transport floor ({mode} list)"):
            seconds = hook(
                rank=ctx.rank,
                num_ranks=ctx.num_ranks,
                device=ctx.device.index,
                ops=ops,
                num_warmups=ctx.settings.warmups,
                num_iters=ctx.settings.iters,
                all_gather=ctx.sync.all_gather,
            )
        out[mode] = {"us": rep.stats_us(seconds), "ops": len(ops), "bytes": sum(b for _, b in ops)}
        ctx.progress.step(f"floor {mode}")
    ctx.sync()
    return out


def slot_sizes(ep, hidden: int) -> tuple[dict, str | None]:
    """Ring slot bytes of each mode's timed call (the library's; a note if our formula
    disagrees)."""
    slots, notes = {}, []
    for mode in rep.MODES:
        args = rep.mode_slot_args(mode, hidden)
        slots[mode] = library_slot_bytes(ep, *args)
        if slots[mode] != rep.ring_slot_bytes(*args):
            notes.append(f"{mode}: library {slots[mode]}, formula {rep.ring_slot_bytes(*args)}")
    return slots, ("; ".join(notes) or None)


# ---------------------------------------------------------------------------------------------
# Driver


def make_context(args, settings: rep.Settings, ep) -> Context:
    with bu.phase("init_process_group"):
        rank, num_ranks, device = init_distributed(args.share_gpus)
        timeout = datetime.timedelta(seconds=args.timeout)
        group = dist.new_group(backend="gloo", timeout=timeout)
    sync = RankSync(group, rank, num_ranks)
    local = os.environ.get("UCCL_EP_NUM_LOCAL_RANKS", "").strip()
    if local:
        num_local = int(local)
    else:
        num_local = rep.ranks_per_host(sync.all_gather(socket.gethostname()))
    if args.share_gpus:
        args.num_sms = shared_num_sms(args.num_sms, num_ranks, device)
    progress = rep.Progress(rep.steps(args, settings), rank == 0)
    return Context(
        args, settings, ep, rank, num_ranks, num_local, device, sync, bu.L2Flusher(device), progress
    )


def check_sizes(ctx: Context) -> None:
    a, r, big_l = ctx.args, ctx.num_ranks, ctx.num_local_ranks
    problem = rep.mps_problem(a.share_gpus, r, torch.cuda.device_count())
    if problem:
        raise RuntimeError(problem)
    if r % big_l or r // big_l < 2:
        raise ValueError(
            f"{r} ranks in NVLink domains of {big_l}: the internode mode needs >= 2 domains "
            "(pass --local-ranks L to emulate nodes of L ranks on one host)"
        )
    if a.num_experts % r:
        raise ValueError(f"--num-experts {a.num_experts} must be a multiple of {r} ranks")
    groups = rep.num_topk_groups(ctx.num_nodes)
    if a.num_topk > groups * a.num_experts // ctx.num_nodes:
        raise ValueError(
            f"--num-topk {a.num_topk} > the experts of {groups} nodes "
            f"({groups * a.num_experts // ctx.num_nodes})"
        )


def measure_all(ctx: Context, report: dict, holder: dict) -> None:
    """Every step of the run on this rank, its results into `report`; `holder["bench"]` is the
    live bench (None once its Buffer is destroyed)."""
    a, progress = ctx.args, ctx.progress
    with bu.phase("topology and sizes"):
        check_sizes(ctx)
    with bu.phase("setup: inputs, Buffer, get_dispatch_layout"):
        bench = holder["bench"] = InternodeBench(ctx)
    report.update(transport=bench.transport, topology=bench.topology)
    report["buffer_bytes"] = {"nvl": bench.num_nvl_bytes, "rdma": bench.num_rdma_bytes}
    ctx.sync()
    progress.step("setup")
    if ctx.rank == 0:
        progress.log(
            f"EP{ctx.num_ranks}: {bench.topology}, transport {bench.transport or '-'}; "
            f"{a.num_tokens} tokens x {a.hidden}, top-{a.num_topk} of {a.num_experts} experts "
            f"in {rep.num_topk_groups(ctx.num_nodes)} node groups; Config({a.num_sms}, "
            f"{a.nvl_chunk}, {bench.nvl_recv}, {a.rdma_chunk}, {a.rdma_recv}); buffers NVL "
            f"{bench.num_nvl_bytes / MIB:.0f} MiB, RDMA {bench.num_rdma_bytes / MIB:.0f} MiB; "
            f"{ctx.settings.iters} iterations"
        )
    with bu.phase("check against tests/gpu/internode_reference.py"):
        report["check"] = bench.check()
    ctx.sync()
    progress.step("check")
    slots, note = slot_sizes(ctx.ep, a.hidden)
    traffic = bench.traffic
    report.update(traffic=traffic.to_json(), slot_bytes=slots, slot_bytes_note=note)
    report["bytes"] = {m: traffic.bytes_for(m, a.hidden, slots[m]) for m in rep.MODES}
    for mode in rep.MODES:
        with bu.phase(f"time {mode}"):
            report["modes"][mode] = bench.measure(mode)
        progress.step(mode)
        us = report["modes"][mode]["us"]["median"]
        progress.log(f"[{mode}] rank {ctx.rank}: median {rep.fmt(us)} us")
    if a.tune:
        for mode in rep.MODES:
            report["tune"][mode] = bench.tune(mode, report["bytes"][mode])
    with bu.phase("buffer.destroy"):
        holder["bench"] = None
        bench.buffer.destroy()
        ctx.sync()
    progress.step("destroy")
    report["floor"] = measure_floor(ctx, traffic, slots, a.rdma_chunk)


def publish(ctx: Context, reports: list[dict], hardware: dict) -> None:
    """Print the summary and write the JSON file (rank 0)."""
    a = ctx.args
    errors = {str(r["rank"]): r["error"] for r in reports if r["error"]}
    summary = targets = None
    per_gpu = -(-ctx.num_ranks // min(ctx.num_ranks, max(torch.cuda.device_count(), 1)))
    if not errors:
        chunks = {m: (a.nvl_chunk, a.rdma_chunk) for m in rep.MODES}
        summary = rep.summarize(reports, a.num_sms, chunks)
        floors = [r["floor"] for r in reports]
        reason = next((f["reason"] for f in floors if not f["available"]), None)
        crowded = a.share_gpus and per_gpu > 2
        unchecked = f"{per_gpu} ranks share a GPU, more than 2" if crowded else None
        targets = rep.evaluate_targets(summary, unchecked, reason)
    if a.share_gpus:
        print(f"\n{rep.SHARED_GPUS_NOTE}: {per_gpu} ranks per GPU; the figures are not a network.")
    if errors:
        for rank, text in errors.items():
            print(f"ERROR on rank {rank}: {text.splitlines()[0]}")
    else:
        rep.print_summary(summary, targets, errors)
    first = next((r for r in reports if r.get("slot_bytes")), {})
    settings = {
        **{k: v for k, v in vars(a).items() if k != "json"},
        "num_ranks": ctx.num_ranks,
        "num_local_ranks": ctx.num_local_ranks,
        "num_nodes": ctx.num_nodes,
        "num_topk_groups": rep.num_topk_groups(ctx.num_nodes),
        "nvl_recv_tokens": rep.nvl_recv_tokens(a, ctx.num_ranks),
        "ranks_per_gpu": per_gpu,
        "buffer_bytes": first.get("buffer_bytes"),
        "slot_bytes": first.get("slot_bytes"),
        "slot_bytes_note": first.get("slot_bytes_note"),
        "iterations": asdict(ctx.settings),
        "check_tolerances": {"combine_x": COMBINE_X_TOLERANCE, "combine_w": COMBINE_W_TOLERANCE},
    }
    hardware = {**hardware, "transport": first.get("transport"), "topology": first.get("topology")}
    doc = rep.document(sys.argv, hardware, settings, summary, targets, reports)
    path = a.json or f"bench_internode_ep{ctx.num_ranks}.json"
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"\nwrote {path}")


def run(args) -> int:
    settings = rep.QUICK if args.quick else rep.FULL
    if args.iters is not None:
        settings = dataclasses.replace(settings, iters=args.iters)
    with bu.phase("import uccl.ep"):
        ep = import_uccl_ep()
    uccl_env = {k: v for k, v in os.environ.items() if k.startswith(("UCCL_EP_", "FI_"))}
    ctx = make_context(args, settings, ep)
    report = {"rank": ctx.rank, "device_index": ctx.device.index, "error": None, "check": None}
    report.update(modes={}, tune={}, floor=None, traffic=None, bytes=None)
    holder = {"bench": None}
    try:
        measure_all(ctx, report, holder)
    except PeerFailed as exc:
        report["error"] = str(exc)
    except Exception as exc:  # noqa: BLE001 - recorded, shared with the peers, exit status 1
        report["error"] = (
            f"during '{bu.current_phase()}': {type(exc).__name__}: {exc}\n" + traceback.format_exc()
        )
        print(f"bench_internode: rank {ctx.rank}: {report['error']}", file=sys.stderr, flush=True)
        ctx.sync.fail()  # peers waiting at a barrier raise PeerFailed there
    destroy_after_failure(holder["bench"], report)
    ctx.progress.close()
    with bu.phase("gather results"):
        reports = ctx.sync.all_gather(report)
    if ctx.rank == 0:
        with bu.phase("summary and JSON"):
            hardware = {**environment(ctx.device, ep), "uccl_env": uccl_env}
            publish(ctx, reports, hardware)
    failed = any(r["error"] for r in reports)
    dist.barrier(group=ctx.sync.group)
    dist.destroy_process_group()
    return 1 if failed else 0


def main(argv=None) -> int:
    args = rep.parse_args(argv)
    rep.apply_env(args)
    bu.set_comm_env()
    return bu.run_torchrun_main("bench_internode", torch, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
