"""The Keras model zoo (a built-in ``limelight_load_model`` plugin): ``keras:NAME`` (a
``keras.applications`` factory) and ``.keras`` files. Keras is imported only when a spec
names it; the ImageNet class names come from limelight's package data, never from
torchvision (importing torchvision after TensorFlow crashes the process)."""

from __future__ import annotations

import importlib
import os

from ..core.hookspecs import LoadedModel, hookimpl
from ..core.lazy import import_triton_first
from .presets import imagenet_class_names
from .specs import UnknownModelError, WeightsUnavailableError, _download_failure, declared_input_size

__all__ = ["limelight_load_model"]


@hookimpl(trylast=True)
def limelight_load_model(spec: str, weights: str | None) -> LoadedModel | None:
    """``keras:NAME`` (a keras.applications factory; ``weights="none"``: random) and
    ``.keras`` files (loaded with ``safe_mode=True``)."""
    if spec.startswith("keras:"):
        return _application(spec.split(":", 1)[1], weights)
    if spec.endswith(".keras"):
        if not os.path.exists(spec):
            raise UnknownModelError(f"no such model file: {spec}")
        import_triton_first()  # before Keras loads TensorFlow: see limelight.core.lazy
        import keras

        model = keras.saving.load_model(spec, safe_mode=True)
        return LoadedModel(model, "tensorflow", input_size=declared_input_size(model))
    return None


def _application(name: str, weights: str | None) -> LoadedModel:
    import_triton_first()  # before Keras loads TensorFlow: see limelight.core.lazy
    import keras

    factory = getattr(keras.applications, name, None)
    if factory is None or not callable(factory):
        raise UnknownModelError(f"keras.applications has no model {name!r}; e.g. ResNet50, MobileNetV2.")
    if (weights or "").lower() == "none":
        chosen = None
    elif weights:
        if not os.path.isfile(weights):
            raise UnknownModelError(f"--weights {weights!r}: no such weights file (or 'none' for random weights)")
        chosen = weights
    else:
        chosen = "imagenet"
    try:
        model = factory(weights=chosen)
    except Exception as exc:  # Keras raises several types for a failed download
        if chosen != "imagenet" or not _download_failure(exc):
            raise
        raise WeightsUnavailableError(
            f"cannot download the ImageNet weights of keras:{name} ({type(exc).__name__}: {exc}). "
            "Run with --weights none for random weights, or --weights FILE for a local weights "
            "file (.weights.h5 / .h5), or put the file in ~/.keras/models."
        ) from None
    family = importlib.import_module(factory.__module__)
    size = tuple(model.input_shape[1:3]) if None not in model.input_shape[1:3] else (224, 224)
    return LoadedModel(
        model, "tensorflow", imagenet_class_names(), lambda images: family.preprocess_input(images * 255.0), size
    )
