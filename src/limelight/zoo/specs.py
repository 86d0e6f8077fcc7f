"""Models from a spec string (``limelight explain --model SPEC``), through the
``limelight_load_model`` hook: :func:`load_model`, its error, and the framework-free
``package.module:factory`` loader (a built-in plugin)."""

from __future__ import annotations

import importlib

from ..core.errors import UnknownModelError
from ..core.hookspecs import LoadedModel, hookimpl

__all__ = ["KNOWN_FORMS", "LoadedModel", "UnknownModelError", "load_model"]

#: The spec forms the built-in plugins load.
KNOWN_FORMS = "torchvision:NAME, keras:NAME, a TorchScript .pt file, a .keras file, or package.module:factory"


def load_model(spec: str, weights: str | None = None) -> LoadedModel:
    """Ask the plugins to load ``spec``; an unknown spec is a :class:`UnknownModelError`.

    ``weights`` is ``"none"`` for random weights, None for the source's default.
    """
    from ..core.registry import registry

    loaded: LoadedModel | None = registry.pm.hook.limelight_load_model(spec=spec, weights=weights)
    if loaded is None:
        raise UnknownModelError(f"no plugin can load the model spec {spec!r}. Known forms: {KNOWN_FORMS}.")
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
