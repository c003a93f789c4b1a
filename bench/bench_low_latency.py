"""Latency of uccl.ep low-latency (LL) dispatch and combine in three topologies measured in one
run: every peer over NVLink, every peer through the CPU proxies, and a mix. Bytes are counted
the way DeepEP's tests/test_low_latency.py counts them; the hook (send / receive) split and,
where the build has the hook for it, the transport floor are measured in the same run.

    torchrun --nproc_per_node=N bench/bench_low_latency.py [--json PATH] [--quick]
        [--num-tokens 128 --hidden 7168 --num-topk 8 --num-experts 288] [--no-fp8]
        [--topologies nvlink proxy mixed] [--transport ipc|libfabric] [--fi-provider P]

bench/README.md says what every figure counts. --share-gpus: more ranks than GPUs (CUDA MPS;
targets checked with up to 2 ranks per GPU; not NVLink figures).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
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
import _low_latency_report as rep
from bench_intranode import environment, import_uccl_ep, init_distributed, shared_num_sms

HOLD_BACK_CYCLES = 2_000_000  # spin before a GPU-timed call: ~1 ms, longer than its host part
SHARED_GPUS_NOTE = "ranks share GPUs (--share-gpus)"
FLOOR_HOOK = "transport_floor"  # in uccl.ep._C._testing (older builds lack it)
STEPS = ("setup", "dispatch", "combine", "dispatch+combine", "hook dispatch", "hook combine")
STEPS += ("destroy", "floor")


@dataclass(frozen=True)
class Settings:
    """Iteration counts of every timed figure (and of the floor)."""

    warmups: int
    iters: int


FULL = Settings(warmups=20, iters=200)
QUICK = Settings(warmups=3, iters=20)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="uccl.ep low-latency dispatch/combine latency")
    add = p.add_argument
    add("--json", default=None, help="output file (default bench_low_latency_ep{R}.json)")
    add("--num-tokens", type=int, default=128, help="tokens per rank (= T of the calls)")
    add("--hidden", type=int, default=7168, help="hidden size (DeepEP's LL list)")
    add("--num-topk", type=int, default=8, help="experts per token (<= 11)")
    add("--num-experts", type=int, default=288, help="experts (nearest multiple of ranks)")
    add("--no-fp8", dest="use_fp8", action="store_false", help="BF16 dispatch (default FP8)")
    add("--num-masked", type=int, default=10, help="top-k entries set to -1 per rank")
    add("--seed", type=int, default=0, help="the inputs of rank r use seed + r")
    add("--topologies", nargs="+", choices=rep.TOPOLOGIES, default=list(rep.TOPOLOGIES))
    add("--transport", choices=("auto", "ipc", "libfabric"), help="proxy topologies' transport")
    add("--fi-provider", help="proxy topologies' libfabric provider, e.g. 'tcp;ofi_rxm'")
    add("--num-sms", type=int, default=None, help="Buffer.set_num_sms (default: as it is)")
    add("--iters", type=int, default=None, help="timed iterations (200; --quick 20)")
    add("--quick", action="store_true", help="few iterations")
    add(
        "--share-gpus",
        action="store_true",
        help="ranks share GPUs (rank r on GPU r %% num_gpus; needs CUDA MPS): gloo instead of "
        "NCCL, SMs split between the ranks of a GPU, targets checked up to 2 ranks per GPU; not "
        "NVLink figures",
    )
    args = p.parse_args(argv)
    if min(args.num_tokens, args.num_topk, args.num_experts) <= 0 or args.num_masked < 0:
        p.error("sizes must be positive (--num-masked >= 0)")
    if args.hidden not in rep.LL_HIDDEN_SIZES:
        p.error(f"--hidden must be one of {rep.LL_HIDDEN_SIZES} (the LL kernels' sizes)")
    if args.use_fp8 and args.hidden % 512:
        p.error("FP8 dispatch needs --hidden % 512 == 0 (or --no-fp8)")
    if args.num_topk > rep.LL_MAX_TOPK or args.num_masked > args.num_tokens * args.num_topk:
        p.error(f"need --num-topk <= {rep.LL_MAX_TOPK} and --num-masked <= tokens * top-k")
    if args.fi_provider is not None and args.transport == "ipc":
        p.error("--fi-provider is for the libfabric transport, not --transport ipc")
    if args.iters is not None and args.iters < 2:
        p.error("--iters must be >= 2")
    if args.num_sms is not None and (args.num_sms <= 0 or args.num_sms % 2):
        p.error("--num-sms must be positive and even")
    args.topologies = list(dict.fromkeys(args.topologies))
    return args


# ---------------------------------------------------------------------------------------------
# Ranks in step


class PeerFailed(RuntimeError):
    """Another rank reported a failure at a barrier."""


class RankSync:
    """Barrier of all ranks on a CPU (gloo) group that carries a failure flag: a rank whose step
    raised calls fail(), which meets its peers' next barrier and makes it raise PeerFailed there,
    so no rank is left waiting. Every rank makes the same number of these calls."""

    def __init__(self, group, rank: int, num_ranks: int) -> None:
        self.group, self.rank, self.num_ranks = group, rank, num_ranks

    def __call__(self) -> None:
        torch.cuda.synchronize()
        self._exchange(failed=False)

    def fail(self) -> None:
        self._exchange(failed=True)

    def _exchange(self, failed: bool) -> None:
        flag = torch.tensor([self.rank + 1 if failed else 0], dtype=torch.int64)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.group)
        peer = int(flag.item()) - 1
        if peer >= 0 and not failed:
            raise PeerFailed(f"rank {peer} failed (this rank stopped at its next barrier)")

    def all_gather(self, obj) -> list:
        out = [None] * self.num_ranks
        dist.all_gather_object(out, obj, group=self.group)
        return out


@dataclass
class Context:
    """What every topology's measurement needs."""

    args: argparse.Namespace
    settings: Settings
    ep: Any
    rank: int
    num_ranks: int
    ranks_per_host: int
    device: Any
    sync: RankSync
    flush: Any
    num_rdma_bytes: int


