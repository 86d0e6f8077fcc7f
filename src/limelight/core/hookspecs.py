"""The hook specifications of limelight's plugin system (pluggy project ``"limelight"``).

A plugin is any module or object with functions named like the hooks below, marked with
``@limelight.hookimpl``, registered through the ``limelight`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .explainer import Explainer
    from .loading import LoadedModel
    from .model import Model

PROJECT = "limelight"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec(firstresult=True)
def limelight_wrap_model(model: object) -> Model | None:
    """Return a :class:`~limelight.Model` adapting ``model``, or None if it is not yours.

    The first non-None result wins. Must not import a framework that is not already in
    ``sys.modules`` (a live torch model means torch is imported).
    """


@hookspec
def limelight_register_explainers(register: Callable[[type[Explainer]], None]) -> None:
    """Call ``register(ExplainerClass)`` for each explainer this plugin provides.

    Explainer names are unique across all plugins; a clash is an error naming both.
    """


@hookspec
def limelight_register_metrics(register: Callable[[type], None]) -> None:
    """Call ``register(MetricClass)`` for each evaluation metric this plugin provides."""


@hookspec(firstresult=True)
def limelight_load_model(spec: str, weights: str | None) -> LoadedModel | None:
    """Load the model named by ``spec`` (e.g. ``"torchvision:resnet50"``, ``"model.keras"``)
    if this plugin knows the spec's form, else return None. ``weights`` is ``"none"`` for
    random weights, ``None`` for the source's default. Must not import a framework unless
    the spec names it."""
