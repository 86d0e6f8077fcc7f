"""Targets: which output each sample is explained for, resolved once, here.

:func:`resolve_target` turns what a user passes as ``targets=`` into a :class:`Target`
object: ``None`` (each sample's predicted class, :class:`Predicted`), an int for every
sample, one int per sample, ``(N, T)`` ints (T outputs per sample; for methods with
``multi_target``), or a :class:`Target` itself. A target's :meth:`Target.scores` is written
in the Array API, so the same object runs in every backend, on the model's device, inside
the backend's compiled gradient function. Backends never re-implement argmax or range
checks: they call :meth:`Target.check` with the number of outputs, then :meth:`Target.scores`.

Per-sample parameters (class indices, ...) are host arrays with a leading sample axis
returned by :meth:`Target.data`; a backend slices them per batch, moves them to its device
and passes them to ``scores`` as arguments, so compiled code never bakes them in.
"""

from __future__ import annotations

import abc
import numbers
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from .errors import TargetError

__all__ = ["TargetsLike", "Target", "Classes", "Predicted", "resolve_target", "normalize_targets", "resolve_targets"]

Array = Any


class Target(abc.ABC):
    """What is explained: ``scores(xp, outputs, *data) -> (n, T)``, one column per output
    explained per sample (their sum over samples is what gradients are taken of).

    ``single`` says the user asked for one output per sample, so explanations drop the
    ``T`` axis; ``columns`` is ``T``.
    """

    columns: int = 1
    single: bool = True

    def data(self) -> tuple[np.ndarray, ...]:
        """Per-sample host arrays ``(N, ...)`` handed to :meth:`scores` (on the device)."""
        return ()

    def __getitem__(self, index: slice | np.ndarray) -> Target:
        """The target of a subset of the samples (``index`` into the leading axis)."""
        return self

    def key(self) -> Hashable:
        """What compiled code built around :meth:`scores` depends on, besides :meth:`data`."""
        return (type(self).__qualname__, self.columns)

    def check(self, num_outputs: int) -> Target:
        """This target checked against a model with ``num_outputs`` outputs (a
        :class:`TargetError` when it does not fit); may return a normalized copy."""
        return self

    @abc.abstractmethod
    def scores(self, xp: Any, outputs: Array, *data: Array) -> Array:
        """The scores ``(n, T)`` explained, from model outputs ``(n, K)``."""

    def classes(self, xp: Any, outputs: Array, *data: Array) -> Array:
        """The class index ``(n, T)`` behind each column (``Explanation.targets``)."""
        raise TargetError(f"{type(self).__name__} targets do not name classes.")

    def fixed(self, classes: np.ndarray) -> Target:
        """The same target with its choice fixed to ``classes`` ``(N, T)`` (host), for
        methods that run several passes on other inputs (e.g. references)."""
        return self


class Classes(Target):
    """Explicit class indices: ``index`` ``(N, T)`` int64; ``single`` drops ``T`` (= 1)."""

    def __init__(self, index: np.ndarray, single: bool) -> None:
        self.index = np.asarray(index, np.int64).reshape(len(index), -1)
        self.columns = int(self.index.shape[1])
        self.single = bool(single)

    def __repr__(self) -> str:
        return f"Classes({self.index.tolist() if self.index.size <= 16 else self.index.shape})"

    def data(self) -> tuple[np.ndarray, ...]:
        return (self.index,)

    def __getitem__(self, index: slice | np.ndarray) -> Classes:
        return Classes(self.index[index], self.single)

    def check(self, num_outputs: int) -> Classes:
        """Range-check against ``K = num_outputs``; negative indices count from the end."""
        k = int(num_outputs)
        bad = (self.index >= k) | (self.index < -k)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise TargetError(
                f"target class {int(self.index.flat[first])} (sample {first // self.columns}) is out "
                f"of range: the model has {k} outputs, so targets must be in [0, {k - 1}] (or "
                f"[-{k}, -1], counting from the end)."
            )
        if (self.index < 0).any():
            return Classes(np.where(self.index < 0, self.index + k, self.index), self.single)
        return self

    def scores(self, xp: Any, outputs: Array, *data: Array) -> Array:
        (index,) = data
        return xp.take_along_axis(outputs, index, axis=1)

    def classes(self, xp: Any, outputs: Array, *data: Array) -> Array:
        return data[0]


