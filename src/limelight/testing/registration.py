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

    with registry.temporarily(*explainers, owner=OWNER):
        yield
