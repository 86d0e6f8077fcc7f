"""Built-in explainer plugins, written once against :class:`limelight.Model` in NumPy.

This package is also the public ``limelight.plugins()`` listing: the module is callable, so
the package name from DESIGN.md's layout and the function name of the public face coexist.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..core.registry import PluginInfo


class _CallablePackage(types.ModuleType):
    def __call__(self) -> list[PluginInfo]:
        """Every installed plugin (built-in or entry point), what it provides, and any load error."""
        from ..core.api import plugins

        return plugins()


sys.modules[__name__].__class__ = _CallablePackage