@dataclass
class Inputs:
    """This rank's inputs (the same in every topology) and the routing of all ranks."""

    x: Any  # [T, H] bfloat16, randn * 0.1
    topk_idx: Any  # [T, K] topk_idx_t, -1 where masked
    topk_weights: Any  # [T, K] float32, |randn|
    expert_counts: list  # [R][num_experts]: tokens of each rank choosing each global expert
    num_selections: int  # valid (token, k) of this rank (DeepEP's byte counting)


def make_inputs(ctx: Context) -> Inputs:
    """DeepEP's test_low_latency.py inputs: x = randn * 0.1, top-k (sorted) of |randn| + 1,
    weights |randn|, `--num-masked` random entries of topk_idx set to -1."""
    a, device = ctx.args, ctx.device
    t, k = a.num_tokens, a.num_topk
    torch.manual_seed(a.seed + ctx.rank)
    x = torch.randn((t, a.hidden), dtype=torch.bfloat16, device=device) * 0.1
    scores = torch.randn((t, a.num_experts), dtype=torch.float32, device=device).abs() + 1
    idx_dtype = getattr(ctx.ep, "topk_idx_t", torch.int64)
    topk_idx = torch.topk(scores, k, dim=-1, largest=True, sorted=True).indices.to(idx_dtype)
    topk_weights = torch.randn((t, k), dtype=torch.float32, device=device).abs()
    gen = torch.Generator().manual_seed(a.seed + ctx.rank)
    rows = torch.randint(t, (a.num_masked,), generator=gen).to(device)
    cols = torch.randint(k, (a.num_masked,), generator=gen).to(device)
    topk_idx[rows, cols] = -1
    counts = rep.token_counts(topk_idx.cpu().tolist(), a.num_experts)
    return Inputs(
        x=x,
        topk_idx=topk_idx.contiguous(),
        topk_weights=topk_weights,
        expert_counts=ctx.sync.all_gather(counts),
        num_selections=int((topk_idx >= 0).sum().item()),
    )


# ---------------------------------------------------------------------------------------------
# Timing


def hold_back() -> bool:
    """Enqueue a spin kernel so that events recorded next fire after the host has enqueued the
    call that follows them (they then time its GPU work, not its launch). False if torch lacks
    torch.cuda._sleep."""
    sleep = getattr(torch.cuda, "_sleep", None)
    if sleep is None:
        return False
    sleep(HOLD_BACK_CYCLES)
    return True


def _event_pair():
    return torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)


