"""Targets: which output each sample is explained for, resolved once, here.

:func:`resolve_target` turns what a user passes as ``targets=`` into a :class:`Target`
object: ``None`` (each sample's predicted class, :class:`Predicted`), an int for every
sample, one int per sample, ``(N, T)`` ints (T outputs per sample; for methods with
``multi_target``), or a :class:`Target` itself. A target's :meth:`Target.scores` is written
in the Array API, so the same object runs in every backend, on the model's device, inside
the backend's compiled gradient function. Backends never re-implement argmax or range
checks: they call :meth:`Target.check` with the number of outputs, then :meth:`Target.scores`.

Outputs are channels-last like everything else: ``(N, K)`` for classifiers, dense outputs
``(N, H, W, K)`` (``(N, L, K)``, ``(N, D, H, W, K)``) for segmentation; the class axis is the
last one, so backends check ``target.check(outputs.shape[-1])``. The user-facing target
objects (:class:`Class`, :class:`Region`, :class:`Function`, :class:`Similarity`) are
re-exported by :mod:`limelight.targets`.

Per-sample parameters (class indices, ...) are host arrays with a leading sample axis
returned by :meth:`Target.data`; a backend slices them per batch, moves them to its device
and passes them to ``scores`` as arguments, so compiled code never bakes them in.
"""

from __future__ import annotations

import abc
import numbers
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np

from .arrays import host_array
from .errors import InputError, LimelightError, TargetError

__all__ = [
    "TargetsLike",
    "Target",
    "Classes",
    "Predicted",
    "Class",
    "Region",
    "Function",
    "Similarity",
    "resolve_target",
    "deeplift_target",
    "normalize_targets",
    "resolve_targets",
    "target_name",
]

Array = Any


class Target(abc.ABC):
    """What is explained: ``scores(xp, outputs, *data) -> (n, T)``, one column per output
    explained per sample (their sum over samples is what gradients are taken of).

    ``single`` says the user asked for one output per sample, so explanations drop the
    ``T`` axis; ``columns`` is ``T``.
    """

    columns: int = 1
    single: bool = True
    #: Whether :meth:`scores` is linear in the outputs (the mean score over a background is
    #: then the score of the mean output).
    linear: bool = False

    def for_samples(self, n: int) -> Target:
        """This target for a batch of ``n`` samples (shared parameters broadcast to ``n``
        rows of :meth:`data`); called once by :func:`resolve_target`."""
        return self

    def host_classes(self, n: int) -> np.ndarray | None:
        """The class index ``(n, T)`` behind each column when it is known without the
        outputs (``Explanation.targets``; -1 for scores that are not one class's), else None."""
        return None

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

    linear = True

    def host_classes(self, n: int) -> np.ndarray:
        return self.index

    def scores(self, xp: Any, outputs: Array, *data: Array) -> Array:
        (index,) = data
        _classifier(outputs, "class")
        return xp.take_along_axis(outputs, index, axis=1)

    def classes(self, xp: Any, outputs: Array, *data: Array) -> Array:
        return data[0]


class Predicted(Target):
    """Each sample's predicted class (argmax of the outputs), one column."""

    linear = True  # a selection of the outputs once the class is fixed

    def __repr__(self) -> str:
        return "Predicted()"

    def scores(self, xp: Any, outputs: Array, *data: Array) -> Array:
        return xp.take_along_axis(outputs, self.classes(xp, outputs), axis=1)

    def classes(self, xp: Any, outputs: Array, *data: Array) -> Array:
        _classifier(outputs, "predicted-class (targets=None)")
        return xp.argmax(outputs, axis=1, keepdims=True)

    def fixed(self, classes: np.ndarray) -> Classes:
        return Classes(classes, single=True)


def _classifier(outputs: Array, what: str) -> None:
    """A clear TargetError when class targets meet a dense output ``(N, ..., K)``."""
    if len(outputs.shape) != 2:
        shape = "(" + ", ".join("N" if i == 0 else str(s) for i, s in enumerate(outputs.shape)) + ")"
        raise TargetError(
            f"{what} targets pick one score per sample from outputs (N, K), but this model's "
            f"output is dense, {shape} (channels-last, classes last): explain a class over a "
            "region with targets=limelight.targets.Region(class_, mask), or any score with "
            "limelight.targets.Function(fn); output= picks another output of the model."
        )


