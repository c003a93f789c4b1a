"""Runtime suite: what one ``Buffer`` owns, checked on GPUs (ranks may share one under CUDA MPS).

- topology: ``UCCL_EP_NUM_LOCAL_RANKS`` splits the ranks into emulated nodes (NVLink domains);
  the Buffer reports them, and its normal-mode calls take the internode path when it spans
  several (dispatch then wants the internode handle).
- RDMA domain: with ``num_rdma_bytes > 0`` and several nodes the Buffer starts its CPU proxies
  over the ipc transport (and over libfabric tcp, where the provider cannot use GPU memory its
  RDMA buffer falls back to pinned host memory). A kernel pushes WRITE commands through the
  Buffer's command queues; every rank then finds each peer's bytes at the expected offset of its
  own RDMA buffer (compared with the bytes the peer wrote, an independent pattern).
- destroy: the ranks meet through the proxies' BARRIER before freeing.

Runs under the launcher (test_runtime_gpu.py) or, for debugging, directly:
    torchrun --nproc_per_node=4 tests/gpu/runtime_suite.py
"""

from __future__ import annotations

import os
import sys
import traceback

import torch
import torch.distributed as dist

try:
    from ._dist import Recorder, run_under_torchrun
except ImportError:  # run as a script: the siblings are importable from sys.path[0]
    from _dist import Recorder, run_under_torchrun

RDMA_BYTES = 1 << 20
NVL_BYTES = 1 << 20
CHUNK = 4096  # bytes each rank writes to each peer
ENV = ("UCCL_EP_NUM_LOCAL_RANKS", "UCCL_EP_TRANSPORT", "UCCL_EP_FI_PROVIDER")


def pattern(src: int, dst: int) -> torch.Tensor:
    """The bytes rank `src` sends to rank `dst`: a sequence no other pair uses."""
    base = torch.arange(CHUNK, dtype=torch.int64)
    return ((base * 7 + src * 31 + dst * 101) % 251).to(torch.uint8)


def run_case(rank: int, num_ranks: int, rec: Recorder, name: str, env: dict) -> None:
    from uccl import ep
    from uccl.ep._C import _testing

    for k in ENV:
        os.environ.pop(k, None)
    os.environ.update(env)
    local = int(env["UCCL_EP_NUM_LOCAL_RANKS"])
    device = torch.device("cuda", torch.cuda.current_device())
    group = dist.new_group(list(range(num_ranks)))
    buf = ep.Buffer(group, NVL_BYTES, RDMA_BYTES, explicitly_destroy=True)
    try:
        rt = buf.runtime
        nodes = num_ranks // local
        rec.check(
            f"{name}.topology",
            rt.num_local_ranks == local and rt.num_nodes == nodes,
            f"got {rt.topology}",
        )
        want = env.get("UCCL_EP_TRANSPORT", "ipc")
        rec.check(
            f"{name}.transport",
            rt.transport.startswith(want) and rt.num_proxy_threads >= 1,
            f"transport {rt.transport!r}, {rt.num_proxy_threads} proxy thread(s)",
        )
        per_node = buf.get_dispatch_layout(torch.zeros(4, 2, dtype=torch.int64, device=device), 8)[
            1
        ]
        rec.check(
            f"{name}.layout_per_node",
            isinstance(per_node, torch.Tensor) and tuple(per_node.shape) == (nodes,),
            f"num_tokens_per_rdma_rank {per_node!r}, want [{nodes}] int32",
        )
        try:
            x = torch.zeros(4, 64, dtype=torch.bfloat16, device=device)
            buf.dispatch(x, handle=(None,) * 6)  # an intranode handle's length
            rec.check(f"{name}.internode_routed", False, "dispatch with a 6-tuple handle returned")
        except ValueError as e:
            rec.check(f"{name}.internode_routed", "10-tuple" in str(e), str(e))
        rdma = buf.get_local_buffer_tensor(torch.uint8, use_rdma_buffer=True)
        rec.check(f"{name}.rdma_view", rdma.numel() == RDMA_BYTES, f"{rdma.numel()} bytes")
        # Source bytes at offset CHUNK * dst, destination offset CHUNK * src.
        for dst in range(num_ranks):
            rdma[CHUNK * dst : CHUNK * (dst + 1)] = pattern(rank, dst).to(device)
        torch.cuda.synchronize()
        dist.barrier(group)
        stream = torch.cuda.current_stream().cuda_stream
        for dst in range(num_ranks):
            if dst == rank:
                continue
            _testing.rdma_test_write(
                rt, dst, CHUNK * dst, RDMA_BYTES // 2 + CHUNK * rank, CHUNK, stream
            )
        torch.cuda.synchronize()  # each kernel waited for its FENCE: the bytes have landed
        buf.check()
        rec.check(f"{name}.writes_done", True)
        dist.barrier(group)
        for src in range(num_ranks):
            if src == rank:
                continue
            off = RDMA_BYTES // 2 + CHUNK * src
            got = rdma[off : off + CHUNK].cpu()
            rec.check(
                f"{name}.bytes_from_{src}",
                torch.equal(got, pattern(src, rank)),
                f"{int((got != pattern(src, rank)).sum())} of {CHUNK} bytes differ",
            )
    except Exception as e:  # noqa: BLE001 - recorded, then the next case runs
        rec.check(f"{name}.raised", False, f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
    finally:
        try:
            buf.destroy()
            rec.check(f"{name}.destroy", True)
        except Exception as e:  # noqa: BLE001
            rec.check(f"{name}.destroy", False, f"{type(e).__name__}: {e}")
        for k in ENV:
            os.environ.pop(k, None)
    dist.barrier()


def run_suite(rank: int, num_ranks: int, rec: Recorder) -> None:
    os.environ["UCCL_EP_TIMEOUT_SECS"] = "30"
    cases = [("ipc_1_per_node", {"UCCL_EP_NUM_LOCAL_RANKS": "1"})]
    if num_ranks % 2 == 0 and num_ranks > 2:
        cases.append(("ipc_2_per_node", {"UCCL_EP_NUM_LOCAL_RANKS": "2"}))
    cases.append(
        (
            "libfabric_tcp",
            {
                "UCCL_EP_NUM_LOCAL_RANKS": "1",
                "UCCL_EP_TRANSPORT": "libfabric",
                "UCCL_EP_FI_PROVIDER": "tcp;ofi_rxm",
            },
        )
    )
    for name, env in cases:
        run_case(rank, num_ranks, rec, name, env)


if __name__ == "__main__":
    sys.exit(run_under_torchrun(run_suite))
