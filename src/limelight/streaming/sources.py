"""Batches from anything a dataset comes in: :func:`iter_batches`.

Every source is re-batched to exactly ``batch_size`` rows (the last batch may be shorter), so
row ``i`` of the stream is row ``i`` of the results store and batch ``k`` is its chunk ``k``.
Nothing is held beyond the batch being built.
"""

from __future__ import annotations

import glob
import os
import pathlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.arrays import host_array
from ..core.errors import InputError, LimelightError

__all__ = ["NATIVE", "Batch", "iter_batches", "image_paths", "source_length"]

Preprocess = Callable[[np.ndarray], Any]
Size = int | tuple[int, int] | str | None
#: ``size=NATIVE``: every image at its own size through ``preprocess`` (which sizes it).
NATIVE = "native"


@dataclass
class Batch:
    """One batch of a stream.

    Attributes:
        inputs: the batch as the model is fed (NCHW torch tensor / NumPy for torch models,
            NHWC for Keras): exactly what :func:`limelight.explain` takes. None when every
            row of the batch failed to load.
        ids: one id per row of ``inputs`` (the path for files, else the row number as str).
        masks: ``(n, H, W)`` bool masks (for evaluation), or None.
        failures: ``(id, message)`` of the samples that could not even be loaded.
        failure_rows: where each failure sits among the batch's rows (``len(ids) +
            len(failures)`` rows in source order); empty: after the loaded rows.
    """

    inputs: Any
    ids: list[str]
    masks: np.ndarray | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)
    failure_rows: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        """Rows of the batch, loaded and failed."""
        return len(self.ids) + len(self.failures)

    def row_ids(self) -> list[str]:
        """Every row's id in source order (failed rows at ``failure_rows``)."""
        rows: list[str | None] = [None] * len(self)
        slots = self.failure_rows or list(range(len(self.ids), len(self)))
        for slot, (id_, _) in zip(slots, self.failures, strict=True):
            rows[slot] = id_
        loaded = iter(self.ids)
        return [next(loaded) if r is None else r for r in rows]

    def failed_rows(self) -> list[int]:
        return list(self.failure_rows or range(len(self.ids), len(self)))


# -- helpers -------------------------------------------------------------------------------
def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _is_tf(x: Any) -> bool:
    return type(x).__module__.startswith(("tensorflow", "tf_keras", "keras"))


def _nrows(x: Any) -> int:
    return int(x.shape[0])


def _concat(parts: list[Any]) -> Any:
    if len(parts) == 1:
        return parts[0]
    if _is_torch(parts[0]):  # stays a tensor (on its device), through its Array API namespace
        from array_api_compat import array_namespace

        return array_namespace(*parts).concat(parts)
    return np.concatenate([np.asarray(p) for p in parts])


def _host(x: Any) -> Any:
    """TensorFlow tensors become NumPy (they are fed as NHWC arrays); others stay."""
    if _is_tf(x) and hasattr(x, "numpy"):
        return x.numpy()
    return x


def _split(item: Any) -> tuple[Any, list[str] | None, Any]:
    """(inputs, ids, masks) of one yielded batch."""
    if isinstance(item, dict):
        inputs = next((item[k] for k in ("inputs", "image", "images", "x") if k in item), None)
        if inputs is None:
            raise InputError(f"a batch dict needs an 'inputs' or 'image' key; it has {sorted(item)}")
        ids = next((item[k] for k in ("ids", "id", "path", "paths") if k in item), None)
        masks = next((item[k] for k in ("masks", "mask") if k in item), None)
    elif isinstance(item, tuple | list) and not isinstance(item, np.ndarray):
        if not item:
            raise InputError("an empty tuple is not a batch")
        inputs, rest = item[0], list(item[1:])
        ids = masks = None
        if rest:  # (inputs, ids[, masks]) or a DataLoader's (inputs, labels)
            second = rest[0]
            if _strings(second):
                ids = second
                masks = rest[1] if len(rest) > 1 else None
    else:
        inputs, ids, masks = item, None, None
    inputs = _host(inputs)
    if not hasattr(inputs, "shape") or len(inputs.shape) == 0:
        raise InputError(f"a batch's inputs must be an array or tensor with a batch axis, not {type(inputs).__name__}")
    id_list = None if ids is None else [_decode(i) for i in _host(ids)]
    if id_list is not None and len(id_list) != _nrows(inputs):
        raise InputError(f"a batch has {_nrows(inputs)} inputs but {len(id_list)} ids")
    if masks is not None:
        masks = host_array(masks).astype(bool)  # a mask on the GPU comes to the host
    return inputs, id_list, masks