def _host(a: Any, what: str, dtype: Any = None) -> np.ndarray:
    """A NumPy array or any backend's tensor (duck-typed, no framework import) on the host,
    cast to ``dtype`` when given; a :class:`TargetError` (chained) when it is neither."""
    given = type(a).__name__
    try:
        return host_array(a, dtype)
    except (TypeError, ValueError, AttributeError, RuntimeError) as exc:
        raise TargetError(
            f"{what} must be a NumPy array or a tensor of numbers, got {given} ({type(exc).__name__}: {exc})."
        ) from exc


def deeplift_target(target: Target) -> Target:
    """``target`` for DeepLIFT (a TargetError unless its score is linear in the outputs:
    the rescale rules stop at the outputs, so a nonlinear score would break completeness)."""
    if not target.linear:
        raise TargetError(
            f"DeepLIFT (shap-deep) explains scores linear in the model's outputs; a "
            f"{type(target).__name__} target is not (declare Function(fn, linear=True) if fn is "
            "a selection, sum or difference of outputs). Use method='shap-gradient' (or "
            "'shap', which picks it for such targets)."
        )
    return target


def _check_class(class_: int, num_outputs: int, what: str) -> int:
    k = int(num_outputs)
    if not -k <= class_ < k:
        raise TargetError(
            f"{what} class {class_} is out of range: the model has {k} output classes (the last "
            f"axis of its output), so it must be in [0, {k - 1}] (or [-{k}, -1])."
        )
    return class_ % k


class Class(Target):
    """One class per sample: ``Class(3)`` (the same for every sample, ≡ ``targets=3``) or
    ``Class([3, 7, ...])`` (one per sample, ≡ ``targets=[3, 7, ...]``); ``(N, T)`` ints
    explain T classes per sample (SHAP methods).

    >>> limelight.explain(model, x, "gradcam", targets=limelight.targets.Class(281))  # doctest: +SKIP
    """

    linear = True

    def __init__(self, k: int | Sequence[int] | np.ndarray | Any) -> None:
        self.k = k

    def __repr__(self) -> str:
        return f"Class({self.k!r})"

    def for_samples(self, n: int) -> Target:
        return resolve_target(self.k, n)

    def scores(self, xp: Any, outputs: Array, *data: Array) -> Array:
        return self.for_samples(int(outputs.shape[0])).scores(xp, outputs, *data)


class Region(Target):
    """A class's dense scores summed over a mask (pytorch-grad-cam's
    ``SemanticSegmentationTarget``): ``score[n] = Σ_{h,w} out[n, h, w, class_] · mask[n, h, w]``.

    For dense outputs, channels-last ``(N, H, W, K)`` (a torch ``(N, K, H, W)`` output is
    seen this way), also ``(N, L, K)`` and ``(N, D, H, W, K)``. ``mask`` is ``(H, W)``
    (shared by every sample) or ``(N, H, W)``, boolean or weights, a NumPy array or a
    tensor of any backend, at the output's resolution (``per_sample=`` says which for other
    ranks: ``(L,)`` / ``(N, L)``, ``(D, H, W)`` / ``(N, D, H, W)``). ``Explanation.targets``
    holds ``class_``.

    >>> m = (seg.argmax(-1) == 12)                               # doctest: +SKIP
    >>> limelight.explain(deeplab, x, "gradcam", targets=Region(12, m))  # doctest: +SKIP
    """

    linear = True
    class_: int
    mask: np.ndarray
    _shared: bool

    def __init__(self, class_: int, mask: Any, *, per_sample: bool | None = None) -> None:
        if isinstance(class_, bool) or not isinstance(class_, numbers.Integral):
            raise TargetError(f"Region's class_ must be an int (a class of the dense output), got {class_!r}.")
        self.class_ = int(class_)
        self.mask = _host(mask, "Region's mask", np.float32)
        if self.mask.ndim < 1:
            raise TargetError("Region's mask must be (H, W) (shared) or (N, H, W), not a scalar.")
        # (H, W) is shared and (N, H, W) per sample; per_sample= settles other ranks
        # ((L,) / (N, L) for 1-D outputs, (D, H, W) / (N, D, H, W) for volumes)
        self._shared = self.mask.ndim in (1, 2) if per_sample is None else not per_sample

    def __repr__(self) -> str:
        return f"Region(class_={self.class_}, mask={self.mask.shape})"

    def _with(self, mask: np.ndarray, shared: bool) -> Region:
        new = object.__new__(Region)
        new.class_, new.mask, new._shared = self.class_, mask, shared
        return new

    def for_samples(self, n: int) -> Region:
        if not self._shared:
            return self
        return self._with(np.broadcast_to(self.mask[None], (n, *self.mask.shape)), False)

    def key(self) -> Hashable:
        return (type(self).__qualname__, self.columns, self.class_, self.mask.ndim)

    def data(self) -> tuple[np.ndarray, ...]:
        if self._shared:
            raise TargetError("Region used before it was given a batch: pass it as targets=.")
        return (self.mask,)

    def __getitem__(self, index: slice | np.ndarray) -> Region:
        return self if self._shared else self._with(self.mask[index], False)

    def check(self, num_outputs: int) -> Region:
        class_ = _check_class(self.class_, num_outputs, "Region's")
        if class_ == self.class_:
            return self
        new = self._with(self.mask, self._shared)
        new.class_ = class_
        return new

    def host_classes(self, n: int) -> np.ndarray:
        return np.full((n, 1), self.class_, dtype=np.int64)

    def scores(self, xp: Any, outputs: Array, *data: Array) -> Array:
        (mask,) = data
        spatial = tuple(outputs.shape[1:-1])
        if len(outputs.shape) < 3:
            raise TargetError(
                f"Region targets sum a class's dense scores over a mask, but this model's output "
                f"is {tuple(outputs.shape)}, one score per class: use targets=Class(k) (or an int)."
            )
        if tuple(mask.shape[1:]) != spatial and None not in spatial and None not in tuple(mask.shape[1:]):
            raise TargetError(
                f"Region's mask is {tuple(mask.shape[1:])} per sample, but the model's dense output "
                f"is {spatial} per class: give a mask of the output's size (H, W) or (N, H, W)."
            )
        picked = outputs[..., self.class_]
        total = xp.sum(picked * xp.astype(mask, picked.dtype), axis=tuple(range(1, len(outputs.shape) - 1)))
        return xp.reshape(total, (-1, 1))

    def classes(self, xp: Any, outputs: Array, *data: Array) -> Array:
        return xp.full((int(outputs.shape[0]), 1), self.class_, dtype=xp.int64)


