"""bench/test_internode.py's pure-torch reference and checks (no uccl call): every rank's inputs,
rebuilt from the seed on every rank (no data exchange), and what the internode layout, dispatch
(rows, top-k, expert counts, the 10-tuple handle) and combine must give on this rank.

Rules (DeepEP V1, docs/internode.md): expert e lives on rank e // (E / R), rank r is local rank
r % L of node r // L; rank r receives a token once if any of its experts lives on r, rows grouped
by source rank ascending, then source token index; channel c of C owns tokens
[c * ceil(T / C), (c + 1) * ceil(T / C)). Combine: each node sums its ranks' rows of a token in
fp32 and rounds that to BF16; the token's rank adds b0 + b1 and the node partials (ascending)
in fp32 and casts once. Routing: DeepEP's group-limited gating, then 10 % of the top-k entries
and 5 % of the tokens set to -1 (routed nowhere), which DeepEP's test does not do.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass

try:
    import torch
except ImportError:  # the CLI and its lines work without torch
    torch = None

import _bench_utils as bu
from bench_internode import group_limited_topk

KINDS = ("bf16_rand", "bf16_const", "fp8_colmajor")  # DeepEP's x_pure_rand, x, FP8 of random x
MASKED_ENTRIES, MASKED_TOKENS = 0.10, 0.05
COMBINE_TOLERANCE = 5e-6  # DeepEP's calc_diff bounds: combined rows, combined weights
WEIGHTS_TOLERANCE = 1e-9

Check = namedtuple("Check", "name ok detail")


def calc_diff(x, y) -> float:
    """DeepEP's dissimilarity: 1 - 2 sum(xy) / sum(x^2 + y^2) of x + 1, y + 1 (float64)."""
    x, y = x.double() + 1, y.double() + 1
    return float(1 - 2 * (x * y).sum() / (x * x + y * y).sum())


def cast_back(values, scales):
    """FP8 rows [..., H] and float32 scales [..., H/128] -> BF16 (values * scale)."""
    blocks = values.float().unflatten(-1, (-1, bu.FP8_BLOCK)) * scales.float().unsqueeze(-1)
    return blocks.flatten(-2).bfloat16()


