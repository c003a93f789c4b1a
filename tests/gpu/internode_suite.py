"""Per-rank body of the internode GPU correctness suite for `uccl.ep.Buffer` (DeepEP V1 normal
mode across NVLink domains: get_dispatch_layout / dispatch / combine), checked against the
independent pure-torch reference in internode_reference.py. Each topology (emulated nodes of L
ranks over a transport, README.md) builds its own Buffer, runs every section of
internode_sections.py on it and destroys it; checks are named `<topology>.<section>.<what>`.

Runs under the launcher (test_internode_gpu.py) or, for debugging, directly:
    torchrun --nproc_per_node=4 tests/gpu/internode_suite.py
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.distributed as dist

try:
    from . import _dist, internode_sections
    from . import internode_reference as iref
    from . import intranode_suite as intra
    from . import reference as ref
    from ._dist import Recorder, all_gather_rows, run_under_torchrun
except ImportError:  # run as a script: the siblings are importable from sys.path[0]
    import _dist
    import internode_reference as iref
    import internode_sections
    import intranode_suite as intra
    import reference as ref
    from _dist import Recorder, all_gather_rows, run_under_torchrun

TOPOLOGIES_ENV = "UCCL_EP_TEST_INTERNODE_TOPOLOGIES"
ENV_KEYS = ("UCCL_EP_NUM_LOCAL_RANKS", "UCCL_EP_TRANSPORT", "UCCL_EP_FI_PROVIDER")
TRANSPORTS = {
    "ipc": {"UCCL_EP_TRANSPORT": "ipc"},
    "tcp": {"UCCL_EP_TRANSPORT": "libfabric", "UCCL_EP_FI_PROVIDER": "tcp;ofi_rxm"},
}
DEFAULT_LOCAL_RANKS = (2, 4)  # nodes of 2 and 4 ranks; L1 / L8 on request
# What the Buffer is sized for: the largest rows, scales and top-k of any section.
MAX_HIDDEN_BYTES, MAX_SCALES, MAX_TOPK = 7168 * 2, 7168 // 128, 8
#: DeepEP's names of the internode handle's fields, in its order (handle[-4] is the receive prefix).
HANDLE_FIELDS = (
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
# (num_max_rdma_chunked_send_tokens, num_max_rdma_chunked_recv_tokens) of the random configs.
RDMA_CHUNKS = ((4, 64), (8, 128), (16, 128), (32, 64))


@dataclass(frozen=True)
class Topology:
    """Nodes of `local_ranks` consecutive ranks whose other nodes are reached through the CPU
    proxies and `transport`."""

    local_ranks: int
    transport: str

    @property
    def name(self) -> str:
        return f"L{self.local_ranks}_{self.transport}"

    def env(self) -> dict:
        return {"UCCL_EP_NUM_LOCAL_RANKS": str(self.local_ranks), **TRANSPORTS[self.transport]}

    def runs_on(self, num_ranks: int) -> bool:
        return num_ranks % self.local_ranks == 0 and num_ranks // self.local_ranks >= 2


def selected_topologies(num_ranks: int) -> list[Topology]:
    """The topologies named in UCCL_EP_TEST_INTERNODE_TOPOLOGIES (comma separated, e.g.
    "L2_ipc,L4_tcp"; default: L2 and L4 over ipc and tcp) that `num_ranks` ranks form as at
    least 2 nodes."""
    raw = os.environ.get(TOPOLOGIES_ENV, "").strip()
    if raw:
        topos = []
        for name in (n.strip() for n in raw.split(",") if n.strip()):
            local, _, transport = name.partition("_")
            if not (local[:1] == "L" and local[1:].isdigit() and transport in TRANSPORTS):
                raise ValueError(f"{TOPOLOGIES_ENV}: bad name {name!r} (L<ranks>_ipc|tcp)")
            topos.append(Topology(int(local[1:]), transport))
    else:
        topos = [Topology(lr, t) for t in TRANSPORTS for lr in DEFAULT_LOCAL_RANKS]
    return [t for t in topos if t.runs_on(num_ranks)]


# ----------------------------------------------------------------------------- context


@dataclass
class Ctx:
    rank: int
    num_ranks: int
    rec: Recorder
    ep: Any  # the uccl.ep module
    num_sms: int
    config: Any = None  # Config(num_sms, 8, 256, 16, 128), the suite's own
    topo: str = "suite"
    local_ranks: int = 1
    buffer: Any = None

    @property
    def num_nodes(self) -> int:
        return self.num_ranks // self.local_ranks

    def scope(self, section: str, where: str) -> intra.Scope:
        return intra.Scope(self, f"{self.topo}.{section}", where)

    def channels(self, config: Any) -> int:
        if config is None:
            config = self.ep.Buffer.get_dispatch_config(self.num_ranks)
        return config.num_sms // 2


def device() -> torch.device:
    return intra.device()


def gather_world(ctx: Ctx, sc: ref.Scenario) -> iref.InternodeScenarioRef:
    """Makes this rank's inputs of `sc` and all-gathers every rank's (collective)."""
    mine = ref.make_rank_inputs(sc, ctx.rank, ctx.num_ranks, device())
    x, topk_idx, topk_weights = (all_gather_rows(t, ctx.num_ranks) for t in mine)
    return iref.InternodeScenarioRef(sc, ctx.rank, x, topk_idx, topk_weights, ctx.local_ranks)


# ----------------------------------------------------------------------------- calls


def dispatch(ctx: Ctx, world, kind: str, mode: intra.Mode, inputs=None, **overrides):
    """get_dispatch_layout + non-cached dispatch of this rank's data (or of `inputs` =
    (x, topk_idx, topk_weights)); returns dispatch's 6-tuple."""
    x, idx, weights = inputs or world.own(kind)
    per_rank, per_node, per_expert, is_in, _ = ctx.buffer.get_dispatch_layout(
        idx, world.sc.num_experts
    )
    kwargs = dict(
        num_tokens_per_rank=per_rank,
        num_tokens_per_rdma_rank=per_node,
        is_token_in_rank=is_in,
        num_tokens_per_expert=per_expert,
        expert_alignment=mode.alignment,
        num_worst_tokens=mode.num_worst,
        config=mode.config,
        **intra.stream_kwargs(ctx, mode),
    )
    if mode.with_topk:
        kwargs.update(topk_idx=idx, topk_weights=weights)
    kwargs.update(overrides)
    return ctx.buffer.dispatch(x, **kwargs)


