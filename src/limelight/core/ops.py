"""NumPy image operations shared by explainers: resizing and normalizing maps."""

from __future__ import annotations

import numpy as np

__all__ = ["bilinear_matrix", "resize_bilinear", "minmax_normalize", "displayable", "NORMALIZE_RTOL"]

#: A map whose range (max - min) is at most this fraction of its largest magnitude is
#: constant up to float32 rounding: it normalizes to all zeros (never NaN). Relative, so
#: maps of tiny magnitude (random-init networks give 1e-11) are still normalized faithfully.
NORMALIZE_RTOL = 1e-6


def bilinear_matrix(size_in: int, size_out: int) -> np.ndarray:
    """The ``(size_out, size_in)`` matrix of 1-D linear interpolation with half-pixel centres.

    Output pixel ``i`` samples the input at ``(i + 0.5) * size_in / size_out - 0.5``, clamped
    to the edges: the convention of cv2 ``INTER_LINEAR``, torch ``interpolate(...,
    align_corners=False)`` and ``tf.image.resize(..., "bilinear")`` (all without antialiasing).
    """
    src = (np.arange(size_out, dtype=np.float64) + 0.5) * (size_in / size_out) - 0.5
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
    """Resize ``(N, h, w)`` or ``(N, h, w, C)`` maps to ``size = (H, W)`` bilinearly.

    Separable, so it is two matrix products; float32 in, float32 out.
    """
    height, width = size
    if maps.shape[1:3] == (height, width):
        return maps.astype(np.float32, copy=True)
    rows = bilinear_matrix(maps.shape[1], height)
    cols = bilinear_matrix(maps.shape[2], width)
    spec = "Hh,nhw...,Ww->nHW..."
    return np.einsum(spec, rows, maps.astype(np.float64), cols, optimize=True).astype(np.float32)


def minmax_normalize(maps: np.ndarray) -> np.ndarray:
    """Rescale each map of a batch ``(N, ...)`` to [0, 1]; constant maps become all zeros."""
    flat = maps.reshape(maps.shape[0], -1).astype(np.float64)
    low = flat.min(axis=1, keepdims=True)
    span = flat.max(axis=1, keepdims=True) - low
    peak = np.abs(flat).max(axis=1, keepdims=True)
    out = np.divide(flat - low, span, out=np.zeros_like(flat), where=span > NORMALIZE_RTOL * peak)
    return out.reshape(maps.shape).astype(np.float32)


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
