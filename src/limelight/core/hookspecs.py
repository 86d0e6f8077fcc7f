"""The hook specifications of limelight's plugin system (pluggy project ``"limelight"``).

A plugin is any module or object with functions named like the hooks below, marked with
``@limelight.hookimpl``, registered through the ``limelight`` entry-point group. The types
the hooks return that are not defined elsewhere in core (:class:`LoadedModel`) live here,
so this module imports nothing of limelight at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .explainer import Explainer
    from .model import Model

__all__ = ["PROJECT", "LoadedModel", "hookimpl", "hookspec"]

PROJECT = "limelight"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class LoadedModel:
    """What :func:`limelight_load_model` returns: a loaded model with what is known about
    feeding and reading it.

    ``preprocess`` maps ``(N, H, W, 3)`` RGB in [0, 1] to what the model is fed (None: feed
    as is, channels-last for Keras / channels-first for torch); ``input_size`` is ``(H, W)``.
    """

    model: Any
    framework: str
    class_names: Sequence[str] | None = None
    preprocess: Callable[[Any], Any] | None = None
    input_size: tuple[int, int] | None = None


@hookspec(firstresult=True)
def limelight_wrap_model(model: object) -> Model | None:
    """Return a :class:`~limelight.Model` adapting ``model``, or None if it is not yours.

    The first non-None result wins. Must not import a framework that is not already in
    ``sys.modules`` (a live torch model means torch is imported).
    """


@hookspec
def limelight_register_explainers(register: Callable[[type[Explainer]], None]) -> None:
    """Call ``register(ExplainerClass)`` for each explainer this plugin provides.

    Explainer names are unique across all plugins: a plugin that claims a taken name is
    skipped with a warning naming it (an error with ``LIMELIGHT_STRICT_PLUGINS=1``).
    """


@hookspec
def limelight_register_metrics(register: Callable[[type], None]) -> None:
    """Call ``register(MetricClass)`` for each evaluation metric this plugin provides."""


@hookspec(firstresult=True)
def limelight_load_model(spec: str, weights: str | None) -> LoadedModel | None:
    """Load the model named by ``spec`` (e.g. ``"torchvision:resnet50"``, ``"model.keras"``)
    if this plugin knows the spec's form, else return None. ``weights`` is ``"none"`` for
    random weights, ``None`` for the source's default, or a local weights file's path.
    Must not import a framework unless the spec names it."""
