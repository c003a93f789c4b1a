"""Independent pure-torch reference for the DeepEP V1 low-latency (LL) mode: FP8 quantisation
as the LL dispatch does it in-kernel, UE8M0 scale packing, the expected received (source rank,
token) multisets and counts per local expert, and the weighted combine. Never calls uccl.

Names: R ranks, T = num_max_dispatch_tokens_per_rank, H hidden, S = H / 128 scale groups,
K top-k, E local experts (num_experts / R), N = R * T rows per local expert. Global expert g
lives on rank g // E as local expert g % E.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

try:
    from .reference import calc_diff  # noqa: F401 - DeepEP's dissimilarity, re-exported
except ImportError:  # run as a script: the siblings are importable from sys.path[0]
    from reference import calc_diff  # noqa: F401

FP8_MAX = 448.0
GROUP = 128  # channels per scale
UE8M0_PACK = 4  # scale bytes per int32
AMAX_FLOOR = 1e-4
LOW32 = 0xFFFFFFFF
# Dispatch formats: the keyword arguments of low_latency_dispatch they stand for.
FORMATS = {
    "bf16": {"use_fp8": False},
    "fp8": {"use_fp8": True},
    "fp8_round": {"use_fp8": True, "round_scale": True},
    "fp8_ue8m0": {"use_fp8": True, "round_scale": True, "use_ue8m0": True},
}


def is_fp8(fmt: str) -> bool:
    return FORMATS[fmt].get("use_fp8", False)


# ----------------------------------------------------------------------------- FP8 formats


def pow2_ceil(t: torch.Tensor) -> torch.Tensor:
    """2^ceil(log2(t)) for positive normal float32 `t`, exactly: from the exponent bits, plus
    one when any mantissa bit is set (what DeepEP's fast_log2_ceil computes)."""
    bits = t.float().contiguous().view(torch.int32)
    exponent = (bits >> 23) & 0xFF
    exponent = exponent + ((bits & 0x7FFFFF) != 0).to(torch.int32)
    return (exponent << 23).view(torch.float32)


def quantize_fp8(x: torch.Tensor, round_scale: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token, per-128-channel E4M3 quantisation of bf16 `x` [..., H].

    amax = max(|x|) of the group, floored at 1e-4; scale_inv = amax / 448, or with
    `round_scale` the power of two 2^ceil(log2(amax / 448)); value = satfinite_e4m3(x / scale)
    (x * (448 / amax) without `round_scale`). Returns (float8_e4m3fn [..., H], float32
    scale_inv [..., S]); dequantise with `dequantize`.
    """
    *lead, hidden = x.shape
    if hidden % GROUP:
        raise ValueError(f"hidden {hidden} is not a multiple of {GROUP}")
    groups = x.float().reshape(*lead, hidden // GROUP, GROUP)
    amax = groups.abs().amax(dim=-1).clamp(min=AMAX_FLOOR)
    # Divisions in float64 then rounded once to float32: IEEE-exact, as the kernel's (torch's
    # float32 division on the GPU may differ from it by one ulp).
    if round_scale:
        scale_inv = pow2_ceil((amax.double() / FP8_MAX).float())
        scale = 1.0 / scale_inv  # exact: a power of two
    else:
        scale_inv = (amax.double() / FP8_MAX).float()
        scale = (FP8_MAX / amax.double()).float()
    values = round_e4m3(groups * scale.unsqueeze(-1))
    return values.to(torch.float8_e4m3fn).reshape(*lead, hidden), scale_inv


def round_e4m3(v: torch.Tensor) -> torch.Tensor:
    """float32 `v` rounded to the nearest E4M3 value, ties to even, saturated at +-448 (what the
    GPU's cvt.rn.satfinite does; torch's float8 conversion rounds some ties differently). The
    result is exactly representable, so converting it to float8_e4m3fn is exact."""
    v = v.float()
    mag = v.abs()
    # Spacing of E4M3 values around |v|: 2^(e - 3) for |v| in [2^e, 2^(e+1)), e >= -6
    # (subnormals share the spacing 2^-9).
    exponent = torch.floor(torch.log2(mag.clamp(min=2.0**-6))).clamp(min=-6)
    # log2 may land one off near powers of two: fix the exponent so 2^e <= max(|v|, 2^-6).
    exponent = torch.where(torch.exp2(exponent) > mag.clamp(min=2.0**-6), exponent - 1, exponent)
    exponent = torch.where(torch.exp2(exponent + 1) <= mag, exponent + 1, exponent)
    step = torch.exp2(exponent - 3)
    rounded = torch.round(v / step) * step  # torch.round: half to even
    return rounded.clamp(-FP8_MAX, FP8_MAX)


def pack_ue8m0(scales: torch.Tensor) -> torch.Tensor:
    """float32 power-of-two scales [..., S] -> int32 [..., S/4]: each scale's biased exponent
    byte (float bits >> 23), group g in byte g % 4 (little-endian) of int g // 4."""
    if scales.size(-1) % UE8M0_PACK:
        raise ValueError(f"{scales.size(-1)} scale groups are not a multiple of {UE8M0_PACK}")
    exponent = (scales.float().contiguous().view(torch.int32) >> 23) & 0xFF
    return exponent.to(torch.uint8).contiguous().view(torch.int32)


def unpack_ue8m0(packed: torch.Tensor) -> torch.Tensor:
    """int32 [..., S/4] packed exponent bytes -> float32 scales [..., S] (2^(byte - 127))."""
    exponent = packed.contiguous().view(torch.uint8).to(torch.int32)
    return (exponent << 23).view(torch.float32)


def quantize(x: torch.Tensor, fmt: str):
    """What the dispatch of format `fmt` delivers for bf16 rows `x` [..., H]: `x` itself, or
    (fp8 [..., H], float32 [..., S]) or with "fp8_ue8m0" (fp8, int32 [..., S/4])."""
    if not is_fp8(fmt):
        return x
    data, scales = quantize_fp8(x, round_scale=FORMATS[fmt].get("round_scale", False))
    return (data, pack_ue8m0(scales)) if FORMATS[fmt].get("use_ue8m0") else (data, scales)


def dequantize(data: torch.Tensor, scales: torch.Tensor | None = None) -> torch.Tensor:
    """float32 values of `data` [..., H]: bf16 as is; fp8 times its group's scale (`scales`
    float32 [..., S] or packed int32 [..., S/4], any strides)."""
    if scales is None:
        return data.float()
    if scales.dtype == torch.int32:
        scales = unpack_ue8m0(scales)
    *lead, hidden = data.shape
    groups = data.float().reshape(*lead, hidden // GROUP, GROUP)
    return (groups * scales.float().unsqueeze(-1)).reshape(*lead, hidden)


def dequantized_bf16(x: torch.Tensor, fmt: str) -> torch.Tensor:
    """bf16 [n, H]: what an identity expert hands back for rows `x` dispatched as `fmt`."""
    if not is_fp8(fmt):
        return x
    return dequantize(*quantize(x, fmt)).bfloat16()


# ----------------------------------------------------------------------------- routing


@dataclass
class RoutingRef:
    """What one destination rank must receive: `keys` sorted int64 ((e * R + s) * T + t) for
    every (source rank s, source token t) routed to local expert e, `pair_counts` [E, R] int64
    (rows from each source), `counts` [E] int64 (recv_count)."""

    keys: torch.Tensor
    pair_counts: torch.Tensor
    counts: torch.Tensor


def expected_routing(
    topk_idx: list[torch.Tensor], dst: int, num_local_experts: int, num_max_tokens: int
) -> RoutingRef:
    """Reference receive side of rank `dst`, given every rank's topk_idx [n_s, K] (by rank;
    -1 entries are not sent). A token that picks several experts of `dst` arrives once per
    expert. Computed on the CPU."""
    num_ranks, first = len(topk_idx), dst * num_local_experts
    keys = []
    for src, idx in enumerate(topk_idx):
        idx = idx.cpu().long()
        tokens = torch.arange(idx.size(0)).unsqueeze(1).expand_as(idx)
        mine = (idx >= first) & (idx < first + num_local_experts)
        expert = idx[mine] - first
        keys.append((expert * num_ranks + src) * num_max_tokens + tokens[mine])
    keys = torch.cat(keys).sort().values if keys else torch.zeros(0, dtype=torch.int64)
    blocks = keys // num_max_tokens
    pair_counts = torch.bincount(blocks, minlength=num_local_experts * num_ranks)
    pair_counts = pair_counts.view(num_local_experts, num_ranks)
    return RoutingRef(keys=keys, pair_counts=pair_counts, counts=pair_counts.sum(1))


@dataclass
class Blocks:
    """A dispatch's layout decoded row by row (CPU int64 tensors, one entry per valid row)."""

    expert: torch.Tensor  # local expert of the row
    row: torch.Tensor  # row index in recv_x[expert]
    src: torch.Tensor  # source rank
    token: torch.Tensor  # source token index (src_info)
    keys: torch.Tensor  # (expert * R + src) * T + token, sorted


def decode_layout(
    layout_range: torch.Tensor,
    recv_count: torch.Tensor,
    src_info: torch.Tensor,
    num_max_tokens: int,
) -> tuple[Blocks | None, str]:
    """Decodes (begin << 32) | count per (local expert, source) of `layout_range` [E, R] int64.
    Returns (Blocks, "") when every block lies within [0, recv_count[e]), blocks are disjoint
    and counts add up to recv_count; else (None, what is wrong)."""
    layout_range, recv_count = layout_range.cpu().long(), recv_count.cpu().long()
    num_experts, num_ranks = layout_range.shape
    num_rows = num_ranks * num_max_tokens
    counts, begins = layout_range & LOW32, layout_range >> 32
    if bool((counts > num_rows).any()) or bool((begins < 0).any()):
        return None, f"counts or begins out of range: {layout_range.tolist()}"
    if not torch.equal(counts.sum(1), recv_count):
        return (
            None,
            f"counts per expert {counts.sum(1).tolist()} != recv_count {recv_count.tolist()}",
        )
    flat_counts = counts.flatten()
    total = int(flat_counts.sum())
    block = torch.arange(num_experts * num_ranks).repeat_interleave(flat_counts)
    first_of_block = (flat_counts.cumsum(0) - flat_counts).repeat_interleave(flat_counts)
    row = begins.flatten().repeat_interleave(flat_counts) + torch.arange(total) - first_of_block
    expert, src = block // num_ranks, block % num_ranks
    if bool((row >= recv_count[expert]).any()):
        return None, f"a block ends past recv_count: layout {layout_range.tolist()}"
    if torch.unique(expert * num_rows + row).numel() != total:
        return None, f"blocks overlap: layout {layout_range.tolist()}"
    token = src_info.cpu().long()[expert, row]
    keys = ((expert * num_ranks + src) * num_max_tokens + token).sort().values
    return Blocks(expert, row, src, token, keys), ""


def mismatched_keys(actual: torch.Tensor, expected: torch.Tensor, num_ranks: int, t: int) -> str:
    """A short description of how two sorted key multisets differ."""
    if actual.numel() != expected.numel():
        return f"{actual.numel()} rows received, expected {expected.numel()}"
    bad = torch.nonzero(actual != expected).flatten()
    if bad.numel() == 0:
        return "the multisets are equal"
    first = int(bad[0])

    def name(key: int) -> str:
        block, token = divmod(key, t)
        expert, src = divmod(block, num_ranks)
        return f"(expert {expert}, source {src}, token {token})"

    return (
        f"{bad.numel()} of {actual.numel()} sorted (expert, source, token) entries differ; "
        f"first: got {name(int(actual[first]))}, expected {name(int(expected[first]))}"
    )


# ----------------------------------------------------------------------------- combine


def expert_factors(num_experts: int, device: torch.device) -> torch.Tensor:
    """float32 [num_experts]: the power of two the "scaled" test expert g multiplies its rows
    by, 2^((g % 5) - 2), so a row combined with the wrong expert changes the sum; scaling by
    a power of two is exact in bf16."""
    exponent = torch.arange(num_experts, device=device) % 5 - 2
    return torch.pow(2.0, exponent.float())


LOGFMT_LEVELS = 511  # codes 1..511 on the log grid; code 0 is zero
LOGFMT_MIN_CLIP = 32.0


def logfmt_round_trip(y: torch.Tensor) -> torch.Tensor:
    """float32 [n, H]: bf16 rows `y` as a LogFMT-10 combine delivers them. Per 128-channel group
    with amax / amin of |y| (zeros included): lmax = log2(amax), lmin = max(log2(amin),
    lmax - 32); groups with lmax < 0 and lmin < lmax are encoded, the others arrive as they are.
    Encoded magnitudes take the nearest (in linear terms, ties up) of the levels
    2^(lmin + j * step), j = -1 .. 510, step = (lmax - lmin) / 510, where level j = -1 reads
    back as zero; signs are kept."""
    n, hidden = y.shape
    g = y.double().reshape(n, hidden // GROUP, GROUP)
    a = g.abs()
    amax, amin = a.amax(-1, keepdim=True), a.amin(-1, keepdim=True)
    lmax = torch.log2(amax)
    lmin = torch.maximum(torch.log2(amin), lmax - LOGFMT_MIN_CLIP)
    cast = (lmax < 0) & (lmin < lmax)
    step = torch.where(cast, (lmax - lmin) / (LOGFMT_LEVELS - 1), torch.ones_like(lmax))
    lmin = torch.where(cast, lmin, torch.zeros_like(lmin))
    pos = (torch.log2(a) - lmin) / step  # -inf for zeros
    lo = torch.floor(pos).clamp(-1, LOGFMT_LEVELS - 1)
    v_lo = torch.exp2(lmin + lo * step)
    v_hi = torch.exp2(lmin + (lo + 1) * step)
    j = torch.where((a - v_lo >= v_hi - a) & (lo < LOGFMT_LEVELS - 1), lo + 1, lo)
    magnitude = torch.where(j < 0, torch.zeros_like(a), torch.exp2(lmin + j * step))
    decoded = torch.where(cast, torch.copysign(magnitude, g), g)
    return decoded.reshape(n, hidden).float()


def combine_reference(
    x: torch.Tensor,
    topk_idx: torch.Tensor,
    topk_weights: torch.Tensor,
    factors: torch.Tensor,
    use_logfmt: bool = False,
) -> torch.Tensor:
    """bf16 [n, H]: combined[t] = sum over k with topk_idx[t, k] >= 0 (in top-k order, float32)
    of topk_weights[t, k] * y_{g}[t], g = topk_idx[t, k], where expert g returned
    y_g = x * factors[g] for the bf16 rows `x` [n, H] (the dequantised dispatched rows), as
    LogFMT-10 delivers y_g with `use_logfmt`. All -1 tokens give zeros."""
    xf = x.float()
    acc = torch.zeros_like(xf)
    for k in range(topk_idx.size(1)):
        idx = topk_idx[:, k]
        valid = idx >= 0
        factor = factors[idx.clamp(min=0)]
        weight = torch.where(valid, topk_weights[:, k].float(), torch.zeros_like(factor))
        y = xf * factor.unsqueeze(1)
        if use_logfmt:
            y = logfmt_round_trip(y.bfloat16())
        acc += weight.unsqueeze(1) * y
    return acc.bfloat16()


def identity_combine_reference(
    x: torch.Tensor, topk_idx: torch.Tensor, topk_weights: torch.Tensor
) -> torch.Tensor:
    """float32 [n, H] = x * sum of the valid top-k weights: DeepEP's test reference for identity
    experts, compared with the original (not dequantised) x."""
    weights = topk_weights.float().masked_fill(topk_idx < 0, 0.0)
    return x.float() * weights.sum(1, keepdim=True)


# ----------------------------------------------------------------------------- test inputs


@dataclass(frozen=True)
class Case:
    """Shapes and routing of one LL test input, identical on every rank. Rank r's inputs come
    from a generator seeded with (seed, r), so every rank can rebuild every rank's inputs."""

    name: str
    tokens: tuple[int, ...]  # num_tokens per rank (<= T)
    hidden: int
    num_topk: int = 8
    seed: int = 0
    routing: str = "random"  # "random": top-k of random scores; "same_rank": K experts of one rank
    num_dropped: int = 10  # (token, k) entries set to -1
    empty_token: bool = True  # token n // 2 is routed nowhere (all -1)
    silent_rank: int | None = None  # this rank's topk_idx is all -1


def make_inputs(
    case: Case, rank: int, num_experts: int, num_ranks: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rank `rank`'s (x bf16 [n, H], topk_idx int64 [n, K], topk_weights float32 [n, K] > 0).

    x is Gaussian with a per-token power-of-two magnitude (2^-6 .. 2^6); every 7th token has a
    zero 128-channel group and another scaled by 1e-6 (below the amax floor of 1e-4)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(case.seed * 7919 + rank)
    n, hidden, k = case.tokens[rank], case.hidden, case.num_topk
    x = torch.randn(n, hidden, generator=gen, device=device)
    magnitude = torch.randint(-6, 7, (n, 1), generator=gen, device=device).float()
    x = x * torch.pow(2.0, magnitude)
    x[::7, GROUP : 2 * GROUP] = 0.0
    x[::7, 2 * GROUP : 3 * GROUP] *= 1e-6
    if case.routing == "same_rank":
        local = num_experts // num_ranks
        dst = torch.randint(0, num_ranks, (n, 1), generator=gen, device=device)
        start = torch.randint(0, local - k + 1, (n, 1), generator=gen, device=device)
        topk_idx = dst * local + start + torch.arange(k, device=device)
    else:
        scores = torch.rand(n, num_experts, generator=gen, device=device)
        topk_idx = scores.topk(k, dim=1).indices
    drop = torch.randperm(n * k, generator=gen, device=device)[: case.num_dropped]
    topk_idx = topk_idx.reshape(-1).index_fill(0, drop, -1).reshape(n, k)
    if case.empty_token and n > 0:
        topk_idx[n // 2] = -1
    if rank == case.silent_rank:
        topk_idx.fill_(-1)
    weights = torch.rand(n, k, generator=gen, device=device) + 0.25
    return x.bfloat16().contiguous(), topk_idx.long().contiguous(), weights.contiguous()


class World:
    """Every rank's inputs of one Case (rebuilt locally) and what this rank must receive and
    get back from combine."""

    def __init__(
        self,
        case: Case,
        rank: int,
        num_ranks: int,
        num_experts: int,
        num_max_tokens: int,
        device: torch.device,
    ):
        if max(case.tokens) > num_max_tokens:
            raise ValueError(f"case {case.name}: tokens {case.tokens} exceed T={num_max_tokens}")
        self.case, self.rank, self.num_ranks = case, rank, num_ranks
        self.num_experts, self.t = num_experts, num_max_tokens
        self.num_local_experts = num_experts // num_ranks
        self.inputs = [
            make_inputs(case, r, num_experts, num_ranks, device) for r in range(num_ranks)
        ]
        shape = (num_ranks, num_max_tokens, case.hidden)
        # [R, T, H], zero rows past each rank's tokens
        self.x_stack = torch.zeros(shape, dtype=torch.bfloat16, device=device)
        for r, (x, _, _) in enumerate(self.inputs):
            self.x_stack[r, : x.size(0)] = x
        idx = [i[1] for i in self.inputs]
        self.routing = expected_routing(idx, rank, self.num_local_experts, num_max_tokens)
        self._rows: dict[str, object] = {}

    def own(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x, topk_idx, topk_weights) of this rank."""
        return self.inputs[self.rank]

    def rows(self, fmt: str):
        """Every rank's rows as format `fmt` delivers them, flattened to [R * T, ...]: row
        s * T + t is source s's token t (a tensor, or (fp8, scales))."""
        if fmt not in self._rows:
            flat = self.x_stack.reshape(self.num_ranks * self.t, self.case.hidden)
            self._rows[fmt] = quantize(flat, fmt)
        return self._rows[fmt]

    def combined(self, fmt: str, factors: torch.Tensor, use_logfmt: bool = False) -> torch.Tensor:
        """This rank's combine output when every expert g returns its dequantised rows times
        factors[g] (sent as LogFMT-10 with `use_logfmt`)."""
        x, idx, weights = self.own()
        return combine_reference(dequantized_bf16(x, fmt), idx, weights, factors, use_logfmt)
