"""Target resolution: which output each sample is explained for.

``None`` means the predicted class (argmax of the outputs), an ``int`` applies to every
sample, and a sequence gives one class per sample. Explainers that explain several outputs
at once (``Explainer.multi_target``) also take ``(N, T)``: T classes per sample.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from .errors import TargetError

TargetsLike = int | Sequence[int] | np.ndarray | None

__all__ = ["TargetsLike", "normalize_targets", "resolve_targets"]


def normalize_targets(targets: TargetsLike, n: int) -> np.ndarray | None:
    """Check ``targets`` against a batch of ``n`` samples; return ``(n,)`` / ``(n, T)`` int64 or None.

    Range is not checked here (the number of classes is known only from the outputs):
    :func:`resolve_targets` does that.
    """
    if targets is None:
        return None
    if isinstance(targets, numbers.Integral) and not isinstance(targets, bool):
        return np.full((n,), int(targets), dtype=np.int64)
    if hasattr(targets, "detach"):  # a framework tensor: .numpy() without importing it
        targets = targets.detach().cpu().numpy()
    elif hasattr(targets, "numpy") and not isinstance(targets, np.ndarray):
        targets = targets.numpy()
    arr = np.asarray(targets)
    if np.issubdtype(arr.dtype, np.floating) and np.all(np.mod(arr, 1) == 0):
        arr = arr.astype(np.int64)  # e.g. targets=[3.0, 7.0]
    if arr.dtype == bool or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise TargetError(
            f"targets must be class indices (int or a sequence of ints), got {targets!r}."
        )
    if arr.ndim == 0:
        return np.full((n,), int(arr), dtype=np.int64)
    if arr.ndim not in (1, 2) or arr.shape[0] != n or (arr.ndim == 2 and arr.shape[1] == 0):
        raise TargetError(
            f"targets has shape {arr.shape}, but the batch has {n} sample(s): give one int "
            f"for all samples, a sequence of {n} ints, or ({n}, T) ints for T outputs each."
        )
    return arr.astype(np.int64)


def resolve_targets(targets: TargetsLike, outputs: np.ndarray) -> np.ndarray:
    """Resolve ``targets`` against model ``outputs`` ``(N, K)``; return ``(N,)`` or ``(N, T)`` int64.

    Raises :class:`TargetError` when a class index is outside ``[-K, K)``; negative indices
    count from the end, like NumPy's, and are returned as their positive equivalent.
    """
    n, k = outputs.shape[0], outputs.shape[1]
    resolved = normalize_targets(targets, n)
    if resolved is None:
        return np.argmax(outputs, axis=1).astype(np.int64)
    bad = (resolved >= k) | (resolved < -k)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        sample = first if resolved.ndim == 1 else first // resolved.shape[1]
        raise TargetError(
            f"target class {int(resolved.flat[first])} (sample {sample}) is out of range: the model "
            f"has {k} outputs, so targets must be in [0, {k - 1}]."
        )
    return np.where(resolved < 0, resolved + k, resolved)