def _strings(x: Any) -> bool:
    x = _host(x)
    if isinstance(x, np.ndarray):
        return x.dtype.kind in "USOT"
    if isinstance(x, list | tuple):
        return bool(x) and all(isinstance(i, str | bytes | os.PathLike) for i in x)
    return False


def _decode(x: Any) -> str:
    if isinstance(x, bytes | np.bytes_):
        return x.decode()
    return os.fspath(x) if isinstance(x, os.PathLike) else str(x)


def _rebatch(items: Iterable[Any], batch_size: int, start: int) -> Iterator[Batch]:
    """Cut a stream of yielded batches into batches of ``batch_size`` rows from row ``start``."""
    parts: list[tuple[Any, list[str], Any]] = []
    have, row = 0, 0
    for item in items:
        inputs, ids, masks = _split(item)
        n = _nrows(inputs)
        if row + n <= start:  # skipped whole (resume): nothing kept
            row += n
            continue
        if ids is None:
            ids = [str(row + i) for i in range(n)]
        if row < start:
            cut = start - row
            inputs, ids, masks = inputs[cut:], ids[cut:], None if masks is None else masks[cut:]
            row, n = start, n - cut
        row += n
        offset = 0
        while offset < n:
            take = min(batch_size - have, n - offset)
            sl = slice(offset, offset + take)
            parts.append((inputs[sl], ids[sl], None if masks is None else masks[sl]))
            have += take
            offset += take
            if have == batch_size:
                yield _join(parts)
                parts, have = [], 0
    if parts:
        yield _join(parts)


def _join(parts: list[tuple[Any, list[str], Any]]) -> Batch:
    inputs = _concat([p[0] for p in parts])
    ids = [i for p in parts for i in p[1]]
    masks = None if any(p[2] is None for p in parts) else np.concatenate([p[2] for p in parts])
    return Batch(inputs=inputs, ids=ids, masks=masks)


# -- image files ---------------------------------------------------------------------------
def _image_suffixes() -> set[str]:
    from ..core.lazy import require

    Image = require("PIL.Image", "viz", "Pillow")
    return {s.lower() for s in Image.registered_extensions()}


def image_paths(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], recursive: bool = False) -> list[str]:
    """The image files a folder (``recursive``: and its subfolders), a glob pattern or a list
    of paths names, sorted within each; a folder keeps files with an image suffix (a corrupt
    image is kept and fails when it is loaded)."""
    items = [source] if isinstance(source, str | os.PathLike) else list(source)
    suffixes = _image_suffixes()
    paths: list[str] = []
    for item in items:
        path = pathlib.Path(item)
        if path.is_dir():
            found = sorted(
                str(p) for p in (path.rglob("*") if recursive else path.iterdir())
                if p.is_file() and p.suffix.lower() in suffixes
            )
            if not found:
                more = "" if recursive else " (recursive=True / --recursive looks in subfolders too)"
                raise InputError(f"no image files in the folder {item}{more}")
            paths += found
        elif not path.exists() and glob.has_magic(str(item)):
            found = sorted(m for m in glob.glob(str(item), recursive=recursive) if pathlib.Path(m).suffix.lower() in suffixes)
            if not found:
                raise InputError(f"no image files match {item}")
            paths += found
        else:
            paths.append(str(path))  # a missing file fails when loaded, as a recorded failure
    return paths