def time_full_calls(fn, ctx: Context) -> list[float]:
    """CUDA-event time (us) of `fn()` per iteration, each after an L2 flush and a barrier."""
    for _ in range(ctx.settings.warmups):
        fn()
    events = []
    for _ in range(ctx.settings.iters):
        ctx.flush()
        ctx.sync()
        start, end = _event_pair()
        start.record()
        fn()
        end.record()
        events.append((start, end))
    ctx.sync()
    return [1e3 * start.elapsed_time(end) for start, end in events]


def time_hook_calls(send, ctx: Context) -> tuple[dict[str, list[float]], bool]:
    """Per iteration, `send()` (a call with return_recv_hook=True, returning the hook) and then
    the hook, each timed by host wall-clock and by CUDA events with the stream held back (us).
    The hook is called after every rank's send phase has finished (synchronize + barrier)."""
    for _ in range(ctx.settings.warmups):
        send()()
    times = {f"{part}_us": [] for part in rep.HOOK_PARTS}
    events, held = [], True
    for _ in range(ctx.settings.iters):
        ctx.flush()
        ctx.sync()
        held &= hold_back()
        send_events = _event_pair()
        send_events[0].record()
        t0 = time.perf_counter()
        hook = send()
        t1 = time.perf_counter()
        send_events[1].record()
        ctx.sync()
        held &= hold_back()
        recv_events = _event_pair()
        recv_events[0].record()
        t2 = time.perf_counter()
        hook()
        t3 = time.perf_counter()
        recv_events[1].record()
        times["send_host_us"].append(1e6 * (t1 - t0))
        times["recv_host_us"].append(1e6 * (t3 - t2))
        events.append((send_events, recv_events))
    ctx.sync()
    for (s0, s1), (r0, r1) in events:
        times["send_gpu_us"].append(1e3 * s0.elapsed_time(s1))
        times["recv_gpu_us"].append(1e3 * r0.elapsed_time(r1))
    return times, held


# ---------------------------------------------------------------------------------------------
# One topology