class Predicted(Target):
    """Each sample's predicted class (argmax of the outputs), one column."""

    def __repr__(self) -> str:
        return "Predicted()"

    def scores(self, xp: Any, outputs: Array, *data: Array) -> Array:
        return xp.take_along_axis(outputs, self.classes(xp, outputs), axis=1)

    def classes(self, xp: Any, outputs: Array, *data: Array) -> Array:
        return xp.argmax(outputs, axis=1, keepdims=True)

    def fixed(self, classes: np.ndarray) -> Classes:
        return Classes(classes, single=True)


TargetsLike = int | Sequence[int] | np.ndarray | Target | None


def _host_ints(targets: Any) -> np.ndarray:
    if hasattr(targets, "detach"):  # a torch tensor: .numpy() without importing torch
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
    return arr


def resolve_target(targets: TargetsLike, n: int, *, multi: bool = True, method: str = "this method") -> Target:
    """``targets=`` as given by a user -> a :class:`Target` for a batch of ``n`` samples.

    ``multi=False`` (a ``method`` that explains one output per sample) rejects ``(N, T)``.
    The class range is checked later, against the outputs (:meth:`Target.check`).
    """
    if targets is None:
        return Predicted()
    if isinstance(targets, Target):
        target = targets
        for data in target.data():
            if len(data) != n:
                raise TargetError(
                    f"the {type(target).__name__} target holds {len(data)} sample(s), but the batch "
                    f"has {n}: build it for this batch."
                )
    elif isinstance(targets, numbers.Integral) and not isinstance(targets, bool):
        target = Classes(np.full((n, 1), int(targets), np.int64), single=True)
    else:
        arr = _host_ints(targets)
        if arr.ndim == 0:
            target = Classes(np.full((n, 1), int(arr), np.int64), single=True)
        elif arr.ndim not in (1, 2) or arr.shape[0] != n or (arr.ndim == 2 and arr.shape[1] == 0):
            raise TargetError(
                f"targets has shape {arr.shape}, but the batch has {n} sample(s): give one int "
                f"for all samples, a sequence of {n} ints, or ({n}, T) ints for T outputs each."
            )
        else:
            target = Classes(arr.reshape(n, -1), single=arr.ndim == 1)
    if not multi and not target.single:
        raise TargetError(
            f"{method} explains one output per sample; pass one int per sample (or loop over "
            "the classes)."
        )
    return target


def normalize_targets(targets: TargetsLike, n: int) -> np.ndarray | None:
    """v1 helper, kept for callers: ``targets`` for ``n`` samples as ``(n,)`` / ``(n, T)``
    int64 (None for the predicted class); the range is not checked."""
    target = resolve_target(targets, n)
    if isinstance(target, Predicted):
        return None
    if not isinstance(target, Classes):
        raise TargetError(f"{type(target).__name__} targets are not class indices.")
    return target.index[:, 0] if target.single else target.index


def resolve_targets(targets: TargetsLike, outputs: np.ndarray) -> np.ndarray:
    """v1 helper, kept for callers: class indices ``(N,)`` / ``(N, T)`` against NumPy
    ``outputs`` ``(N, K)`` (argmax for None; range-checked, negatives made positive)."""
    outputs = np.asarray(outputs)
    target = resolve_target(targets, len(outputs)).check(outputs.shape[1])
    if isinstance(target, Predicted):
        return np.argmax(outputs, axis=1).astype(np.int64)
    if not isinstance(target, Classes):
        raise TargetError(f"{type(target).__name__} targets are not class indices.")
    return target.index[:, 0] if target.single else target.index