def resolve_preprocess(preprocess: Preprocess | str | None) -> Preprocess | None:
    """A callable, a preset name of :func:`limelight.io.preset`, or None."""
    if isinstance(preprocess, str):
        from ..io import preset

        return preset(preprocess).apply
    if preprocess is not None and not callable(preprocess):
        raise InputError(f"preprocess must be a callable or a preset name, not {type(preprocess).__name__}")
    return preprocess


def check_size(size: Size) -> None:
    """``size`` is None, ``"native"``, a positive int or ``(H, W)`` of positive ints, else an
    :class:`InputError`."""
    if size is None or (isinstance(size, str) and size == NATIVE):
        return
    if isinstance(size, np.ndarray):  # (its truth value would raise): give ints
        raise InputError(f"size must be a positive int or (H, W) of ints, not an array; got {size!r}: "
                         "pass tuple(size.tolist()).")
    sides = (size, size) if not isinstance(size, tuple | list) else size
    if len(sides) != 2 or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 1
                                  for v in sides):
        raise InputError(f'size must be None, "{NATIVE}", a positive int or (H, W) of positive ints, got {size!r}')


def _file_batches(paths: list[str], batch_size: int, preprocess: Preprocess | str | None,
                  start: int, size: Size) -> Iterator[Batch]:
    from .. import io

    check_size(size)
    # "native": each image at its own size through ``preprocess``, which sets the size
    # (torchvision's transform resizes and crops); else resized to ``size`` (default 224)
    per_image = size == NATIVE or (size is None and preprocess == "torchvision")
    fn = resolve_preprocess(preprocess)
    if per_image and fn is None:
        raise InputError('size="native" needs a preprocess that makes every image the same size')
    shape = None if per_image else (size or 224)
    for first in range(start, len(paths), batch_size):
        images, ids, failures, slots = [], [], [], []
        for slot, path in enumerate(paths[first:first + batch_size]):
            try:
                image = io.load_image(path, shape)  # type: ignore[arg-type]
                if per_image and fn is not None:
                    image = np.asarray(fn(image[None]))[0]
            except LimelightError as exc:
                failures.append((path, str(exc)))
                slots.append(slot)
                continue
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the run
                failures.append((path, f"{type(exc).__name__}: {exc}"))
                slots.append(slot)
                continue
            images.append(image)
            ids.append(path)
        inputs: Any = None
        if images:
            inputs = np.stack(images)
            if fn is not None and not per_image:
                inputs = fn(inputs)
        yield Batch(inputs=inputs, ids=ids, failures=failures, failure_rows=slots)


def _is_paths(source: Any) -> bool:
    if isinstance(source, str | os.PathLike):
        return True
    return isinstance(source, list | tuple) and bool(source) and all(isinstance(s, str | os.PathLike) for s in source)


def _tf_batches(ds: Any, batch_size: int, start: int) -> Iterator[Batch]:
    """A tf.data.Dataset, batched or not, re-batched to ``batch_size`` from row ``start``."""
    spec = ds.element_spec
    first = spec
    if isinstance(spec, dict):
        first = next((spec[k] for k in ("inputs", "image", "images", "x") if k in spec), next(iter(spec.values())))
    elif isinstance(spec, tuple):
        first = spec[0]
    shape = first.shape
    batched = len(shape) >= 4 or (len(shape) >= 1 and shape[0] is None)
    if batched:
        ds = ds.unbatch()
    ds = ds.skip(start).batch(batch_size)
    return _rebatch(_tf_numpy(ds), batch_size, 0)


def _tf_numpy(ds: Any) -> Iterator[Any]:
    for item in ds:
        if isinstance(item, dict):
            yield {k: v.numpy() for k, v in item.items()}
        elif isinstance(item, tuple):
            yield tuple(v.numpy() for v in item)
        else:
            yield item.numpy()