class Function(Target):
    """Any score written in the Array API: ``fn(xp, outputs) -> (N,)`` or ``(N, T)``.

    ``outputs`` are the model's (selected, channels-last) outputs as backend arrays; ``xp``
    their namespace. ``columns`` is ``T`` when ``fn`` gives several scores per sample
    (methods with several targets per sample: the SHAP family); ``Explanation.targets`` is
    -1 (no class). ``linear=True`` declares ``fn`` linear in the outputs (selections, sums,
    differences): DeepLIFT (``shap-deep``) needs that for completeness, and SHAP base values
    are then computed on the mean output. It runs inside the backends' gradient functions (compiled on TensorFlow):
    use ``xp`` functions and indexing only.

    >>> T.Function(lambda xp, out: out[:, 0])                     # regression  # doctest: +SKIP
    >>> T.Function(lambda xp, out: out[:, 0] - out[:, 1])         # binary margin  # doctest: +SKIP
    """

    fn: Callable[[Any, Array], Array]

    def __init__(self, fn: Any, columns: int = 1, *, linear: bool = False) -> None:
        if not callable(fn):
            raise TargetError(f"Function takes a callable fn(xp, outputs) -> (N,) or (N, T), got {fn!r}.")
        if isinstance(columns, bool) or not isinstance(columns, numbers.Integral) or columns < 1:
            raise TargetError(f"Function's columns must be a positive int, got {columns!r}.")
        self.fn = fn
        self.columns = int(columns)
        self.single = self.columns == 1
        self.linear = bool(linear)

    def __repr__(self) -> str:
        return f"Function({getattr(self.fn, '__qualname__', self.fn)!r}, columns={self.columns})"

    def key(self) -> Hashable:
        return (type(self).__qualname__, self.columns, id(self.fn), self.linear)

    def host_classes(self, n: int) -> np.ndarray:
        return np.full((n, self.columns), -1, np.int64)

    def scores(self, xp: Any, outputs: Array, *data: Array) -> Array:
        try:
            result = self.fn(xp, outputs)
        except LimelightError:
            raise
        except Exception as exc:  # the user's fn: one clear error, chained to what it raised
            error = TargetError(
                f"the Function target's fn raised {type(exc).__name__}: {exc} (it is called as "
                f"fn(xp, outputs) with outputs {tuple(outputs.shape)}, channels-last, as backend "
                "arrays inside the gradient computation: use xp functions and indexing, no "
                ".numpy() or host copies)."
            )
            # TensorFlow re-raises errors of a traced function ``from None``: the original is
            # kept here too (as the backends' own InputErrors keep theirs)
            error.framework_error = exc  # type: ignore[attr-defined]
            raise error from exc
        shape = tuple(getattr(result, "shape", ()))
        if len(shape) == 1 and self.columns == 1:
            return xp.reshape(result, (-1, 1))
        if len(shape) == 2 and shape[1] in (self.columns, None):
            return result
        raise TargetError(
            f"the Function target's fn returned shape {shape}; it must return one score per "
            f"sample, (N,), or (N, T) with T = columns = {self.columns} (Function(fn, columns=T))."
        )

    def classes(self, xp: Any, outputs: Array, *data: Array) -> Array:
        return xp.full((int(outputs.shape[0]), self.columns), -1, dtype=xp.int64)