def _bits(t):
    """Floating tensors as integers of their width: equality is bit for bit (NaN included)."""
    if not t.is_floating_point():
        return t.long()
    return t.view(
        {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    )


class Checks:
    """Named checks of this rank, each handed to `log` (style.CheckLog) as a Check."""

    def __init__(self, log, where: str = "") -> None:
        self.log, self.where = log, where

    def ok(self, name: str, cond, detail: str = "") -> bool:
        self.log(Check(f"{self.where}{name}", bool(cond), detail))
        return bool(cond)

    def same(self, name: str, got, want) -> bool:
        """Same shape and elements, floats bit for bit (integer dtypes may differ)."""
        if not isinstance(got, torch.Tensor):
            return self.ok(name, False, f"got {type(got).__name__}, want a tensor")
        if tuple(got.shape) != tuple(want.shape):
            return self.ok(name, False, f"shape {tuple(got.shape)}, want {tuple(want.shape)}")
        if got.is_floating_point() != want.is_floating_point():
            return self.ok(name, False, f"dtype {got.dtype}, want {want.dtype}")
        bad = int((_bits(got) != _bits(want.to(got.device))).sum())
        return self.ok(name, bad == 0, f"{bad} of {got.numel()} elements differ")


# ---------------------------------------------------------------------------------------------
# Inputs and layout


def generator(seed: int, src: int, stream: int, device):
    gen = torch.Generator(device=device)
    gen.manual_seed((seed * 1_000_003 + src) * 8 + stream)
    return gen


def routing_of(args, src: int, num_nodes: int, num_groups: int, device):
    """Rank `src`'s (topk_idx int64 [T, K], -1 = none; topk_weights float32 [T, K])."""
    gen = generator(args.seed, src, 0, device)
    t, k = args.num_tokens, args.num_topk
    scores = torch.randn((t, args.num_experts), generator=gen, device=device).abs() + 1
    idx = group_limited_topk(scores, num_nodes, num_groups, k)
    drop = torch.rand((t, k), generator=gen, device=device) < MASKED_ENTRIES
    drop |= torch.rand((t, 1), generator=gen, device=device) < MASKED_TOKENS
    weights = torch.randn((t, k), generator=gen, device=device).abs()
    return idx.masked_fill(drop, -1), weights


def x_of(args, kind: str, src: int, device):
    """Rank `src`'s x of `kind`: BF16 [T, H], or (FP8 [T, H], column-major scales [T, H/128])."""
    if kind == "bf16_const":
        return torch.full((args.num_tokens, args.hidden), src, dtype=torch.bfloat16, device=device)
    gen = generator(args.seed, src, 1, device)
    x = torch.randn((args.num_tokens, args.hidden), generator=gen, device=device).bfloat16()
    if kind == "bf16_rand":
        return x
    values, scales = bu.per_token_cast_to_fp8(x)
    return values, scales.T.contiguous().T


@dataclass
class Layout:
    """What get_dispatch_layout returns for one rank's topk_idx (is_token_in_node too)."""

    num_tokens_per_rank: torch.Tensor  # [R] int32
    num_tokens_per_rdma_rank: torch.Tensor  # [N] int32
    num_tokens_per_expert: torch.Tensor  # [E] int32
    is_token_in_rank: torch.Tensor  # [T, R] bool
    is_token_in_node: torch.Tensor  # [T, N] bool


def layout_of(topk_idx, num_experts: int, num_ranks: int, num_local_ranks: int) -> Layout:
    t, valid = topk_idx.size(0), topk_idx >= 0
    owner = torch.where(valid, topk_idx // (num_experts // num_ranks), num_ranks)
    in_rank = torch.zeros((t, num_ranks + 1), dtype=torch.bool, device=topk_idx.device)
    in_rank = in_rank.scatter_(1, owner, True)[:, :num_ranks].contiguous()
    in_node = in_rank.view(t, -1, num_local_ranks).any(2)
    per_expert = torch.bincount(topk_idx[valid], minlength=num_experts).int()
    return Layout(in_rank.sum(0).int(), in_node.sum(0).int(), per_expert, in_rank, in_node)


def channel_prefix(mask, num_channels: int, inclusive: bool = True):
    """[X, C] int32 from a [T, X] bool mask: tokens of channels <= c (< c if not inclusive)."""
    num_tokens, per = mask.size(0), -(-mask.size(0) // num_channels)
    first = 1 if inclusive else 0
    ends = (torch.arange(first, num_channels + first) * per).clamp(max=num_tokens)
    running = torch.nn.functional.pad(mask.long().cumsum(0), (0, 0, 1, 0))
    return running[ends.to(mask.device)].T.contiguous().int()


# ---------------------------------------------------------------------------------------------
# What this rank must receive


class World:
    """Every rank's routing and layout, and what rank `rank` must get from dispatch (C channels:
    the correctness config's num_sms / 2)."""

    def __init__(self, args, rank, num_ranks, num_local_ranks, num_groups, num_channels, device):
        self.args, self.rank, self.device = args, rank, device
        self.num_ranks, self.num_local_ranks = num_ranks, num_local_ranks
        nodes = num_ranks // num_local_ranks
        self.routes = [routing_of(args, s, nodes, num_groups, device) for s in range(num_ranks)]
        self.layouts = [
            layout_of(idx, args.num_experts, num_ranks, num_local_ranks) for idx, _ in self.routes
        ]
        self.rows = [torch.nonzero(lay.is_token_in_rank[:, rank]).flatten() for lay in self.layouts]
        self.num_recv = sum(int(r.numel()) for r in self.rows)
        self.handle = self._handle(num_channels)
        self._recv: dict = {}
        gen, shape = generator(args.seed, rank, 3, device), (args.num_tokens, args.hidden)
        self.biases = (  # combine's, as DeepEP's test: ones and randn, BF16 [T, H]
            torch.ones(shape, dtype=torch.bfloat16, device=device),
            torch.randn(shape, generator=gen, device=device).bfloat16(),
        )

    def own(self, kind: str):
        return x_of(self.args, kind, self.rank, self.device)

    def recv_x(self, kind: str):
        """The rows rank `rank` receives, in order: BF16 [Nr, H] or (FP8, scales)."""
        if kind not in self._recv:
            parts = [x_of(self.args, kind, s, self.device) for s in range(self.num_ranks)]
            if kind.startswith("fp8"):
                self._recv[kind] = tuple(
                    torch.cat([p[i][r] for p, r in zip(parts, self.rows)]) for i in (0, 1)
                )
            else:
                self._recv[kind] = torch.cat([p[r] for p, r in zip(parts, self.rows)])
        return self._recv[kind]

    def recv_topk(self):
        """(recv_topk_idx int64 [Nr, K]: local expert or -1; recv_topk_weights: 0.0 there)."""
        per_rank = self.args.num_experts // self.num_ranks
        idx = torch.cat([route[0][r] for route, r in zip(self.routes, self.rows)])
        weights = torch.cat([route[1][r] for route, r in zip(self.routes, self.rows)])
        local = (idx >= 0) & (idx // per_rank == self.rank)
        return torch.where(local, idx - self.rank * per_rank, -1), torch.where(local, weights, 0.0)

    def expert_list(self) -> list[int]:
        per_rank = self.args.num_experts // self.num_ranks
        idx = self.recv_topk()[0]
        return torch.bincount(idx[idx >= 0], minlength=per_rank).tolist()

    def _handle(self, num_channels: int) -> dict:
        """Handle fields by index: prefix sums exact; 7 decoded as int32 (source node, local-rank
        bitmask); 8, 9 as the masks of their entries >= 0."""
        r, big_l, lays = self.rank, self.num_local_ranks, self.layouts
        node, local = divmod(r, big_l)
        own, span = lays[r], slice(node * big_l, (node + 1) * big_l)
        senders = [lays[m * big_l + local] for m in range(self.num_ranks // big_l)]
        forwarded = [torch.nonzero(lay.is_token_in_node[:, node]).flatten() for lay in senders]
        counts = torch.tensor([rows.numel() for rows in self.rows], dtype=torch.int64)
        starts = (counts.cumsum(0) - counts).tolist()
        bits = 1 << torch.arange(big_l, device=self.device)

        def prefix(mask, inclusive: bool = True):
            return channel_prefix(mask, num_channels, inclusive)

        def meta(src: int, rows):
            mask = self.layouts[src].is_token_in_rank[rows, span]
            return torch.stack([torch.full_like(rows, src // big_l), (mask * bits).sum(1)], 1)

        recv_gbl = [
            start + prefix(lay.is_token_in_rank[:, r : r + 1], False)[0]
            for start, lay in zip(starts, lays)
        ]
        return {
            0: own.is_token_in_rank,
            1: prefix(own.is_token_in_node),
            2: prefix(own.is_token_in_rank),
            3: torch.cat([prefix(lay.is_token_in_node[:, node : node + 1]) for lay in senders]),
            4: torch.tensor([rows.numel() for rows in forwarded]).cumsum(0).int(),
            5: torch.stack(recv_gbl).int(),
            6: counts.cumsum(0).int(),
            7: torch.cat([meta(s, rows) for s, rows in enumerate(self.rows)]).int(),
            8: own.is_token_in_node,
            9: torch.cat(
                [lay.is_token_in_rank[rows, span] for lay, rows in zip(senders, forwarded)]
            ),
        }


def expected_combine(y, is_token_in_rank, num_local_ranks: int, biases):
    """BF16 [T, H] on the tokens' rank when every rank returns its received rows `y` [T, H] BF16
    unchanged: b0 + b1 + per node (ascending) bf16(k * y), k = the node's ranks that got the
    token (fp32 sums of k equal BF16 rows are exact)."""
    acc = biases[0].float() + biases[1].float()
    t, num_ranks = is_token_in_rank.shape
    per_node = is_token_in_rank.view(t, num_ranks // num_local_ranks, num_local_ranks).sum(2)
    for n in range(per_node.size(1)):
        k = per_node[:, n : n + 1]
        acc = torch.where(k > 0, acc + (y.float() * k).bfloat16().float(), acc)
    return acc.bfloat16()


# ---------------------------------------------------------------------------------------------
# Checks of one call's outputs

HANDLE_FIELDS = (  # DeepEP V1's internode handle, in its order (handle[-4]: the rank prefix)
    "is_token_in_rank",
    "rdma_channel_prefix_matrix",
    "gbl_channel_prefix_matrix",
    "recv_rdma_channel_prefix_matrix",
    "recv_rdma_rank_prefix_sum",
    "recv_gbl_channel_prefix_matrix",
    "recv_gbl_rank_prefix_sum",
    "recv_src_meta",
    "send_rdma_head",
    "send_nvl_head",
)


def check_rows(checks: Checks, name: str, got, want, rows: int) -> None:
    """`got` has `rows` rows whose first len(want) equal `want` bit for bit (FP8: both parts)."""
    if isinstance(want, tuple):
        if checks.ok(f"{name} is (FP8, scales)", isinstance(got, tuple) and len(got) == 2):
            check_rows(checks, name, got[0], want[0], rows)
            check_rows(checks, f"{name}_scales", got[1], want[1], rows)
        return
    if not isinstance(got, torch.Tensor):
        checks.ok(name, False, f"got {type(got).__name__}, want a tensor")
    elif checks.ok(f"{name} rows", got.size(0) == rows, f"{got.size(0)}, want {rows}"):
        checks.same(name, got[: want.size(0)], want)


def check_handle(checks: Checks, world: World, handle, num_worst: int = 0) -> None:
    """The 10-tuple against World.handle (padded fields with num_worst_tokens)."""
    good = isinstance(handle, tuple) and len(handle) == 10
    if not checks.ok("handle is a 10-tuple", good, f"got {type(handle).__name__}"):
        return
    want, n = world.handle, world.num_recv
    for i in range(7):
        checks.same(f"handle[{i}] {HANDLE_FIELDS[i]}", handle[i], want[i])
    meta, head = handle[7], handle[9]
    shape = (num_worst or n, 8)
    if checks.ok(
        "handle[7] shape", tuple(meta.shape) == shape, f"{tuple(meta.shape)}, want {shape}"
    ):
        checks.same("handle[7] recv_src_meta", meta[:n].contiguous().view(torch.int32), want[7])
    checks.same("handle[8] send_rdma_head >= 0", handle[8] >= 0, want[8])
    nf = want[9].size(0)
    shape = (num_worst or nf, world.num_local_ranks)
    if checks.ok(
        "handle[9] shape", tuple(head.shape) == shape, f"{tuple(head.shape)}, want {shape}"
    ):
        checks.same("handle[9] send_nvl_head >= 0", head[:nf] >= 0, want[9])


def check_dispatch(checks: Checks, world: World, kind: str, out, with_topk: bool, num_worst=0):
    """A non-cached dispatch's 6-tuple: rows, top-k, expert counts, handle."""
    recv_x, recv_idx, recv_w, experts, handle, _ = out
    n, rows = world.num_recv, num_worst or world.num_recv
    check_rows(checks, "recv_x", recv_x, world.recv_x(kind), rows)
    want = [] if num_worst else world.expert_list()
    good = isinstance(experts, list) and all(type(v) is int for v in experts) and experts == want
    checks.ok("num_recv_tokens_per_expert_list", good, f"{str(experts)[:200]}, want {want[:40]}")
    check_handle(checks, world, handle, num_worst)
    if not with_topk:
        return
    want_idx, want_w = world.recv_topk()
    check_rows(checks, "recv_topk_idx", recv_idx, want_idx, rows)
    check_rows(checks, "recv_topk_weights", recv_w, want_w, rows)
    if num_worst and recv_idx.size(0) == rows:
        tail = int((recv_idx[n:] != -1).sum())
        checks.ok("recv_topk_idx past the rows", tail == 0, f"{tail} entries are not -1")


def combine_input(recv_x):
    """What every rank returns to combine: its received rows as BF16 (FP8 cast back)."""
    return cast_back(*recv_x) if isinstance(recv_x, tuple) else recv_x


def check_combine(checks: Checks, world: World, kind: str, out, with_topk: bool) -> None:
    """combine's outputs when every rank returned its received rows, with World.biases:
    DeepEP's calc_diff bound, and every element within 2 BF16 ulps (2^-6 relative) of the sum
    of its summands' magnitudes (a wrong row hides in calc_diff, not there)."""
    combined, combined_w, _ = out
    in_rank, y = world.layouts[world.rank].is_token_in_rank, combine_input(world.own(kind))
    want = expected_combine(y, in_rank, world.num_local_ranks, world.biases)
    if checks.ok("combined_x shape", tuple(combined.shape) == tuple(want.shape)):
        diff = calc_diff(combined, want)
        checks.ok("combined_x", diff < COMBINE_TOLERANCE, f"calc_diff {diff:.3g}")
        b0, b1 = (b.float().abs() for b in world.biases)
        scale = b0 + b1 + in_rank.sum(1, keepdim=True) * y.float().abs()
        far = int(((combined.float() - want.float()).abs() > scale * 2**-6).sum())
        checks.ok("combined_x elementwise", far == 0, f"{far} elements beyond 2 BF16 ulps")
    if with_topk:
        idx, weights = world.routes[world.rank]
        want_w = torch.where(idx >= 0, weights, 0.0)
        if checks.ok("combined_topk_weights shape", tuple(combined_w.shape) == tuple(idx.shape)):
            diff = calc_diff(combined_w, want_w)
            checks.ok("combined_topk_weights", diff < WEIGHTS_TOLERANCE, f"calc_diff {diff:.3g}")
