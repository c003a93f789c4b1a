"""Intranode (NVLink) throughput of uccl.ep normal-mode dispatch and combine, counted the way
DeepEP's tests/test_intranode.py counts it, with an NCCL all_to_all_single baseline and the
copy-engine peer-copy peak measured in the same run.

    torchrun --nproc_per_node=N bench/bench_intranode.py [--json PATH] [--quick]
        [--num-tokens 4096 --hidden 7168 --num-topk 8 --num-experts 256 --num-sms 24]

bench/README.md says what every figure counts. With --share-gpus, more ranks than GPUs run
as a smoke test of the benchmark's code paths (CUDA MPS needed; no baselines, no targets; the
figures are not NVLink bandwidth).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib
import json
import os
import socket
import sys
from dataclasses import asdict, dataclass

try:
    import torch
    import torch.distributed as dist
except ImportError:  # reported by main(), which then exits 0
    torch = None
    dist = None

try:
    from tqdm import tqdm
except ImportError:
    tqdm = None

import _bench_utils as bu
from _intranode_report import (
    COPY_KINDS,
    FIRST_COPY_COUNTER,
    MODES,
    NUM_WAIT_SITES,
    WAIT_SITES,
    WARP_ROLES,
    block_timeline,
    evaluate_bound,
    evaluate_targets,
    fmt,
    print_bound,
    print_summary,
    print_wait_profile,
    summarize,
)

DEFAULT_CONFIG_RANKS = (2, 4, 8)  # rank counts of the intranode tuned-config tables
NVL_RECV_TOKENS = 256  # Config's nvl_recv of DeepEP's tuning (the handle's dispatch)
NUM_NVL_BYTES = int(2e9)
HANDLE_CHUNK = 8  # nvl_chunk of the BF16 dispatch that makes the handle (DeepEP's test config)


@dataclass(frozen=True)
class Settings:
    """Sweep points and iteration counts."""

    dispatch_chunks: tuple[int, ...]
    combine_chunks: tuple[int, ...]
    warmups: int
    kernel_iters: int
    e2e_iters: int
    nccl_iters: int
    ce_bytes: int
    ce_iters: int


FULL = Settings(
    (*range(4, 33, 4), 48, 64, 96, 128),
    (*range(2, 17, 2), 24, 32, 48),
    10,
    30,
    50,
    50,
    256 << 20,
    20,
)
QUICK = Settings((8, 24, 64), (6, 12, 32), 2, 5, 10, 10, 64 << 20, 3)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="uccl.ep intranode dispatch/combine bandwidth")
    p.add_argument("--json", default=None, help="output file (default bench_intranode_ep{R}.json)")
    p.add_argument("--num-tokens", type=int, default=4096, help="tokens per rank")
    p.add_argument("--hidden", type=int, default=7168, help="hidden size (multiple of 128)")
    p.add_argument("--num-topk", type=int, default=8, help="experts per token")
    p.add_argument("--num-experts", type=int, default=256, help="experts in total")
    p.add_argument("--num-sms", type=int, default=24, help="num_sms of every Config (even)")
    p.add_argument(
        "--nvl-recv",
        type=int,
        nargs="+",
        default=[256, 512],
        help="ring sizes (Config num_max_nvl_chunked_recv_tokens) to sweep; chunks below each",
    )
    p.add_argument("--quick", action="store_true", help="few sweep points and iterations")
    p.add_argument(
        "--wait-profile",
        action="store_true",
        help="at each mode's best config, print where warps spend their time (needs a build "
        "with -Ccmake.define.UCCL_EP_WAIT_PROFILE=ON)",
    )
    p.add_argument(
        "--share-gpus",
        action="store_true",
        help="smoke run with ranks sharing GPUs (rank r on GPU r %% num_gpus; needs CUDA MPS): "
        "gloo instead of NCCL, fewer SMs per rank, no NCCL or copy-engine baseline, no targets; "
        "the figures are not NVLink bandwidth",
    )
    p.add_argument(
        "--bound-json",
        default=None,
        help="JSON of bench/direct_a2a_bound.cu on the same GPUs: print uccl / bound per mode",
    )
    args = p.parse_args(argv)
    sizes = (args.num_tokens, args.hidden, args.num_topk, args.num_experts, args.num_sms)
    if min(*sizes, *args.nvl_recv) <= 0:
        p.error("sizes must be positive")
    if args.bound_json is not None and not os.path.isfile(args.bound_json):
        p.error(f"--bound-json {args.bound_json!r}: no such file")
    if args.bound_json is not None and args.share_gpus:
        p.error("--bound-json compares NVLink figures; a --share-gpus run has none")
    if args.num_sms % 2 or args.hidden % bu.FP8_BLOCK or args.num_topk > args.num_experts:
        p.error("need an even --num-sms, --hidden % 128 == 0 and --num-topk <= --num-experts")
    return args


# ---------------------------------------------------------------------------------------------
# Measurement of uccl.ep


class IntranodeBench:
    """This rank's uccl.ep.Buffer, inputs, layout, and the handle of one BF16 dispatch."""

    def __init__(
        self, args, settings: Settings, ep, rank: int, num_ranks: int, device, buffer=None
    ):
        """`buffer`: an intranode-capable Buffer to use (and not own), else one is made."""
        self.args, self.settings, self.ep = args, settings, ep
        self.rank, self.num_ranks, self.device = rank, num_ranks, device
        self.flush = bu.L2Flusher(device)
        torch.manual_seed(rank)
        shape = (args.num_tokens, args.hidden)
        self.x_bf16 = torch.randn(shape, dtype=torch.bfloat16, device=device)
        self.x_fp8 = bu.per_token_cast_to_fp8(self.x_bf16)
        idx_dtype = getattr(ep, "topk_idx_t", torch.int64)
        topk_idx = bu.make_routing(
            args.num_tokens, args.num_experts, args.num_topk, device, idx_dtype
        )
        if buffer is None:
            buffer = ep.Buffer(
                dist.group.WORLD,
                num_nvl_bytes=NUM_NVL_BYTES,
                num_rdma_bytes=0,
                low_latency_mode=False,
                num_qps_per_rank=1,
                explicitly_destroy=True,
            )
        self.buffer = buffer
        per_rank, _, per_expert, in_rank, _ = self.buffer.get_dispatch_layout(
            topk_idx, args.num_experts
        )
        self.layout = {
            "num_tokens_per_rank": per_rank,
            "is_token_in_rank": in_rank,
            "num_tokens_per_expert": per_expert,
        }
        config = ep.Config(args.num_sms, HANDLE_CHUNK, NVL_RECV_TOKENS)
        self.recv_x, _, _, _, self.handle, _ = self.buffer.dispatch(
            self.x_bf16, config=config, **self.layout
        )
        self.traffic = bu.Traffic.from_prefix_matrix(self.handle[0], rank)
        self._check_traffic(per_rank)

    def _check_traffic(self, num_tokens_per_rank) -> None:
        """The handle's rank prefix matrix must agree with the layout and with recv_x."""
        expected = tuple(num_tokens_per_rank.tolist())
        if self.traffic.send_to != expected:
            raise RuntimeError(
                f"rank prefix matrix says rank {self.rank} sends {self.traffic.send_to} tokens, "
                f"get_dispatch_layout says {expected}"
            )
        if self.recv_x.size(0) != self.traffic.recv_total:
            raise RuntimeError(
                f"recv_x has {self.recv_x.size(0)} rows, rank prefix matrix says "
                f"{self.traffic.recv_total}"
            )

    def configs(self, mode: str) -> list[tuple[str, int | None, object]]:
        """(label, nvl_chunk, Config) to sweep, label "chunk/ring"; the tuned default last."""
        combine = mode.endswith("combine")
        chunks = self.settings.combine_chunks if combine else self.settings.dispatch_chunks
        num_sms = self.args.num_sms
        points = [
            (f"{k}/{recv}", k, self.ep.Config(num_sms, k, recv))
            for recv in self.args.nvl_recv
            for k in chunks
            if k < recv
        ]
        if self.num_ranks in DEFAULT_CONFIG_RANKS:
            self.ep.Buffer.set_num_sms(num_sms)
            buffer_cls = self.ep.Buffer
            getter = buffer_cls.get_combine_config if combine else buffer_cls.get_dispatch_config
            points.append(("default", None, getter(self.num_ranks)))
        elif self.rank == 0:
            print(f"[{mode}] no tuned default config for {self.num_ranks} ranks; not swept")
        return points

    def calls(self, mode: str, config):
        """(call to time, cached-dispatch call or None) of `mode` with `config`."""
        if mode.endswith("combine"):
            combine = functools.partial(self.buffer.combine, self.recv_x, self.handle)
            return functools.partial(combine, config=config), None
        x = self.x_fp8 if mode.startswith("fp8") else self.x_bf16
        full = functools.partial(self.buffer.dispatch, x, config=config, **self.layout)
        cached = functools.partial(self.buffer.dispatch, x, handle=self.handle, config=config)
        return full, cached

    def measure_point(self, mode: str, label: str, chunk: int | None, config) -> dict:
        """Kernel, notify and end-to-end times of one config on this rank, their maxima over
        ranks, and this rank's GB/s (DeepEP-counted and over NVLink) from kernel and e2e time."""
        s = self.settings
        full, cached = self.calls(mode, config)
        kernel = "intranode_combine" if mode.endswith("combine") else "intranode_dispatch"
        kernel_us, notify_us = bu.kernel_times_us(
            full, kernel, self.flush, s.warmups, s.kernel_iters
        )
        e2e_us = 1e6 * bu.e2e_seconds(full, self.flush, s.warmups, s.e2e_iters)
        cached_us = kernel_cached_us = None
        if cached is not None:
            cached_us = 1e6 * bu.e2e_seconds(cached, self.flush, s.warmups, s.e2e_iters)
            kernel_cached_us, _ = bu.kernel_times_us(
                cached, kernel, self.flush, s.warmups, s.kernel_iters
            )
        times = {
            "kernel_us": kernel_us,
            "notify_us": notify_us,
            "e2e_us": e2e_us,
            "e2e_cached_us": cached_us,
            "kernel_cached_us": kernel_cached_us,
        }
        worst = dict(zip(times, bu.all_reduce_max(list(times.values()), self.device), strict=True))
        nbytes = self.traffic.bytes_for(mode, self.args.hidden)
        rates = {}
        for name, us in (
            ("kernel", kernel_us),
            ("e2e", e2e_us),
            ("e2e_cached", cached_us),
            ("kernel_cached", kernel_cached_us),
        ):
            seconds = None if us is None else us / 1e6
            rates[f"deepep_{name}"] = bu.gbps(nbytes["deepep"], seconds)
            rates[f"nvlink_{name}"] = bu.gbps(nbytes["nvlink"], seconds)
        return {"label": label, "nvl_chunk": chunk, **times, "max_over_ranks": worst, "gbps": rates}

    def wait_profile(self, mode: str, best_index: int) -> dict | None:
        """Per call at the best config of `mode`: summed run time of the warps of each role,
        summed time they waited, per wait site, and per row copy kind the summed time of the row
        copies and their number (warp-microseconds; a wait-profile build), or None in a normal
        build."""
        ext = importlib.import_module("uccl.ep._C")._testing
        kernel = "combine" if mode.endswith("combine") else "dispatch"
        bu.sync_all()
        if not ext.wait_profile(kernel, True):
            return None
        _, _, config = self.configs(mode)[best_index]
        full, _ = self.calls(mode, config)
        n = self.settings.kernel_iters
        for _ in range(self.settings.warmups):
            full()
        bu.sync_all()
        ext.wait_profile(kernel, True)
        for _ in range(n):
            full()
        bu.sync_all()
        counts = ext.wait_profile(kernel, True)
        out = {f"wait_{name}_us": counts[site] / n / 1e3 for site, name in WAIT_SITES.items()}
        for i, role in enumerate(WARP_ROLES):
            out[f"run_{role}_us"] = counts[NUM_WAIT_SITES + i] / n / 1e3
        for i, kind in enumerate(COPY_KINDS):
            out[f"copy_{kind}_us"] = counts[FIRST_COPY_COUNTER + 2 * i] / n / 1e3
            out[f"copy_{kind}_rows"] = counts[FIRST_COPY_COUNTER + 2 * i + 1] / n
        full()  # one more call alone: its block timeline
        bu.sync_all()
        out["blocks"] = block_timeline(ext.wait_profile(kernel, True))
        return out

    def sweep(self, mode: str) -> dict:
        """Every config of `mode`; the best has the lowest slowest-rank (MAX) kernel time."""
        points = []
        for label, chunk, config in progress(self.configs(mode), mode, self.rank == 0):
            with bu.phase(f"{mode}, nvl_chunk {label}"):
                points.append(self.measure_point(mode, label, chunk, config))
            if self.rank == 0:
                log_point(mode, points[-1])
        best = min(range(len(points)), key=lambda i: points[i]["max_over_ranks"]["kernel_us"])
        return {"points": points, "best_index": best}