class Similarity(Target):
    """Cosine similarity of the outputs ``(N, K)`` (an embedding) to a reference ``(K,)``
    (shared) or ``(N, K)`` (one per sample), a NumPy array or any backend's tensor:
    ``score = <out, e> / max(‖out‖·‖e‖, eps)``. ``Explanation.targets`` is -1.

    >>> limelight.explain(image_encoder, x, "gradcam", targets=Similarity(text_embedding))  # doctest: +SKIP
    """

    eps = 1e-8
    embedding: np.ndarray
    _shared: bool

    def __init__(self, embedding: Any) -> None:
        self.embedding = _host(embedding, "Similarity's embedding", np.float32)
        if self.embedding.ndim not in (1, 2) or self.embedding.shape[-1] == 0:
            raise TargetError(
                f"Similarity's embedding must be (K,) or (N, K), got shape {self.embedding.shape}."
            )
        self._shared = self.embedding.ndim == 1

    def __repr__(self) -> str:
        return f"Similarity(embedding={self.embedding.shape})"

    def for_samples(self, n: int) -> Similarity:
        if not self._shared:
            return self
        new = Similarity(np.broadcast_to(self.embedding[None], (n, *self.embedding.shape)))
        return new

    def key(self) -> Hashable:
        return (type(self).__qualname__, self.columns, self.embedding.shape[-1])

    def data(self) -> tuple[np.ndarray, ...]:
        if self._shared:
            raise TargetError("Similarity used before it was given a batch: pass it as targets=.")
        return (self.embedding,)

    def __getitem__(self, index: slice | np.ndarray) -> Similarity:
        return self if self._shared else Similarity(self.embedding[index])

    def check(self, num_outputs: int) -> Similarity:
        if int(num_outputs) != self.embedding.shape[-1]:
            raise TargetError(
                f"Similarity's embedding has {self.embedding.shape[-1]} values, but the model's "
                f"output has {int(num_outputs)} (its last axis): give an embedding of the same size."
            )
        return self

    def host_classes(self, n: int) -> np.ndarray:
        return np.full((n, 1), -1, np.int64)

    def scores(self, xp: Any, outputs: Array, *data: Array) -> Array:
        (embedding,) = data
        if len(outputs.shape) != 2:
            raise TargetError(
                f"Similarity compares an embedding (N, K) to a reference, but this model's output "
                f"is {tuple(outputs.shape)}: pick or pool the embedding with output= (a callable)."
            )
        embedding = xp.astype(embedding, outputs.dtype)
        dot = xp.sum(outputs * embedding, axis=1)
        norms = xp.sqrt(xp.sum(outputs * outputs, axis=1) * xp.sum(embedding * embedding, axis=1))
        return xp.reshape(dot / xp.maximum(norms, self.eps), (-1, 1))

    def classes(self, xp: Any, outputs: Array, *data: Array) -> Array:
        return xp.full((int(outputs.shape[0]), 1), -1, dtype=xp.int64)


TargetsLike = int | Sequence[int] | np.ndarray | Target | None


def _host_ints(targets: Any) -> np.ndarray:
    arr = _host(targets, "targets")
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
        target = targets.for_samples(n)
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


def target_name(target: int, class_names: Sequence[str] | None, prefix: str = "class ") -> str:
    """An explained target in words: its class name (``class_names``), else ``prefix`` and
    its index; ``"score"`` for a target that is no class (``-1``: a Function or Similarity
    target). Too few ``class_names`` is an :class:`InputError`."""
    if target < 0:
        return "score"
    if class_names is None:
        return f"{prefix}{target}"
    if target >= len(class_names):
        raise InputError(f"class_names has {len(class_names)} names; the explained class {target} needs more.")
    return str(class_names[target])
