"""Models from a spec string (``limelight explain --model SPEC``), through the
``limelight_load_model`` hook. This module holds the framework-free parts: the result type,
the ``package.module:factory`` loader, and the lookup with a clear error."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import LimelightError
from .hookspecs import hookimpl

__all__ = ["LoadedModel", "load_model", "UnknownModelError"]


class UnknownModelError(LimelightError, ValueError):
    """No plugin could load a model spec."""


@dataclass(frozen=True)
class LoadedModel:
    """A loaded model with what is known about feeding and reading it.

    ``preprocess`` maps ``(N, H, W, 3)`` RGB in [0, 1] to what the model is fed (None: feed
    as is, channels-last for Keras / channels-first for torch); ``input_size`` is ``(H, W)``.
    """

    model: Any
    framework: str
    class_names: Sequence[str] | None = None
    preprocess: Callable[[Any], Any] | None = None
    input_size: tuple[int, int] | None = None


def load_model(spec: str, weights: str | None = None) -> LoadedModel:
    """Ask the plugins to load ``spec``; an unknown spec is a :class:`UnknownModelError`."""
    from .registry import registry

    loaded = registry.pm.hook.limelight_load_model(spec=spec, weights=weights)
    if loaded is None:
        raise UnknownModelError(
            f"no plugin can load the model spec {spec!r}. Known forms: torchvision:NAME, "
            "keras:NAME, a TorchScript .pt file, a .keras file, or package.module:factory."
        )
    return loaded


@hookimpl(trylast=True)
def limelight_load_model(spec: str, weights: str | None) -> LoadedModel | None:
    """``package.module:factory``: import the module and call ``factory()`` (framework-free)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or module_name in ("torchvision", "keras") or not module_name.replace(".", "").replace("_", "").isalnum():
        return None
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UnknownModelError(f"cannot load {spec!r}: {type(exc).__name__}: {exc}") from None
    model = factory()
    framework = type(model).__module__.split(".")[0]
    return LoadedModel(model=model, framework=framework)
