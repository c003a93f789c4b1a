"""The pieces of the MoE layer examples (moe_layer.py, moe_layer_ll.py) that do not communicate:
process start-up (one rank per GPU, or ranks sharing GPUs under CUDA MPS), the top-k softmax
router, the experts (a two-layer MLP each, weights from a shared seed) and the single-process
reference that applies every expert to every token.

Shapes: T tokens of this rank, H hidden, F expert hidden, E experts in total, K top-k.
"""

from __future__ import annotations

import datetime
import os
import sys

import torch
import torch.distributed as dist

# NVLink multicast stays off (as in the project's tests and benchmarks).
SAFE_ENV = {
    "NCCL_NVLS_ENABLE": "0",
    "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
    "NVSHMEM_DISABLE_NVLS": "1",
}
FP8_GROUP = 128  # channels per FP8 scale
FP8_MAX = 448.0


# ---------------------------------------------------------------------------------------------
# Start-up


def mps_running() -> bool:
    """Whether a CUDA MPS control daemon listens (its `control` pipe exists)."""
    pipes = os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps")
    return os.path.exists(os.path.join(pipes, "control"))


def init_distributed(share_gpus: bool) -> tuple[int, int, torch.device]:
    """Joins torchrun's process group: rank r on GPU r under NCCL, or with `share_gpus` on GPU
    r % num_gpus under gloo (NCCL refuses two ranks on one GPU). Returns (rank, ranks, device)."""
    for name, value in SAFE_ENV.items():
        os.environ.setdefault(name, value)
    if "LOCAL_RANK" not in os.environ:
        sys.exit(f"{sys.argv[0]}: launch with torchrun --nproc_per_node=N (see README.md)")
    if not torch.cuda.is_available():
        sys.exit(f"{sys.argv[0]}: CUDA is not available")
    local_rank, num_gpus = int(os.environ["LOCAL_RANK"]), torch.cuda.device_count()
    if local_rank >= num_gpus and not share_gpus:
        sys.exit(
            f"{sys.argv[0]}: rank {local_rank} but {num_gpus} GPUs: pass --share-gpus to put "
            "several ranks on one GPU (CUDA MPS must be running)"
        )
    device = torch.device("cuda", local_rank % num_gpus)
    torch.cuda.set_device(device)
    timeout = datetime.timedelta(minutes=5)
    if share_gpus:
        dist.init_process_group("gloo", timeout=timeout)
    else:
        dist.init_process_group("nccl", device_id=device, timeout=timeout)
    rank, num_ranks = dist.get_rank(), dist.get_world_size()
    if share_gpus and rank == 0 and num_ranks > num_gpus and not mps_running():
        print(
            "warning: ranks share a GPU but no CUDA MPS daemon was found; without it their "
            "kernels take turns and the calls time out (README.md: starting MPS)",
            flush=True,
        )
    return rank, num_ranks, device


