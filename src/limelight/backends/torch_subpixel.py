"""A faster input gradient for the strided convolution that reads the model's input (CPU).

The gradient of ``conv2d(x, w, stride=s)`` with respect to ``x`` is a transposed convolution.
For a ResNet stem (3 input channels, 7×7, stride 2) oneDNN computes it about 2.7× slower
than the forward convolution, because its output has only 3 channels. The same numbers come
from the sub-pixel decomposition: each of the ``s²`` output phases is a stride-1
correlation of the output gradient with the taps of ``w`` that land on that phase, so one
ordinary convolution with ``C·s²`` output channels followed by a pixel shuffle gives the
whole gradient, at the forward convolution's speed.

Used only while :class:`~limelight.backends.torch.TorchModel` computes input gradients on
CPU: :class:`InputConvMode` routes the convolution whose input is the leaf through
:class:`_SubPixelConv`, whose backward returns the input gradient only (nothing else is
asked of that graph).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["InputConvMode", "conv2d_input_grad", "subpixel_kernel"]


def _taps(stride: int, padding: int, kernel: int) -> tuple[int, int]:
    """``(m_hi, length)``: output-gradient offsets ``m`` that reach some input phase, with
    ``gx[s·q + r] = Σ_m gy[q − m] · w[s·m + r + p]``."""
    lows = [math.ceil((-r - padding) / stride) for r in range(stride)]
    highs = [math.floor((kernel - 1 - r - padding) / stride) for r in range(stride)]
    return max(highs), max(highs) - min(lows) + 1


def subpixel_kernel(w: torch.Tensor, stride: tuple[int, int], padding: tuple[int, int]) -> torch.Tensor:
    """``(C·sh·sw, O, Lh, Lw)`` kernel of the decomposition (channel ``c·sh·sw + rh·sw + rw``)."""
    out_ch, in_ch, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, padding
    (hi_h, len_h), (hi_w, len_w) = _taps(sh, ph, kh), _taps(sw, pw, kw)
    kernel = w.new_zeros(in_ch, sh, sw, out_ch, len_h, len_w)
    wt = w.transpose(0, 1)  # (C, O, kh, kw)
    for rh in range(sh):
        for uh in range(len_h):
            ih = sh * (hi_h - uh) + rh + ph
            if not 0 <= ih < kh:
                continue
            for rw in range(sw):
                for uw in range(len_w):
                    iw = sw * (hi_w - uw) + rw + pw
                    if 0 <= iw < kw:
                        kernel[:, rh, rw, :, uh, uw] = wt[:, :, ih, iw]
    return kernel.reshape(in_ch * sh * sw, out_ch, len_h, len_w)


def conv2d_input_grad(
    grad_out: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int], padding: tuple[int, int],
    input_size: tuple[int, int], kernel: torch.Tensor | None = None,
) -> torch.Tensor:
    """The gradient ``(N, C, H, W)`` of ``conv2d(x, weight, stride, padding)`` (no dilation,
    one group) with respect to ``x`` of spatial size ``input_size``, from ``grad_out``
    (``kernel``: :func:`subpixel_kernel` of ``weight``, if already made)."""
    (sh, sw), (ph, pw), (h, w) = stride, padding, input_size
    kh, kw = weight.shape[2:]
    (hi_h, len_h), (hi_w, len_w) = _taps(sh, ph, kh), _taps(sw, pw, kw)
    qh, qw = -(-h // sh), -(-w // sw)
    oh, ow = grad_out.shape[2:]
    # gy is read from hi rows before the output to (q + len - 1 - hi - o) rows after it: one
    # symmetric padding that covers both, then the window that starts hi rows early.
    pad_h = max(0, hi_h, qh + len_h - 1 - hi_h - oh)
    pad_w = max(0, hi_w, qw + len_w - 1 - hi_w - ow)
    if kernel is None:
        kernel = subpixel_kernel(weight, (sh, sw), (ph, pw))
    phases = F.conv2d(grad_out, kernel, padding=(pad_h, pad_w))
    phases = phases[:, :, pad_h - hi_h : pad_h - hi_h + qh, pad_w - hi_w : pad_w - hi_w + qw]
    n, c = grad_out.shape[0], weight.shape[1]
    shuffled = phases.reshape(n, c, sh, sw, qh, qw).permute(0, 1, 4, 2, 5, 3).reshape(n, c, qh * sh, qw * sw)
    return shuffled[:, :, :h, :w]


class _SubPixelConv(torch.autograd.Function):
    """``conv2d`` whose backward gives the input's gradient by the sub-pixel decomposition
    (and none for the weight and bias: only input gradients are asked of this graph)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                stride: tuple[int, int], padding: tuple[int, int]) -> torch.Tensor:
        # made once here, used by each of the backward passes (one per explained target)
        ctx.kernel = subpixel_kernel(weight.detach(), stride, padding)
        if x.is_contiguous(memory_format=torch.channels_last):  # oneDNN's fast layout on CPU
            ctx.kernel = ctx.kernel.contiguous(memory_format=torch.channels_last)
        ctx.weight, ctx.stride, ctx.padding, ctx.size = weight.detach(), stride, padding, tuple(x.shape[2:])
        return F.conv2d(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:
        grad = conv2d_input_grad(grad_out, ctx.weight, ctx.stride, ctx.padding, ctx.size, ctx.kernel)
        return grad, None, None, None, None


def _pair(value: Any) -> tuple[int, int] | None:
    if isinstance(value, int):
        return value, value
    if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    return None  # e.g. padding="same": left to PyTorch


class InputConvMode(TorchFunctionMode):
    """Routes a strided, ungrouped, undilated ``conv2d`` applied directly to ``leaf`` through
    :class:`_SubPixelConv`; every other call runs unchanged."""

    def __init__(self, leaf: torch.Tensor) -> None:
        super().__init__()
        self.leaf = leaf

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is F.conv2d and args and args[0] is self.leaf:
            names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
            call = {**dict(zip(names, args, strict=False)), **kwargs}
            stride, padding = _pair(call.get("stride", 1)), _pair(call.get("padding", 0))
            if (stride is not None and padding is not None and max(stride) > 1
                    and _pair(call.get("dilation", 1)) == (1, 1) and call.get("groups", 1) == 1):
                return _SubPixelConv.apply(self.leaf, call["weight"], call.get("bias"), stride, padding)
        return func(*args, **kwargs)