def source_length(source: Any, recursive: bool = False) -> int | None:
    """Rows the source will yield, when known exactly without iterating (the progress bar,
    the store's size, and the targets' length checked before any work); None otherwise."""
    try:
        if _is_paths(source):
            return len(image_paths(source, recursive))
        if type(source).__module__.startswith("torch") and hasattr(source, "dataset"):
            if getattr(source, "batch_size", None) is None:  # a batch sampler of its own, or unbatched
                return None  # (samples that are batches themselves): not countable without iterating
            rows = len(source.sampler)  # a sampler may take a subset of the dataset
            return rows - rows % source.batch_size if getattr(source, "drop_last", False) else rows
        if hasattr(source, "cardinality") and hasattr(source, "element_spec"):
            return None
        if isinstance(source, np.ndarray) or _is_torch(source) and hasattr(source, "shape"):
            return int(source.shape[0])  # one in-memory array: its rows
    except Exception:  # noqa: BLE001 - e.g. an IterableDataset: no length
        return None
    return None


def iter_batches(source: Any, *, batch_size: int, preprocess: Preprocess | str | None = None,
                 recursive: bool = False, start: int = 0,
                 size: Size = None) -> Iterator[Batch]:
    """Batches of exactly ``batch_size`` rows (the last may be shorter) from ``source``.

    ``source``: a torch DataLoader (yielding tensors, ``(inputs, labels)`` tuples or dicts), a
    ``tf.data.Dataset`` (batched or not), any iterable of batches (``inputs``, ``(inputs,
    ids)``, ``(inputs, ids, masks)`` or dicts with ``inputs``/``image``, ``ids``/``id``/``path``,
    ``masks``), or a folder / glob / list of image paths. Files are decoded with Pillow,
    resized to ``size`` (default 224; ``"native"``: each at its own size, for a ``preprocess``
    that sizes images itself, the default of the ``"torchvision"`` preset)
    and given to ``preprocess`` (a callable of ``(N, H, W, 3)`` RGB in [0, 1], or a preset
    name of :func:`limelight.io.preset`); without one they stay NHWC arrays. A file that
    cannot be loaded becomes a failure of its batch, with its path. Rows are given ids (the
    path for files, else the row number as str); ``start`` skips that many rows (resume).
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    if start < 0:
        raise InputError(f"start must be >= 0, got {start}")
    if _is_paths(source):
        yield from _file_batches(image_paths(source, recursive), batch_size, preprocess, start, size)
        return
    fn = resolve_preprocess(preprocess)
    if hasattr(source, "element_spec") and hasattr(source, "unbatch"):
        batches = _tf_batches(source, batch_size, start)
        if start:
            batches = _shift_ids(batches, start)
    elif isinstance(source, np.ndarray) or _is_torch(source) and hasattr(source, "shape"):
        batches = _rebatch([source], batch_size, start)  # one in-memory array: rows
    else:
        try:
            items = iter(source)
        except TypeError:
            raise InputError(
                f"cannot read batches from a {type(source).__name__}: give a DataLoader, a tf.data.Dataset, "
                "an iterable of batches, or a folder / glob / list of image paths"
            ) from None
        batches = _rebatch(items, batch_size, start)
    for batch in batches:
        if fn is not None and batch.inputs is not None:
            batch.inputs = fn(np.asarray(batch.inputs))
        yield batch


def _shift_ids(batches: Iterator[Batch], start: int) -> Iterator[Batch]:
    """Row-number ids of a stream re-started at ``start`` (tf.data's ``skip``) count from it."""
    row = start
    for batch in batches:
        if batch.ids == [str(i) for i in range(row - start, row - start + len(batch.ids))]:
            batch.ids = [str(i) for i in range(row, row + len(batch.ids))]
        row += len(batch)
        yield batch
