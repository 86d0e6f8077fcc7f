"""Explaining whole datasets: streamed at constant memory, resumable, stored in Zarr.

* :func:`~limelight.streaming.run.explain_dataset` (``limelight.explain_dataset``): pull
  batches from a source, explain them, write each to the store and drop it.
* :func:`~limelight.streaming.sources.iter_batches`: batches from DataLoaders, tf.data,
  iterables and image folders.
* :class:`~limelight.streaming.store.ResultStore` and
  :func:`~limelight.streaming.store.open_results` (``limelight.open_results``): the Zarr v3
  results store, written chunk by chunk (write, then mark done) and read back lazily.

Importing this package imports no framework and not zarr (each is imported on first use).
"""

from __future__ import annotations

from .run import Run, SampleError, SourceError, explain_dataset
from .sources import Batch, iter_batches
from .store import BatchResult, Results, ResultStore, StoreError, open_results

__all__ = [
    "Batch",
    "BatchResult",
    "ResultStore",
    "Results",
    "Run",
    "SampleError",
    "SourceError",
    "StoreError",
    "explain_dataset",
    "iter_batches",
    "open_results",
]
