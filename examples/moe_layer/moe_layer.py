"""A minimal expert-parallel MoE layer in plain PyTorch on `deep_ep.Buffer` (uccl-ep's drop-in
package), normal (prefill / training) mode: router -> get_dispatch_layout + dispatch -> one MLP
per local expert on the received tokens -> combine. The output is checked against the same
layer run in one process with every expert (same weights from a shared seed).

    torchrun --nproc_per_node=2 examples/moe_layer/moe_layer.py [--share-gpus]

README.md beside this file gives the commands (EP 2 and EP 4, ranks sharing one GPU).
"""

from __future__ import annotations

import argparse
import sys


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="MoE layer on deep_ep.Buffer (normal mode), checked")
    p.add_argument("--num-tokens", type=int, default=512, help="tokens per rank (512)")
    p.add_argument("--hidden", type=int, default=1024, help="model hidden size (1024)")
    p.add_argument("--ffn", type=int, default=512, help="expert MLP hidden size (512)")
    p.add_argument("--num-experts", type=int, default=16, help="experts in total (16)")
    p.add_argument("--num-topk", type=int, default=4, help="experts per token (4)")
    p.add_argument("--iters", type=int, default=3, help="forward passes, each checked (3)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and tokens")
    p.add_argument("--tolerance", type=float, default=1e-2, help="relative L2 error allowed")
    p.add_argument(
        "--share-gpus",
        action="store_true",
        help="ranks share GPUs (rank r on GPU r %% num_gpus; CUDA MPS must be running)",
    )
    args = p.parse_args(argv)
    sizes = ("num_tokens", "hidden", "ffn", "num_experts", "num_topk", "iters")
    bad = [f"--{n.replace('_', '-')} {getattr(args, n)}" for n in sizes if getattr(args, n) <= 0]
    if bad:
        p.error(f"must be positive: {', '.join(bad)}")
    if args.hidden % 8:
        p.error(f"--hidden {args.hidden} must be a multiple of 8 (rows move in 16-byte units)")
    if args.num_topk > args.num_experts:
        p.error(f"--num-topk {args.num_topk} > --num-experts {args.num_experts}")
    return args


def moe_forward(buffer, x, topk_idx, topk_weights, num_experts: int, experts, first: int):
    """One layer on this rank: x bf16 [T, H] with its routing -> bf16 [T, H]."""
    import torch

    per_rank, _, per_expert, in_rank, _ = buffer.get_dispatch_layout(topk_idx, num_experts)
    recv_x, recv_idx, recv_weights, counts, handle, _ = buffer.dispatch(
        x,
        num_tokens_per_rank=per_rank,
        is_token_in_rank=in_rank,
        num_tokens_per_expert=per_expert,
        topk_idx=topk_idx,
        topk_weights=topk_weights,
    )
    # recv_idx [N, K]: local expert ids (-1: an expert of another rank); a received token goes
    # through each of its local experts, weighted, summed per token.
    y = torch.zeros(recv_x.shape, dtype=torch.float32, device=recv_x.device)
    for local, count in enumerate(counts):
        token, slot = torch.nonzero(recv_idx == local, as_tuple=True)
        if token.numel() != count:
            raise RuntimeError(f"expert {first + local}: {token.numel()} rows, list says {count}")
        if count:
            weight = recv_weights[token, slot].unsqueeze(1)
            y.index_add_(0, token, weight * experts(first + local, recv_x[token].float()))
    combined_x, _, _ = buffer.combine(y.bfloat16(), handle)  # sums the ranks' partial outputs
    return combined_x


def run(args) -> int:
    import moe
    import torch.distributed as dist

    rank, num_ranks, device = moe.init_distributed(args.share_gpus)
    if args.num_experts % num_ranks:
        sys.exit(f"--num-experts {args.num_experts} is not a multiple of {num_ranks} ranks")
    deep_ep = moe.import_deep_ep()
    if args.share_gpus:
        deep_ep.Buffer.set_num_sms(moe.shared_num_sms(deep_ep.Buffer.num_sms, num_ranks, device))
    # DeepEP's recipe: the NVLink buffer that the default dispatch and combine configs need.
    configs = (
        deep_ep.Buffer.get_dispatch_config(num_ranks),
        deep_ep.Buffer.get_combine_config(num_ranks),
    )
    num_nvl_bytes = max(c.get_nvl_buffer_size_hint(args.hidden * 2, num_ranks) for c in configs)
    buffer = deep_ep.Buffer(dist.group.WORLD, num_nvl_bytes=num_nvl_bytes, explicitly_destroy=True)

    local = args.num_experts // num_ranks
    first = rank * local
    experts = moe.Experts(range(first, first + local), args.hidden, args.ffn, args.seed, device)
    w_router = moe.router_weight(args.hidden, args.num_experts, args.seed, device)
    all_experts = moe.Experts(range(args.num_experts), args.hidden, args.ffn, args.seed, device)
    worst = {"rel_err": 0.0, "max_abs": 0.0, "ok": True}
    for it in range(args.iters):
        x = moe.tokens(rank, args.num_tokens, args.hidden, args.seed + it, device)
        topk_idx, topk_weights = moe.route(x, w_router, args.num_topk)
        out = moe_forward(buffer, x, topk_idx, topk_weights, args.num_experts, experts, first)
        ref = moe.reference(x, topk_idx, topk_weights, all_experts)
        got = moe.compare(out, ref, args.tolerance)
        if got["rel_err"] >= worst["rel_err"]:
            worst = got
    buffer.destroy()
    name = "normal-mode MoE layer (dispatch / combine)"
    status = moe.report(name, rank, num_ranks, worst, args.tolerance)
    dist.destroy_process_group()
    return status


def main(argv=None) -> int:
    args = parse_args(argv)  # before torch is imported: --help works without it
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
