"""Moved to :mod:`limelight.zoo.specs` (and :class:`LoadedModel` to
:mod:`limelight.core.hookspecs`); these names keep working (nothing inside limelight imports
this module, and it is not a plugin any more)."""

from __future__ import annotations

from ..zoo.specs import LoadedModel, UnknownModelError, load_model

__all__ = ["LoadedModel", "UnknownModelError", "load_model"]
