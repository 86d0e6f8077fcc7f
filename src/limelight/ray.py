"""Explanations on a Ray cluster: :class:`Explain` for ``Dataset.map_batches`` and
:func:`explain_on_ray` (the CLI's ``--ray``), extra ``ray`` (``pip install 'limelight[ray]'``).

>>> import ray, limelight.ray as llray                                  # doctest: +SKIP
>>> ds = ray.data.read_images("s3://bucket/val/", size=(224, 224), include_paths=True)
>>> maps = ds.map_batches(llray.Explain, fn_constructor_kwargs=dict(
...     model_factory=make_model, method="gradcam"), batch_size=64, concurrency=4)

Each actor calls ``model_factory()`` once, when it starts, so the model is built where it runs
and is never shipped with the batches; ``num_gpus=1`` in ``map_batches`` gives each actor a
GPU, and the actor puts a torch model on it (Keras places itself on the GPU it sees).

``import limelight`` never imports this module, and this module imports Ray only when it is
used.
"""

from __future__ import annotations

import importlib
import os
import pathlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .core.api import explain, wrap
from .core.errors import FrameworkNotInstalledError, InputError
from .core.model import Model
from .core.registry import registry

__all__ = ["Explain", "explain_on_ray"]

Preprocess = Callable[[np.ndarray], Any]

#: The id columns Ray Data's readers produce (``include_paths=True`` gives ``path``), in the
#: order they are looked for.
ID_COLUMNS = ("id", "path")


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise FrameworkNotInstalledError("ray", extra="ray") from exc
    return ray


def _assigned_gpus() -> list[Any]:
    """The GPUs Ray gave this worker (empty outside Ray or when none were requested)."""
    try:
        import ray
    except ImportError:
        return []
    if not ray.is_initialized():
        return []
    try:
        return list(ray.get_gpu_ids())
    except Exception:  # noqa: BLE001 - the driver or an old Ray: no GPU assignment to read
        return []


def _place(model: Model, device: str | None) -> Model:
    """``model`` (wrapped) moved to ``device`` by its backend (:meth:`~limelight.Model.place`);
    ``"auto"``: to the accelerator only when Ray gave this actor a GPU (``num_gpus`` in
    ``map_batches``; Ray sets ``CUDA_VISIBLE_DEVICES`` to the actor's GPUs). Frameworks that
    place themselves (TensorFlow) are left as they are."""
    if device is not None and (device != "auto" or _assigned_gpus()):
        model.place(device)
    return model


def _build(model_factory: Any) -> Any:
    """The model: ``model_factory()``, or ``model_factory`` itself when it already is a model."""
    if isinstance(model_factory, Model) or registry.wrap(model_factory) is not None:
        return model_factory  # a model (shipped once per actor with the constructor arguments)
    if not callable(model_factory):
        raise InputError(f"model_factory must be a callable that returns a model, not {type(model_factory).__name__}")
    return model_factory()


def _stack(images: Any) -> np.ndarray:
    """Ray's ``image`` column as one ``(n, H, W, C)`` array (images of several sizes, which Ray
    gives as an object array, must be resized first)."""
    arr = images if isinstance(images, np.ndarray) else np.asarray(list(images))
    if arr.dtype == object:
        shapes = {np.shape(im) for im in arr}
        if len(shapes) > 1:
            raise InputError(
                f"the images of a batch have different sizes {sorted(shapes)}: resize them, e.g. "
                "ray.data.read_images(..., size=(224, 224))"
            )
        arr = np.stack([np.asarray(im) for im in arr]) if len(arr) else arr
    if arr.ndim == 3:  # grayscale (n, H, W)
        arr = arr[..., None]
    if arr.ndim != 4:
        raise InputError(f"the image column must hold (n, H, W, C) images, got shape {arr.shape}")
    return arr


