"""Independent pure-torch reference for DeepEP V1 internode normal-mode layout, dispatch and
combine, for ranks grouped into nodes of any number `num_local_ranks` of consecutive ranks.

Never calls uccl. Shapes: T tokens, H hidden, K top-k, E experts, R ranks, L = num_local_ranks,
N = R / L nodes. Expert e lives on rank e // (E / R); rank r is local rank r % L of node r // L.
Rules (semantics notes §1.5-1.8, §2.1-2.5, §4.2; DeepEP V1 `csrc/kernels/internode.cu`):

- Layout: as intranode (`reference.dispatch_layout`, -1 entries ignored), plus
  `num_tokens_per_rdma_rank[n]` = tokens with >= 1 expert on node n (a token counts once per
  node, however many of its experts or ranks are there).
- Received order on rank d (§2.1), reproduced exactly: rows grouped by **global source rank
  ascending** (0..R-1, nodes play no part), and within one source by **ascending source token
  index**; a token reaches d once if any of its experts lives on d. This is the intranode order
  over the whole group: the transfer path (network to the same local index, NVLink forwarding)
  does not show in the result, because each row lands at `recv_gbl_rank_prefix_sum[s - 1]` plus
  its rank among the source's rows for d (DeepEP: channel start + position in the channel,
  channels holding ascending token ranges).
- `recv_topk_idx`: local id (e - d * E/R) where e lives on d, else -1; `recv_topk_weights`: the
  weight there, else 0.0. `num_recv_tokens_per_expert_list`: received (token, local expert)
  pairs per local expert, each rounded up to `expert_alignment`.
- `recv_gbl_rank_prefix_sum` [R] int32 (handle[-4]): inclusive prefix over global source ranks
  of the rows d receives.
- Network stage: source s = (node m, local l) sends each token with >= 1 expert on node n once
  to rank (n, l), also for n == m (DeepEP stages those through its own RDMA buffer). Rank
  (n, l) holds them grouped by source node ascending, then by source token index;
  `recv_rdma_rank_prefix_sum` [N] is the inclusive prefix of their counts per source node.
  `num_rdma_token_sent` (test_internode.py's RDMA byte count: that times hidden times 2) is the
  sender's number of (token, node) pairs, its own node included.
- Combine on source rank s: each node n that token t reached first sums, in fp32 from +0.0, the
  rows returned for t by its ranks in ascending local rank, and rounds that partial to bf16 (the
  forwarder's RDMA write is bf16); then out[t] = bf16(b0[t] + b1[t] + partial_n0 + partial_n1
  ...), in fp32, biases first (a missing bias reads +0.0), nodes in ascending order, one final
  cast. This differs from the intranode one-rounding sum by the partials' rounding, and equals
  it when L == 1. Combined top-k weights: the same two-level fp32 sum, never rounded. A token
  sent nowhere gives bf16(b0 + b1) and zero weights.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

try:
    from . import reference as ref
except ImportError:  # run as a script: siblings are importable from sys.path[0]
    import reference as ref


def num_nodes(num_ranks: int, num_local_ranks: int) -> int:
    """N = R / L; L must be >= 1 and divide R."""
    if num_local_ranks < 1 or num_ranks % num_local_ranks:
        raise ValueError(f"num_local_ranks {num_local_ranks} does not divide {num_ranks} ranks")
    return num_ranks // num_local_ranks


@dataclass
class InternodeLayout(ref.Layout):
    """What `get_dispatch_layout` must return on one rank of an internode group."""

    num_tokens_per_rdma_rank: torch.Tensor  # [N] int32
    is_token_in_node: torch.Tensor  # [T, N] bool

    @property
    def num_rdma_token_sent(self) -> int:
        """(token, node) pairs with >= 1 expert on the node, own node included (DeepEP's count
        of RDMA bytes in test_internode.py is this times the row bytes)."""
        return int(self.is_token_in_node.sum())

    def num_network_rows(self, own_node: int) -> int:
        """Rows that actually cross the network: (token, node) pairs of the other nodes."""
        return self.num_rdma_token_sent - int(self.is_token_in_node[:, own_node].sum())


def dispatch_layout(
    topk_idx: torch.Tensor, num_experts: int, num_ranks: int, num_local_ranks: int
) -> InternodeLayout:
    """Layout of `topk_idx` [T, K] int64 (-1 entries ignored) for nodes of `num_local_ranks`."""
    nodes = num_nodes(num_ranks, num_local_ranks)
    base = ref.dispatch_layout(topk_idx, num_experts, num_ranks)
    in_node = base.is_token_in_rank.view(-1, nodes, num_local_ranks).any(2)
    return InternodeLayout(
        num_tokens_per_rank=base.num_tokens_per_rank,
        num_tokens_per_expert=base.num_tokens_per_expert,
        is_token_in_rank=base.is_token_in_rank,
        num_tokens_per_rdma_rank=in_node.sum(0).int(),
        is_token_in_node=in_node.contiguous(),
    )


def recv_gbl_rank_prefix_sum(layouts: list[ref.Layout], dst: int) -> torch.Tensor:
    """[R] int32 on rank `dst`: rows received from ranks 0..s, for each source rank s."""
    return ref.rank_prefix_matrix(layouts)[:, dst].contiguous()


def forwarded_rows(
    layouts: list[InternodeLayout], dst: int, num_local_ranks: int
) -> list[torch.Tensor]:
    """The rows that arrive over the network stage in rank `dst`'s RDMA buffer, per source node
    m ascending: int64 token indices of rank (m, dst % L) with >= 1 expert on dst's node."""
    nodes = num_nodes(len(layouts), num_local_ranks)
    node, local = divmod(dst, num_local_ranks)
    return [
        torch.nonzero(layouts[m * num_local_ranks + local].is_token_in_node[:, node]).flatten()
        for m in range(nodes)
    ]


