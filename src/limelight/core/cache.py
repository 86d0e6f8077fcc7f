"""Per-model caches and locks that live as long as the user's model and never keep it alive.

Wrappers are cheap and made anew on every :func:`limelight.explain` call; what is costly to
recompute (compiled functions, the traced default layer) is cached here, keyed weakly by
the native model. Cached values must not hold strong references to the model.

:func:`model_lock` is the per-model re-entrant lock the backends hold while they run or
patch a model (:func:`holding_model_lock` wraps their public entry points), so that two
threads explaining the same model take turns instead of seeing each other's hooks, patched
layers and switched training flags. :class:`ProcessSetting` does the same for process-wide
switches (TF32 off for ``precision="highest"``): the first thread in switches, the last one
out restores, so overlapping calls never leave the user's setting changed.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Concatenate, ParamSpec, TypeVar

__all__ = ["ProcessSetting", "holding_model_lock", "model_cache", "model_lock"]

_CACHES: weakref.WeakKeyDictionary[Any, dict[Any, Any]] = weakref.WeakKeyDictionary()
_LOCKS: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()  # makes creating a model's lock atomic
_SHARED = threading.RLock()  # for models that cannot be weakly referenced

P = ParamSpec("P")
R = TypeVar("R")


def model_cache(native: object) -> dict[Any, Any]:
    """The cache dict of ``native`` (a fresh throwaway dict if it cannot be weakly referenced)."""
    try:
        with _GUARD:
            return _CACHES.setdefault(native, {})
    except TypeError:
        return {}


def model_lock(native: object) -> threading.RLock:
    """The re-entrant lock of ``native`` (one lock shared by all models that cannot be weakly
    referenced)."""
    try:
        with _GUARD:
            lock = _LOCKS.get(native)
            if lock is None:
                lock = _LOCKS[native] = threading.RLock()
            return lock
    except TypeError:
        return _SHARED


def holding_model_lock(method: Callable[Concatenate[Any, P], R]) -> Callable[Concatenate[Any, P], R]:
    """Decorate a backend method: it runs holding ``model_lock(self.native)``."""

    @functools.wraps(method)
    def locked(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with model_lock(self.native):
            return method(self, *args, **kwargs)

    return locked


class ProcessSetting:
    """A process-wide setting switched while any thread needs it: the first thread in calls
    ``switch()`` (which sets it and returns the function that restores it), the last one out
    restores, also when the body raises."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._restore: Callable[[], None] | None = None

    @contextlib.contextmanager
    def held(self, switch: Callable[[], Callable[[], None]]) -> Iterator[None]:
        with self._lock:
            if self._depth == 0:
                self._restore = switch()
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0 and self._restore is not None:
                    restore, self._restore = self._restore, None
                    restore()
