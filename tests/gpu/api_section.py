"""API checks of the intranode suite: the deep_ep package and its submodules, set_num_sms,
the local buffer views, get_comm_stream, capture(), a Buffer bootstrapped through an
mpi4py-style communicator."""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import torch
import torch.distributed as dist

try:
    from . import intranode_suite as suite
except ImportError:  # run as a script
    import intranode_suite as suite


def section_api(ctx: suite.Ctx) -> None:
    scope = suite.Scope(ctx, "api", "imports")
    try:
        import deep_ep
    except ImportError as exc:
        scope.ok("deep_ep_import", False, repr(exc))
    else:
        for name in ("Buffer", "Config", "EventOverlap", "topk_idx_t"):
            same = getattr(deep_ep, name, None) is getattr(ctx.ep, name)
            scope.ok(f"deep_ep_{name}", same, f"deep_ep.{name} is not uccl.ep.{name}")
        api_modules(scope, ctx)
    api_set_num_sms(suite.Scope(ctx, "api", "set_num_sms"))
    api_buffer_views(suite.Scope(ctx, "api", "buffer_views"))
    api_mpi_comm(suite.Scope(ctx, "api", "mpi_comm"))
    topk_idx_t = getattr(ctx.ep, "topk_idx_t", None)
    scope.ok("topk_idx_t", topk_idx_t == torch.int64, f"got {topk_idx_t}")
    event = ctx.buffer.capture()
    is_overlap = isinstance(event, getattr(ctx.ep, "EventOverlap", ()))
    scope.ok("capture_type", is_overlap, f"got {suite.describe(event)}")
    event.current_stream_wait()


def api_modules(scope: suite.Scope, ctx: suite.Ctx) -> None:
    """DeepEP V1's submodules, imported as frameworks do (`from deep_ep.utils import ...`)."""
    try:
        from deep_ep.buffer import Buffer
        from deep_ep.utils import EventHandle, EventOverlap, check_nvlink_connections
    except ImportError as exc:
        scope.ok("deep_ep_submodules", False, repr(exc))
        return
    scope.ok("deep_ep_buffer_Buffer", Buffer is ctx.ep.Buffer, f"got {Buffer!r}")
    scope.ok("deep_ep_utils_EventOverlap", EventOverlap is ctx.ep.EventOverlap, repr(EventOverlap))
    scope.ok("deep_ep_utils_EventHandle", EventHandle is ctx.ep.EventHandle, repr(EventHandle))
    name = torch.cuda.get_device_name()
    if "PCIE" not in name.upper():  # SXM GPUs pass without a collective
        try:
            got = check_nvlink_connections(dist.group.WORLD)
        except Exception as exc:  # noqa: BLE001 - any error is a failed check
            got = exc
        scope.ok("check_nvlink_connections", got is None, f"{name}: got {got!r}")


