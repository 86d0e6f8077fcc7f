"""Models from a spec string (``limelight explain --model SPEC``), through the
``limelight_load_model`` hook: :func:`load_model`, its error, and the framework-free
``package.module:factory`` loader (a built-in plugin)."""

from __future__ import annotations

import importlib

from ..core.errors import UnknownModelError, UnsupportedModelError
from ..core.hookspecs import LoadedModel, hookimpl
from ..core.model import Model
from ..core.registry import KNOWN_FORMS

__all__ = ["KNOWN_FORMS", "LoadedModel", "UnknownModelError", "WeightsUnavailableError", "load_model"]



class WeightsUnavailableError(UnknownModelError):
    """Pretrained weights could not be downloaded (offline, proxy, server down)."""


def _download_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) is a failed download."""
    import urllib.error

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, urllib.error.URLError | ConnectionError | TimeoutError):
            return True
        if any(word in str(seen).lower() for word in ("urlopen", "download", "name resolution", "network")):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def load_model(spec: str, weights: str | None = None) -> LoadedModel:
    """Ask the plugins to load ``spec``; an unknown spec is a :class:`UnknownModelError`.

    ``weights`` is ``"none"`` for random weights, None for the source's default.
    """
    from ..core.registry import registry

    return registry.load_model(spec, weights)


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
    return LoadedModel(model=model, framework=framework_of(model, spec), input_size=declared_input_size(model))


def framework_of(model: object, spec: str = "the model") -> str:
    """The framework of the backend that takes ``model`` (asked through the
    ``limelight_wrap_model`` hook, so a user's own ``nn.Module`` subclass is torch)."""
    from ..core.registry import registry

    if isinstance(model, Model):
        return model.framework
    wrapped = registry.wrap(model)
    if wrapped is None:
        raise UnsupportedModelError(
            f"{spec} gave a {type(model).__module__}.{type(model).__qualname__}, which no installed "
            "backend can explain (limelight takes torch.nn.Module and Keras models; see `limelight plugins`)."
        )
    return wrapped.framework


def declared_input_size(model: object) -> tuple[int, int] | None:
    """``(H, W)`` of a model that declares a channels-last image input shape (Keras
    ``input_shape`` ``(None, H, W, C)``), else None."""
    try:
        shape = tuple(getattr(model, "input_shape", None) or ())
    except (AttributeError, ValueError, TypeError):  # Keras raises for models without an input
        return None
    if len(shape) == 4 and all(isinstance(d, int) for d in shape[1:3]):
        return int(shape[1]), int(shape[2])
    return None
