"""One Buffer in both modes across nodes, as DeepEP's `test_internode.py --test-ll-compatibility`
(deepep-v1-semantics.md §4.2, checklist item 73): a Buffer built with low_latency_mode=True,
num_qps_per_rank = max(num_sms, experts per rank) and an RDMA buffer that fits both the
internode calls (internode_rdma_bytes) and the LL calls (get_low_latency_rdma_size_hint; the
max). On it, in order (every step checked against the independent references):

1. `internode[first]`: internode dispatch + combine, BF16 and FP8 (internode_reference.py,
   through internode_suite.run_case: rows, handle, top-k, expert counts, combine bit for bit);
2. `clean`: clean_low_latency_buffer(T, H, E);
3. `ll[<fmt>,h<H>]`: LL dispatch + combine, BF16 and FP8, on DeepEP's compatibility shapes
   (T = 16, hidden 5120, top-9) and the LL suite's hidden 7168 / top-8, identity and scaled
   experts (ll_reference.py, through low_latency_suite.run_case);
4. `internode[second]`: internode dispatch + combine again (after the LL calls);
5. `clean_again` + `ll_again[bf16,h7168]`: LL once more after the second internode round.

Checks are named `ll_compat.<topology>.<step>...`. Runs on the ipc topologies of
UCCL_EP_TEST_INTERNODE_TOPOLOGIES (default L2_ipc, L4_ipc: those the ranks form), or on every
selected topology when the variable is set.

Runs under the launcher (test_internode_gpu.py) or, for debugging, directly:
    torchrun --nproc_per_node=4 tests/gpu/internode_ll_compat_suite.py
"""

from __future__ import annotations

import os
import sys
from typing import Any

import torch.distributed as dist

try:
    from . import _dist
    from . import internode_suite as suite
    from . import intranode_suite as intra
    from . import low_latency_suite as ll
    from . import reference as ref
    from ._dist import Recorder, run_under_torchrun
    from .ll_reference import Case
except ImportError:  # run as a script: the siblings are importable from sys.path[0]
    import _dist
    import internode_suite as suite
    import intranode_suite as intra
    import low_latency_suite as ll
    import reference as ref
    from _dist import Recorder, run_under_torchrun
    from ll_reference import Case

PREFIX = "ll_compat"
LL_TOKENS = 16  # num_max_dispatch_tokens_per_rank of the LL calls (DeepEP's ll_num_tokens)
LL_EXPERTS_PER_RANK = 32
# (hidden, top-k) of the LL cases: DeepEP's compatibility shapes, then the LL suite's main one.
LL_SHAPES = ((5120, 9), (ll.HIDDEN, ll.NUM_TOPK))
LL_MAX_HIDDEN = max(h for h, _ in LL_SHAPES)
LL_FORMATS = ("bf16", "fp8")
INTERNODE_KINDS = ("bf16_rand", "fp8_f32")


def compat_topologies(num_ranks: int) -> list:
    """The selected internode topologies (internode_suite.selected_topologies): only the ipc
    ones unless UCCL_EP_TEST_INTERNODE_TOPOLOGIES names them explicitly."""
    topologies = suite.selected_topologies(num_ranks)
    if os.environ.get(suite.TOPOLOGIES_ENV, "").strip():
        return topologies
    return [t for t in topologies if t.transport == "ipc"]


def internode_scenario(num_ranks: int) -> ref.Scenario:
    """DeepSeek-V3-like rows (hidden 7168, 256 experts, top-8), uneven tokens per rank."""
    tokens = tuple((512, 300, 700, 128)[r % 4] for r in range(num_ranks))
    return ref.Scenario("ll_compat_h7168_e256", tokens, 7168, 256, seed=73)


def buffer_sizes(ictx: suite.Ctx, lctx: ll.Ctx) -> tuple[int, int, int]:
    """(num_nvl_bytes, num_rdma_bytes, LL size hint): the RDMA buffer is the larger of the
    internode suite's need and the LL hint."""
    nvl, rdma = suite.buffer_bytes(ictx)
    hint = lctx.ep.Buffer.get_low_latency_rdma_size_hint(
        lctx.t, lctx.hidden, lctx.num_ranks, lctx.num_experts
    )
    return nvl, max(rdma, hint), hint


def make_buffer(ictx: suite.Ctx, lctx: ll.Ctx) -> Any:
    """The Buffer in both modes (collective); num_qps_per_rank as DeepEP's test."""
    nvl, rdma, _ = buffer_sizes(ictx, lctx)
    group = dist.new_group(list(range(ictx.num_ranks)))
    return ictx.ep.Buffer(
        group,
        num_nvl_bytes=nvl,
        num_rdma_bytes=rdma,
        low_latency_mode=True,
        num_qps_per_rank=max(ictx.num_sms, lctx.experts_per_rank),
        explicitly_destroy=True,
    )


# ----------------------------------------------------------------------------- steps