def combine(ctx: Ctx, world, dispatch_out, mode: intra.Mode):
    """Each rank's expert transform of its received rows, then combine.
    Returns (combine's 3-tuple, the biases passed)."""
    recv_x, _, recv_w, _, handle, _ = dispatch_out
    y = ref.expert_transform(ref.as_bf16(recv_x), ctx.rank)
    biases = world.biases(mode.num_biases)
    bias = None if not biases else biases[0] if len(biases) == 1 else biases
    weights = recv_w if mode.with_topk else None
    out = ctx.buffer.combine(
        y,
        handle,
        topk_weights=weights,
        bias=bias,
        config=mode.config,
        **intra.stream_kwargs(ctx, mode),
    )
    return out, biases


# ----------------------------------------------------------------------------- expected handle


def by_channel(mask: torch.Tensor, num_channels: int, inclusive: bool = True) -> torch.Tensor:
    """[X, C] int32 from a [T, X] bool mask: rows t of channel c <= (inclusive) or < c, where
    channel c owns tokens [c * ceil(T / C), (c + 1) * ceil(T / C)) (docs/internode.md)."""
    num_tokens = mask.size(0)
    per = -(-num_tokens // num_channels)
    ends = [min((c + (1 if inclusive else 0)) * per, num_tokens) for c in range(num_channels)]
    csum = torch.cat(
        [torch.zeros(1, mask.size(1), dtype=torch.int64, device=mask.device), mask.long().cumsum(0)]
    )
    return csum[ends].T.contiguous().int()


def expected_handle(ctx: Ctx, world, num_channels: int) -> dict:
    """What the handle's fields hold on this rank (internode.h): the prefix matrices, and per
    received row its source node and bitmask, per forwarded row its local-rank mask."""
    r, local, node = ctx.rank, ctx.local_ranks, ctx.rank // ctx.local_ranks
    own = world.layouts[r]
    exp = world.expected(r)
    starts = [0] + exp.recv_gbl_rank_prefix_sum.long().tolist()[:-1]
    recv_gbl = [
        starts[s] + by_channel(lay.is_token_in_rank[:, r : r + 1], num_channels, False)[0].long()
        for s, lay in enumerate(world.layouts)
    ]
    sources = [world.layouts[m * local + r % local] for m in range(ctx.num_nodes)]
    span = slice(node * local, (node + 1) * local)
    bits = torch.tensor([1 << j for j in range(local)], dtype=torch.int64, device=device())
    meta = [
        torch.stack(
            [
                torch.full_like(rows, s // local),
                (lay.is_token_in_rank[rows, span].long() * bits).sum(1),
            ],
            1,
        )
        for s, (lay, rows) in enumerate(zip(world.layouts, exp.rows))
    ]
    forwarded = [lay.is_token_in_rank[rows, span] for lay, rows in zip(sources, exp.forwarded)]
    return {
        "rdma_channel_prefix_matrix": by_channel(own.is_token_in_node, num_channels),
        "gbl_channel_prefix_matrix": by_channel(own.is_token_in_rank, num_channels),
        "recv_rdma_channel_prefix_matrix": torch.cat(
            [by_channel(lay.is_token_in_node[:, node : node + 1], num_channels) for lay in sources]
        ),
        "recv_rdma_rank_prefix_sum": exp.recv_rdma_rank_prefix_sum,
        "recv_gbl_channel_prefix_matrix": torch.stack(recv_gbl).int(),
        "recv_gbl_rank_prefix_sum": exp.recv_gbl_rank_prefix_sum,
        "recv_src_meta": torch.cat(meta).int(),  # [Nr, 2]: source node, bitmask
        "send_rdma_head_sent": own.is_token_in_node,  # [T, N]: entries >= 0 exactly here
        "send_nvl_head_sent": torch.cat(forwarded),  # [Nf, L]: entries >= 0 exactly here
    }


# ----------------------------------------------------------------------------- checks


def check_layout(scope: intra.Scope, world, mode: intra.Mode) -> None:
    ctx = scope.ctx
    own = world.layouts[ctx.rank]
    idx, num_experts = world.topk_idx[ctx.rank], world.sc.num_experts
    out = ctx.buffer.get_dispatch_layout(idx, num_experts, **intra.stream_kwargs(ctx, mode))
    if not scope.ok("returns_5", isinstance(out, tuple) and len(out) == 5, intra.describe(out)):
        return
    per_rank, per_node, per_expert, is_in, event = out
    intra.settle(scope, event, mode.async_finish)
    scope.same("num_tokens_per_rank", per_rank, own.num_tokens_per_rank)
    scope.same("num_tokens_per_rdma_rank", per_node, own.num_tokens_per_rdma_rank)
    scope.same("num_tokens_per_expert", per_expert, own.num_tokens_per_expert)
    scope.same("is_token_in_rank", is_in, own.is_token_in_rank)


def check_handle(scope: intra.Scope, world, handle, mode: intra.Mode, rows: int) -> None:
    """The 10-tuple's types, shapes and contents (prefix sums exact; heads by their -1s)."""
    ctx = scope.ctx
    good = isinstance(handle, tuple) and len(handle) == 10
    good = good and all(isinstance(t, torch.Tensor) for t in handle)
    if not scope.ok("handle_10_tuple", good, f"got {intra.describe(handle)}"):
        return
    exp = world.expected(ctx.rank)
    want = expected_handle(ctx, world, ctx.channels(mode.config))
    scope.same("handle_is_token_in_rank", handle[0], world.layouts[ctx.rank].is_token_in_rank)
    for i in range(1, 7):
        scope.same(f"handle_{HANDLE_FIELDS[i]}", handle[i], want[HANDLE_FIELDS[i]])
    meta = handle[7]
    good = meta.dtype == torch.uint8 and tuple(meta.shape) == (rows, 8)
    if scope.ok(
        "handle_recv_src_meta_shape", good, f"got {intra.describe(meta)}, want [{rows}, 8]"
    ):
        decoded = meta[: exp.num_recv].contiguous().view(torch.int32)
        scope.same("handle_recv_src_meta", decoded, want["recv_src_meta"])
    head = handle[8]
    good = head.dtype == torch.int32 and tuple(head.shape) == tuple(
        want["send_rdma_head_sent"].shape
    )
    if scope.ok("handle_send_rdma_head_shape", good, intra.describe(head)):
        scope.same("handle_send_rdma_head_sent", head >= 0, want["send_rdma_head_sent"])
    head = handle[9]
    nf = mode.num_worst or exp.num_rdma_recv
    good = head.dtype == torch.int32 and tuple(head.shape) == (nf, ctx.local_ranks)
    if scope.ok("handle_send_nvl_head_shape", good, f"{intra.describe(head)}, want [{nf}, L]"):
        scope.same(
            "handle_send_nvl_head_sent", head[: exp.num_rdma_recv] >= 0, want["send_nvl_head_sent"]
        )


def check_dispatch(scope: intra.Scope, world, kind: str, out, mode: intra.Mode) -> None:
    """Compares a non-cached dispatch result with the reference for this rank."""
    recv_x, recv_idx, recv_w, expert_list, handle, _ = out
    ctx = scope.ctx
    exp = world.expected(ctx.rank)
    rows = mode.num_worst or exp.num_recv
    intra.check_recv_x(scope, recv_x, world.expected_x(kind, ctx.rank), rows)
    if isinstance(handle, (tuple, list)) and len(handle) == 10:  # handle[-4], as DeepEP's test
        scope.same("recv_gbl_rank_prefix_sum", handle[-4], exp.recv_gbl_rank_prefix_sum)
    check_handle(scope, world, handle, mode, rows)
    want = [] if mode.num_worst else exp.expert_list(mode.alignment)
    int_list = isinstance(expert_list, list) and all(type(v) is int for v in expert_list)
    detail = f"got {str(expert_list)[:300]}, expected {str(want)[:300]}"
    scope.ok("expert_list", int_list and expert_list == want, detail)
    if not mode.with_topk:
        detail = f"without top-k got {intra.describe(recv_idx)}, {intra.describe(recv_w)}"
        scope.ok("topk_none", recv_idx is None and recv_w is None, detail)
        return
    intra.rows_then_prefix(scope, "recv_topk_idx", recv_idx, exp.recv_topk_idx, rows)
    intra.rows_then_prefix(scope, "recv_topk_weights", recv_w, exp.recv_topk_weights, rows)
    if mode.num_worst and isinstance(recv_idx, torch.Tensor) and recv_idx.size(0) == rows:
        bad = int((recv_idx[exp.num_recv :] != -1).sum())
        scope.ok("worst_tail_idx", bad == 0, f"{bad} entries past the real rows are not -1")


def check_combined(scope: intra.Scope, world, kind: str, combine_out, biases, with_weights):
    """combine against the reference's two-level sum: bit for bit (the documented order), and
    DeepEP's calc_diff bound as a second opinion."""
    combined, combined_w, _ = combine_out
    exp_out, exp_w = world.expected_combine(kind, biases, with_weights)
    good = isinstance(combined, torch.Tensor) and combined.dtype == torch.bfloat16
    good = good and combined.shape == exp_out.shape
    want = intra.describe(exp_out)
    if not scope.ok("combined_shape", good, f"got {intra.describe(combined)}, want {want}"):
        return combined
    scope.same("combined_x_bitwise", combined, exp_out)
    scope.close("combined_x", combined, exp_out)
    if not with_weights:
        scope.ok("combined_weights_none", combined_w is None, intra.describe(combined_w))
        return combined
    good = isinstance(combined_w, torch.Tensor) and combined_w.shape == exp_w.shape
    if scope.ok("combined_weights_shape", good, f"got {intra.describe(combined_w)}"):
        scope.same("combined_weights_bitwise", combined_w, exp_w)
        diff = ref.calc_diff(combined_w.float(), exp_w) if exp_w.numel() else 0.0
        scope.ok("combined_weights", diff < 1e-9, f"calc_diff {diff:.3e} (limit 1e-9)")
    return combined


def combine_and_check(scope: intra.Scope, world, kind: str, dispatch_out, mode: intra.Mode):
    out, biases = combine(scope.ctx, world, dispatch_out, mode)
    intra.settle(scope, out[2], mode.async_finish)
    return check_combined(scope, world, kind, out, biases, mode.with_topk)


def run_case(scope: intra.Scope, world, kind: str, mode: intra.Mode):
    """Dispatch + checks, then (for float data) combine + checks; returns the dispatch."""
    out = dispatch(scope.ctx, world, kind, mode)
    intra.settle(scope, out[5], mode.async_finish)
    check_dispatch(scope, world, kind, out, mode)
    if kind in intra.FLOAT_KINDS and not mode.num_worst:
        combine_and_check(scope, world, kind, out, mode)
    return out


# ----------------------------------------------------------------------------- driver


def suite_configs(ctx: Ctx) -> list:
    """Every Config a section uses (the Buffer is sized for the largest)."""
    ep, r = ctx.ep, ctx.num_ranks
    configs = [ctx.config, ep.Buffer.get_dispatch_config(r), ep.Buffer.get_combine_config(r)]
    configs += [ep.Config(ctx.num_sms, 16, 256, s, rr) for s, rr in RDMA_CHUNKS]
    return configs


def buffer_bytes(ctx: Ctx) -> tuple[int, int]:
    """(num_nvl_bytes, num_rdma_bytes) that fit every call of the suite (internode_nvl_bytes /
    internode_rdma_bytes over suite_configs, rounded up to 128 bytes)."""
    c_mod, local = ctx.ep._C, ctx.local_ranks
    rdma = max(
        c_mod.internode_rdma_bytes(c, ctx.num_ranks, local, MAX_HIDDEN_BYTES, MAX_SCALES, MAX_TOPK)
        for c in suite_configs(ctx)
    )
    nvl = max(
        c_mod.internode_nvl_bytes(c, local, MAX_HIDDEN_BYTES, MAX_SCALES, MAX_TOPK)
        for c in suite_configs(ctx)
    )
    return -(-nvl // 128) * 128, -(-rdma // 128) * 128


def make_buffer(ctx: Ctx) -> Any:
    """A normal-mode Buffer whose RDMA and NVLink buffers fit every call of the suite (sized
    by buffer_bytes; collective)."""
    nvl, rdma = buffer_bytes(ctx)
    group = dist.new_group(list(range(ctx.num_ranks)))
    return ctx.ep.Buffer(
        group,
        num_nvl_bytes=nvl,
        num_rdma_bytes=rdma,
        low_latency_mode=False,
        num_qps_per_rank=1,
        explicitly_destroy=True,
    )


def set_topology_env(topo: Optional[Topology]) -> None:
    for key in ENV_KEYS:
        os.environ.pop(key, None)
    if topo is not None:
        os.environ.update(topo.env())


def run_section(ctx: Ctx, name: str, fn) -> bool:
    """Runs one section and records `<topology>.<name>.completed` (_dist.run_section)."""
    check = f"{ctx.topo}.{name}.completed"
    return _dist.run_section(ctx.rec, ctx.rank, check, f"[internode] {ctx.topo}: {name}", fn)


def run_topology(ctx: Ctx, topo: Topology) -> None:
    """Builds this topology's Buffer, runs every section on it, destroys it."""
    ctx.topo, ctx.local_ranks = topo.name, topo.local_ranks
    set_topology_env(topo)
    worlds: dict = {}
    setup = lambda: internode_sections.section_setup(ctx, topo, worlds)  # noqa: E731
    failed = not run_section(ctx, "setup", setup)
    if not failed:
        for name, fn in internode_sections.sections():
            if run_section(ctx, name, lambda fn=fn: fn(ctx, worlds)):
                continue
            failed = True
            probe = lambda: internode_sections.section_probe(ctx)  # noqa: E731
            if not run_section(ctx, "probe", probe):
                ctx.rec.check(f"{topo.name}.not_aborted", False, f"stopped after section {name!r}")
                break
    if ctx.buffer is not None:
        try:
            ctx.buffer.destroy()
            ctx.rec.check(f"{topo.name}.destroy", True)
        except Exception as e:  # noqa: BLE001 - an aborted buffer may refuse; reported if not
            ctx.rec.check(f"{topo.name}.destroy", failed, f"{type(e).__name__}: {e}")
    ctx.buffer = None
    set_topology_env(None)
    dist.barrier()


def run_suite(rank: int, num_ranks: int, rec: Recorder) -> None:
    """The whole internode suite on one rank (the launcher body)."""
    # A stuck call should fail well before the launcher deadline; a user value wins.
    os.environ.setdefault("UCCL_EP_TIMEOUT_SECS", "60")
    from uccl import ep

    num_sms = intra.suite_num_sms(num_ranks)
    if num_sms != intra.NUM_SMS:  # shared GPUs: every rank's kernels must fit at once
        ep.Buffer.set_num_sms(num_sms)
    ctx = Ctx(rank, num_ranks, rec, ep, num_sms, ep.Config(num_sms, 8, 256, 16, 128))
    topologies = selected_topologies(num_ranks)
    rec.check("suite.has_topologies", topologies, f"none of the topologies fits {num_ranks} ranks")
    for topo in topologies:
        run_topology(ctx, topo)


if __name__ == "__main__":
    sys.exit(run_under_torchrun(run_suite))