@dataclass
class InternodeDispatchRef(ref.DispatchRef):
    """What a non-cached internode dispatch must produce on one destination rank: the rows and
    top-k outputs of `reference.DispatchRef` (same order), plus the internode handle's prefix
    sums and the rows the network stage delivers to this rank (which it forwards)."""

    recv_gbl_rank_prefix_sum: torch.Tensor  # [R] int32, handle[-4]
    recv_rdma_rank_prefix_sum: torch.Tensor  # [N] int32
    forwarded: list[torch.Tensor]  # per source node: token indices of rank (m, dst % L)

    @property
    def num_rdma_recv(self) -> int:
        """Rows in this rank's RDMA receive area (rows of DeepEP's `send_nvl_head`)."""
        return sum(int(r.numel()) for r in self.forwarded)


def expected_dispatch(
    layouts: list[InternodeLayout],
    topk_idx: list[torch.Tensor],
    topk_weights: list[torch.Tensor],
    num_experts: int,
    num_local_ranks: int,
    dst: int,
) -> InternodeDispatchRef:
    """Reference internode dispatch result on rank `dst`, from every rank's layout and routing."""
    base = ref.expected_dispatch(layouts, topk_idx, topk_weights, num_experts, dst)
    forwarded = forwarded_rows(layouts, dst, num_local_ranks)
    counts = torch.tensor([r.numel() for r in forwarded], dtype=torch.int64)
    return InternodeDispatchRef(
        **{f.name: getattr(base, f.name) for f in fields(ref.DispatchRef)},
        recv_gbl_rank_prefix_sum=recv_gbl_rank_prefix_sum(layouts, dst),
        recv_rdma_rank_prefix_sum=counts.cumsum(0).int(),
        forwarded=forwarded,
    )


def bias_sum(
    biases: tuple[torch.Tensor, ...], num_tokens: int, hidden: int, device
) -> torch.Tensor:
    """fp32 b0 + b1 as DeepEP's final reduction starts: a missing bias reads +0.0."""
    if len(biases) > 2:
        raise ValueError(f"at most 2 biases, got {len(biases)}")
    zero = torch.zeros(num_tokens, hidden, dtype=torch.float32, device=device)
    if not biases:
        return zero
    return biases[0].float() + (biases[1].float() if len(biases) == 2 else zero)