def step_setup(ictx: suite.Ctx, lctx: ll.Ctx, topo: suite.Topology) -> None:
    ictx.buffer = lctx.buffer = make_buffer(ictx, lctx)
    scope = ictx.scope("setup", "after Buffer(..., low_latency_mode=True)")
    buf = ictx.buffer
    scope.ok("low_latency_mode", getattr(buf, "low_latency_mode", None) is True, "not True")
    rt = buf.runtime
    got = (getattr(rt, "num_local_ranks", None), getattr(rt, "num_nodes", None))
    want = (topo.local_ranks, ictx.num_nodes)
    scope.ok("topology", got == want, f"(num_local_ranks, num_nodes) = {got}, want {want}")
    _, rdma, hint = buffer_sizes(ictx, lctx)
    scope.ok("rdma_fits_ll", buf.num_rdma_bytes >= hint, f"{buf.num_rdma_bytes} < hint {hint}")
    scope.ok("rdma_size", buf.num_rdma_bytes == rdma, f"{buf.num_rdma_bytes}, want {rdma}")


def step_internode(ictx: suite.Ctx, world, label: str) -> None:
    for kind in INTERNODE_KINDS:
        scope = ictx.scope(f"internode[{label},{kind}]", world.sc.name)
        suite.run_case(scope, world, kind, intra.Mode(ictx.config))


def step_clean(lctx: ll.Ctx) -> None:
    lctx.buffer.clean_low_latency_buffer(lctx.t, lctx.hidden, lctx.num_experts)


def ll_cases(lctx: ll.Ctx) -> list:
    tokens = (lctx.t,) * lctx.num_ranks
    return [
        Case(f"ll_compat_h{h}_k{k}", tokens, h, num_topk=k, seed=1 + i)
        for i, (h, k) in enumerate(LL_SHAPES)
    ]


def step_ll(lctx: ll.Ctx, label: str, formats: tuple, cases: list) -> None:
    combines = (ll.CombineMode("identity"), ll.CombineMode("scaled"))
    for case in cases:
        world = lctx.world(case)
        for fmt in formats:
            scope = ll.Scope(lctx, f"{lctx.topo}.{label}[{fmt},h{case.hidden}]", case.name)
            ll.run_case(scope, world, ll.DispatchMode(fmt), combines)


def run_steps(ictx: suite.Ctx, lctx: ll.Ctx, topo: suite.Topology) -> bool:
    """Runs the steps in order; stops at the first that raises. Returns whether all ran."""
    worlds: dict = {}

    def gather() -> None:
        worlds["main"] = suite.gather_world(ictx, internode_scenario(ictx.num_ranks))

    cases = ll_cases(lctx)
    steps = (
        ("setup", lambda: step_setup(ictx, lctx, topo)),
        ("inputs", gather),
        ("internode_first", lambda: step_internode(ictx, worlds["main"], "first")),
        ("clean", lambda: step_clean(lctx)),
        ("ll", lambda: step_ll(lctx, "ll", LL_FORMATS, cases)),
        ("internode_second", lambda: step_internode(ictx, worlds["main"], "second")),
        ("clean_again", lambda: step_clean(lctx)),
        ("ll_again", lambda: step_ll(lctx, "ll_again", ("bf16",), cases[-1:])),
    )
    for name, fn in steps:
        check = f"{ictx.topo}.{name}.completed"
        label = f"[internode ll_compat] {topo.name}: {name}"
        if not _dist.run_section(ictx.rec, ictx.rank, check, label, fn):
            ictx.rec.check(f"{ictx.topo}.not_aborted", False, f"stopped after step {name!r}")
            return False
    return True


def run_topology(ictx: suite.Ctx, lctx: ll.Ctx, topo: suite.Topology) -> None:
    ictx.topo = lctx.topo = f"{PREFIX}.{topo.name}"
    ictx.local_ranks = topo.local_ranks
    suite.set_topology_env(topo)
    ok = run_steps(ictx, lctx, topo)
    if ictx.buffer is not None:
        try:
            ictx.buffer.destroy()
            ictx.rec.check(f"{ictx.topo}.destroy", True)
        except Exception as e:  # noqa: BLE001 - an aborted buffer may refuse; reported if not
            ictx.rec.check(f"{ictx.topo}.destroy", not ok, f"{type(e).__name__}: {e}")
    ictx.buffer = lctx.buffer = None
    suite.set_topology_env(None)
    dist.barrier()


def run_suite(rank: int, num_ranks: int, rec: Recorder) -> None:
    """The compatibility test on one rank (the launcher body)."""
    # A stuck call should fail well before the launcher deadline; a user value wins.
    os.environ.setdefault("UCCL_EP_TIMEOUT_SECS", "60")
    from uccl import ep

    num_sms = intra.suite_num_sms(num_ranks)
    if num_sms != intra.NUM_SMS:  # shared GPUs: every rank's kernels must fit at once
        ep.Buffer.set_num_sms(num_sms)
    ictx = suite.Ctx(rank, num_ranks, rec, ep, num_sms, ep.Config(num_sms, 8, 256, 16, 128))
    lctx = ll.Ctx(
        rank,
        num_ranks,
        rec,
        ep,
        t=LL_TOKENS,
        experts_per_rank=LL_EXPERTS_PER_RANK,
        hidden=LL_MAX_HIDDEN,
    )
    topologies = compat_topologies(num_ranks)
    rec.check(f"{PREFIX}.has_topologies", topologies, f"no topology fits {num_ranks} ranks")
    for topo in topologies:
        run_topology(ictx, lctx, topo)


if __name__ == "__main__":
    sys.exit(run_under_torchrun(run_suite))
