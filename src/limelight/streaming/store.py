"""The results store: a Zarr v3 group, one chunk per batch along the sample axis.

Layout (``open_results`` reads it back lazily)::

    maps.zarr/
      zarr.json          group attributes: run (method, params, batch_size, model), versions,
                         and once finished: failures [{id, error}], rows, seconds
      values/            (N, ...) float32, NaN on failed rows
      targets/           (N,) or (N, T) int64
      outputs/           (N, K) float32
      base_values/       (N,) or (N, T) float32 (methods that have them)
      ids/               (N,) str
      failed/            (N,) bool
      errors/            (N,) str, the error of each failed row ("" otherwise)
      done/              (chunks,) int32, one chunk each: the rows of chunk k once written

Write, then mark: :meth:`ResultStore.write` writes every array's rows of a chunk first and
only then sets ``done[k]`` to the chunk's row count. Zarr's local store writes each file to a
temporary name and renames it into place, so each chunk file and each mark is whole or
absent: a run killed at any point leaves no chunk that reads as complete but is not, and
:meth:`ResultStore.completed` (the leading marked chunks) is where a resumed run starts
(it rewrites the unmarked chunk in full).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.errors import FrameworkNotInstalledError, InputError, LimelightError

__all__ = ["BatchResult", "Results", "ResultStore", "StoreError", "open_results"]

#: Written into every store's attributes; ``open_results`` checks it.
FORMAT = "limelight-results/1"
_FILL: dict[str, Any] = {"values": np.nan, "targets": -1, "outputs": np.nan, "base_values": np.nan,
                         "ids": "", "failed": False, "errors": ""}
_DTYPES: dict[str, Any] = {"values": "float32", "targets": "int64", "outputs": "float32", "base_values": "float32",
                           "ids": str, "failed": "bool", "errors": str}
#: The arrays written only once some row of a batch succeeded (shapes come from the data).
_DATA = ("values", "targets", "outputs", "base_values")


class StoreError(LimelightError):
    """A results store exists where a new one was asked for, does not match the run, or is not
    a limelight results store."""


def _zarr() -> Any:
    try:
        import zarr
    except ImportError as exc:
        raise FrameworkNotInstalledError("zarr", extra="zarr") from exc
    return zarr


@dataclass
class BatchResult:
    """The results of one batch, ready for :meth:`ResultStore.write`.

    ``values`` ``(n, ...)`` float32 (NaN on failed rows; None when every row failed),
    ``targets`` ``(n,)`` or ``(n, T)`` int64, ``outputs`` ``(n, K)`` float32, ``ids`` one per
    row, ``base_values`` or None, ``failed`` ``(n,)`` bool, ``errors`` one message per failed
    row (in row order).
    """

    values: np.ndarray | None
    targets: np.ndarray | None
    outputs: np.ndarray | None
    ids: list[str]
    base_values: np.ndarray | None = None
    failed: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.failed.shape != (n,):
            self.failed = np.zeros(n, bool) if self.failed.size == 0 else np.asarray(self.failed, bool)
        if self.failed.shape != (n,):
            raise InputError(f"BatchResult: {n} ids but failed has shape {self.failed.shape}")
        if len(self.errors) != int(self.failed.sum()):
            raise InputError(f"BatchResult: {int(self.failed.sum())} failed rows but {len(self.errors)} errors")
        for name in _DATA:
            a = getattr(self, name)
            if a is not None and len(a) != n:
                raise InputError(f"BatchResult: {n} ids but {name} has {len(a)} rows")

    def __len__(self) -> int:
        return len(self.ids)

    def failures(self) -> list[tuple[str, str]]:
        """``(id, error)`` of the failed rows."""
        return list(zip([i for i, f in zip(self.ids, self.failed, strict=True) if f], self.errors, strict=True))


def _jsonify(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), for comparisons."""
    return json.loads(json.dumps(value, default=str))


#: Run attributes newer limelight records that a store from before them lacks: not counted
#: as a difference on resume (``model.weights``: the weights digest, added 2026-11-27).
_NEWER_KEYS = (("model", "weights"),)


def _without_new_keys(stored: Any, given: Any) -> None:
    """Drop from ``given`` the :data:`_NEWER_KEYS` that ``stored`` (an older store) lacks."""
    for outer, inner in _NEWER_KEYS:
        old, new = (stored or {}).get(outer), given.get(outer)
        if isinstance(old, dict) and isinstance(new, dict) and inner not in old:
            new.pop(inner, None)


