"""``explain_dataset``: explain a whole dataset at constant memory, into a results store.

A background thread loads (and decodes, preprocesses) the next batch while the current one
is explained; each finished batch is written to the store and dropped, so peak memory is a
few batches whatever the dataset's size. A batch that fails is retried one sample at a time
so that only the failing samples are recorded (id and error) and the run goes on;
``fail_fast=True`` stops at the first with a :class:`SampleError`.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import sys
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.arrays import host_array
from ..core.errors import InputError, LimelightError, ParameterError, TargetError
from ..core.model import Model, check_batch_size
from ..core.targets import Class, Target, _host, resolve_target
from .progress import Progress
from .sources import Batch, Preprocess, Size, _is_paths, check_size, iter_batches, source_length
from .store import BatchResult, Results, ResultStore, _failures, open_results

__all__ = ["Run", "SampleError", "SourceError", "explain_dataset"]


class SampleError(LimelightError):
    """A sample could not be loaded or explained and the run was asked to stop (``fail_fast``)."""


class SourceError(LimelightError):
    """Reading the dataset failed (not one sample: the source itself)."""


@dataclass
class Run:
    """What :func:`explain_dataset` did.

    Attributes:
        images: rows handled by this call (explained or failed; rows a resumed run found
            already done are in ``resumed``).
        failures: ``(id, error)`` of every failed row (with a store: all of its rows).
        seconds: wall time of this call; ``throughput``: ``images / seconds``.
        out: the results store's path, or None.
        resumed: rows skipped because the store already held them.
    """

    method: str
    images: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    out: pathlib.Path | None = None
    resumed: int = 0

    @property
    def throughput(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    @property
    def results(self) -> Results:
        """The store, opened for reading (:func:`limelight.open_results`)."""
        if self.out is None:
            raise InputError("this run kept no results (out=None)")
        return open_results(self.out)

    def summary(self, max_failures: int = 20) -> str:
        """Images, throughput, failures (with ids) and where the results are."""
        ok = self.images - sum(1 for _ in self._this_call_failures())
        lines = [f"{self.method}: {self.images} images ({ok} explained, {self.images - ok} failed) "
                 f"in {self.seconds:.1f} s, {self.throughput:.1f} images/s"]
        if self.resumed:
            lines.append(f"resumed: {self.resumed} rows were already in the store")
        if self.failures:
            lines.append(f"failures ({len(self.failures)}):")
            lines += [f"  {id_}: {error}" for id_, error in self.failures[:max_failures]]
            if len(self.failures) > max_failures:
                lines.append(f"  ... and {len(self.failures) - max_failures} more (open_results(...).failures)")
        if self.out is not None:
            lines.append(f"results: {self.out} (limelight.open_results({str(self.out)!r}))")
        return "\n".join(lines)

    def _this_call_failures(self) -> list[tuple[str, str]]:
        return self.failures[len(self.failures) - self._new_failures:] if self._new_failures else []

    _new_failures: int = field(default=0, repr=False)

    def __str__(self) -> str:
        return self.summary()


# -- describing the run (what resume checks) -------------------------------------------------
def _describe(value: Any) -> Any:
    """A JSON-able description of a parameter; arrays by shape and a digest of their bytes."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Class):  # a target object: its classes, as an int or array would be
        return {"Class": _describe(value.k if isinstance(value.k, int) else np.asarray(_host(value.k, "classes")))}
    if isinstance(value, Target):
        return repr(value)
    if isinstance(value, list | tuple):
        return [_describe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _describe(v) for k, v in value.items()}
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        try:
            arr = np.ascontiguousarray(host_array(value))
            return {"array": list(arr.shape), "dtype": str(arr.dtype), "sha1": hashlib.sha1(arr.tobytes()).hexdigest()}
        except Exception:  # noqa: BLE001 - a description only
            return f"<{type(value).__name__} {tuple(value.shape)}>"
    if callable(value):
        return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', type(value).__name__)}"
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


def _model_description(model: Model, weights: bool = True) -> dict[str, Any]:
    """The model's class, parameter count and (``weights``) a digest of its weights
    (:meth:`~limelight.Model.weights_digest`): what resume compares, so only computed for a
    run that writes a store."""
    native = model.native
    desc: dict[str, Any] = {"class": f"{type(native).__module__}.{type(native).__qualname__}"}
    try:
        if hasattr(native, "parameters"):
            desc["parameters"] = int(sum(p.numel() for p in native.parameters()))
        elif hasattr(native, "count_params"):
            desc["parameters"] = int(native.count_params())
    except Exception:  # noqa: BLE001 - a description only
        pass
    try:
        digest = model.weights_digest() if weights else None
    except Exception:  # noqa: BLE001 - a description only: no digest rather than no run
        digest = None
    if digest is not None:
        desc["weights"] = digest
    return desc


