"""Framework-free layout logic for layer outputs that are not ``(N, h, w, C)`` conv maps.

* Token layers of vision transformers output ``(N, T, C)``: ``T = prefix + h·w``, the prefix
  tokens (class, distillation, registers) first. :func:`infer_grid` finds ``prefix`` and the
  grid ``(h, w)`` from ``T`` and the input's ``(H, W)``; :func:`tokens_to_grid` drops the
  prefix and reshapes to ``(N, h, w, C)`` with any Array API namespace.
* 4-D layer outputs of PyTorch models are NCHW for convolutions but ``(N, h, w, C)`` for
  Swin-style stages; :func:`is_channels_last` tells them apart by the input's ``(H, W)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .errors import LayerError

__all__ = ["MAX_PREFIX", "infer_grid", "grid_from_reshape", "tokens_to_grid", "is_channels_last", "consistent_grid"]

#: The most prefix tokens :func:`infer_grid` considers (class + distillation + 4 registers
#: is 6; DINOv2-style models with 4 registers and a class token have 5).
MAX_PREFIX = 8


def _patch_grid(h: int, w: int, size: Sequence[int]) -> bool:
    """Whether a patch embedding with some integer stride ``s`` (kernel = stride, no padding,
    or padding to a multiple) turns an ``(H, W)`` input into an ``(h, w)`` grid."""
    height, width = int(size[0]), int(size[1])
    if h < 1 or w < 1 or h > height or w > width:
        return False
    for s in range(max(1, height // (h + 1)), height // h + 2):
        if (h, w) in ((height // s, width // s), (-(-height // s), -(-width // s))):
            return True
    return False


def infer_grid(tokens: int, size: Sequence[int], max_prefix: int = MAX_PREFIX) -> tuple[int, tuple[int, int]] | None:
    """``(prefix, (h, w))`` for ``tokens`` tokens of an input of spatial size ``size = (H, W)``.

    The smallest prefix count ``p`` (0 to ``max_prefix``, fewer than the ``h·w ≥ 2`` grid
    tokens) for which ``tokens - p`` factors
    as ``h·w`` with one integer patch stride ``s`` giving ``h = H/s`` and ``w = W/s``
    (both rounded down, or both up); among several grids for that ``p`` the one whose strides along
    ``H`` and ``W`` agree best. None when nothing fits (then pass ``reshape=(h, w)``).
    ``197`` tokens of a 224×224 input: ``(1, (14, 14))`` (ViT-B/16); ``201``: ``(5, (14,
    14))`` (class token and 4 registers).
    """
    if len(size) != 2:
        return None
    height, width = int(size[0]), int(size[1])
    for prefix in range(0, min(max_prefix, tokens - 1) + 1):
        n = tokens - prefix
        if n <= max(prefix, 1):
            break  # a grid has more tokens than there are in front of it, and two at least
        found = []
        for h in range(1, int(math.isqrt(n)) + 1):
            if n % h:
                continue
            for gh, gw in {(h, n // h), (n // h, h)}:
                if _patch_grid(gh, gw, (height, width)):
                    found.append((abs(math.log((height / gh) / (width / gw))), gh, gw))
        if found:
            found.sort()
            return prefix, (found[0][1], found[0][2])
    return None


def grid_from_reshape(reshape: Any, tokens: int) -> tuple[int, tuple[int, ...]]:
    """``(prefix, grid)`` for a user's ``reshape=(h, w)`` (or ``(l,)``, ``(d, h, w)``) and a
    layer with ``tokens`` tokens: the prefix is the tokens in front of the grid."""
    import operator

    try:
        grid = tuple(operator.index(s) for s in reshape if not isinstance(s, bool))
        ok = len(grid) == len(reshape) and 1 <= len(grid) <= 3 and min(grid) >= 1
    except TypeError:
        ok = False
    if not ok:
        raise LayerError(f"reshape must be a tuple of positive ints such as (14, 14), got {reshape!r}.")
    count = math.prod(grid)
    if count > tokens:
        raise LayerError(
            f"reshape={grid} needs {count} tokens, but the layer outputs {tokens}; pass a grid of at most "
            f"{tokens} positions (the tokens in front of it are dropped as class/register tokens)."
        )
    return tokens - count, grid


def tokens_to_grid(xp: Any, a: Any, prefix: int, grid: Sequence[int]) -> Any:
    """``(..., T, C)`` tokens -> ``(..., *grid, C)``: the first ``prefix`` tokens dropped,
    the rest in row-major order (pytorch-grad-cam's ViT ``reshape_transform``)."""
    lead = tuple(int(s) for s in a.shape[:-2])
    channels = int(a.shape[-1])
    return xp.reshape(a[..., prefix:, :], (*lead, *(int(g) for g in grid), channels))


def consistent_grid(grid: Sequence[int], size: Sequence[int], tolerance: float = 1.25) -> bool:
    """Whether a ``grid = (h, w)`` is a uniform down- or up-scaling of ``size = (H, W)``: the
    two scale factors agree within ``tolerance`` (a ratio)."""
    (h, w), (height, width) = (int(g) for g in grid), (int(s) for s in size)
    if min(h, w, height, width) < 1:
        return False
    ratio = (height / h) / (width / w)
    return 1 / tolerance <= ratio <= tolerance


def is_channels_last(shape: Sequence[int], size: Sequence[int] | None) -> bool:
    """Whether a 4-D ``(N, a, b, c)`` layer output of a channels-first framework is
    ``(N, h, w, C)`` (Swin stages, ``Permute`` layers) rather than NCHW.

    Channels-last when ``(a, b)`` is a uniform scaling of the input's ``size = (H, W)`` and
    ``(b, c)`` is not; NCHW otherwise, ambiguous cases included (``(N, 7, 7, 7)``) and when
    the input has no ``(H, W)``.
    """
    if size is None or len(size) != 2 or len(shape) != 4:
        return False
    a, b, c = (int(s) for s in shape[1:])
    return consistent_grid((a, b), size) and not consistent_grid((b, c), size)
