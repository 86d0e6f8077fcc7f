"""Checks and conversions of input batches, shared by backends."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import numpy as np

from .errors import InputError

__all__ = ["check_canonical", "check_batch", "to_numpy_float32"]


def host_array(a: Any, dtype: Any = None) -> np.ndarray:
    """A NumPy array, a torch tensor on any device (detached; bfloat16 as float32) or a
    TensorFlow/JAX tensor as a NumPy array on the host, cast to ``dtype`` when given;
    duck-typed, no framework import.
    Conversion errors propagate: callers say what was wrong in their own words."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):  # torch: off the graph and the device
        a = a.detach()
        if str(a.dtype) == "torch.bfloat16":  # NumPy has no bfloat16: its exact float32 values
            a = a.float()
        a = a.cpu().numpy()
    elif hasattr(a, "numpy") and not isinstance(a, np.ndarray):  # TensorFlow, JAX, ...
        a = a.numpy()
    return np.asarray(a) if dtype is None else np.asarray(a, dtype)


def to_numpy_float32(x: object) -> np.ndarray:
    """Convert an array-like to a float32 NumPy array (copying only when needed)."""
    try:
        arr = np.asarray(x)
    except Exception as exc:  # noqa: BLE001 - report any conversion failure the same way
        raise InputError(f"could not convert inputs of type {type(x).__name__} to an array: {exc}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(f"inputs must be numeric, got dtype {arr.dtype}.")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _shape_errors(shape: tuple[int, ...], what: str) -> None:
    if len(shape) < 2:
        raise InputError(
            f"{what} must be a batch with a leading sample axis, e.g. (N, H, W, C) or (N, D); "
            f"got shape {shape}. For one sample use x[None]."
        )
    if shape[0] == 0:
        raise InputError(f"{what} is an empty batch (shape {shape}); pass at least one sample.")


def _not_finite(x: np.ndarray, what: str) -> InputError:
    bad = np.argwhere(~np.isfinite(x).reshape(x.shape[0], -1).all(axis=1)).ravel()
    kind = "NaN" if np.isnan(x).any() else "inf"
    return InputError(
        f"{what} contain {kind} values (samples {bad[:10].tolist()}); "
        "clean or re-normalize them before explaining."
    )


def check_canonical(x: np.ndarray, *, what: str = "inputs") -> np.ndarray:
    """Validate a NumPy batch: at least 2-D, non-empty, finite. Returns ``x``."""
    _shape_errors(tuple(x.shape), what)
    if not np.isfinite(x).all():
        raise _not_finite(x, what)
    return x


def check_batch(xp: Any, x: Any, to_numpy: Any, *, what: str = "inputs") -> Any:
    """Validate a batch of any Array API namespace ``xp`` on its device: at least 2-D,
    non-empty, finite (one boolean crosses to the host). Returns ``x``."""
    _shape_errors(tuple(x.shape), what)
    if not bool(xp.all(xp.isfinite(x))):
        raise _not_finite(to_numpy(x), what)
    return x


def digest_arrays(named: Iterable[tuple[str, Any]]) -> str:
    """SHA-1 of each ``(name, array)``'s name, dtype, shape and bytes on the host
    (:func:`host_array`), in order. Entries that are no numeric array (a torch module's
    extra state) are left out: their bytes would be object addresses, other in every process."""
    digest = hashlib.sha1()
    for name, value in named:
        if not hasattr(value, "shape") or not hasattr(value, "dtype"):
            continue
        arr = host_array(value)  # (torch bfloat16: its exact float32 values; its dtype is hashed too)
        if arr.dtype == object:
            continue
        digest.update(f"{name}|{value.dtype}|{arr.shape}|".encode())
        digest.update(np.ascontiguousarray(arr).tobytes())
    return digest.hexdigest()
