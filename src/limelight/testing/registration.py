"""``registered``: explainer classes in the registry for the duration of a test."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ..core.explainer import Explainer

__all__ = ["registered"]

#: The owner the registry records for classes registered by :func:`registered`.
OWNER = "limelight.testing"


@contextlib.contextmanager
def registered(*explainers: type[Explainer]) -> Iterator[None]:
    """Make ``explainers`` callable by name (``limelight.explain(..., method=cls.name)``)
    inside the block, as if a plugin registered them; a name another class holds is a
    ``ValueError``. The registry is as before afterwards."""
    from ..core.registry import registry

    registry.pm  # noqa: B018 - load the plugins first
    with registry._lock:
        table = registry._explainers
        for cls in explainers:
            if not (isinstance(cls, type) and issubclass(cls, Explainer) and isinstance(getattr(cls, "name", None), str)):
                raise TypeError(f"registered() takes Explainer subclasses with a string name, got {cls!r}")
            taken = table.get(cls.name)
            if taken is not None and taken[0] is not cls:
                raise ValueError(f"explainer name {cls.name!r} is already registered by {taken[1]!r}")
        added = [cls for cls in explainers if cls.name not in table]
        for cls in added:
            table[cls.name] = (cls, OWNER)
    try:
        yield
    finally:
        with registry._lock:
            table = registry._explainers
            for cls in added:
                if table.get(cls.name, (None, None))[0] is cls:
                    del table[cls.name]
