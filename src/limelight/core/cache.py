"""Per-model caches that live as long as the user's model and never keep it alive.

Wrappers are cheap and made anew on every :func:`limelight.explain` call; what is costly to
recompute (compiled functions, the traced default layer) is cached here, keyed weakly by
the native model. Cached values must not hold strong references to the model.
"""

from __future__ import annotations

import weakref
from typing import Any

__all__ = ["model_cache"]

_CACHES: weakref.WeakKeyDictionary[Any, dict[Any, Any]] = weakref.WeakKeyDictionary()


def model_cache(native: object) -> dict[Any, Any]:
    """The cache dict of ``native`` (a fresh throwaway dict if it cannot be weakly referenced)."""
    try:
        return _CACHES.setdefault(native, {})
    except TypeError:
        return {}