class Explain:
    """A callable class for ``ray.data.Dataset.map_batches``: explains each batch of images.

    Args:
        model_factory: a picklable callable that returns the model (torch ``nn.Module``,
            Keras model or :class:`limelight.Model`); each actor calls it once. (A model
            itself is accepted too: it is then pickled once per actor.)
        method: a registered explainer name.
        preprocess: turns ``(n, H, W, 3)`` RGB float in [0, 1] into the model's input: a
            callable or a preset name of :func:`limelight.io.preset` (``"torchvision"``,
            ``"caffe"``, ``"tf"``, ``"torch"``). None: the images as they are, NCHW for
            torch models, NHWC for Keras.
        targets, layer: as in :func:`limelight.explain` (an int or None per batch, or a
            target object).
        device: where a torch model runs: ``"auto"`` (a GPU when Ray assigned one to the
            actor: pass ``num_gpus=1`` to ``map_batches``), ``"cpu"``, ``"cuda:0"``, or None
            to keep it where ``model_factory`` put it.
        **params: the method's parameters (``seed``, ``background`` as an array, ``nsamples``,
            ...), passed on to :func:`limelight.explain` with every batch.

    A batch (Ray's ``"numpy"`` batch format, the default) needs an ``image`` column:
    ``(n, H, W, C)`` uint8 (scaled to [0, 1]) or float (taken as is), what
    ``ray.data.read_images`` and ``from_numpy`` produce. The result has the columns
    ``values``, ``targets``, ``outputs``, ``base_values`` (methods that have them) and the
    batch's ``id`` or ``path`` column when it has one. Each batch is explained as
    ``limelight.explain(model, inputs, method, ...)`` would explain it, so results equal
    direct calls on the same batches (seeded SHAP draws depend on the batch: keep
    ``batch_size`` in ``map_batches`` to compare).
    """

    def __init__(self, model_factory: Any, method: str = "gradcam", *, preprocess: Preprocess | str | None = None,
                 targets: Any = None, layer: Any = None, device: str | None = "auto", **params: Any) -> None:
        registry.explainer(method)  # an unknown method fails here, once, not per batch
        self.method = method
        self.model = _place(wrap(_build(model_factory)), device)
        from .streaming.sources import resolve_preprocess

        self.preprocess = resolve_preprocess(preprocess)
        self.targets = targets
        self.layer = layer
        self.params = params

    # -- inputs ---------------------------------------------------------------------------
    def inputs(self, images: Any) -> Any:
        """Images ``(n, H, W, C)`` (uint8 or float in [0, 1]) -> the model's input."""
        arr = _stack(images)
        floats = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32, copy=False)
        if self.preprocess is not None:
            return self.preprocess(floats)
        return self.layout(floats)

    def layout(self, nhwc: np.ndarray) -> np.ndarray:
        """NHWC float images as the model takes them without a preprocess: NCHW for torch."""
        if self.model.framework == "torch":
            return np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))
        return nhwc

    def explain(self, inputs: Any) -> dict[str, np.ndarray]:
        """The result columns of one batch of model inputs."""
        exp = explain(self.model, inputs, self.method, targets=self.targets, layer=self.layer, **self.params)
        out = {"values": exp.values, "targets": exp.targets, "outputs": exp.outputs}
        if exp.base_values is not None:
            out["base_values"] = exp.base_values
        return out

    # -- map_batches ----------------------------------------------------------------------
    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        if "image" not in batch:
            raise InputError(
                f"a batch needs an 'image' column (what ray.data.read_images gives); it has {sorted(batch)}"
            )
        out: dict[str, Any] = self.explain(self.inputs(batch["image"]))
        for name in ID_COLUMNS:
            if name in batch:
                out[name] = np.asarray(batch[name])
                break
        return out