class _IndexLike:
    """An integer type other than int (numpy's, for instance): has __index__ only."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


def api_set_num_sms(scope: suite.Scope) -> None:
    """set_num_sms takes any integer type, sets Buffer.num_sms (also called on a subclass, as
    DeepEP's static method does), and refuses odd, non-positive and non-integer counts."""
    buffer_cls = scope.ctx.ep.Buffer
    old = buffer_cls.num_sms

    class Sub(buffer_cls):
        pass

    try:
        buffer_cls.set_num_sms(_IndexLike(old + 2))
        got = buffer_cls.num_sms
        scope.ok("index_like", got == old + 2 and type(got) is int, f"num_sms={got!r}")
        Sub.set_num_sms(old)
        scope.ok("subclass_sets_Buffer", buffer_cls.num_sms == old, f"{buffer_cls.num_sms!r}")
        for bad, types in ((3, (ValueError,)), (0, (ValueError,)), (True, (ValueError,))):
            suite.expect_error(
                scope,
                f"rejects_{bad!r}",
                partial(buffer_cls.set_num_sms, bad),
                ("new_num_sms",),
                types,
            )
        suite.expect_error(
            scope,
            "rejects_float",
            partial(buffer_cls.set_num_sms, 24.0),
            ("new_num_sms",),
            (TypeError,),
        )
        scope.ok("unchanged_after_errors", buffer_cls.num_sms == old, f"{buffer_cls.num_sms!r}")
    finally:
        buffer_cls.num_sms = old


def api_buffer_views(scope: suite.Scope) -> None:
    """get_local_buffer_tensor views this rank's NVLink buffer (offset, dtype, size; writes
    land in it), gives an empty tensor for the RDMA buffer the intranode mode lacks, refuses
    sizes past the end and misaligned offsets; get_comm_stream is a stream of its own."""
    b = scope.ctx.buffer
    n = b.num_nvl_bytes
    whole = b.get_local_buffer_tensor(torch.uint8)
    here = whole.is_cuda and whole.device.index == torch.cuda.current_device()
    scope.ok("whole", whole.numel() == n and here, f"{suite.describe(whole)} for {n} bytes")
    half = b.get_local_buffer_tensor(torch.bfloat16, offset=256)
    good = half.dtype == torch.bfloat16 and half.numel() == (n - 256) // 2
    scope.ok("offset", good and half.data_ptr() == whole.data_ptr() + 256, suite.describe(half))
    shaped = b.get_local_buffer_tensor(torch.float32, size=torch.Size([4, 8]), offset=128)
    good = tuple(shaped.shape) == (4, 8) and shaped.data_ptr() == whole.data_ptr() + 128
    scope.ok("size", good, suite.describe(shaped))
    shaped.fill_(1.5)
    seen = whole[128 : 128 + 128].view(torch.float32)
    scope.ok("aliases_buffer", bool((seen == 1.5).all()), f"read back {seen[:4].tolist()}")
    rdma = b.get_local_buffer_tensor(torch.bfloat16, use_rdma_buffer=True)
    scope.ok("rdma_empty", rdma.numel() == 0 and rdma.dtype == torch.bfloat16, suite.describe(rdma))
    too_big = partial(b.get_local_buffer_tensor, torch.uint8, torch.Size([n + 1]))
    suite.expect_error(scope, "size_past_end", too_big, ("size",), (ValueError,))
    misaligned = partial(b.get_local_buffer_tensor, torch.float32, None, 2)
    suite.expect_error(scope, "offset_misaligned", misaligned, ("offset",), (ValueError,))
    stream = b.get_comm_stream()
    own = isinstance(stream, torch.cuda.Stream) and stream != torch.cuda.current_stream()
    scope.ok("comm_stream", own, f"got {stream!r}")


class _TorchBackedComm:
    """The part of ``mpi4py.MPI.Comm`` that ``Buffer(comm=...)`` may use (Get_rank, Get_size,
    allgather, Barrier), over torch.distributed's world group; counts the calls."""

    def __init__(self) -> None:
        self.calls = {"allgather": 0, "Barrier": 0}

    def Get_rank(self) -> int:  # noqa: N802 - mpi4py's names
        return dist.get_rank()

    def Get_size(self) -> int:  # noqa: N802
        return dist.get_world_size()

    def allgather(self, obj: Any) -> list:
        self.calls["allgather"] += 1
        out: list = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out

    def Barrier(self) -> None:  # noqa: N802
        self.calls["Barrier"] += 1
        dist.barrier()


def api_mpi_comm(scope: suite.Scope) -> None:
    """Buffer(group=None, comm=<mpi4py-style communicator>): calls the communicator's
    allgather to bootstrap, exposes it as ``group``, and dispatches and combines correctly
    (checked against the reference like the sweep)."""
    ctx = scope.ctx
    if dist.get_world_size() != ctx.num_ranks:
        scope.ok("world_is_group", False, f"world {dist.get_world_size()} != {ctx.num_ranks}")
        return
    comm, hidden = _TorchBackedComm(), 1024
    num_nvl_bytes = ctx.config.get_nvl_buffer_size_hint(hidden * 2, ctx.num_ranks)
    buffer = ctx.ep.Buffer(None, num_nvl_bytes, comm=comm, explicitly_destroy=True)
    try:
        got = (buffer.group is comm, buffer.rank, buffer.group_size)
        scope.ok(
            "attributes",
            got == (True, ctx.rank, ctx.num_ranks),
            f"(group is comm, rank, size) = {got}",
        )
        scope.ok("bootstrap_used", comm.calls["allgather"] >= 1, f"calls {comm.calls}")
        sc = suite.Scenario("mpi_comm", (300,) * ctx.num_ranks, hidden, 64, seed=11)
        world = suite.gather_world(ctx, sc)
        sub = suite.Scope(dataclasses.replace(ctx, buffer=buffer), "api_mpi_comm", sc.name)
        for kind in ("bf16_rand", "fp8_f32"):
            suite.run_case(sub, world, kind, suite.Mode(ctx.config, num_biases=1))
    finally:
        buffer.destroy()