def expert_outputs(recv_x, recv_count, use_fp8: bool):
    """Combine input [E, N, H] BF16: the received rows (dequantised from FP8), zeros beyond each
    local expert's count: the identity experts of DeepEP's test."""
    data, scales = recv_x if use_fp8 else (recv_x, None)
    num_local, num_rows, hidden = data.shape
    out = torch.zeros((num_local, num_rows, hidden), dtype=torch.bfloat16, device=data.device)
    for e, count in enumerate(recv_count.tolist()):
        if count == 0:
            continue
        rows = data[e, :count].float()
        if scales is not None:
            blocks = rows.reshape(count, hidden // rep.FP8_BLOCK, rep.FP8_BLOCK)
            rows = (blocks * scales[e, :count].unsqueeze(-1)).reshape(count, hidden)
        out[e, :count] = rows.to(torch.bfloat16)
    return out


class LowLatencyBench:
    """This rank's LL Buffer in one topology, the handle and expert outputs of one dispatch."""

    def __init__(self, ctx: Context, inputs: Inputs) -> None:
        a = ctx.args
        self.ctx, self.inputs = ctx, inputs
        self.handle = self.expert_out = None
        self.buffer = ctx.ep.Buffer(
            dist.group.WORLD,
            num_nvl_bytes=0,
            num_rdma_bytes=ctx.num_rdma_bytes,
            low_latency_mode=True,
            num_qps_per_rank=a.num_experts // ctx.num_ranks,
            allow_nvlink_for_low_latency_mode=True,
            explicitly_destroy=True,
        )

    def setup(self) -> None:
        """One dispatch: its recv_count checked against the routing of all ranks, its handle and
        received rows kept for the combines."""
        ctx, a = self.ctx, self.ctx.args
        recv_x, recv_count, self.handle, _, _ = self.dispatch()
        num_local = a.num_experts // ctx.num_ranks
        expected = rep.expected_recv_counts(self.inputs.expert_counts, ctx.rank, num_local)
        got = recv_count.tolist()
        if got != expected:
            bad = [e for e in range(num_local) if got[e] != expected[e]]
            raise RuntimeError(
                f"rank {ctx.rank}: recv_count differs from the routing for local experts "
                f"{bad[:8]}: got {[got[e] for e in bad[:8]]}, expected "
                f"{[expected[e] for e in bad[:8]]}"
            )
        self.expert_out = expert_outputs(recv_x, recv_count, a.use_fp8)
        ctx.sync()

    def dispatch(self, hook: bool = False):
        a, i = self.ctx.args, self.inputs
        return self.buffer.low_latency_dispatch(
            i.x,
            i.topk_idx,
            a.num_tokens,
            a.num_experts,
            use_fp8=a.use_fp8,
            async_finish=False,
            return_recv_hook=hook,
        )

    def combine(self, handle, hook: bool = False):
        i = self.inputs
        return self.buffer.low_latency_combine(
            self.expert_out,
            i.topk_idx,
            i.topk_weights,
            handle,
            async_finish=False,
            return_recv_hook=hook,
        )

    def dispatch_and_combine(self) -> None:
        self.combine(self.dispatch()[2])

    def calls(self):
        """(figure, call timed whole) and (op, send phase returning its hook)."""
        full = (
            ("dispatch", self.dispatch),
            ("combine", lambda: self.combine(self.handle)),
            ("dispatch_combine", self.dispatch_and_combine),
        )
        hooked = (
            ("dispatch", lambda: self.dispatch(hook=True)[4]),
            ("combine", lambda: self.combine(self.handle, hook=True)[2]),
        )
        return full, hooked


def measure_transport_floor(ctx: Context, plan: dict) -> dict:
    """The transport floor of a proxy topology: this rank's proxy-path operations (`plan`, from
    rep.traffic_plan) posted straight from a CPU loop on the transport the topology's Buffer
    used, timed by `uccl.ep._C._testing.transport_floor`. Without that hook in the build:
    {"available": False, "reason": "not available in this build"} and no figures.

    The hook's contract: keyword arguments rank, num_ranks, device (CUDA index), ops
    [(peer, bytes)] in posting order (each a write of `bytes` with a fused signal of 1, or the
    signal alone when bytes is 0), num_warmups, num_iters, all_gather (bytes -> list of every
    rank's bytes, for the set-up steps); the transport, provider, memory and deadline come from
    the environment as for the Buffer. One iteration: post the list, then wait until this
    rank's operations completed and every peer's signals for the iteration arrived (no barrier
    between iterations). It returns this rank's seconds per timed iteration, and is collective:
    a failure raises RuntimeError on every rank."""
    testing = getattr(importlib.import_module("uccl.ep._C"), "_testing", None)
    hook = getattr(testing, FLOOR_HOOK, None)
    if hook is None:
        return {"available": False, "reason": rep.FLOOR_UNAVAILABLE}
    out = {"available": True, "reason": None}
    for op in rep.OPS:
        ctx.sync()
        seconds = hook(
            rank=ctx.rank,
            num_ranks=ctx.num_ranks,
            device=ctx.device.index,
            ops=plan[op]["ops"],
            num_warmups=ctx.settings.warmups,
            num_iters=ctx.settings.iters,
            all_gather=ctx.sync.all_gather,
        )
        out[op] = rep.sample_stats([1e6 * s for s in seconds])
    ctx.sync()
    return out


def measure_calls(ctx: Context, bench: LowLatencyBench, name: str, report: dict, progress):
    """Time every call of `bench` into `report` (this rank's figures in topology `name`)."""
    full, hooked = bench.calls()
    for call, fn in full:
        with bu.phase(f"{name}: {call}"):
            stats = rep.sample_stats(time_full_calls(fn, ctx))
        report["latency_us"][call] = stats
        progress.step(name, call)
        progress.log(f"[{name}] {call}: rank {ctx.rank} median {rep.fmt(stats['median'])} us")
    for op, send in hooked:
        with bu.phase(f"{name}: hook {op}"):
            times, held = time_hook_calls(send, ctx)
        report["hook"][op] = {key: rep.sample_stats(v) for key, v in times.items()}
        report["hook"]["gpu_held_back"] = held
        progress.step(name, f"hook {op}")


def destroy_after_failure(bench: LowLatencyBench | None, report: dict) -> None:
    """Destroy the Buffer of a failed topology (collective: every rank with a Buffer gets here
    after the failure was shared); a further error is added to the report."""
    if bench is None:
        return
    try:
        bench.buffer.destroy()
    except Exception as exc:  # noqa: BLE001 - the first error is the one that matters
        report["error"] += f"\nthen buffer.destroy() failed: {type(exc).__name__}: {exc}"


def run_topology(ctx: Context, inputs: Inputs, name: str, progress) -> dict:
    """This rank's report for topology `name`. A failure on any rank is recorded (the error text
    on the rank that raised, PeerFailed on the others), then every rank destroys its Buffer and
    the run goes on with the next topology."""
    report = {"status": "ok", "reason": None, "error": None, "latency_us": {}, "hook": {}}
    report.update(env=None, ranks_per_domain=None, traffic=None, floor=None)
    skip = rep.skip_reason(name, ctx.num_ranks, ctx.ranks_per_host)
    if skip is not None:
        report.update(status="skipped", reason=skip)
        progress.log(f"[{name}] skipped: {skip}")
        progress.finish_topology()
        return report
    a = ctx.args
    per_domain = rep.domain_size(name, ctx.ranks_per_host)
    num_local = a.num_experts // ctx.num_ranks
    plan = rep.traffic_plan(ctx.rank, per_domain, num_local, inputs.expert_counts, a.hidden)
    report.update(ranks_per_domain=per_domain, traffic=rep.traffic_summary(plan))
    bench = None
    with bu.environment_overrides(rep.topology_env(name, a.transport, a.fi_provider)):
        report["env"] = {var: os.environ.get(var) for var in rep.TOPOLOGY_ENV}
        try:
            with bu.phase(f"{name}: Buffer"):
                bench = LowLatencyBench(ctx, inputs)
            with bu.phase(f"{name}: first dispatch"):
                bench.setup()
            progress.step(name, "setup")
            measure_calls(ctx, bench, name, report, progress)
            with bu.phase(f"{name}: buffer.destroy"):
                done, bench = bench, None
                done.buffer.destroy()
                ctx.sync()
            progress.step(name, "destroy")
            if name in rep.PROXY_TOPOLOGIES:
                with bu.phase(f"{name}: transport floor"):
                    report["floor"] = measure_transport_floor(ctx, plan)
                progress.step(name, "floor")
        except PeerFailed as exc:
            report.update(status="error", error=str(exc))
        except Exception as exc:  # noqa: BLE001 - recorded; the other topologies still run
            report.update(
                status="error",
                error=f"during '{bu.current_phase()}': {type(exc).__name__}: {exc}\n"
                + traceback.format_exc(),
            )
            print(
                f"bench_low_latency: rank {ctx.rank}, {name}: {report['error'].splitlines()[0]} "
                f"(traceback in the JSON file: per_rank[{ctx.rank}].topologies.{name}.error)",
                file=sys.stderr,
            )
            ctx.sync.fail()  # peers waiting at a barrier raise PeerFailed there
        destroy_after_failure(bench, report)
    if report["status"] == "error":
        progress.log(f"[{name}] FAILED (rank {ctx.rank}): {report['error'].splitlines()[0]}")
    progress.finish_topology()
    return report


# ---------------------------------------------------------------------------------------------
# Driver


def publish(ctx: Context, reports: list[dict], hardware: dict, notes: dict) -> None:
    """Print the summary and write the JSON file (rank 0)."""
    args = ctx.args
    summary = rep.summarize(reports, args.topologies)
    # The targets (proxy path, send phase) are set for up to 2 ranks sharing a GPU.
    crowded = args.share_gpus and ctx.num_ranks > 2 * max(1, torch.cuda.device_count())
    targets = rep.evaluate_targets(summary, "more than 2 ranks share a GPU" if crowded else None)
    if args.share_gpus:
        print(f"\nShared GPUs: {SHARED_GPUS_NOTE}; the figures below are not NVLink figures.")
    rep.print_summary(summary)
    rep.print_floor(summary)
    rep.print_targets(targets)
    settings = {
        **{k: v for k, v in vars(args).items() if k != "json"},
        **notes,
        "num_ranks": ctx.num_ranks,
        "ranks_per_host": ctx.ranks_per_host,
        "num_local_experts": args.num_experts // ctx.num_ranks,
        "num_max_dispatch_tokens_per_rank": args.num_tokens,
        "num_rdma_bytes": ctx.num_rdma_bytes,
        "figures_are_nvlink": not args.share_gpus,
        "iterations": asdict(ctx.settings),
        "hold_back_cycles": HOLD_BACK_CYCLES,
    }
    doc = rep.document(sys.argv, hardware, settings, summary, targets, reports)
    path = args.json or f"bench_low_latency_ep{ctx.num_ranks}.json"
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"\nwrote {path}")


