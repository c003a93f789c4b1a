"""Tensor-forms section of the intranode suite: the binding reads torch tensors through their
attributes (data_ptr(), shape, stride(), dtype, device), so the forms a caller may pass must
land at the right addresses: inputs that are views starting inside a larger storage (non-zero
storage offset), inputs that require grad, and handle tensors and combine inputs in those
forms. Every result is checked against the pure-torch reference as in the rest of the suite."""

from __future__ import annotations

import torch

try:
    from . import intranode_suite as suite
except ImportError:  # run as a script
    import intranode_suite as suite


def offset_view(t: torch.Tensor, pad_rows: int = 3) -> torch.Tensor:
    """A contiguous copy of `t` starting `pad_rows` rows into a larger allocation whose leading
    rows hold 0x55 bytes, so that a reader ignoring the storage offset gets garbage."""
    if t.dim() == 0 or t.shape[0] == 0:
        return t
    row_bytes = t[0].numel() * t.element_size() if t.dim() > 1 else t.element_size()
    raw = torch.full(
        ((t.shape[0] + pad_rows) * row_bytes,), 0x55, dtype=torch.uint8, device=t.device
    )
    view = raw.view(t.dtype).view(t.shape[0] + pad_rows, *t.shape[1:])[pad_rows:]
    view.copy_(t)
    return view


def each(x, fn):
    return tuple(fn(v) for v in x) if isinstance(x, tuple) else fn(x)


def section_tensor_forms(ctx, world) -> None:
    mode = suite.Mode(ctx.config)
    for kind in ("bf16_rand", "fp8_f32"):
        x, idx, weights = world.own(kind)
        forms = {
            "offset": (each(x, offset_view), offset_view(idx), offset_view(weights)),
            "requires_grad": (
                x.detach().clone().requires_grad_(True) if kind == "bf16_rand" else x,
                idx,
                weights.detach().clone().requires_grad_(True),
            ),
        }
        for form, inputs in forms.items():
            scope = suite.Scope(ctx, f"tensor_forms[{form}]", f"{world.sc.name} {kind}")
            out = suite.dispatch(ctx, world, kind, mode, inputs=inputs)
            suite.settle(scope, out[5], mode.async_finish)
            suite.check_dispatch(scope, world, kind, out, mode)
            if form != "offset":
                continue
            # The handle's tensors and the cached dispatch's input as offset views too.
            handle = tuple(offset_view(h) if h.dim() > 0 else h for h in out[4])
            rows = world.expected(ctx.rank).num_recv
            suite.cached_dispatch(scope, inputs[0], handle, out[0], rows, async_finish=False)
            if kind == "bf16_rand":
                moved = (out[0], out[1], offset_view(out[2]), out[3], handle, out[5])
                suite.combine_and_check(scope, world, kind, moved, mode)
