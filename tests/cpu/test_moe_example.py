"""The MoE layer examples (examples/moe_layer/) on the CPU: their per-rank layer code
(moe_forward, moe_decode) runs in one thread per rank against stand-in Buffers that move the
tokens as DeepEP's dispatch / combine and low-latency calls define it, and must agree with the
examples' single-process reference within their tolerance (and must not with a wrong expert).
Needs torch (skipped without it); the real Buffer runs on the GPU machine (README.md there)."""

from __future__ import annotations

import os
import sys
import threading
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples", "moe_layer"))
import moe  # noqa: E402
import moe_layer  # noqa: E402
import moe_layer_ll  # noqa: E402

CPU = torch.device("cpu")


class Exchange:
    """all_gather between the rank threads of one simulated EP group."""

    def __init__(self, num_ranks: int) -> None:
        self.barrier = threading.Barrier(num_ranks, timeout=60)
        self.slots = [None] * num_ranks

    def all_gather(self, rank: int, obj):
        self.slots[rank] = obj
        self.barrier.wait()
        out = list(self.slots)
        self.barrier.wait()
        return out


class NormalBuffer:
    """Stand-in for the normal mode: rows grouped by source rank, then token order; recv_topk_idx
    local ids or -1; combine sums every rank's returned row of a token."""

    def __init__(self, rank: int, num_ranks: int, ex: Exchange) -> None:
        self.rank, self.num_ranks, self.ex = rank, num_ranks, ex

    def get_dispatch_layout(self, topk_idx, num_experts: int):
        local = num_experts // self.num_ranks
        owner = topk_idx // local
        in_rank = torch.stack([(owner == r).any(1) for r in range(self.num_ranks)], dim=1)
        per_expert = torch.bincount(topk_idx.flatten(), minlength=num_experts).int()
        self.local = local
        return in_rank.sum(0).int(), None, per_expert, in_rank, None

    def dispatch(self, x, num_tokens_per_rank, is_token_in_rank, num_tokens_per_expert, **kw):
        self.num_tokens = x.size(0)
        inputs = (x, kw["topk_idx"], kw["topk_weights"], is_token_in_rank)
        everyone = self.ex.all_gather(self.rank, inputs)
        first = self.rank * self.local
        rows = [torch.nonzero(in_rank[:, self.rank]).flatten() for *_, in_rank in everyone]
        recv_x = torch.cat([e[0][r] for e, r in zip(everyone, rows)])
        idx = torch.cat([e[1][r] for e, r in zip(everyone, rows)])
        weights = torch.cat([e[2][r] for e, r in zip(everyone, rows)])
        mine = (idx >= first) & (idx < first + self.local)
        recv_idx = torch.where(mine, idx - first, torch.full_like(idx, -1))
        recv_w = torch.where(mine, weights, torch.zeros_like(weights))
        counts = [int((recv_idx == e).sum()) for e in range(self.local)]
        return recv_x, recv_idx, recv_w, counts, rows, None

    def combine(self, y, handle):
        everyone = self.ex.all_gather(self.rank, (y, handle))
        out = torch.zeros(self.num_tokens, y.size(1))
        for y_d, rows_d in everyone:
            start = sum(r.numel() for r in rows_d[: self.rank])
            mine = rows_d[self.rank]
            out.index_add_(0, mine, y_d[start : start + mine.numel()].float())
        return out.bfloat16(), None, None