def progress(items, desc: str, enabled: bool):
    return tqdm(items, desc=desc, dynamic_ncols=True) if tqdm and enabled else items


def log_point(mode: str, point: dict) -> None:
    worst, rates = point["max_over_ranks"], point["gbps"]
    line = (
        f"[{mode}] nvl_chunk {point['label']:>7}: kernel {fmt(point['kernel_us'])} us "
        f"(slowest rank {fmt(worst['kernel_us'])}), notify {fmt(point['notify_us'])} us, "
        f"e2e {fmt(point['e2e_us'])} us; rank 0: {fmt(rates['deepep_kernel'])} GB/s "
        f"DeepEP-counted, {fmt(rates['nvlink_kernel'])} GB/s over NVLink"
    )
    if tqdm:
        tqdm.write(line)  # keeps the progress bar intact
    else:
        print(line, flush=True)


# ---------------------------------------------------------------------------------------------
# Baselines


SHARED_GPUS_NOTE = "ranks share GPUs (--share-gpus)"


def skipped_nccl(why: str) -> dict:
    empty = {"us": None, "gbps_deepep": None, "gbps_nvlink": None, "skipped": why}
    return {mode: dict(empty) for mode in MODES}


def measure_nccl(traffic: bu.Traffic, args, settings: Settings, device, flush) -> dict:
    """NCCL all_to_all_single moving what each mode moves (FP8 or BF16 bytes per token,
    dispatch direction, or the reverse for combine), counted like the uccl figures."""
    if args.share_gpus:
        return skipped_nccl(SHARED_GPUS_NOTE)
    out = {}
    for mode in MODES:
        splits = traffic.alltoall_splits(mode, args.hidden)
        with bu.phase(f"NCCL all_to_all_single baseline ({mode} bytes)"):
            seconds = bu.nccl_alltoall_seconds(
                splits, device, flush, settings.warmups, settings.nccl_iters
            )
        nbytes = traffic.bytes_for(mode, args.hidden)
        out[mode] = {
            "us": seconds * 1e6,
            "gbps_deepep": bu.gbps(nbytes["deepep"], seconds),
            "gbps_nvlink": bu.gbps(nbytes["nvlink"], seconds),
            "input_split_bytes": splits[0],
            "output_split_bytes": splits[1],
        }
    return out


