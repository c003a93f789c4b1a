"""bench/test_internode.py --test-ll-compatibility: a low-latency dispatch + combine on the
internode Buffer (built with low_latency_mode=True), checked against pure torch as DeepEP's
test_low_latency.py checks it, at DeepEP's compatibility shapes (16 tokens, hidden 5120, 256
experts, top-9): recv_count, the source tokens of every (expert, source) block, the rows (BF16 bit
for bit, FP8 cast back within a bound) and the weighted combine of the rows as received. Every
rank rebuilds every rank's inputs from the seed.
"""

from __future__ import annotations

from types import SimpleNamespace

try:
    import torch
except ImportError:  # the CLI works without torch
    torch = None

from _internode_check import Checks, calc_diff, cast_back, generator

LL = SimpleNamespace(num_tokens=16, hidden=5120, num_experts=256, num_topk=9)
COMBINE_TOLERANCE = {False: 1e-5, True: 9e-4}  # DeepEP's calc_diff bounds: BF16, FP8 dispatch
FP8_ROWS_TOLERANCE = 1e-3  # received FP8 rows cast back against x (quantisation alone: ~2e-4)


def ll_inputs(seed: int, src: int, device):
    """Rank `src`'s low-latency (x BF16 [16, 5120], topk_idx [16, 9] with ~7 % -1, weights)."""
    gen, c = generator(seed, src, 2, device), LL
    x = torch.randn((c.num_tokens, c.hidden), generator=gen, device=device).bfloat16()
    scores = torch.randn((c.num_tokens, c.num_experts), generator=gen, device=device).abs() + 1
    idx = scores.topk(c.num_topk, dim=-1).indices
    drop = torch.rand(idx.shape, generator=gen, device=device) < 0.07
    weights = torch.randn(idx.shape, generator=gen, device=device).abs()
    return x, idx.masked_fill(drop, -1), weights


def check_low_latency(checks: Checks, buffer, rank, num_ranks, seed: int, use_fp8: bool, device):
    """low_latency_dispatch (recv_count, every (expert, source) block's tokens, BF16 rows bit
    for bit) and low_latency_combine of the rows as received (DeepEP's calc_diff bound against
    x times the sum of its valid weights) on `buffer`."""
    c, inputs = LL, [ll_inputs(seed, s, device) for s in range(num_ranks)]
    x, idx, weights = inputs[rank]
    recv, count, handle, _, _ = buffer.low_latency_dispatch(
        x, idx, c.num_tokens, c.num_experts, use_fp8=use_fp8, async_finish=False
    )
    per_rank = c.num_experts // num_ranks
    experts = rank * per_rank + torch.arange(per_rank, device=device)
    chosen = [(i.unsqueeze(-1) == experts).any(1) for _, i, _ in inputs]  # [T, E/R] per source
    checks.same("recv_count", count, sum(m.sum(0) for m in chosen))
    info, ranges = handle[0].cpu().long(), handle[1].cpu()
    bad, where = [], []  # (expert, row, source, token) of every received row
    for e in range(per_rank):
        for s in range(num_ranks):
            begin, num = int(ranges[e, s] >> 32), int(ranges[e, s] & 0xFFFFFFFF)
            tokens = info[e, begin : begin + num]
            if not torch.equal(
                tokens.sort().values, torch.nonzero(chosen[s][:, e]).flatten().cpu()
            ):
                bad.append(f"expert {e} from rank {s}")
            where += [(e, begin + j, s, int(t)) for j, t in enumerate(tokens)]
    if checks.ok("tokens of each (expert, source) block", not bad, ", ".join(bad[:5])) and where:
        e, row, s, t = (torch.tensor(v, device=device) for v in zip(*where))
        want = torch.stack([inp[0] for inp in inputs])[s, t]
        got = recv[0][e, row] if use_fp8 else recv[e, row]
        if use_fp8:
            diff = calc_diff(cast_back(got, recv[1][e, row]), want)
            checks.ok("rows (FP8)", diff < FP8_ROWS_TOLERANCE, f"calc_diff {diff:.3g}")
        else:
            checks.same("rows", got, want)
    y = cast_back(*recv) if use_fp8 else recv
    combined, _, _ = buffer.low_latency_combine(y, idx, weights, handle)
    want = x.float() * weights.masked_fill(idx < 0, 0).sum(1, keepdim=True)
    diff = calc_diff(combined, want)
    limit = COMBINE_TOLERANCE[use_fp8]
    checks.ok("combined_x", diff < limit, f"calc_diff {diff:.3g} (limit {limit:g})")
