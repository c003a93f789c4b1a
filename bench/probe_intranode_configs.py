"""Times cached dispatch and combine over chunk / ring sizes beyond DeepEP's sweep.

    torchrun --nproc_per_node=N bench/probe_intranode_configs.py [--num-sms 24]

Prints one line per (mode, num_sms, nvl_send, nvl_recv): median time of 20 calls (CUDA events,
after 5 warm-ups) and GB/s DeepEP-counted (received BF16 bytes incl. self / time).
"""

import argparse
import os

import torch
import torch.distributed as dist


def timed(fn, iters=20, warmup=5):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        dist.barrier()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3)
    times.sort()
    return times[len(times) // 2]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--num-sms", type=int, nargs="+", default=[24])
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--hidden", type=int, default=7168)
    args = p.parse_args()
    for k in ("NCCL_NVLS_ENABLE", "TORCH_SYMM_MEM_DISABLE_MULTICAST", "NVSHMEM_DISABLE_NVLS"):
        os.environ.setdefault(k, "0" if k == "NCCL_NVLS_ENABLE" else "1")
    dist.init_process_group("nccl")
    rank = dist.get_rank()
    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)))
    import uccl.ep as ep

    buf = ep.Buffer(dist.group.WORLD, int(2e9), 0, explicitly_destroy=True)
    torch.manual_seed(rank)
    x = torch.randn(args.tokens, args.hidden, dtype=torch.bfloat16, device="cuda")
    scores = torch.randn(args.tokens, 256, device="cuda").abs() + 1
    topk = torch.topk(scores, 8, dim=-1).indices.to(torch.int64)
    per_rank, _, per_expert, in_rank, _ = buf.get_dispatch_layout(topk, 256)
    for sms in args.num_sms:
        for send, recv in ((8, 256), (24, 256), (32, 512), (64, 512), (96, 1024), (128, 1024)):
            cfg = ep.Config(sms, send, recv)
            recv_x, _, _, _, handle, _ = buf.dispatch(
                x,
                num_tokens_per_rank=per_rank,
                is_token_in_rank=in_rank,
                num_tokens_per_expert=per_expert,
                config=cfg,
            )
            nbytes = recv_x.size(0) * args.hidden * 2
            t_d = timed(lambda h=handle, c=cfg: buf.dispatch(x, handle=h, config=c))
            line = f"rank {rank} sms {sms} send {send:3d} recv {recv:4d}: cached dispatch "
            line += f"{t_d:7.1f} us {nbytes / t_d / 1e3:6.1f} GB/s"
            if recv >= send + 24:
                t_c = timed(lambda r=recv_x, h=handle, c=cfg: buf.combine(r, h, config=c))
                line += f" | combine {t_c:7.1f} us {nbytes / t_c / 1e3:6.1f} GB/s"
            print(line, flush=True)
    buf.destroy()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