def expected_combine(
    src: int,
    layouts: list[ref.Layout],
    returned: list[torch.Tensor],
    hidden: int,
    num_local_ranks: int,
    biases: tuple[torch.Tensor, ...] = (),
    returned_weights: list[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Reference internode combine on rank `src` (the two-level rule in the module docstring).

    `returned[d]` [N_d, H] bf16 are the rows rank d hands to combine, in d's receive order;
    `returned_weights[d]` [N_d, K] float32 likewise. Returns (bf16 [T, H], float32 [T, K] or
    None)."""
    is_in = layouts[src].is_token_in_rank
    num_tokens, device = is_in.size(0), is_in.device
    prefix = ref.rank_prefix_matrix(layouts)
    acc = bias_sum(biases, num_tokens, hidden, device)
    acc_w = None
    if returned_weights is not None:
        num_topk = returned_weights[0].size(1)
        acc_w = torch.zeros(num_tokens, num_topk, dtype=torch.float32, device=device)
    local = num_local_ranks
    for node in range(num_nodes(len(layouts), local)):
        part = torch.zeros(num_tokens, hidden, dtype=torch.float32, device=device)
        part_w = None if acc_w is None else torch.zeros_like(acc_w)
        for dst in range(node * local, (node + 1) * local):
            start = int(prefix[src - 1, dst]) if src > 0 else 0
            tokens = torch.nonzero(is_in[:, dst]).flatten()
            end = start + tokens.numel()
            part.index_add_(0, tokens, returned[dst][start:end].float())
            if part_w is not None:
                part_w.index_add_(0, tokens, returned_weights[dst][start:end].float())
        # A node the token never reached adds nothing (not even +0.0, which would flip -0.0).
        reached = is_in[:, node * local : (node + 1) * local].any(1, keepdim=True)
        acc = torch.where(reached, acc + part.bfloat16().float(), acc)
        if acc_w is not None:
            acc_w = torch.where(reached, acc_w + part_w, acc_w)
    return acc.bfloat16(), acc_w


class InternodeScenarioRef(ref.ScenarioRef):
    """`reference.ScenarioRef` for an internode group: every rank's inputs of one scenario and
    what this rank's internode layout, dispatch and combine must return for them."""

    def __init__(
        self,
        sc: ref.Scenario,
        rank: int,
        x: list,
        topk_idx: list,
        topk_weights: list,
        num_local_ranks: int,
    ):
        super().__init__(sc, rank, x, topk_idx, topk_weights)
        self.num_local_ranks = num_local_ranks
        self.num_nodes = num_nodes(self.num_ranks, num_local_ranks)
        self.layouts = [
            dispatch_layout(t, sc.num_experts, self.num_ranks, num_local_ranks) for t in topk_idx
        ]

    def expected(self, dst: int) -> InternodeDispatchRef:
        if dst not in self._refs:
            self._refs[dst] = expected_dispatch(
                self.layouts,
                self.topk_idx,
                self.topk_weights,
                self.sc.num_experts,
                self.num_local_ranks,
                dst,
            )
        return self._refs[dst]

    def expected_combine(self, kind: str, biases: tuple, with_weights: bool):
        """This rank's combine output when every rank d returns `expert_transform` of its
        received rows of `kind` (and its received weights when `with_weights`)."""
        ranks = range(self.num_ranks)
        returned = [ref.expert_transform(ref.as_bf16(self.expected_x(kind, d)), d) for d in ranks]
        weights = [self.expected(d).recv_topk_weights for d in ranks] if with_weights else None
        return expected_combine(
            self.rank,
            self.layouts,
            returned,
            self.sc.hidden,
            self.num_local_ranks,
            biases,
            weights,
        )

    def num_rdma_token_sent(self) -> int:
        """This rank's (token, node) pairs, the benchmark's RDMA row count."""
        return self.layouts[self.rank].num_rdma_token_sent