class _ExplainFiles:
    """:func:`explain_on_ray`'s actors: one input row is one batch of the run (``start``, its
    first row, and ``paths``); the files are read, preprocessed and explained by the code of
    :func:`limelight.explain_dataset` (per-sample retry and failures included), so the store
    is the same. One output row per batch: ``start`` and ``result``, the pickled
    :class:`~limelight.streaming.store.BatchResult`."""

    def __init__(self, model_factory: Any, method: str, *, preprocess: Preprocess | str | None, size: Any,
                 targets: Any, fail_fast: bool, device: str | None = "auto", **params: Any) -> None:
        from .streaming.run import _Explain

        self.model = _place(wrap(_build(model_factory)), device)
        self.preprocess = preprocess
        self.size = size
        self.explainer = _Explain(self.model, method, targets, params, fail_fast)

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        import pickle

        from .streaming.sources import iter_batches

        starts, results = [], []
        for start, paths in zip(batch["start"], batch["paths"], strict=True):
            files = [str(p) for p in paths]
            (loaded,) = iter_batches(files, batch_size=len(files), preprocess=self.preprocess, size=self.size)
            starts.append(int(start))
            results.append(pickle.dumps(self.explainer(loaded, int(start)), protocol=pickle.HIGHEST_PROTOCOL))
        return {"start": np.asarray(starts, np.int64), "result": np.asarray(results, dtype=object)}


def _chunks(paths: Sequence[str], batch_size: int, start: int) -> Iterator[dict[str, Any]]:
    """The run's batches from row ``start``: one item per batch (its first row and files)."""
    for first in range(start, len(paths), batch_size):
        yield {"start": first, "paths": list(paths[first:first + batch_size])}


def _describe_model(model_factory: Any) -> dict[str, Any]:
    """The run's model description and framework versions, as ``explain_dataset`` records
    them (run in a Ray task, so the driver needs neither the model nor its framework)."""
    from .streaming.run import _framework_versions, _model_description

    wrapped = wrap(_build(model_factory))
    return {"model": _model_description(wrapped), "framework": wrapped.framework,
            "versions": _framework_versions(wrapped.framework)}


def _connect(address: str | None) -> None:
    """Connect to Ray unless this process already is: ``None`` starts a local cluster;
    ``"auto"`` joins the cluster this machine runs (``RAY_ADDRESS`` or ``ray start``) and
    starts a local one when there is none; another string is a cluster's address
    (``"ray://host:10001"``, ``"host:6379"``)."""
    ray = _ray()
    if ray.is_initialized():
        return
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": "ERROR"}
    if address is None:
        ray.init(include_dashboard=False, **quiet)
    elif address == "auto":
        try:
            ray.init(address="auto", **quiet)
        except ConnectionError:  # no running cluster: a local one
            ray.init(include_dashboard=False, **quiet)
    else:
        ray.init(address=address, **quiet)


def _unwrap(exc: BaseException) -> BaseException:
    """The limelight error inside a Ray task error (Ray wraps what the actor raised)."""
    from .core.errors import LimelightError

    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, LimelightError):
            return e
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__]
    return exc


