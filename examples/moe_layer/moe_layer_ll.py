"""The decode-time variant of moe_layer.py: the same MoE layer on `deep_ep.Buffer`'s low-latency
mode. low_latency_dispatch puts each (token, expert) pair into the owning rank's per-expert
layout recv_x [E_local, ranks * T, H] with recv_count [E_local] valid rows per expert (BF16, or
FP8 with per-128-channel scales); each local expert runs on its valid rows; low_latency_combine
sends the rows back and sums them with the top-k weights. Checked against the layer run in one
process with every expert (for FP8, on the FP8-rounded tokens the dispatch delivers).

    torchrun --nproc_per_node=2 examples/moe_layer/moe_layer_ll.py [--share-gpus] [--dispatch bf16]

README.md beside this file gives the commands (EP 2 and EP 4, ranks sharing one GPU).
"""

from __future__ import annotations

import argparse
import sys

LL_HIDDEN_SIZES = (2048, 2560, 3072, 4096, 5120, 6144, 7168, 8192)  # the LL kernels' sizes
LL_MAX_TOPK = 11


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="MoE layer on deep_ep.Buffer (low-latency mode)")
    p.add_argument("--num-tokens", type=int, default=32, help="decode tokens per rank (32)")
    p.add_argument("--hidden", type=int, default=2048, help=f"one of {LL_HIDDEN_SIZES} (2048)")
    p.add_argument("--ffn", type=int, default=512, help="expert MLP hidden size (512)")
    p.add_argument("--num-experts", type=int, default=16, help="experts in total (16)")
    p.add_argument("--num-topk", type=int, default=4, help=f"experts per token (<= {LL_MAX_TOPK})")
    p.add_argument("--dispatch", choices=("fp8", "bf16"), default="fp8", help="dispatch dtype")
    p.add_argument(
        "--hook",
        action="store_true",
        help="return_recv_hook=True: each call launches its send phase only; hook() receives "
        "(the decode overlap pattern)",
    )
    p.add_argument("--iters", type=int, default=3, help="decode steps, each checked (3)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and tokens")
    p.add_argument("--tolerance", type=float, default=1e-2, help="relative L2 error allowed")
    p.add_argument(
        "--share-gpus",
        action="store_true",
        help="ranks share GPUs (rank r on GPU r %% num_gpus; CUDA MPS must be running)",
    )
    args = p.parse_args(argv)
    sizes = ("num_tokens", "ffn", "num_experts", "num_topk", "iters")
    bad = [f"--{n.replace('_', '-')} {getattr(args, n)}" for n in sizes if getattr(args, n) <= 0]
    if bad:
        p.error(f"must be positive: {', '.join(bad)}")
    if args.hidden not in LL_HIDDEN_SIZES:
        p.error(f"--hidden {args.hidden} must be one of {LL_HIDDEN_SIZES}")
    if args.num_topk > min(LL_MAX_TOPK, args.num_experts):
        p.error(f"--num-topk {args.num_topk} must be <= {LL_MAX_TOPK} and <= --num-experts")
    return args


def expert_rows(recv_x, fp8: bool):
    """float32 [E_local, N, H] of what low_latency_dispatch returned: BF16 rows as they are, FP8
    rows times their scale (scales [E_local, N, H / 128], one per 128 channels)."""
    if not fp8:
        return recv_x.float()
    data, scales = recv_x
    e, n, h = data.shape
    groups = data.float().view(e, n, h // 128, 128) * scales.float().unsqueeze(-1)
    return groups.view(e, n, h)


def moe_decode(buffer, x, topk_idx, topk_weights, args, experts, first: int):
    """One decode step on this rank: x bf16 [T, H] with its routing -> bf16 [T, H]."""
    import torch

    fp8 = args.dispatch == "fp8"
    recv_x, recv_count, handle, _, hook = buffer.low_latency_dispatch(
        x, topk_idx, args.num_tokens, args.num_experts, use_fp8=fp8, return_recv_hook=args.hook
    )
    if args.hook:
        hook()  # other work could run between the send phase and this receive phase
    rows = expert_rows(recv_x, fp8)
    y = torch.zeros(rows.shape, dtype=torch.bfloat16, device=rows.device)
    for local, count in enumerate(recv_count.tolist()):  # rows [0, count) are valid
        if count:
            y[local, :count] = experts(first + local, rows[local, :count]).bfloat16()
    combined_x, _, hook = buffer.low_latency_combine(
        y, topk_idx, topk_weights, handle, return_recv_hook=args.hook
    )
    if args.hook:
        hook()
    return combined_x


def run(args) -> int:
    import moe
    import torch.distributed as dist

    rank, num_ranks, device = moe.init_distributed(args.share_gpus)
    if args.num_experts % num_ranks or args.num_tokens * num_ranks % 4:
        sys.exit(
            f"need --num-experts a multiple of {num_ranks} ranks and --num-tokens * ranks a "
            f"multiple of 4; got {args.num_experts} experts, {args.num_tokens} tokens"
        )
    deep_ep = moe.import_deep_ep()
    if args.share_gpus:
        deep_ep.Buffer.set_num_sms(moe.shared_num_sms(deep_ep.Buffer.num_sms, num_ranks, device))
    local = args.num_experts // num_ranks
    num_rdma_bytes = deep_ep.Buffer.get_low_latency_rdma_size_hint(
        args.num_tokens, args.hidden, num_ranks, args.num_experts
    )
    buffer = deep_ep.Buffer(
        dist.group.WORLD,
        num_rdma_bytes=num_rdma_bytes,
        low_latency_mode=True,
        num_qps_per_rank=local,
        explicitly_destroy=True,
    )
    first = rank * local
    experts = moe.Experts(range(first, first + local), args.hidden, args.ffn, args.seed, device)
    w_router = moe.router_weight(args.hidden, args.num_experts, args.seed, device)
    all_experts = moe.Experts(range(args.num_experts), args.hidden, args.ffn, args.seed, device)
    worst = {"rel_err": 0.0, "max_abs": 0.0, "ok": True}
    for it in range(args.iters):
        x = moe.tokens(rank, args.num_tokens, args.hidden, args.seed + it, device)
        topk_idx, topk_weights = moe.route(x, w_router, args.num_topk)
        out = moe_decode(buffer, x, topk_idx, topk_weights, args, experts, first)
        delivered = moe.fp8_round_trip(x) if args.dispatch == "fp8" else x
        ref = moe.reference(delivered, topk_idx, topk_weights, all_experts)
        got = moe.compare(out, ref, args.tolerance)
        if got["rel_err"] >= worst["rel_err"]:
            worst = got
    buffer.destroy()
    hooks = ", receive hooks" if args.hook else ""
    name = f"low-latency MoE layer ({args.dispatch.upper()} dispatch{hooks})"
    status = moe.report(name, rank, num_ranks, worst, args.tolerance)
    dist.destroy_process_group()
    return status


def main(argv=None) -> int:
    args = parse_args(argv)  # before torch is imported: --help works without it
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