def make_context(args, settings: Settings, ep) -> tuple[Context, dict]:
    """Process group, CPU group, rank layout and sizes; (context, notes for the JSON file)."""
    with bu.phase("init_process_group"):
        rank, num_ranks, device = init_distributed(args.share_gpus)
        group = dist.group.WORLD if args.share_gpus else dist.new_group(backend="gloo")
    if num_ranks < 2:
        raise ValueError(f"need >= 2 ranks; got {num_ranks}")
    if num_ranks * args.num_tokens % 4:
        raise ValueError("LL needs ranks * --num-tokens to be a multiple of 4")
    requested = args.num_experts
    args.num_experts, note = rep.fit_num_experts(requested, num_ranks)
    if args.num_topk > args.num_experts:
        raise ValueError(f"--num-topk {args.num_topk} > {args.num_experts} experts")
    notes = {"num_experts_requested": requested, "num_experts_note": note}
    if args.num_sms is not None:
        ep.Buffer.set_num_sms(args.num_sms)
    if args.share_gpus:
        ep.Buffer.set_num_sms(shared_num_sms(ep.Buffer.num_sms, num_ranks, device))
    notes["buffer_num_sms"] = ep.Buffer.num_sms  # the LL kernels' block limit
    ctx = Context(
        args=args,
        settings=settings,
        ep=ep,
        rank=rank,
        num_ranks=num_ranks,
        ranks_per_host=int(os.environ.get("LOCAL_WORLD_SIZE", num_ranks)),
        device=device,
        sync=RankSync(group, rank, num_ranks),
        flush=bu.L2Flusher(device),
        num_rdma_bytes=ep.Buffer.get_low_latency_rdma_size_hint(
            args.num_tokens, args.hidden, num_ranks, args.num_experts
        ),
    )
    if rank == 0:
        if note is not None:
            print(note, flush=True)
        if args.share_gpus:
            print(f"{SHARED_GPUS_NOTE}: at most {ep.Buffer.num_sms} SMs per kernel", flush=True)
        dtype = "FP8" if args.use_fp8 else "BF16"
        print(
            f"EP{num_ranks}: {args.num_tokens} tokens x {args.hidden}, top-{args.num_topk} of "
            f"{args.num_experts} experts, {dtype} dispatch, BF16 combine, "
            f"Buffer.num_sms {ep.Buffer.num_sms}, "
            f"{ctx.num_rdma_bytes / 2**30:.2f} GiB RDMA buffer; topologies "
            f"{' '.join(args.topologies)}; {settings.iters} iterations",
            flush=True,
        )
    return ctx, notes