def shared_num_sms(default: int, num_ranks: int, device: torch.device) -> int:
    """SMs per kernel so that the kernels of every rank on one GPU are resident at once."""
    per_gpu = -(-num_ranks // min(num_ranks, torch.cuda.device_count()))
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return max(2, min(default, sms // per_gpu // 2 * 2))


def import_deep_ep():
    """uccl-ep's drop-in `deep_ep` package, imported as a DeepEP user does."""
    try:
        import deep_ep
    except ImportError as e:
        sys.exit(f"cannot import deep_ep ({e}): install uccl-ep (pip install . at the repo root)")
    return deep_ep


# ---------------------------------------------------------------------------------------------
# The layer


def _generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)


class Experts:
    """Expert e: y = silu(x @ w1[e]) @ w2[e], w1 [H, F], w2 [F, H] float32, drawn on the CPU
    from seed (seed, e) so that any set of experts is the same on every process."""

    def __init__(self, ids, hidden: int, ffn: int, seed: int, device: torch.device):
        self.weights = {}
        for e in ids:
            gen = _generator(seed * 100_003 + e + 1)
            w1 = torch.randn(hidden, ffn, generator=gen) / hidden**0.5
            w2 = torch.randn(ffn, hidden, generator=gen) / ffn**0.5
            self.weights[e] = (w1.to(device), w2.to(device))

    def __call__(self, e: int, x: torch.Tensor) -> torch.Tensor:
        """float32 [n, H] -> float32 [n, H]."""
        w1, w2 = self.weights[e]
        return torch.nn.functional.silu(x @ w1) @ w2


def router_weight(hidden: int, num_experts: int, seed: int, device: torch.device):
    """float32 [H, E], the same on every rank."""
    gen = _generator(seed)
    return (torch.randn(hidden, num_experts, generator=gen) / hidden**0.5).to(device)


def route(x: torch.Tensor, w_router: torch.Tensor, num_topk: int):
    """Top-k softmax gating: softmax over the E experts' logits, the K largest, renormalised
    to sum to 1. Returns (topk_idx int64 [T, K], topk_weights float32 [T, K])."""
    probs = (x.float() @ w_router).softmax(dim=-1)
    weights, idx = probs.topk(num_topk, dim=-1)
    return idx.contiguous(), (weights / weights.sum(dim=-1, keepdim=True)).contiguous()


def tokens(rank: int, num_tokens: int, hidden: int, seed: int, device: torch.device):
    """This rank's input x bf16 [T, H] (seed (seed, rank))."""
    gen = _generator(seed * 7_919 + rank + 1)
    return torch.randn(num_tokens, hidden, generator=gen).to(device, torch.bfloat16)


def fp8_round_trip(x: torch.Tensor) -> torch.Tensor:
    """float32 [T, H]: x quantised to E4M3 per token and 128 channels (scale = amax / 448, amax
    floored at 1e-4) and dequantised: what an FP8 low-latency dispatch delivers."""
    t, h = x.shape
    groups = x.float().view(t, h // FP8_GROUP, FP8_GROUP)
    amax = groups.abs().amax(dim=-1, keepdim=True).clamp(min=1e-4)
    values = (groups * (FP8_MAX / amax)).to(torch.float8_e4m3fn).float()
    return (values * (amax / FP8_MAX)).view(t, h)


def reference(x: torch.Tensor, topk_idx, topk_weights, experts: Experts) -> torch.Tensor:
    """The layer in one process with every expert: out[t] = sum_k w[t, k] * expert_{idx[t, k]}
    (x[t]), float32 [T, H] (`x` float32 or bf16)."""
    xf, out = x.float(), torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    for k in range(topk_idx.size(1)):
        for e in topk_idx[:, k].unique().tolist():
            rows = torch.nonzero(topk_idx[:, k] == e).flatten()
            out.index_add_(0, rows, topk_weights[rows, k : k + 1] * experts(e, xf[rows]))
    return out


def compare(out: torch.Tensor, ref: torch.Tensor, tolerance: float) -> dict:
    """Relative L2 error and largest absolute difference of `out` against `ref`."""
    diff = out.float() - ref
    rel = float(diff.norm() / ref.norm().clamp(min=1e-12))
    return {"rel_err": rel, "max_abs": float(diff.abs().max()), "ok": rel < tolerance}


def report(name: str, rank: int, num_ranks: int, mine: dict, tolerance: float) -> int:
    """Gathers every rank's comparison; rank 0 prints PASS or FAIL. Returns the exit status."""
    results = [None] * num_ranks
    dist.all_gather_object(results, {"rank": rank, **mine})
    ok = all(r["ok"] for r in results)
    if rank == 0:
        worst = max(results, key=lambda r: r["rel_err"])
        print(
            f"{'PASS' if ok else 'FAIL'}: {name}, EP{num_ranks}: largest relative L2 error "
            f"{worst['rel_err']:.2e} (rank {worst['rank']}, tolerance {tolerance:g}), largest "
            f"absolute difference {max(r['max_abs'] for r in results):.3e}",
            flush=True,
        )
    return 0 if ok else 1
