"""Independent pure-torch reference for DeepEP V1 intranode layout, dispatch and combine.

Never calls uccl. Shapes: T tokens, H hidden, K top-k, E experts, R ranks; expert e lives on
rank e // (E / R). Rows received by rank d are grouped by source rank ascending, then by
ascending source token index; a token reaches d once if any of its experts lives on d.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

FP8_MAX = 448.0
SCALE_BLOCK = 128  # channels per FP8 scale


def experts_per_rank(num_experts: int, num_ranks: int) -> int:
    if num_experts % num_ranks:
        raise ValueError(f"num_experts {num_experts} is not a multiple of {num_ranks} ranks")
    return num_experts // num_ranks


def align_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


@dataclass
class Layout:
    """What `get_dispatch_layout` must return for one rank's `topk_idx`."""

    num_tokens_per_rank: torch.Tensor  # [R] int32
    num_tokens_per_expert: torch.Tensor  # [E] int32
    is_token_in_rank: torch.Tensor  # [T, R] bool


def dispatch_layout(topk_idx: torch.Tensor, num_experts: int, num_ranks: int) -> Layout:
    """Layout of `topk_idx` [T, K] int64, where -1 entries are ignored."""
    local = experts_per_rank(num_experts, num_ranks)
    valid = topk_idx >= 0
    per_expert = torch.bincount(topk_idx[valid], minlength=num_experts)
    # owner + 1 is 0 for ignored entries; column 0 is dropped afterwards.
    owner_plus_one = torch.where(valid, topk_idx // local + 1, torch.zeros_like(topk_idx))
    hits = torch.zeros(topk_idx.size(0), num_ranks + 1, dtype=torch.bool, device=topk_idx.device)
    hits.scatter_(1, owner_plus_one, True)
    is_token_in_rank = hits[:, 1:].contiguous()
    return Layout(
        num_tokens_per_rank=is_token_in_rank.sum(0).int(),
        num_tokens_per_expert=per_expert.int(),
        is_token_in_rank=is_token_in_rank,
    )


def rank_prefix_matrix(layouts: list[Layout]) -> torch.Tensor:
    """[R, R] int32: M[i][j] = number of tokens sent to rank j by ranks 0..i."""
    counts = torch.stack([lay.num_tokens_per_rank.long() for lay in layouts])
    return counts.cumsum(0).int()


@dataclass
class DispatchRef:
    """What a non-cached dispatch must produce on one destination rank."""

    rows: list[torch.Tensor]  # per source rank: int64 token indices received, ascending
    rank_prefix_matrix: torch.Tensor  # [R, R] int32
    expert_counts: list[int]  # per local expert, unaligned
    recv_topk_idx: torch.Tensor  # [N, K] int64, local expert id or -1
    recv_topk_weights: torch.Tensor  # [N, K] float32, weight where local else 0.0

    @property
    def num_recv(self) -> int:
        return sum(int(r.numel()) for r in self.rows)

    def expert_list(self, alignment: int = 1) -> list[int]:
        return [align_up(c, alignment) for c in self.expert_counts]

    def select(self, per_source: list[torch.Tensor]) -> torch.Tensor:
        """Rows of per-source [T_s, ...] tensors in receive order, contiguous."""
        return torch.cat([t[r] for t, r in zip(per_source, self.rows)]).contiguous()


def expected_dispatch(
    layouts: list[Layout],
    topk_idx: list[torch.Tensor],
    topk_weights: list[torch.Tensor],
    num_experts: int,
    dst: int,
) -> DispatchRef:
    """Reference dispatch result on rank `dst`, given every rank's layout and routing."""
    local = experts_per_rank(num_experts, len(layouts))
    first = dst * local
    rows = [torch.nonzero(lay.is_token_in_rank[:, dst]).flatten() for lay in layouts]
    counts = sum(lay.num_tokens_per_expert[first : first + local].long() for lay in layouts)
    idx = torch.cat([t[r] for t, r in zip(topk_idx, rows)])
    weights = torch.cat([w[r] for w, r in zip(topk_weights, rows)])
    is_local = (idx >= first) & (idx < first + local)
    return DispatchRef(
        rows=rows,
        rank_prefix_matrix=rank_prefix_matrix(layouts),
        expert_counts=[int(c) for c in counts.tolist()],
        recv_topk_idx=torch.where(is_local, idx - first, torch.full_like(idx, -1)),
        recv_topk_weights=torch.where(is_local, weights, torch.zeros_like(weights)),
    )


def expected_combine(
    src: int,
    layouts: list[Layout],
    returned: list[torch.Tensor],
    hidden: int,
    biases: tuple[torch.Tensor, ...] = (),
    returned_weights: list[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Reference combine on rank `src`.

    `returned[d]` [N_d, H] bf16 are the rows rank d hands to combine (in d's receive order);
    `returned_weights[d]` [N_d, K] float32 likewise. Output row t = biases + sum over ranks d
    (ascending) that received t of d's row for t, accumulated in fp32 and cast once to bf16.
    """
    is_in = layouts[src].is_token_in_rank
    num_tokens = is_in.size(0)
    acc = torch.zeros(num_tokens, hidden, dtype=torch.float32, device=is_in.device)
    for bias in biases:
        acc += bias.float()
    acc_w = None
    if returned_weights is not None:
        num_topk = returned_weights[0].size(1)
        acc_w = torch.zeros(num_tokens, num_topk, dtype=torch.float32, device=is_in.device)
    prefix = rank_prefix_matrix(layouts)
    for dst in range(len(layouts)):
        start = int(prefix[src - 1, dst]) if src > 0 else 0
        tokens = torch.nonzero(is_in[:, dst]).flatten()
        end = start + tokens.numel()
        acc.index_add_(0, tokens, returned[dst][start:end].float())
        if acc_w is not None:
            acc_w.index_add_(0, tokens, returned_weights[dst][start:end].float())
    return acc.bfloat16(), acc_w


def expert_transform(x: torch.Tensor, rank: int) -> torch.Tensor:
    """The "expert" each rank applies before combine: scale by rank + 1 plus a deterministic
    pattern depending on the row, column and rank, so misrouted rows are caught."""
    rows = torch.arange(x.size(0), device=x.device).unsqueeze(1)
    cols = torch.arange(x.size(1), device=x.device).unsqueeze(0)
    pattern = ((rows * 131 + cols * 7 + rank * 17) % 23 - 11).float() / 256.0
    return (x.float() * (rank + 1) + pattern).bfloat16()


def calc_diff(x: torch.Tensor, y: torch.Tensor) -> float:
    """DeepEP's dissimilarity: 1 - 2*sum(x*y) / sum(x*x + y*y), in float64, after adding 1."""
    x = x.double() + 1
    y = y.double() + 1
    denominator = (x * x + y * y).sum()
    return float(1 - 2 * (x * y).sum() / denominator)


def per_token_cast_to_fp8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[T, H] -> (fp8 e4m3 [T, H], float32 scales [T, H/128]); dequant = fp8 * scale."""
    num_tokens, hidden = x.shape
    if hidden % SCALE_BLOCK:
        raise ValueError(f"hidden {hidden} is not a multiple of {SCALE_BLOCK}")
    blocks = x.float().view(num_tokens, hidden // SCALE_BLOCK, SCALE_BLOCK)
    amax = blocks.abs().amax(dim=2).clamp(min=1e-4)
    fp8 = (blocks * (FP8_MAX / amax).unsqueeze(2)).to(torch.float8_e4m3fn)
    return fp8.view(num_tokens, hidden), (amax / FP8_MAX).float()


def per_token_cast_to_fp8_int_scales(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Like `per_token_cast_to_fp8` but with int32 scales (negated float bits: any
    deterministic 4-byte data will do, DeepEP moves scales as raw values)."""
    fp8, scales = per_token_cast_to_fp8(x)
    return fp8, -scales.view(torch.int32)


def per_token_cast_back(fp8: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Dequantises (fp8 [T, H], float32 scales [T, H/128]) to bf16 [T, H]."""
    num_tokens, hidden = fp8.shape
    blocks = fp8.float().view(num_tokens, hidden // SCALE_BLOCK, SCALE_BLOCK)
    return (blocks * scales.float().unsqueeze(2)).view(num_tokens, hidden).bfloat16()


_BITS_DTYPE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def bitwise_mismatch(actual: object, expected: torch.Tensor) -> str | None:
    """None when `actual` is a tensor equal to `expected` bit for bit (dtype, shape, bytes);
    otherwise a description with mismatch counts."""
    if not isinstance(actual, torch.Tensor):
        return f"expected a tensor, got {type(actual).__name__}"
    if actual.dtype != expected.dtype:
        return f"dtype {actual.dtype}, expected {expected.dtype}"
    if actual.shape != expected.shape:
        return f"shape {tuple(actual.shape)}, expected {tuple(expected.shape)}"
    if actual.numel() == 0:
        return None
    bits = _BITS_DTYPE[actual.element_size()]
    a = actual.contiguous().view(bits)
    b = expected.to(actual.device).contiguous().view(bits)
    diff = a != b
    if not bool(diff.any()):
        return None
    bad_rows = diff.reshape(diff.size(0), -1).any(1) if diff.dim() > 0 else diff.reshape(1)
    first = int(torch.nonzero(bad_rows)[0])
    return (
        f"{int(diff.sum())} of {diff.numel()} elements differ, in {int(bad_rows.sum())} of "
        f"{bad_rows.numel()} rows (first bad row {first})"
    )


def mentions(message: str, words: tuple[str, ...]) -> bool:
    """True if `message` names any of `words` as a whole identifier (case-insensitive)."""
    return any(
        re.search(rf"(?<![A-Za-z0-9_]){re.escape(w)}(?![A-Za-z0-9_])", message, re.IGNORECASE)
        for w in words
    )


# ----------------------------------------------------------------------------- test inputs


@dataclass(frozen=True)
class Scenario:
    """Shapes and routing of one test input, identical on every rank."""

    name: str
    tokens: tuple[int, ...]  # tokens per rank
    hidden: int
    num_experts: int
    num_topk: int = 8
    seed: int = 0  # data of rank r comes from seed * 1000 + r
    drop_prob: float = 0.1  # fraction of (token, k) entries set to -1
    empty_row_prob: float = 0.05  # fraction of tokens routed nowhere (all -1)
    silent_rank: int | None = None  # this rank's topk_idx is all -1: it sends nothing
    unpicked_rank: int | None = None  # no token picks an expert here: it receives nothing


def make_rank_inputs(sc: Scenario, rank: int, num_ranks: int, device: torch.device):
    """Rank `rank`'s (x bf16 [T, H], topk_idx int64 [T, K], topk_weights float32 [T, K])."""
    gen = torch.Generator(device=device)
    gen.manual_seed(sc.seed * 1000 + rank)
    num_tokens, num_experts, num_topk = sc.tokens[rank], sc.num_experts, sc.num_topk
    x = torch.randn(num_tokens, sc.hidden, generator=gen, device=device).bfloat16()
    scores = torch.rand(num_tokens, num_experts, generator=gen, device=device) + 1
    if sc.unpicked_rank is not None:
        local = experts_per_rank(num_experts, num_ranks)
        scores[:, sc.unpicked_rank * local : (sc.unpicked_rank + 1) * local] = 0
    topk_idx = scores.topk(num_topk, dim=1).indices
    drop = torch.rand(num_tokens, num_topk, generator=gen, device=device) < sc.drop_prob
    empty = torch.rand(num_tokens, 1, generator=gen, device=device) < sc.empty_row_prob
    topk_idx = topk_idx.masked_fill(drop | empty, -1)
    if rank == sc.silent_rank:
        topk_idx.fill_(-1)
    weights = torch.rand(num_tokens, num_topk, generator=gen, device=device) + 0.5
    return x, topk_idx.contiguous(), weights


# Inputs that are neither bf16 nor (float8_e4m3fn, scales): float32, float16, float8 data
# without scales, uint8 data with float32 scales. Dispatch only (combine takes bf16).
RAW_KINDS = ("f32", "f16", "fp8_bare", "u8_f32")


def make_x(kind: str, x_bf16: torch.Tensor, src: int):
    """Dispatch input of `kind` from rank `src`'s bf16 data: "bf16_rand" (x itself),
    "bf16_const" (every value = src), "fp8_f32", "fp8_i32" (int32 scales), "fp8_colmajor"
    (float32 scales with column-major strides), or one of RAW_KINDS."""
    if kind == "bf16_rand":
        return x_bf16
    if kind == "bf16_const":
        return torch.full_like(x_bf16, src)
    if kind in RAW_KINDS:  # any element type moves as raw bytes
        if kind == "f32":
            return x_bf16.float()
        if kind == "f16":
            return x_bf16.half()
        fp8, scales = per_token_cast_to_fp8(x_bf16)
        return fp8 if kind == "fp8_bare" else (fp8.view(torch.uint8), scales)
    if kind == "fp8_i32":
        return per_token_cast_to_fp8_int_scales(x_bf16)
    fp8, scales = per_token_cast_to_fp8(x_bf16)
    if kind == "fp8_colmajor":
        scales = scales.T.contiguous().T
    return fp8, scales


def as_bf16(x) -> torch.Tensor:
    """A bf16 tensor as is; an (fp8, float32 scales) pair dequantised."""
    return per_token_cast_back(*x) if isinstance(x, tuple) else x


class ScenarioRef:
    """Every rank's inputs of one scenario (x [T_r, H] bf16, topk_idx, topk_weights, by rank)
    and what this rank's dispatch and combine must return for them."""

    def __init__(self, sc: Scenario, rank: int, x: list, topk_idx: list, topk_weights: list):
        self.sc, self.rank, self.num_ranks = sc, rank, len(x)
        self.x, self.topk_idx, self.topk_weights = x, topk_idx, topk_weights
        self.layouts = [dispatch_layout(t, sc.num_experts, self.num_ranks) for t in topk_idx]
        self._refs: dict[int, DispatchRef] = {}
        self._kind, self._inputs = None, []

    def inputs(self, kind: str, src: int):
        """Rank `src`'s dispatch input of `kind` (see `make_x`)."""
        if kind != self._kind:  # cache one kind at a time to bound memory
            self._kind, self._inputs = kind, [make_x(kind, x, s) for s, x in enumerate(self.x)]
        return self._inputs[src]

    def own(self, kind: str) -> tuple:
        """(x, topk_idx, topk_weights) of this rank."""
        return self.inputs(kind, self.rank), self.topk_idx[self.rank], self.topk_weights[self.rank]

    def expected(self, dst: int) -> DispatchRef:
        if dst not in self._refs:
            self._refs[dst] = expected_dispatch(
                self.layouts, self.topk_idx, self.topk_weights, self.sc.num_experts, dst
            )
        return self._refs[dst]

    def expected_x(self, kind: str, dst: int):
        """The rows of `kind` that rank `dst` receives (a tensor or an (fp8, scales) pair)."""
        exp = self.expected(dst)
        parts = [self.inputs(kind, s) for s in range(self.num_ranks)]

        def rows(tensors: list) -> torch.Tensor:  # 1-byte rows through uint8 (fp8 indexing)
            dtype = tensors[0].dtype
            if tensors[0].element_size() != 1:
                return exp.select(tensors)
            return exp.select([t.view(torch.uint8) for t in tensors]).view(dtype)

        if not isinstance(parts[0], tuple):
            return rows(parts)
        return rows([p[0] for p in parts]), exp.select([p[1].contiguous() for p in parts])

    def expected_combine(self, kind: str, biases: tuple, with_weights: bool):
        """This rank's combine output when every rank d returns `expert_transform` of its
        received rows of `kind` (and its received weights when `with_weights`)."""
        ranks = range(self.num_ranks)
        returned = [expert_transform(as_bf16(self.expected_x(kind, d)), d) for d in ranks]
        weights = [self.expected(d).recv_topk_weights for d in ranks] if with_weights else None
        return expected_combine(self.rank, self.layouts, returned, self.sc.hidden, biases, weights)

    def biases(self, count: int) -> tuple[torch.Tensor, ...]:
        """`count` deterministic bf16 [T, H] combine biases of this rank."""
        gen = torch.Generator(device=self.x[self.rank].device)
        gen.manual_seed(self.sc.seed * 1000 + 500 + self.rank)
        shape = (self.sc.tokens[self.rank], self.sc.hidden)
        return tuple(
            torch.randn(shape, generator=gen, device=gen.device).bfloat16() for _ in range(count)
        )
