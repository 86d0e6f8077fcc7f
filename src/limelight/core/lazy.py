"""Import a framework on first use, with an install hint when it is missing.

The idea of Keras 3's ``LazyModule``: a backend module can say ``torch = LazyModule("torch",
extra="torch")`` at top level and use ``torch.nn`` in its functions, while importing the
backend module itself imports nothing.

:func:`import_triton_first` runs before limelight imports TensorFlow or Keras (the
``LazyModule`` objects of the TensorFlow backend and the Keras zoo call it): TensorFlow >= 2.20
wheels load with ``RTLD_GLOBAL``, and triton (pulled in lazily by torchvision,
``torch._dynamo``, even the first ``torch.optim`` optimizer) segfaults when its LLVM loads
after TensorFlow's (tensorflow#124205). Loading triton first, when it is installed, keeps a
mixed torch + Keras process alive.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from .errors import FrameworkNotInstalledError

__all__ = ["LazyModule", "import_triton_first", "require"]


def import_triton_first() -> None:
    """Import triton when it is installed and neither it nor TensorFlow is loaded yet; call
    it right before importing TensorFlow or Keras (see the module docstring). Any failure
    to import triton is ignored: it only matters to processes that would load it later."""
    if "triton" in sys.modules or "tensorflow" in sys.modules:
        return
    try:
        if importlib.util.find_spec("triton") is None:
            return
        importlib.import_module("triton")
    except Exception:  # noqa: BLE001 - a broken triton install must not break TensorFlow users
        return


class LazyModule:
    """A stand-in for a module that is imported when an attribute is first read;
    ``before`` runs right before that import. ``package`` is the name the install hint
    gives (the distribution, e.g. ``"Pillow"`` for ``PIL.Image``); default ``name``."""

    def __init__(self, name: str, extra: str, before: Callable[[], None] | None = None,
                 package: str | None = None) -> None:
        self._name = name
        self._extra = extra
        self._before = before
        self._package = package
        self._module: ModuleType | None = None

    def _load(self) -> ModuleType:
        if self._module is None:
            if self._before is not None and self._name not in sys.modules:
                self._before()
            try:
                self._module = importlib.import_module(self._name)
            except ImportError as exc:
                raise FrameworkNotInstalledError(self._package or self._name, self._extra) from exc
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


def require(name: str, extra: str, package: str | None = None) -> ModuleType:
    """Import the optional module ``name`` now (e.g. ``require("scipy.ndimage", "eval",
    "scipy")``), or raise :class:`FrameworkNotInstalledError` with the install hint for
    ``extra``. Unlike a module-level :class:`LazyModule` it looks again on every call (an
    import of a loaded module is a dictionary look-up)."""
    return LazyModule(name, extra, package=package)._load()