def run(args) -> int:
    settings = QUICK if args.quick else FULL
    if args.iters is not None:
        settings = Settings(warmups=settings.warmups, iters=args.iters)
    with bu.phase("import uccl.ep"):
        ep = import_uccl_ep()
    hardware_env = {k: v for k, v in os.environ.items() if k.startswith(("UCCL_EP_", "FI_"))}
    ctx, notes = make_context(args, settings, ep)
    with bu.phase("inputs"):
        inputs = make_inputs(ctx)
    progress = rep.Progress(len(args.topologies), ctx.rank == 0, STEPS)
    topologies = {name: run_topology(ctx, inputs, name, progress) for name in args.topologies}
    progress.close()
    report = {
        "rank": ctx.rank,
        "device_index": ctx.device.index,
        "num_selections": inputs.num_selections,
        "bytes": rep.call_bytes(inputs.num_selections, args.hidden, args.use_fp8),
        "topologies": topologies,
    }
    with bu.phase("gather results"):
        reports = ctx.sync.all_gather(report)
    if ctx.rank == 0:
        with bu.phase("summary and JSON"):
            hardware = {**environment(ctx.device, ep), "uccl_env": hardware_env}
            publish(ctx, reports, hardware, notes)
    failed = any(t["status"] == "error" for r in reports for t in r["topologies"].values())
    dist.barrier(group=ctx.sync.group)
    dist.destroy_process_group()
    return 1 if failed else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    bu.set_comm_env()
    return bu.run_torchrun_main("bench_low_latency", torch, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
