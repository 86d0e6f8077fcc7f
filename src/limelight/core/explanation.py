"""``Explanation``: the result of every explainer, in canonical layout."""

from __future__ import annotations

import json
import operator
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

import numpy as np

from .errors import FrameworkNotInstalledError, InputError
from .ops import displayable

__all__ = ["Explanation"]

_ARRAYS = ("values", "targets", "outputs", "inputs", "base_values")


def _frozen_array(a: Any, dtype: Any = None) -> np.ndarray:
    """A read-only copy of ``a``; an array that already owns read-only memory (what
    :func:`owned` makes) is taken as it is, which spares large results a second host copy."""
    if isinstance(a, np.ndarray) and a.flags.owndata and not a.flags.writeable and (dtype is None or a.dtype == dtype):
        return a
    arr = np.array(a, dtype=dtype, copy=True)
    arr.setflags(write=False)
    return arr


def owned(a: Any, dtype: Any = None) -> np.ndarray:
    """A read-only NumPy array that owns its memory (one copy), ready for :class:`Explanation`."""
    arr = np.array(a, dtype=dtype, copy=True, order="C")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, kw_only=True, eq=False)
class Explanation:
    """An explanation of a batch of N samples.

    Attributes:
        method: the explainer's registered name, e.g. ``"gradcam"``.
        values: the attribution in canonical layout at input resolution: ``(N, H, W)`` for
            CAM maps, ``(N, H, W, C)`` for attributions (``(N, D)`` for flat inputs). When
            several outputs are explained per sample, a trailing axis ``T`` is added.
        targets: ``(N,)`` int64, the explained output per sample; ``(N, T)`` for several.
        outputs: ``(N, K)`` float32, the model's outputs (dense outputs channels-last,
            ``(N, H, W, K)``); with ``output=``, the selected one.
        inputs: the canonical inputs ``(N, H, W, C)``, if kept.
        base_values: ``(N,)`` (or ``(N, T)``) expected output of each explained target for
            additive methods (SHAP): ``values`` sum to ``outputs - base_values``.
        params: the explainer's parameters, a read-only mapping (JSON-serializable values
            are saved); ``dataclasses.replace(exp, params={...})`` makes a changed copy.
        framework: the backend's framework name, e.g. ``"torch"``.

    Arrays are read-only copies and ``params`` a read-only view of a private copy, so an
    explanation cannot change after it is made. Indexing follows Python's rules: ``exp[i]``
    (negative ``i`` counts from the end, out of range raises IndexError) keeps a batch axis
    of 1, ``exp[a:b:c]`` selects samples like a list slice.
    """

    method: str
    values: np.ndarray
    targets: np.ndarray
    outputs: np.ndarray
    inputs: np.ndarray | None = None
    base_values: np.ndarray | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    framework: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "values", _frozen_array(self.values))
        set_(self, "targets", _frozen_array(self.targets, np.int64))
        set_(self, "outputs", _frozen_array(self.outputs, np.float32))
        for name in ("inputs", "base_values"):
            if getattr(self, name) is not None:
                set_(self, name, _frozen_array(getattr(self, name)))
        set_(self, "params", MappingProxyType(dict(self.params)))
        n = self.values.shape[0] if self.values.ndim else -1
        if self.targets.ndim not in (1, 2) or self.targets.shape[0] != n:
            raise InputError(f"targets shape {self.targets.shape} does not match values {self.values.shape}")
        if self.outputs.ndim < 2 or self.outputs.shape[0] != n:
            raise InputError(f"outputs shape {self.outputs.shape} does not match values {self.values.shape}")

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def __getitem__(self, index: int | slice) -> Explanation:
        """The explanation of a subset of samples (``exp[0]`` keeps a batch axis of 1;
        ``exp[-1]`` is the last sample; an index out of range raises IndexError)."""
        n = len(self)
        if isinstance(index, slice):
            idx = index
        else:
            try:
                i = operator.index(index)
            except TypeError:
                raise TypeError(
                    f"Explanation indices must be integers or slices, not {type(index).__name__}"
                ) from None
            if not -n <= i < n:
                raise IndexError(f"Explanation index {i} out of range for {n} samples")
            i %= n
            idx = slice(i, i + 1)
        kwargs = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in _ARRAYS:
            if kwargs[name] is not None:
                kwargs[name] = kwargs[name][idx]
        return Explanation(**kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle and copy support (``params`` is a read-only mapping proxy)."""
        kwargs = {f.name: getattr(self, f.name) for f in fields(self)}
        kwargs["params"] = dict(self.params)
        return (_rebuild, (type(self), kwargs))

    # -- shap interop --------------------------------------------------------------------
    def to_shap(self, output_names: Any = None) -> Any:
        """This explanation as a ``shap.Explanation``, ready for shap's plots.

        ``values`` become ``(N, H, W, C, K)`` (CAM maps get a channel axis of 1; a single
        target per sample gives K = 1), ``base_values`` ``(N, K)``, ``data`` the inputs as
        pixel values in [0, 1] (:func:`limelight.core.ops.displayable`), and ``output_names`` ``(N, K)``: ``output_names[class]`` when a sequence
        of class names is given, else ``"class {index}"`` (``"score"`` for targets that are no
        class, ``-1``).
        """
        try:
            import shap
        except ImportError as exc:
            raise FrameworkNotInstalledError("shap", extra="shap") from exc
        n = len(self)
        targets = self.targets.reshape(n, -1)
        values = self.values if self.targets.ndim == 2 else self.values[..., None]
        if self.values.ndim == 3 and self.targets.ndim == 1:  # (N, H, W) map: a channel axis
            values = values[:, :, :, None, :]
        base = np.zeros(targets.shape) if self.base_values is None else self.base_values.reshape(n, -1)
        def name(t: int) -> str:
            if t < 0:  # a score that is no class's (targets.Function, targets.Similarity)
                return "score"
            return str(output_names[t]) if output_names is not None else f"class {t}"

        names = np.array([[name(int(t)) for t in row] for row in targets])
        return shap.Explanation(
            values=np.asarray(values),
            base_values=np.asarray(base),
            data=None if self.inputs is None else displayable(self.inputs),
            output_names=names,
        )

    def plot(self, index: int | None = None, **kwargs: Any) -> Any:
        """A matplotlib figure of one sample or all (see :func:`limelight.viz.plot`)."""
        from ..viz import plot

        return plot(self, index=index, **kwargs)

    # -- save / load -----------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write to a compressed ``.npz`` file (arrays + JSON metadata); no pickling."""
        arrays = {name: getattr(self, name) for name in _ARRAYS if getattr(self, name) is not None}
        meta = {
            "method": self.method,
            "framework": self.framework,
            "params": {k: v for k, v in self.params.items() if _jsonable(v)},
        }
        np.savez_compressed(path, __meta__=np.array(json.dumps(meta)), **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Explanation:
        """Read an explanation written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["__meta__"]))
            arrays = {name: data[name] for name in _ARRAYS if name in data.files}
        return cls(method=meta["method"], framework=meta["framework"], params=meta["params"], **arrays)


def _rebuild(cls: type[Explanation], kwargs: dict[str, Any]) -> Explanation:
    return cls(**kwargs)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