class LowLatencyBuffer:
    """Stand-in for the low-latency mode: [E_local, R*T, H] rows per local expert (source rank,
    then token order), recv_count, FP8 with per-128-channel float32 scales; the combine sums
    weight * expert row over each token's top-k."""

    def __init__(self, rank: int, num_ranks: int, ex: Exchange) -> None:
        self.rank, self.num_ranks, self.ex = rank, num_ranks, ex

    def low_latency_dispatch(self, x, topk_idx, t: int, num_experts: int, use_fp8, **kw):
        everyone = self.ex.all_gather(self.rank, (x, topk_idx))
        local = num_experts // self.num_ranks
        rows = torch.zeros(local, self.num_ranks * t, x.size(1), dtype=torch.bfloat16)
        where = []  # per local expert: [(source, token)]
        for e in range(local):
            pairs = [
                (s, tok)
                for s, (_, idx) in enumerate(everyone)
                for tok in range(idx.size(0))
                if bool((idx[tok] == self.rank * local + e).any())
            ]
            for i, (s, tok) in enumerate(pairs):
                rows[e, i] = everyone[s][0][tok]
            where.append(pairs)
        count = torch.tensor([len(p) for p in where], dtype=torch.int32)
        recv = rows
        if use_fp8:
            g = rows.float().view(local, -1, x.size(1) // 128, 128)
            amax = g.abs().amax(-1, keepdim=True).clamp(min=1e-4)
            data = (g * (448.0 / amax)).to(torch.float8_e4m3fn).view(rows.shape)
            recv = (data, (amax / 448.0).squeeze(-1))
        hook = (lambda: None) if kw.get("return_recv_hook") else None
        return recv, count, (where, local), None, hook

    def low_latency_combine(self, y, topk_idx, topk_weights, handle, **kw):
        everyone = self.ex.all_gather(self.rank, (y, handle))
        local = handle[1]
        out = torch.zeros(topk_idx.size(0), y.size(-1))
        for tok in range(topk_idx.size(0)):
            for k in range(topk_idx.size(1)):
                g = int(topk_idx[tok, k])
                y_d, (where, _) = everyone[g // local]
                row = where[g % local].index((self.rank, tok))
                out[tok] += topk_weights[tok, k] * y_d[g % local, row].float()
        hook = (lambda: None) if kw.get("return_recv_hook") else None
        return out.bfloat16(), None, hook


def run_ranks(num_ranks: int, body) -> list:
    """body(rank, exchange) in one thread per rank; returns each rank's result."""
    ex, results, errors = Exchange(num_ranks), [None] * num_ranks, []

    def target(rank: int) -> None:
        try:
            results[rank] = body(rank, ex)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
            ex.barrier.abort()

    threads = [threading.Thread(target=target, args=(r,)) for r in range(num_ranks)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    return results


def layer(num_ranks: int, ll: bool, dispatch: str = "bf16", wrong_seed: bool = False):
    """Each rank's comparison of one forward pass with the reference."""
    args = SimpleNamespace(num_tokens=16, hidden=2048 if ll else 256, ffn=64, num_experts=8)
    args.num_topk, args.dispatch, args.hook, seed = 3, dispatch, True, 5
    local = args.num_experts // num_ranks

    def body(rank: int, ex: Exchange):
        first = rank * local
        seed_here = seed + 1 if wrong_seed and rank == 1 else seed
        experts = moe.Experts(range(first, first + local), args.hidden, args.ffn, seed_here, CPU)
        w_router = moe.router_weight(args.hidden, args.num_experts, seed, CPU)
        x = moe.tokens(rank, args.num_tokens, args.hidden, seed, CPU)
        idx, weights = moe.route(x, w_router, args.num_topk)
        if ll:
            buffer = LowLatencyBuffer(rank, num_ranks, ex)
            out = moe_layer_ll.moe_decode(buffer, x, idx, weights, args, experts, first)
            x = moe.fp8_round_trip(x) if dispatch == "fp8" else x
        else:
            buffer = NormalBuffer(rank, num_ranks, ex)
            out = moe_layer.moe_forward(buffer, x, idx, weights, args.num_experts, experts, first)
        everyone = moe.Experts(range(args.num_experts), args.hidden, args.ffn, seed, CPU)
        return moe.compare(out, moe.reference(x, idx, weights, everyone), 1e-2)

    return run_ranks(num_ranks, body)


@pytest.mark.parametrize("num_ranks", [2, 4])
def test_normal_layer_matches_the_reference(num_ranks):
    for result in layer(num_ranks, ll=False):
        assert result["ok"] and result["rel_err"] < 5e-3, result


@pytest.mark.parametrize(("num_ranks", "dispatch"), [(2, "bf16"), (2, "fp8"), (4, "fp8")])
def test_low_latency_layer_matches_the_reference(num_ranks, dispatch):
    for result in layer(num_ranks, ll=True, dispatch=dispatch):
        assert result["ok"] and result["rel_err"] < 5e-3, result


@pytest.mark.parametrize("ll", [False, True])
def test_a_wrong_expert_fails_the_check(ll):
    results = layer(2, ll=ll, wrong_seed=True)
    assert not all(r["ok"] for r in results)