def explain_on_ray(model_factory: Any, paths: Any, method: str = "gradcam", *, out: str | os.PathLike[str],
                   batch_size: int = 32, address: str | None = "auto", num_workers: int = 2,
                   num_gpus_per_worker: float = 0, preprocess: Preprocess | str | None = None,
                   resume: bool = False, recursive: bool = False, fail_fast: bool = False,
                   progress: bool | None = True, targets: Any = None, size: Any = None,
                   **params: Any) -> Any:
    """Explain image files on a Ray cluster into the results store ``out`` (Zarr): the same
    store :func:`limelight.explain_dataset` writes for the same files and arguments, so
    ``limelight.open_results`` reads it and either function resumes it.

    Args:
        model_factory: a picklable callable returning the model; each of the ``num_workers``
            actors calls it once (and one short Ray task calls it to describe the run).
        paths: a folder, glob or list of image files (``recursive``: subfolders too).
        method: a registered explainer name; ``**params`` its parameters (``layer``,
            ``seed``, ``background``, ...).
        out: the results store to write (``.zarr``).
        batch_size: rows per batch, per explainer call and per store chunk.
        address: ``"auto"`` (the default) joins the cluster this machine is part of
            (``RAY_ADDRESS`` or ``ray start``) and starts a local one when there is none;
            None always starts a local cluster; else a cluster's address
            (``"ray://head:10001"``). A process that already called ``ray.init`` keeps its
            connection.
        num_workers: actors, each holding one model.
        num_gpus_per_worker: GPUs per actor; a torch model is moved to the actor's GPU.
        preprocess, size, targets, fail_fast, progress: as in ``explain_dataset``.
        resume: continue the run in ``out`` after its completed chunks.

    Returns:
        a :class:`limelight.streaming.run.Run`: ``summary()``, ``images``, ``failures``,
        ``seconds``, ``throughput``, ``out``.

    The driver lists the files and cuts them into batches (one batch, one store chunk); the
    actors decode, preprocess and explain them; the driver receives the finished batches in
    order and writes them. Ray Data's image reader is not used here: it fails the whole job
    on one corrupt file and decodes differently (no EXIF rotation, alpha dropped instead of
    composited on white), so its store would differ from ``explain_dataset``'s.
    """
    from .streaming.progress import Progress
    from .streaming.run import Run, SampleError, _nchw, run_attributes
    from .streaming.sources import image_paths
    from .streaming.store import ResultStore, _failures

    ray = _ray()
    try:
        importlib.import_module("ray.data")
    except ImportError as exc:  # ray without its data library (pyarrow, pandas)
        raise FrameworkNotInstalledError("ray.data", extra="ray") from exc

    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers < 1:
        raise InputError(f"num_workers must be >= 1, got {num_workers}")
    registry.explainer(method)
    began = time.perf_counter()
    files = image_paths(paths, recursive)
    _connect(address)
    model = ray.get(ray.remote(num_cpus=0)(_describe_model).remote(model_factory))
    if preprocess is None and model["framework"] == "torch":
        preprocess = _nchw  # what explain_dataset feeds torch models
    run_attrs = run_attributes(method, params, batch_size, model["model"], model["framework"], targets,
                               preprocess, size)
    store = ResultStore.create(out, attrs={"run": run_attrs, "versions": model["versions"]}, resume=resume,
                               capacity=len(files))
    start = store.completed()
    result = Run(method=method, out=pathlib.Path(out), resumed=start)
    batches = list(_chunks(files, batch_size, start))
    bar = Progress(len(files), enabled=progress, initial=start)
    new_failures = 0
    ctx = ray.data.DataContext.get_current()
    original = getattr(ctx, "raise_original_map_exception", None)  # (Ray Data ≥ 2.4x has it)
    saved = ctx.execution_options.preserve_order, ctx.enable_progress_bars
    ended = False
    try:
        if batches:
            ctx.execution_options.preserve_order = True  # batches come back in the order of the files
            ctx.enable_progress_bars = False  # limelight's bar counts images; Ray's would count batches
            if original is not None:
                ctx.raise_original_map_exception = True  # else a UserCodeException hides what an actor raised
            ds = ray.data.from_items(batches, override_num_blocks=len(batches))
            done = ds.map_batches(
                _ExplainFiles,
                fn_constructor_kwargs={"model_factory": model_factory, "method": method, "preprocess": preprocess,
                                       "size": size, "targets": targets, "fail_fast": fail_fast, **params},
                batch_size=1,
                compute=ray.data.ActorPoolStrategy(size=min(num_workers, len(batches))),  # Ray ≥2.51
                num_gpus=num_gpus_per_worker or None,
                num_cpus=1,
            )
            import pickle

            try:
                for row in done.iter_rows():
                    batch = pickle.loads(row["result"])
                    store.write(int(row["start"]), batch)
                    failed = len(batch.errors)
                    new_failures += failed
                    result.images += len(batch)
                    bar.update(len(batch), failed)
            except Exception as exc:
                inner = _unwrap(exc)
                if inner is exc:
                    raise
                if isinstance(inner, SampleError):
                    raise SampleError(str(inner)) from exc
                raise inner from exc
        ended = True
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved
        if original is not None:
            ctx.raise_original_map_exception = original
        bar.close()
        result.seconds = time.perf_counter() - began
        if not ended:
            store.discard()  # a store this call made, failed before any batch: nothing left behind
    store.finish(seconds=round(result.seconds, 3), images_per_second=round(result.throughput, 2))
    result.failures = _failures(store.group, store.completed())
    result._new_failures = new_failures
    return result
