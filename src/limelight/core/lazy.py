"""Import a framework on first use, with an install hint when it is missing.

The idea of Keras 3's ``LazyModule``: a backend module can say ``torch = LazyModule("torch",
extra="torch")`` at top level and use ``torch.nn`` in its functions, while importing the
backend module itself imports nothing.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

from .errors import FrameworkNotInstalledError


class LazyModule:
    """A stand-in for a module that is imported when an attribute is first read."""

    def __init__(self, name: str, extra: str) -> None:
        self._name = name
        self._extra = extra
        self._module: ModuleType | None = None

    def _load(self) -> ModuleType:
        if self._module is None:
            try:
                self._module = importlib.import_module(self._name)
            except ImportError as exc:
                raise FrameworkNotInstalledError(self._name, self._extra) from exc
        return self._module

    @property
    def loaded(self) -> bool:
        """Whether the module is already imported (by anyone), without importing it."""
        return self._module is not None or self._name in sys.modules

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._load(), attr)

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else "not loaded"
        return f"<LazyModule {self._name!r} ({state})>"