def measure_copy_engine(rank: int, num_ranks: int, device, settings: Settings, args) -> dict:
    """Peer copies through the copy engines: every rank to all others at once, and rank 0 to
    rank 1 alone. GB/s per GPU = outgoing bytes / time."""
    if args.share_gpus:
        return {"available": False, "reason": SHARED_GPUS_NOTE}
    device_ids = [None] * num_ranks
    dist.all_gather_object(device_ids, device.index)
    if len(set(device_ids)) != num_ranks:
        raise RuntimeError(f"ranks share CUDA devices: {device_ids}")
    ok, why = bu.peers_reachable(device_ids, device.index, device)
    if not ok:
        return {"available": False, "reason": why, "device_ids": device_ids}
    peers = [d for r, d in enumerate(device_ids) if r != rank]
    nbytes, iters = settings.ce_bytes, settings.ce_iters
    with bu.phase("copy-engine baseline: gloo group for CPU barriers"):
        cpu_group = dist.new_group(backend="gloo")
    barrier = functools.partial(dist.barrier, group=cpu_group)
    with bu.phase("copy-engine all-to-all"):
        alltoall = bu.ce_copy_gbps(device.index, peers, True, nbytes, iters, barrier)
    with bu.phase("copy-engine single pair, rank 0 -> rank 1"):
        pair = bu.ce_copy_gbps(device.index, [device_ids[1]], rank == 0, nbytes, iters, barrier)
    return {
        "available": True,
        "device_ids": device_ids,
        "bytes_per_copy": nbytes,
        "alltoall_gbps": alltoall,
        "single_pair_gbps": pair,
    }


