"""Model specs and preprocessing presets: where models come from, and how they are fed.

- :mod:`~limelight.zoo.specs`: :func:`load_model` (``limelight explain --model SPEC``) over
  the ``limelight_load_model`` hook, and the ``package.module:factory`` loader;
- :mod:`~limelight.zoo.torch`: ``torchvision:NAME`` and TorchScript ``.pt`` files;
- :mod:`~limelight.zoo.keras`: ``keras:NAME`` and ``.keras`` files;
- :mod:`~limelight.zoo.presets`: the zoos' preprocessing and the ImageNet class names
  (package data).

The loaders are built-in plugins; a framework is imported only when a spec names it.
"""

from __future__ import annotations

from ..core.hookspecs import LoadedModel
from .presets import imagenet_class_names, imagenet_transform, keras_preprocess
from .specs import UnknownModelError, load_model

__all__ = [
    "LoadedModel",
    "UnknownModelError",
    "imagenet_class_names",
    "imagenet_transform",
    "keras_preprocess",
    "load_model",
]
