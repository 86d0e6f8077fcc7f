"""Image operations shared by explainers and viz: normalizing maps (any Array API
namespace), the bilinear resize matrix, and display rescaling (NumPy)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["bilinear_matrix", "resize_bilinear", "minmax_normalize", "displayable", "NORMALIZE_RTOL"]

#: A map whose range (max - min) is at most this fraction of its largest magnitude is
#: constant up to float32 rounding: it normalizes to all zeros (never NaN). Relative, so
#: maps of tiny magnitude (random-init networks give 1e-11) are still normalized faithfully.
NORMALIZE_RTOL = 1e-6


def bilinear_matrix(size_in: int, size_out: int, *, align_corners: bool = False, border: str = "clamp") -> np.ndarray:
    """The ``(size_out, size_in)`` matrix of 1-D linear interpolation.

    Half-pixel centres (default): output pixel ``i`` samples the input at
    ``(i + 0.5) * size_in / size_out - 0.5``: the convention of cv2 ``INTER_LINEAR``, torch
    ``interpolate(..., align_corners=False)`` and ``tf.image.resize(..., "bilinear")`` (all
    without antialiasing). ``align_corners=True``: ``i * (size_in - 1) / (size_out - 1)``,
    torch ``UpsamplingBilinear2d``. Samples outside the input are clamped to the edges
    (``border="clamp"``) or mirrored (``"reflect"``: ``d c b | a b c d``, NumPy's
    ``pad(mode="reflect")``, as ``skimage.transform.resize(order=1, mode="reflect")``).
    """
    if align_corners:
        scale = (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
        src = np.arange(size_out, dtype=np.float64) * scale
    else:
        src = (np.arange(size_out, dtype=np.float64) + 0.5) * (size_in / size_out) - 0.5
    if border == "reflect" and size_in > 1:
        period = 2 * (size_in - 1)
        src = np.abs(np.mod(src, period))
        src = np.where(src > size_in - 1, period - src, src)
    elif border not in ("clamp", "reflect"):
        raise ValueError(f"border must be 'clamp' or 'reflect', got {border!r}")
    src = np.clip(src, 0.0, size_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, size_in - 1)
    frac = src - lo
    matrix = np.zeros((size_out, size_in), dtype=np.float64)
    rows = np.arange(size_out)
    np.add.at(matrix, (rows, lo), 1.0 - frac)
    np.add.at(matrix, (rows, hi), frac)
    return matrix


def resize_bilinear(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize NumPy ``(N, h, w)`` or ``(N, h, w, C)`` maps to ``size = (H, W)`` bilinearly
    (host-side; explainers use ``Model.resize`` on the device). float32 out."""
    height, width = size
    if maps.shape[1:3] == (height, width):
        return maps.astype(np.float32, copy=True)
    rows = bilinear_matrix(maps.shape[1], height)
    cols = bilinear_matrix(maps.shape[2], width)
    spec = "Hh,nhw...,Ww->nHW..."
    return np.einsum(spec, rows, maps.astype(np.float64), cols, optimize=True).astype(np.float32)


def minmax_normalize(maps: Any, xp: Any = None) -> Any:
    """Rescale each map of a batch ``(N, ...)`` to [0, 1]; constant maps become all zeros.

    ``xp`` is the maps' Array API namespace (default: NumPy, computed in float64).
    """
    if xp is None:
        import array_api_compat.numpy as xp

        maps = np.asarray(maps, np.float64)
    axes = tuple(range(1, maps.ndim))
    low = xp.min(maps, axis=axes, keepdims=True)
    span = xp.max(maps, axis=axes, keepdims=True) - low
    peak = xp.max(xp.abs(maps), axis=axes, keepdims=True)
    ok = span > NORMALIZE_RTOL * peak
    out = xp.where(ok, (maps - low) / xp.where(ok, span, xp.ones_like(span)), xp.zeros_like(maps))
    return out.astype(np.float32) if isinstance(out, np.ndarray) else out


def displayable(images: np.ndarray) -> np.ndarray:
    """Pixel values to show: ``(H, W, C)`` or a batch ``(N, H, W, C)`` as float32 in [0, 1].

    Values already in [0, 1] stay; [0, 255] are divided by 255; anything else (e.g.
    ImageNet-normalized inputs) is min-max rescaled per image.
    """
    images = np.asarray(images, np.float32)
    batch = images if images.ndim == 4 else images[None]
    if batch.min() >= 0 and batch.max() <= 1:
        return images
    if batch.min() >= 0 and batch.max() <= 255:
        return images / 255.0
    out = minmax_normalize(batch)
    return out if images.ndim == 4 else out[0]