def environment(device, ep) -> dict:
    nccl = torch.cuda.nccl.version()
    return {
        "hostname": socket.gethostname(),
        "gpu": torch.cuda.get_device_name(device),
        "gpu_count": torch.cuda.device_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "nccl": ".".join(map(str, nccl)) if isinstance(nccl, tuple) else str(nccl),
        "uccl_ep": getattr(ep, "__version__", None),
        "env": {name: os.environ.get(name) for name in bu.COMM_ENV},
    }


BYTE_DEFINITIONS = {
    "deepep": "recv_x.size(0) * hidden * 2 (all received tokens incl. self), * (1 + 4/128)/2 "
    "for FP8; combine counts the BF16 dispatch's recv bytes (what this rank sends back)",
    "payload": "recv tokens * bytes/token incl. self; FP8 bytes/token = hidden + 4*hidden/128",
    "nvlink": "(recv tokens - tokens from self) * bytes/token: received from peers (dispatch), "
    "sent back to peers (combine)",
    "nvlink_reverse": "(sent tokens - tokens to self) * bytes/token: the other direction",
    "ce": "outgoing bytes / time, all ranks copying to all peers at once",
}


def publish(args, settings: Settings, num_ranks: int, reports: list[dict], env: dict) -> None:
    """Print the summary and write the JSON file (rank 0)."""
    summary = summarize(reports)
    targets = evaluate_targets(summary, num_ranks, with_threshold=not args.share_gpus)
    bound = None
    if args.bound_json:
        with open(args.bound_json) as f:
            bound = evaluate_bound(summary, json.load(f), num_ranks)
    if args.share_gpus:
        print(f"\nSMOKE RUN: {SHARED_GPUS_NOTE}; the figures below are not NVLink bandwidth.")
    print_summary(summary, targets, reports)
    print_bound(bound, targets)
    if args.wait_profile:
        print_wait_profile(reports)
    doc = {
        "benchmark": "bench_intranode",
        "date": datetime.datetime.now(datetime.UTC).isoformat(),
        "command": sys.argv,
        "hardware": env,
        "settings": {
            **{k: v for k, v in vars(args).items() if k != "json"},
            "num_ranks": num_ranks,
            "num_nvl_bytes": NUM_NVL_BYTES,
            "handle_nvl_recv_tokens": NVL_RECV_TOKENS,
            "handle_nvl_chunk": HANDLE_CHUNK,
            "iterations": asdict(settings),
            "byte_definitions": BYTE_DEFINITIONS,
        },
        "best": summary,
        "targets": targets,
        "direct_write_bound": bound,
        "per_rank": reports,
    }
    path = args.json or f"bench_intranode_ep{num_ranks}.json"
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"\nwrote {path}")