class ResultStore:
    """A Zarr v3 results store being written (see the module docstring for the layout)."""

    def __init__(self, group: Any, path: pathlib.Path) -> None:
        self.group = group
        self.path = path
        self.batch_size = int(group.attrs["run"]["batch_size"])
        self._handles: dict[str, Any] = {}  # opened arrays: opening one reads its metadata
        self.made: list[pathlib.Path] = []  # the folders create() made (the store, then new parents)

    def _array(self, name: str) -> Any:
        """The array ``name`` of the group, opened once."""
        if name not in self._handles:
            self._handles[name] = self.group[name]
        return self._handles[name]

    def _has(self, name: str) -> bool:
        return name in self._handles or name in self.group

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike[str], *, attrs: Mapping[str, Any], resume: bool = False,
               capacity: int | None = None) -> ResultStore:
        """A new store at ``path`` (``attrs`` needs ``run`` with ``batch_size``), or with
        ``resume`` the existing one after checking it holds the same run. ``capacity``: the
        rows expected, when known (arrays grow as needed anyway)."""
        zarr = _zarr()
        target = pathlib.Path(path)
        run = attrs.get("run")
        if not isinstance(run, Mapping) or "batch_size" not in run:
            raise InputError("ResultStore.create needs attrs['run'] with the run's batch_size")
        if target.exists():
            if not resume:
                raise StoreError(
                    f"{target} already exists. Pass resume=True (CLI: --resume) to continue that run, "
                    "or choose another path (delete it to start over)."
                )
            group = _open_group(target, "r+")
            stored = _jsonify(group.attrs.get("run"))
            given = _jsonify(dict(run))
            _without_new_keys(stored, given)
            if stored != given:
                keys = sorted(k for k in set(stored) | set(given) if stored.get(k) != given.get(k))
                diffs = "; ".join(f"{k}: stored {stored.get(k)!r}, now {given.get(k)!r}" for k in keys)
                raise StoreError(
                    f"cannot resume {target}: it holds a different run ({diffs}). Resume with the same "
                    "model, method, parameters and batch size, or choose another path."
                )
            for stale in target.rglob("*.partial"):  # a killed write's temporary file
                stale.unlink(missing_ok=True)
            store = cls(group, target)
            store._versions(attrs)
            return store
        made = [target, *(p for p in target.absolute().parents if not p.exists())]
        try:
            group = zarr.open_group(str(target), mode="w-", zarr_format=3)
        except (OSError, ValueError) as exc:
            shutil.rmtree(target, ignore_errors=True)  # it did not exist: nothing half-made stays
            raise StoreError(f"cannot create a results store at {target}: {exc}") from None
        group.attrs.update(_jsonify({**dict(attrs), "format": FORMAT, "finished": False}))
        store = cls(group, target)
        store.made = made
        store._versions(attrs)
        rows = max(capacity or 0, store.batch_size)
        chunks = -(-rows // store.batch_size)
        group.create_array("done", shape=(chunks,), chunks=(1,), dtype="int32", fill_value=0, compressors=None)
        for name in ("ids", "failed", "errors"):
            store._create(name, (rows,))
        return store

    def discard(self) -> bool:
        """Remove the store when :meth:`create` made it (not a resumed one) and no chunk is
        complete yet (a run that failed in its setup), with the parent folders it made; True
        when removed. A store holding finished batches is kept (resume it)."""
        try:
            if not self.made or self.completed() > 0:
                return False
        except Exception:  # noqa: BLE001 - unreadable marks: keep it
            return False
        shutil.rmtree(self.made[0], ignore_errors=True)
        for parent in self.made[1:]:
            try:
                parent.rmdir()  # only while empty
            except OSError:
                break
        self.made = []
        return True

    def _versions(self, attrs: Mapping[str, Any]) -> None:
        from .. import __version__

        versions = {"limelight": __version__, "zarr": _zarr().__version__, "numpy": np.__version__,
                    **dict(attrs.get("versions") or {})}
        self.group.attrs.update({"versions": _jsonify(versions)})

    def _create(self, name: str, shape: tuple[int, ...]) -> Any:
        chunks = (self.batch_size, *shape[1:])
        array = self.group.create_array(name, shape=shape, chunks=chunks, dtype=_DTYPES[name], fill_value=_FILL[name])
        self._handles[name] = array
        return array

    # -- state ------------------------------------------------------------------------------
    def completed(self) -> int:
        """Rows in the leading chunks marked done (where a resumed run starts)."""
        return _completed(self.group)

    @property
    def capacity(self) -> int:
        return int(self._array("ids").shape[0])

    def _grow(self, rows: int) -> None:
        """Every array (and the marks) to hold at least ``rows`` rows (doubling)."""
        if rows <= self.capacity:
            return
        new = max(rows, 2 * self.capacity)
        for name in _DTYPES:
            if self._has(name):
                arr = self._array(name)
                arr.resize((new, *arr.shape[1:]))
        self._array("done").resize((-(-new // self.batch_size),))

    # -- writing ----------------------------------------------------------------------------
    def write(self, start: int, result: BatchResult) -> None:
        """Write rows ``[start, start + n)`` of every array, then mark the chunk done."""
        n = len(result)
        if start % self.batch_size or not 0 < n <= self.batch_size:
            raise InputError(
                f"ResultStore.write: rows [{start}, {start + n}) are not one chunk of {self.batch_size} rows"
            )
        self._grow(start + n)
        rows = slice(start, start + n)
        for name in _DATA:
            data = getattr(result, name)
            if data is None:
                continue  # unwritten rows read as the fill value (NaN, -1): failed rows
            data = np.asarray(data, _DTYPES[name])
            if not self._has(name):
                self._create(name, (self.capacity, *data.shape[1:]))
            arr = self._array(name)
            if arr.shape[1:] != data.shape[1:]:
                raise StoreError(
                    f"{name} of rows {start}..{start + n - 1} has shape {data.shape[1:]} per row, but the store "
                    f"holds {arr.shape[1:]}: every sample must give the same shape (resize the inputs)"
                )
            arr[rows] = data
        self._array("ids")[rows] = np.array(result.ids, dtype=np.dtypes.StringDType())
        self._array("failed")[rows] = result.failed
        errors = np.full(n, "", dtype=np.dtypes.StringDType())
        errors[result.failed] = result.errors
        self._array("errors")[rows] = errors
        self._array("done")[start // self.batch_size] = n  # the mark, last

    def finish(self, **attrs: Any) -> None:
        """Record the run's end: arrays cut to the completed rows, ``failures`` and ``attrs``."""
        rows = self.completed()
        for name in _DTYPES:
            if self._has(name):
                arr = self._array(name)
                arr.resize((rows, *arr.shape[1:]))
        self._array("done").resize((max(1, -(-rows // self.batch_size)),))
        failures = [{"id": i, "error": e} for i, e in _failures(self.group, rows)]
        self.group.attrs.update(_jsonify({**attrs, "failures": failures, "rows": rows, "finished": True}))


def _open_group(path: pathlib.Path, mode: str) -> Any:
    zarr = _zarr()
    if not path.exists():
        raise StoreError(f"no results store at {path}")
    try:
        group = zarr.open_group(str(path), mode=mode)
    except Exception as exc:  # noqa: BLE001 - zarr raises several types for a non-store
        raise StoreError(f"{path} is not a limelight results store ({type(exc).__name__}: {exc})") from None
    if group.attrs.get("format") != FORMAT or "done" not in group:
        raise StoreError(f"{path} is not a limelight results store (no {FORMAT!r} attributes)")
    return group


def _completed(group: Any) -> int:
    marks = np.asarray(group["done"][:])
    batch = int(group.attrs["run"]["batch_size"])
    rows = 0
    for mark in marks:
        if mark <= 0:
            break
        rows += int(mark)
        if mark < batch:  # a short chunk ends the stream
            break
    return rows


def _failures(group: Any, rows: int) -> list[tuple[str, str]]:
    if rows == 0:
        return []
    failed = np.asarray(group["failed"][:rows])
    where = np.flatnonzero(failed)
    if where.size == 0:
        return []
    ids, errors = group["ids"], group["errors"]
    return [(str(ids[i]), str(errors[i])) for i in where]


class Rows:
    """The first ``n`` rows of a Zarr array, read lazily: indexing reads only the chunks it
    needs; ``np.asarray`` reads all ``n`` rows. ``zarr`` is the array itself."""

    def __init__(self, array: Any, n: int) -> None:
        self.zarr = array
        self._n = n

    @property
    def shape(self) -> tuple[int, ...]:
        return (self._n, *self.zarr.shape[1:])

    @property
    def dtype(self) -> Any:
        return self.zarr.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def chunks(self) -> tuple[int, ...]:
        return tuple(self.zarr.chunks)

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"<Rows {self.shape} {self.dtype} of {self.zarr.path!r}>"

    def _read(self, key: Any) -> tuple[np.ndarray, Any]:
        """The rows ``key`` (the entry of an index on the row axis) selects, read from Zarr
        (only the chunks they lie in), and what indexes those rows as ``key`` indexed all."""
        n = self._n
        if isinstance(key, slice):
            rows = range(*key.indices(n))
            if not rows:
                return np.asarray(self.zarr[0:0]), slice(None)
            if rows.step > 0:
                return np.asarray(self.zarr[rows.start:rows.stop:rows.step]), slice(None)
            low = rows[-1]  # a negative step: read ascending, reverse here
            stop = rows.stop - low
            return np.asarray(self.zarr[low:rows.start + 1]), slice(rows.start - low, stop if stop >= 0 else None,
                                                                     rows.step)
        arr = np.asarray(key)
        if arr.dtype == bool:  # spans arr.ndim axes from the row axis
            if arr.shape[0] != n:
                raise IndexError(f"boolean index did not match the rows: {n} rows, but the mask has {arr.shape[0]}")
            picked = np.flatnonzero(arr.reshape(n, int(np.prod(arr.shape[1:]))).any(axis=1))
            return self._take(picked), arr[picked]
        if arr.size == 0 and arr.dtype.kind == "f":  # [] reads as float: an empty integer index
            arr = arr.astype(np.intp)
        if arr.dtype.kind not in "iu":
            raise IndexError(
                "only integers, slices (`:`), ellipsis (`...`), numpy.newaxis (`None`) and integer or boolean "
                f"arrays are valid indices, got {type(key).__name__}"
            )
        if arr.size and (arr.min() < -n or arr.max() >= n):
            bad = int(arr.min()) if arr.min() < -n else int(arr.max())
            raise IndexError(f"index {bad} is out of bounds for axis 0 with size {n}")
        if arr.ndim == 0:  # an integer: one row
            i = int(arr) % n
            return np.asarray(self.zarr[i:i + 1]), 0
        picked, where = np.unique(arr % n, return_inverse=True)
        return self._take(picked), where.reshape(arr.shape)

    def _take(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (ascending, unique) of the array."""
        return np.asarray(self.zarr.oindex[rows] if rows.size else self.zarr[0:0])

    def __getitem__(self, key: Any) -> Any:
        """``np.asarray(self)[key]`` for any NumPy index, reading only the rows it selects."""
        entries = list(key) if isinstance(key, tuple) else [key]

        def spans(entry: Any) -> int:  # the axes an entry consumes (Ellipsis: counted apart)
            if entry is None or isinstance(entry, bool | np.bool_):
                return 0
            if isinstance(entry, np.ndarray | list) and np.asarray(entry).dtype == bool:
                return np.asarray(entry).ndim
            return 1

        if sum(e is Ellipsis for e in entries) > 1:
            raise IndexError("an index can only have a single ellipsis ('...')")
        for at, entry in enumerate(entries):
            if entry is Ellipsis:
                if self.ndim - sum(spans(e) for e in entries if e is not Ellipsis) > 0:
                    break  # the ellipsis covers the row axis: every row
                continue
            if spans(entry):
                data, entries[at] = self._read(entry)
                return data[tuple(entries)]
        return np.asarray(self)[tuple(entries)]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        data = np.asarray(self.zarr[: self._n])
        return data if dtype is None else data.astype(dtype)


class Results:
    """A results store read back lazily (:func:`open_results`): ``values``, ``targets``,
    ``outputs``, ``ids``, ``base_values`` (None when the method has none), ``failed``,
    ``errors`` are :class:`Rows` of the completed rows only; ``attrs`` the run's attributes;
    ``failures`` the ``(id, error)`` of the failed rows; ``len()`` the completed rows."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = pathlib.Path(path)
        self.group = _open_group(self.path, "r")
        self._n = _completed(self.group)
        for name in _DTYPES:
            setattr(self, name, Rows(self.group[name], self._n) if name in self.group else None)

    values: Rows | None
    targets: Rows | None
    outputs: Rows | None
    base_values: Rows | None
    ids: Rows
    failed: Rows
    errors: Rows

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        run = self.attrs.get("run", {})
        return f"<Results {self.path}: {self._n} rows, method {run.get('method')!r}, {len(self.failures)} failed>"

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.group.attrs)

    @property
    def failures(self) -> list[tuple[str, str]]:
        return _failures(self.group, self._n)

    @property
    def finished(self) -> bool:
        return bool(self.group.attrs.get("finished"))


def open_results(path: str | os.PathLike[str]) -> Results:
    """Open a results store written by :func:`limelight.explain_dataset` (or the CLI's
    ``--out X.zarr``) for reading: arrays are read lazily, only completed rows are visible."""
    return Results(path)


def remove_store(path: str | os.PathLike[str]) -> None:
    """Delete a results store (only a folder that is one)."""
    _open_group(pathlib.Path(path), "r")
    shutil.rmtree(path)