def _framework_versions(framework: str) -> dict[str, str]:
    names = {"torch": ["torch"], "tensorflow": ["tensorflow", "keras"]}.get(framework, [framework])
    return {n: str(getattr(sys.modules[n], "__version__", "?")) for n in names if n in sys.modules}


# -- prefetching -----------------------------------------------------------------------------
_END = object()


def _prefetch(batches: Iterator[Batch]) -> Generator[Batch, None, None]:
    """``batches`` with the next one loaded on a background thread while the current one is
    used. An exception in the source is raised here."""
    with ThreadPoolExecutor(1, thread_name_prefix="limelight-prefetch") as pool:
        pending: Future[Any] = pool.submit(next, batches, _END)
        while True:
            item = pending.result()
            if item is _END:
                return
            pending = pool.submit(next, batches, _END)
            yield item
            del item  # the consumer's copy is the only one


# -- writing behind --------------------------------------------------------------------------
class _Writer:
    """Writes finished batches to the store on a background thread, one batch behind, so the
    store's compression and I/O overlap with explaining the next batch; ``on_batch`` is called
    after each write, in order. A write error is raised at the next :meth:`submit` or at
    :meth:`close`; :meth:`close` waits until every submitted batch is written (a batch that
    was explained is kept even when the run stops on an error)."""

    def __init__(self, store: ResultStore | None, out: Any, on_batch: Callable[[Batch, BatchResult], None] | None):
        self.store, self.out, self.on_batch = store, out, on_batch
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="limelight-store-writer")
        self.pending: Future[None] | None = None

    def _write(self, row: int, batch: Batch, done: BatchResult) -> None:
        if self.store is not None:
            try:
                self.store.write(row, done)
            except LimelightError:
                raise
            except Exception as exc:
                raise LimelightError(f"writing rows {row}..{row + len(batch) - 1} to {self.out} failed: "
                                     f"{type(exc).__name__}: {exc}") from exc
        if self.on_batch is not None:
            self.on_batch(batch, done)

    def _wait(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.result()

    def submit(self, row: int, batch: Batch, done: BatchResult) -> None:
        self._wait()
        self.pending = self.pool.submit(self._write, row, batch, done)

    def close(self) -> None:
        try:
            self._wait()
        finally:
            self.pool.shutdown()


# -- explaining one batch --------------------------------------------------------------------
def _own_length(target: Target) -> int | None:
    """How many samples a target object holds, None for a shared one (no per-sample data, or
    parameters shared by every sample: ``Class(3)``, a Region's ``(H, W)`` mask, a ``(K,)``
    Similarity embedding)."""
    if isinstance(target, Class):
        shape = np.shape(_host(target.k, "Class's classes"))
        return int(shape[0]) if shape else None
    one = target.for_samples(1).data()
    if not one:
        return None
    if all(len(d) == 1 for d in one):  # shared (broadcast to any count), or one sample's
        two = target.for_samples(2).data()
        return None if all(len(d) == 2 for d in two) else 1
    return len(one[0])


def dataset_target(target: Target, total: int | None) -> tuple[Target, bool]:
    """A target object for a dataset of ``total`` rows (None: unknown): ``(target, per_row)``.
    Per-sample ones are resolved once (checked against ``total``) and sliced by each batch's
    rows (``target[rows]``); shared ones go to every batch as they are."""
    if total is None:
        total = _own_length(target)
        if total is None:
            return target, False
    try:
        resolved = resolve_target(target, total)
    except TargetError as exc:
        raise TargetError(
            f"targets={target!r} does not fit the dataset of {total} rows: give one target per row "
            f"of the dataset, or a shared one ({exc})"
        ) from exc
    return resolved, bool(resolved.data())


class _Explain:
    def __init__(self, wrapped: Any, method: str, targets: Any, params: dict[str, Any], fail_fast: bool,
                 total: int | None = None) -> None:
        from ..core.registry import registry

        self.wrapped = wrapped
        self.explainer = registry.explainer(method)(wrapped, batch_size=None, **params)  # checks params now
        self.given = targets  # as the user gave them, for messages
        if isinstance(targets, Target):
            targets, self.per_row_targets = dataset_target(targets, total)
        else:
            self.per_row_targets = targets is not None and not isinstance(targets, int) and np.ndim(targets) >= 1
            if self.per_row_targets and total is not None and len(targets) != total:
                raise TargetError(
                    f"targets gives {len(targets)} targets, but the dataset has {total} rows: give one "
                    "target per row of the dataset, an int for every row, or None (the predicted class)."
                )
        self.targets = targets
        self.fail_fast = fail_fast
        self.ok = 0  # rows explained so far in this run

    def _targets(self, rows: list[int]) -> Any:
        if not self.per_row_targets:
            return self.targets
        if isinstance(self.targets, Target):
            held = len(self.targets.data()[0])
            if rows and max(rows) >= held:
                raise TargetError(
                    f"targets={self.given!r} holds {held} rows, but the dataset has more (row "
                    f"{max(rows)}): give one target per row of the dataset, or a shared one."
                )
            return self.targets[np.asarray(rows, np.intp)]
        held = len(self.targets)
        if rows and max(rows) >= held:
            raise TargetError(
                f"targets gives {held} targets, but the dataset has more rows (row {max(rows)} needs one): "
                "give one target per row of the dataset, an int for every row, or None (the predicted class)."
            )
        return np.asarray(self.targets)[rows]

    def __call__(self, batch: Batch, first_row: int) -> BatchResult:
        n = len(batch)
        ids = batch.row_ids()
        bad = set(batch.failed_rows())
        loaded = [i for i in range(n) if i not in bad]
        errors: dict[int, str] = {slot: msg for slot, (_, msg) in zip(batch.failed_rows(), batch.failures, strict=True)}
        if self.fail_fast and batch.failures:
            id_, msg = batch.failures[0]
            raise SampleError(f"sample {id_} could not be loaded: {msg} (fail_fast: stopped)")
        parts: list[tuple[list[int], Any]] = []
        if loaded:
            targets = self._targets([first_row + i for i in loaded])
            try:
                parts.append((loaded, self.explainer(self.wrapped.canonical(batch.inputs), targets)))
            except Exception as batch_exc:
                single = self._one_by_one(batch, loaded, first_row, errors, ids)
                if not single and self.ok == 0:  # every row fails from the start: not the samples
                    raise batch_exc if isinstance(batch_exc, LimelightError) else SampleError(
                        f"explaining the first batch failed for every sample: {type(batch_exc).__name__}: {batch_exc}"
                    ) from batch_exc
                parts += single
        self.ok += sum(len(rows) for rows, _ in parts)
        return _assemble(n, ids, parts, errors)

    def _one_by_one(self, batch: Batch, loaded: list[int], first_row: int, errors: dict[int, str],
                    ids: list[str]) -> list[tuple[list[int], Any]]:
        parts = []
        for k, slot in enumerate(loaded):
            try:
                exp = self.explainer(self.wrapped.canonical(batch.inputs[k:k + 1]), self._targets([first_row + slot]))
            except Exception as exc:
                message = f"{type(exc).__name__}: {exc}"
                if self.fail_fast:
                    raise SampleError(f"sample {ids[slot]} failed: {message} (fail_fast: stopped)") from exc
                errors[slot] = message
                continue
            parts.append(([slot], exp))
        return parts


def _assemble(n: int, ids: list[str], parts: list[tuple[list[int], Any]], errors: dict[int, str]) -> BatchResult:
    failed = np.zeros(n, bool)
    failed[list(errors)] = True
    if not parts:
        return BatchResult(None, None, None, ids, None, failed, [errors[i] for i in sorted(errors)])
    first = parts[0][1]
    values = np.full((n, *first.values.shape[1:]), np.nan, np.float32)
    targets = np.full((n, *first.targets.shape[1:]), -1, np.int64)
    outputs = np.full((n, *first.outputs.shape[1:]), np.nan, np.float32)
    base = None if first.base_values is None else np.full((n, *first.base_values.shape[1:]), np.nan, np.float32)
    for rows, exp in parts:
        values[rows] = exp.values
        targets[rows] = exp.targets
        outputs[rows] = exp.outputs
        if base is not None and exp.base_values is not None:
            base[rows] = exp.base_values
    return BatchResult(values, targets, outputs, ids, base, failed, [errors[i] for i in sorted(errors)])


# -- the run ---------------------------------------------------------------------------------
def run_attributes(method: str, params: Mapping[str, Any], batch_size: int | None, model: Any, framework: str,
                   targets: Any, preprocess: Any, size: Any) -> dict[str, Any]:
    """What a results store records of its run, compared on ``resume`` (explain_dataset and
    explain_on_ray write the same, so either resumes the other's store)."""
    scalar = isinstance(targets, int) or targets is None or np.ndim(targets) == 0
    return {
        "method": method,
        "params": _describe(dict(params)),
        "batch_size": batch_size,
        "model": model,
        "framework": framework,
        "targets": _describe(targets if scalar else np.asarray(targets)),
        "preprocess": _describe(preprocess),
        "size": _describe(size),
    }


def explain_dataset(
    model: object,
    source: Any,
    method: str = "gradcam",
    *,
    out: str | os.PathLike[str] | None = None,
    batch_size: int = 32,
    resume: bool = False,
    fail_fast: bool = False,
    progress: bool | None = True,
    preprocess: Preprocess | str | None = None,
    recursive: bool = False,
    targets: Any = None,
    size: Size = None,
    on_batch: Callable[[Batch, BatchResult], None] | None = None,
    **params: Any,
) -> Run:
    """Explain every sample of ``source`` with ``method``, a batch at a time, at constant memory.

    Args:
        model: a torch ``nn.Module``, a Keras model or a :class:`limelight.Model`.
        source: a torch DataLoader, a ``tf.data.Dataset``, an iterable of batches
            (``inputs``, ``(inputs, ids)``, dicts) or a folder / glob / list of image files
            (see :func:`limelight.streaming.sources.iter_batches`).
        method: a registered explainer name.
        out: a Zarr store path (``.zarr``) to write the results into, chunk per batch; None
            keeps nothing (``on_batch`` sees each result).
        batch_size: rows per batch, per store chunk and per explainer call.
        resume: continue the run already in ``out`` from its last completed chunk (the run's
            model, method, parameters and batch size must match).
        fail_fast: stop at the first sample that fails (:class:`SampleError`) instead of
            recording it and going on.
        progress: a progress bar (images/s, ETA) on stderr; None: only on a terminal.
        preprocess: for image files: a callable of ``(N, H, W, 3)`` RGB in [0, 1] or a preset
            name (``"torchvision"``, ``"caffe"``, ``"tf"``, ``"torch"``); else applied to each
            batch's inputs. Files without one are fed NCHW to torch models, NHWC to Keras.
        recursive: folders: the images in subfolders too.
        targets: None (predicted class), an int, or one target per row of the dataset.
        size: image files: resize to this (default 224); ``"native"`` keeps each file's size
            for a ``preprocess`` that sizes images itself.
        on_batch: called with each ``(Batch, BatchResult)`` after it is stored (on the
            store's writer thread, in order).
        **params: the method's parameters (``layer``, ``seed``, ``background``, ...).

    Returns:
        a :class:`Run`: ``summary()``, ``images``, ``failures``, ``seconds``, ``throughput``,
        ``out``.
    """
    from ..core.api import wrap

    began = time.perf_counter()
    checked = check_batch_size(batch_size)
    if checked is None:
        raise ParameterError("batch_size must be a positive int, got None.")
    batch_size = checked
    check_size(size)
    wrapped = wrap(model)
    total = source_length(source, recursive)
    explain = _Explain(wrapped, method, targets, dict(params), fail_fast, total)
    if preprocess is None and _is_paths(source) and wrapped.framework == "torch":
        preprocess = _nchw
    run_attrs = run_attributes(method, params, batch_size, _model_description(wrapped, out is not None),
                               wrapped.framework, targets, preprocess, size)
    store = None
    start = 0
    if out is not None:
        store = ResultStore.create(out, attrs={"run": run_attrs, "versions": _framework_versions(wrapped.framework)},
                                   resume=resume, capacity=total)
        start = store.completed()
    result = Run(method=method, out=None if out is None else pathlib.Path(out), resumed=start)
    bar = Progress(total, enabled=progress, initial=start)
    batches = _prefetch(iter_batches(source, batch_size=batch_size, preprocess=preprocess, recursive=recursive,
                                     start=start, size=size))
    row = start
    new_failures: list[tuple[str, str]] = []
    writer = _Writer(store, out, on_batch)
    ended = False
    try:
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except LimelightError:
                raise
            except Exception as exc:
                raise SourceError(f"reading the dataset failed after row {row}: {type(exc).__name__}: {exc}") from exc
            if len(batch) == 0:
                continue
            if row % batch_size:
                raise SourceError(f"{out} holds a finished run of {row} rows, but the source has more rows now; "
                                  "choose another path for a different dataset")
            done = explain(batch, row)
            writer.submit(row, batch, done)  # written while the next batch is explained
            failures = done.failures()
            new_failures += failures
            row += len(batch)
            result.images += len(batch)
            bar.update(len(batch), len(failures))
            del batch, done
        ended = True
    finally:
        batches.close()
        try:
            writer.close()  # every explained batch is in the store before the run returns or raises
        finally:
            bar.close()
            result.seconds = time.perf_counter() - began
            if not ended and store is not None:
                store.discard()  # a store this call made, failed before any batch: nothing left behind
    if store is not None:
        store.finish(seconds=round(result.seconds, 3), images_per_second=round(result.throughput, 2))
        result.failures = _failures(store.group, store.completed())
    else:
        result.failures = new_failures
    result._new_failures = len(new_failures)
    return result


def _nchw(images: np.ndarray) -> np.ndarray:
    """NHWC images -> NCHW, what a torch model is fed."""
    return np.ascontiguousarray(np.asarray(images, np.float32).transpose(0, 3, 1, 2))