# ---------------------------------------------------------------------------------------------
# Driver


def init_distributed(share_gpus: bool):
    """One rank per GPU under NCCL; with `share_gpus`, rank r on GPU r % num_gpus under gloo
    (NCCL refuses two ranks on one GPU)."""
    local_rank, num_gpus = int(os.environ["LOCAL_RANK"]), torch.cuda.device_count()
    if local_rank >= num_gpus and not share_gpus:
        raise ValueError(
            f"LOCAL_RANK={local_rank} but this host has {num_gpus} GPUs: run one rank per GPU "
            "(or --share-gpus for a smoke run)"
        )
    device = torch.device("cuda", local_rank % num_gpus)
    torch.cuda.set_device(device)
    timeout = datetime.timedelta(minutes=10)
    if share_gpus:
        dist.init_process_group("gloo", timeout=timeout)
    else:
        dist.init_process_group("nccl", device_id=device, timeout=timeout)
    return dist.get_rank(), dist.get_world_size(), device


def shared_num_sms(num_sms: int, num_ranks: int, device) -> int:
    """`num_sms`, capped so that the kernels of all ranks on one GPU are resident at once."""
    per_gpu = -(-num_ranks // min(num_ranks, torch.cuda.device_count()))
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return max(2, min(num_sms, sms // per_gpu // 2 * 2))


def import_uccl_ep():
    """uccl.ep as installed, else from this checkout's python/ folder."""
    try:
        return importlib.import_module("uccl.ep")
    except ImportError:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        sys.path.insert(0, os.path.join(root, "python"))
        return importlib.import_module("uccl.ep")


def run(args) -> int:
    settings = QUICK if args.quick else FULL
    with bu.phase("import uccl.ep"):
        ep = import_uccl_ep()
    with bu.phase("init_process_group"):
        rank, num_ranks, device = init_distributed(args.share_gpus)
    if num_ranks < 2 or args.num_experts % num_ranks:
        raise ValueError(f"need >= 2 ranks dividing --num-experts; got {num_ranks} ranks")
    if args.share_gpus:
        args.num_sms = shared_num_sms(args.num_sms, num_ranks, device)
        if rank == 0:
            print(f"{SHARED_GPUS_NOTE}: {args.num_sms} SMs per rank; smoke run only", flush=True)
    with bu.phase("setup: Buffer, get_dispatch_layout, first dispatch"):
        bench = IntranodeBench(args, settings, ep, rank, num_ranks, device)
    sweeps = {mode: bench.sweep(mode) for mode in MODES}
    profiles = None
    if args.wait_profile:
        with bu.phase("wait profile"):
            profiles = {m: bench.wait_profile(m, sweeps[m]["best_index"]) for m in MODES}
    with bu.phase("buffer.destroy"):
        bench.buffer.destroy()
    traffic = bench.traffic
    report = {
        "rank": rank,
        "device_index": device.index,
        "traffic": {"recv_from": traffic.recv_from, "send_to": traffic.send_to},
        "bytes": {mode: traffic.bytes_for(mode, args.hidden) for mode in MODES},
        "modes": sweeps,
        "nccl": measure_nccl(traffic, args, settings, device, bench.flush),
        "copy_engine": measure_copy_engine(rank, num_ranks, device, settings, args),
        "wait_profile": profiles,
    }
    with bu.phase("gather results"):
        reports = [None] * num_ranks
        dist.all_gather_object(reports, report)
    if rank == 0:
        with bu.phase("summary and JSON"):
            publish(args, settings, num_ranks, reports, environment(device, ep))
    dist.barrier()
    dist.destroy_process_group()
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    bu.set_comm_env()
    return bu.run_torchrun_main("bench_intranode", torch, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
