"""``Explanation``: the result of every explainer, in canonical layout."""

from __future__ import annotations

import json
import operator
import os
import uuid
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO

import numpy as np

from .errors import FrameworkNotInstalledError, InputError, LimelightError, UnsupportedError
from .inputs import describe, leaves, map_inputs, names, rebuild, rows, several, spatial_input, take
from .ops import displayable
from .targets import target_name

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


def _frozen(a: Any, dtype: Any = None) -> Any:
    """:func:`_frozen_array` of one array, or of each array of a tuple / dict of them (a dict
    becomes a read-only mapping)."""
    if not several(a):
        return _frozen_array(a, dtype)
    frozen = map_inputs(lambda v: _frozen_array(v, dtype), a)
    return MappingProxyType(frozen) if isinstance(frozen, dict) else frozen


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

    A model fed several inputs (a tuple or a dict) gives ``values`` (and ``inputs``) in the
    same structure: a tuple of arrays in order, or a read-only mapping keyed by input name,
    each array shaped as for a model fed that input alone (``explain_input=`` gives one array).
    Indexing slices every array; :meth:`save` / :meth:`load` keep the structure;
    :meth:`to_shap` and :meth:`plot` take one input's values (``explain_input=``).
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
    values: Any  # np.ndarray, or a tuple / read-only mapping of them (several inputs)
    targets: np.ndarray
    outputs: np.ndarray
    inputs: Any = None
    base_values: np.ndarray | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    framework: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "values", _frozen(self.values))
        set_(self, "targets", _frozen_array(self.targets, np.int64))
        set_(self, "outputs", _frozen_array(self.outputs, np.float32))
        for name in ("inputs", "base_values"):
            if getattr(self, name) is not None:
                set_(self, name, _frozen(getattr(self, name)))
        set_(self, "params", MappingProxyType(dict(self.params)))
        counts = {a.shape[0] if a.ndim else -1 for a in leaves(self.values)}
        if len(counts) != 1:
            raise InputError(f"values of the inputs {names(self.values)} have different numbers of samples")
        (n,) = counts
        shape = describe(self.values, lambda a: str(a.shape))
        if self.targets.ndim not in (1, 2) or self.targets.shape[0] != n:
            raise InputError(f"targets shape {self.targets.shape} does not match values {shape}")
        if self.outputs.ndim < 2 or self.outputs.shape[0] != n:
            raise InputError(f"outputs shape {self.outputs.shape} does not match values {shape}")

    def __len__(self) -> int:
        return rows(self.values)

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
                kwargs[name] = take(kwargs[name], idx)
        return Explanation(**kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle and copy support (``params`` is a read-only mapping proxy)."""
        kwargs = {f.name: getattr(self, f.name) for f in fields(self)}
        kwargs["params"] = dict(self.params)
        for name in ("values", "inputs"):
            if isinstance(kwargs[name], Mapping):
                kwargs[name] = dict(kwargs[name])
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
        exp = self._one_input("to_shap()")
        try:
            import shap
        except ImportError as exc:
            raise FrameworkNotInstalledError("shap", extra="shap") from exc
        n = len(exp)
        targets = exp.targets.reshape(n, -1)
        values = exp.values if exp.targets.ndim == 2 else exp.values[..., None]
        if exp.values.ndim == 3 and exp.targets.ndim == 1:  # (N, H, W) map: a channel axis
            values = values[:, :, :, None, :]
        base = np.zeros(targets.shape) if exp.base_values is None else exp.base_values.reshape(n, -1)

        names = np.array([[target_name(int(t), output_names) for t in row] for row in targets])
        return shap.Explanation(
            values=np.asarray(values),
            base_values=np.asarray(base),
            data=None if exp.inputs is None else displayable(exp.inputs),
            output_names=names,
        )

    def plot(self, index: int | None = None, **kwargs: Any) -> Any:
        """A matplotlib figure of one sample or all (see :func:`limelight.viz.plot`)."""
        from ..viz import plot

        return plot(self._one_input("plot()"), index=index, **kwargs)

    def _one_input(self, what: str) -> Explanation:
        """This explanation with one input's values and inputs (a model fed several: the
        input named by ``explain_input``, else the one image input; none if neither)."""
        if several(self.values):
            raise UnsupportedError(
                f"{what} draws the values of one input; this explanation holds values for the "
                f"inputs {', '.join(map(repr, names(self.values)))}. Explain one with "
                "explain_input=<name or position>, or use exp.values[<input>]."
            )
        if not several(self.inputs):
            return self
        try:
            one = spatial_input(self.inputs, self.params.get("explain_input"))
        except LimelightError:
            one = None
        return replace(self, inputs=one)

    # -- save / load -----------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str] | BinaryIO) -> Path | None:
        """Write to a compressed ``.npz`` file (arrays + JSON metadata; no pickling) and return
        its path: ``path`` itself when it ends in ``.npz``, else ``path`` with ``.npz``
        appended (as NumPy does; :meth:`load` takes either). The file is written whole or
        not at all (through a temporary file beside it). A binary file object (``BytesIO``,
        an open file) is written to as is, and None returned."""
        arrays: dict[str, Any] = {}
        structure: dict[str, Any] = {}
        for name in _ARRAYS:
            value = getattr(self, name)
            if value is None:
                continue
            if several(value):  # one entry per input, "values.0", "values.1", ...
                structure[name] = {"keys": names(value), "dict": isinstance(value, Mapping)}
                arrays.update({f"{name}.{i}": a for i, a in enumerate(leaves(value))})
            else:
                arrays[name] = value
        meta = {
            "method": self.method,
            "framework": self.framework,
            "params": {k: v for k, v in self.params.items() if _jsonable(v)},
            "inputs_structure": structure,
        }
        if not isinstance(path, str | os.PathLike):  # a file object: NumPy writes to it
            np.savez_compressed(path, __meta__=np.array(json.dumps(meta)), **arrays)
            return None
        target = _npz_path(path)
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
        try:
            with open(temporary, "xb") as handle:  # the permissions np.savez would give
                np.savez_compressed(handle, __meta__=np.array(json.dumps(meta)), **arrays)
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str] | BinaryIO) -> Explanation:
        """Read an explanation written by :meth:`save`: ``path`` as given to :meth:`save`
        (``"exp"`` finds the ``exp.npz`` it wrote), the file's own path, or a binary file
        object. A file that is not such an explanation is an :class:`InputError`."""
        found: Path | BinaryIO
        if isinstance(path, str | os.PathLike):
            tried = [Path(path)] if str(path).endswith(".npz") else [Path(path), _npz_path(path)]
            hit = next((p for p in tried if p.is_file()), None)
            if hit is None:
                raise InputError(f"no saved explanation at {' nor '.join(map(str, tried))}: give the path "
                                 "Explanation.save wrote (it returns it).")
            found = hit
        else:
            found = path
        try:
            data = np.load(found, allow_pickle=False)
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise InputError(f"{found} is not an explanation written by Explanation.save ({exc}).") from exc
        if not isinstance(data, np.lib.npyio.NpzFile) or "__meta__" not in data.files:
            if isinstance(data, np.lib.npyio.NpzFile):
                data.close()
            raise InputError(f"{found} is not an explanation written by Explanation.save (no __meta__ entry).")
        with data:
            meta = json.loads(str(data["__meta__"]))
            arrays: dict[str, Any] = {name: data[name] for name in _ARRAYS if name in data.files}
            for name, spec in meta.get("inputs_structure", {}).items():
                parts = [data[f"{name}.{i}"] for i in range(len(spec["keys"]))]
                like: Any = dict.fromkeys(spec["keys"]) if spec["dict"] else tuple(spec["keys"])
                arrays[name] = rebuild(like, parts)
        return cls(method=meta["method"], framework=meta["framework"], params=meta["params"], **arrays)


def _npz_path(path: str | os.PathLike[str]) -> Path:
    """The file :meth:`Explanation.save` writes for ``path``: ``.npz`` appended unless it ends
    so (NumPy's rule)."""
    text = os.fspath(path)
    return Path(text if text.endswith(".npz") else text + ".npz")


def _rebuild(cls: type[Explanation], kwargs: dict[str, Any]) -> Explanation:
    return cls(**kwargs)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
