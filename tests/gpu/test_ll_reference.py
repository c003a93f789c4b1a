"""CPU unit tests of ll_reference.py, the reference of the low-latency GPU suite: FP8
quantisation and UE8M0 packing round trips, the routing reference and the layout decoder, the
combine reference and the deterministic inputs. Needs torch (skips without it), no GPU."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from . import ll_reference as ref  # noqa: E402

CPU = torch.device("cpu")


def test_pow2_ceil():
    t = torch.tensor([1.0, 1.5, 0.75, 2.0**-20, 3.0e5, 1.0000001], dtype=torch.float32)
    want = torch.tensor([1.0, 2.0, 1.0, 2.0**-20, 2.0**19, 2.0], dtype=torch.float32)
    assert torch.equal(ref.pow2_ceil(t), want)
    r = torch.rand(1000) * 100 + 1e-6
    p = ref.pow2_ceil(r)
    assert bool((p >= r).all()) and bool((p < 2 * r).all())
    assert bool((torch.frexp(p).mantissa == 0.5).all())


def test_round_e4m3_ties_to_even_and_saturates():
    # Every E4M3 value stays; every midpoint between neighbours goes to the even code (the
    # GPU's cvt.rn); beyond 448 saturates.
    values = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn).float()
    grid = torch.unique(values[~torch.isnan(values)].abs()).sort().values
    assert torch.equal(ref.round_e4m3(grid), grid)
    assert torch.equal(ref.round_e4m3(-grid), -grid)
    lo, hi = grid[:-1], grid[1:]
    even_lo = lo.to(torch.float8_e4m3fn).view(torch.uint8).int() % 2 == 0
    assert torch.equal(ref.round_e4m3((lo + hi) / 2), torch.where(even_lo, lo, hi))
    assert ref.round_e4m3(torch.tensor([1000.0, -449.0])).tolist() == [448.0, -448.0]
    # The tie the GPU run hit: 336 lies between 320 (even code) and 352.
    assert ref.round_e4m3(torch.tensor([336.0])).item() == 320.0


def test_quantize_group_max_is_448_and_floor():
    x = torch.randn(3, 512).bfloat16()
    x[1, :128] = 0.0
    x[2, 128:256] *= 1e-6
    data, scales = ref.quantize_fp8(x)
    assert data.dtype == torch.float8_e4m3fn and data.shape == x.shape
    assert scales.dtype == torch.float32 and scales.shape == (3, 4)
    groups = x.float().view(3, 4, 128).abs()
    top = groups.argmax(-1)
    codes = data.float().view(3, 4, 128).abs().gather(-1, top.unsqueeze(-1)).squeeze(-1)
    amax = groups.amax(-1)
    floored = amax < ref.AMAX_FLOOR
    assert bool((codes[~floored] == 448.0).all())
    assert scales[1, 0] == torch.tensor(ref.AMAX_FLOOR, dtype=torch.float32) / 448.0
    assert bool((data.float()[1, :128] == 0).all())
    assert bool((scales[~floored] == amax[~floored] / 448.0).all())


@pytest.mark.parametrize("round_scale", [False, True])
def test_quantize_round_trip(round_scale):
    gen = torch.Generator().manual_seed(5)
    x = (torch.randn(64, 2048, generator=gen) * 10).bfloat16()
    data, scales = ref.quantize_fp8(x, round_scale=round_scale)
    back = ref.dequantize(data, scales)
    err = (back - x.float()).abs()
    amax = x.float().view(64, 16, 128).abs().amax(-1, keepdim=True).clamp(min=1e-4)
    # E4M3: 3 mantissa bits; with power-of-two scales values use up to half the range
    assert bool((err.view(64, 16, 128) <= amax * 2.0**-4).all())
    rel = err / x.float().abs().clamp(min=1e-30)
    normal = x.float().abs() >= scales.repeat_interleave(128, dim=1) * 2.0**-6  # E4M3 normals
    assert bool((rel[normal] <= 2.0**-4 + 1e-6).all())
    if round_scale:
        assert bool((torch.frexp(scales).mantissa == 0.5).all())
        assert bool((scales >= amax.squeeze(-1) / 448.0).all())


def test_quantize_exact_values_round_trip():
    # Values on the E4M3 grid with group max 448: scale 1, exact both ways.
    grid = torch.tensor([448.0, -448.0, 1.0, -0.5, 0.0, 2.0**-9, 240.0, -13.0])
    x = grid.repeat(16).view(1, 128).bfloat16()
    for round_scale in (False, True):
        data, scales = ref.quantize_fp8(x, round_scale=round_scale)
        assert torch.equal(scales, torch.ones(1, 1))
        assert torch.equal(ref.dequantize(data, scales), x.float())


def test_ue8m0_pack_layout_and_round_trip():
    scales = torch.tensor([[2.0**-1, 1.0, 2.0, 4.0, 2.0**-20, 2.0**10, 1.0, 1.0]])
    packed = ref.pack_ue8m0(scales)
    assert packed.dtype == torch.int32 and packed.shape == (1, 2)
    word = int(packed[0, 0]) & 0xFFFFFFFF
    assert [(word >> (8 * i)) & 0xFF for i in range(4)] == [126, 127, 128, 129]
    assert torch.equal(ref.unpack_ue8m0(packed), scales)
    # column-major (strided) packed scales unpack the same
    batch = ref.pack_ue8m0(torch.pow(2.0, torch.randint(-30, 30, (2, 5, 8)).float()))
    strided = batch.transpose(1, 2).contiguous().transpose(1, 2)
    assert torch.equal(ref.unpack_ue8m0(strided), ref.unpack_ue8m0(batch))


def test_ue8m0_format_matches_round_scale():
    x = (torch.randn(8, 2048) * 3).bfloat16()
    data_r, scales_r = ref.quantize(x, "fp8_round")
    data_u, packed = ref.quantize(x, "fp8_ue8m0")
    assert torch.equal(data_r.view(torch.uint8), data_u.view(torch.uint8))
    assert packed.dtype == torch.int32 and packed.shape == (8, 4)
    assert torch.equal(ref.unpack_ue8m0(packed), scales_r)
    assert torch.equal(ref.dequantize(data_u, packed), ref.dequantize(data_r, scales_r))


def test_dequantize_strided_scales():
    x = torch.randn(2, 6, 1024).bfloat16()
    data, scales = ref.quantize_fp8(x)
    column_major = scales.transpose(1, 2).contiguous().transpose(1, 2)
    assert column_major.stride() == (6 * 8, 1, 6)
    assert torch.equal(ref.dequantize(data, column_major), ref.dequantize(data, scales))
    assert torch.equal(ref.dequantized_bf16(x, "bf16"), x)


def test_expected_routing_and_layout_decoder():
    # 2 ranks, T = 4, 2 local experts per rank (4 experts); destination rank 1 (experts 2, 3)
    idx0 = torch.tensor([[2, 3], [0, 2], [-1, -1], [3, 1]])
    idx1 = torch.tensor([[3, -1], [2, 0]])
    got = ref.expected_routing([idx0, idx1], dst=1, num_local_experts=2, num_max_tokens=4)
    # expert 0 (global 2): rank 0 tokens 0, 1; rank 1 token 1. expert 1 (global 3): rank 0
    # tokens 0, 3; rank 1 token 0 (token 0 of rank 0 arrives once per expert)
    assert got.pair_counts.tolist() == [[2, 1], [2, 1]]
    assert got.counts.tolist() == [3, 3]
    want = sorted([(0 * 2 + 0) * 4 + t for t in (0, 1)] + [(0 * 2 + 1) * 4 + 1])
    want += sorted([(1 * 2 + 0) * 4 + t for t in (0, 3)] + [(1 * 2 + 1) * 4 + 0])
    assert got.keys.tolist() == sorted(want)
    # a layout with blocks in any order: expert 0 = [rank 1 at 0, rank 0 at 1..2]
    layout = torch.tensor([[(1 << 32) | 2, (0 << 32) | 1], [(0 << 32) | 2, (2 << 32) | 1]])
    count = torch.tensor([3, 3], dtype=torch.int32)
    src_info = torch.full((2, 8), -1, dtype=torch.int32)
    src_info[0, :3] = torch.tensor([1, 1, 0])
    src_info[1, :3] = torch.tensor([3, 0, 0])
    blocks, why = ref.decode_layout(layout, count, src_info, 4)
    assert why == "" and torch.equal(blocks.keys, got.keys)
    assert ref.mismatched_keys(blocks.keys, got.keys, 2, 4) == "the multisets are equal"
    overlap = layout.clone()
    overlap[0, 0] = (0 << 32) | 2
    assert ref.decode_layout(overlap, count, src_info, 4)[0] is None
    past = layout.clone()
    past[1, 1] = (3 << 32) | 1
    assert ref.decode_layout(past, count, src_info, 4)[0] is None
    assert ref.decode_layout(layout, torch.tensor([3, 4]), src_info, 4)[0] is None
    wrong = src_info.clone()
    wrong[0, 0] = 2
    blocks, _ = ref.decode_layout(layout, count, wrong, 4)
    detail = ref.mismatched_keys(blocks.keys, got.keys, 2, 4)
    assert "1 of 6" in detail and "expert 0, source 1, token" in detail


def test_combine_reference():
    x = torch.tensor([[1.0, -2.0], [4.0, 8.0], [3.0, 3.0]]).bfloat16()
    idx = torch.tensor([[0, 3], [-1, 2], [-1, -1]])
    w = torch.tensor([[0.5, 0.25], [9.0, 2.0], [1.0, 1.0]])
    factors = torch.tensor([1.0, 2.0, 4.0, 0.5])
    got = ref.combine_reference(x, idx, w, factors)
    want = torch.tensor([[0.5 + 0.125, -1.0 - 0.25], [32.0, 64.0], [0.0, 0.0]]).bfloat16()
    assert torch.equal(got, want)
    ident = ref.identity_combine_reference(x, idx, w)
    assert torch.equal(ident, torch.tensor([[0.75, -1.5], [8.0, 16.0], [0.0, 0.0]]))
    assert ref.calc_diff(got, want) == 0.0
    factors = ref.expert_factors(10, CPU)
    assert factors.tolist() == [0.25, 0.5, 1.0, 2.0, 4.0] * 2


def test_logfmt_levels_signs_and_zero():
    # Groups of random magnitudes below 1 (one with a zero, so amin clips to amax * 2^-32);
    # every value must come back as the nearest of all 512 levels, found by brute force.
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(3, 128, generator=gen) * torch.tensor([[0.2], [1e-3], [0.05]])
    x[2, 7] = 0.0
    xb = x.bfloat16()
    got = ref.logfmt_round_trip(xb).double()
    for row in range(3):
        a = xb[row].double().abs()
        lmax = torch.log2(a.max())
        lmin = lmax - 32 if a.min() == 0 else torch.log2(a.min())
        step = (lmax - lmin) / 510
        levels = torch.exp2(lmin + torch.arange(-1, 511, dtype=torch.float64) * step)
        nearest = levels[(a.unsqueeze(1) - levels).abs().argmin(1)]
        nearest[nearest == levels[0]] = 0.0  # level -1 reads back as zero
        want = torch.copysign(nearest, xb[row].double())
        assert torch.allclose(got[row], want, rtol=1e-6, atol=0), row  # float32 result
    assert got[2, 7] == 0.0
    assert got[0].abs().max() == xb[0].double().abs().max()  # amax is a level


def test_logfmt_keeps_groups_it_cannot_encode():
    x = torch.randn(2, 256) * 0.1
    x[0, :128] *= 40  # amax >= 1: kept as bf16
    x[1, 128:] = 0.125  # every magnitude equal (lmin == lmax): kept
    xb = x.bfloat16()
    y = ref.logfmt_round_trip(xb)
    assert torch.equal(y[0, :128], xb[0, :128].float())
    assert torch.equal(y[1, 128:], xb[1, 128:].float())
    assert not torch.equal(y[0, 128:], xb[0, 128:].float())  # encoded
    # amin below amax * 2^-32 is clipped: such values read back as zero or the lowest level
    z = torch.full((1, 128), 0.5)
    z[0, 0] = 1e-30
    out = ref.logfmt_round_trip(z.bfloat16())
    assert out[0, 0] == 0.0 and out[0, 1] == 0.5


def test_logfmt_combine_reference_error_is_small():
    gen = torch.Generator().manual_seed(5)
    x = (torch.randn(16, 2048, generator=gen) * 0.3).bfloat16()
    idx = torch.randint(0, 4, (16, 2))
    w = torch.rand(16, 2, generator=gen)
    factors = torch.tensor([1.0, 0.5, 0.25, 2.0])
    exact = ref.combine_reference(x, idx, w, factors)
    approx = ref.combine_reference(x, idx, w, factors, use_logfmt=True)
    diff = ref.calc_diff(exact, approx)
    assert 0 < diff < 1e-4


def test_make_inputs_deterministic_and_shaped():
    case = ref.Case("c", (16, 0, 5), 2048, num_topk=4, seed=3, num_dropped=6)
    a = ref.make_inputs(case, 0, 24, 3, CPU)
    b = ref.make_inputs(case, 0, 24, 3, CPU)
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    x, idx, w = a
    assert x.dtype == torch.bfloat16 and x.shape == (16, 2048)
    assert idx.dtype == torch.int64 and idx.shape == (16, 4) and w.dtype == torch.float32
    assert bool((idx[8] == -1).all())  # the empty token n // 2
    assert int((idx == -1).sum()) >= 6 + 4 - 4  # dropped entries may hit the empty token
    valid = idx[idx >= 0]
    assert bool((valid < 24).all())
    for row in idx:  # distinct experts per token
        v = row[row >= 0]
        assert v.unique().numel() == v.numel()
    assert bool((w > 0).all())
    assert bool((x[0, 128:256] == 0).all())
    empty = ref.make_inputs(case, 1, 24, 3, CPU)
    assert empty[0].shape == (0, 2048) and empty[1].shape == (0, 4)
    same = ref.Case("s", (32,), 2048, num_topk=3, routing="same_rank", num_dropped=0)
    _, idx, _ = ref.make_inputs(same, 0, 16, 2, CPU)
    owners = torch.where(idx[:, 0:1] >= 0, idx // 8, idx)
    rows = [r for r in owners if bool((r >= 0).all())]
    assert rows and all(bool((r == r[0]).all()) for r in rows)
    silent = ref.Case("q", (4, 4), 2048, silent_rank=1)
    assert bool((ref.make_inputs(silent, 1, 8, 2, CPU)[1] == -1).all())


def test_world_rows_and_combined():
    case = ref.Case("w", (4, 3), 2048, num_topk=2, seed=9)
    world = ref.World(case, 1, 2, 8, 4, CPU)
    assert world.x_stack.shape == (2, 4, 2048)
    assert torch.equal(world.x_stack[1, :3], world.inputs[1][0])
    assert bool((world.x_stack[1, 3] == 0).all())
    data, scales = world.rows("fp8")
    assert data.shape == (8, 2048) and scales.shape == (8, 16)
    assert torch.equal(
        data[4:7].view(torch.uint8), ref.quantize_fp8(world.inputs[1][0])[0].view(torch.uint8)
    )
    combined = world.combined("bf16", ref.expert_factors(8, CPU))
    assert combined.shape == (3, 2048) and combined.dtype == torch.bfloat16
    with pytest.raises(ValueError):
        ref.World(ref.Case("big", (5, 1), 2048), 0, 2, 8, 4, CPU)
