"""Checks and conversions on canonical (channels-last NumPy) arrays, shared by backends."""

from __future__ import annotations

import numpy as np

from .errors import InputError

__all__ = ["check_canonical", "to_numpy_float32"]


def to_numpy_float32(x: object) -> np.ndarray:
    """Convert an array-like to a float32 NumPy array (copying only when needed)."""
    try:
        arr = np.asarray(x)
    except Exception as exc:  # noqa: BLE001 - report any conversion failure the same way
        raise InputError(f"could not convert inputs of type {type(x).__name__} to an array: {exc}")
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(f"inputs must be numeric, got dtype {arr.dtype}.")
    return np.ascontiguousarray(arr, dtype=np.float32)


def check_canonical(x: np.ndarray, *, what: str = "inputs") -> np.ndarray:
    """Validate a canonical batch: at least 2-D, non-empty, finite. Returns ``x``."""
    if x.ndim < 2:
        raise InputError(
            f"{what} must be a batch with a leading sample axis, e.g. (N, H, W, C) or (N, D); "
            f"got shape {x.shape}. For one sample use x[None]."
        )
    if x.shape[0] == 0:
        raise InputError(f"{what} is an empty batch (shape {x.shape}); pass at least one sample.")
    if not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x).reshape(x.shape[0], -1).all(axis=1)).ravel()
        kind = "NaN" if np.isnan(x).any() else "inf"
        raise InputError(
            f"{what} contain {kind} values (samples {bad[:10].tolist()}); "
            "clean or re-normalize them before explaining."
        )
    return x
