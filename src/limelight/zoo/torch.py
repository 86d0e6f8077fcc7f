"""The PyTorch model zoo (a built-in ``limelight_load_model`` plugin): ``torchvision:NAME``
and TorchScript ``.pt`` files. torch is imported only when a spec names it."""

from __future__ import annotations

import os

from ..core.hookspecs import LoadedModel, hookimpl
from .presets import on_nhwc
from .specs import UnknownModelError

__all__ = ["limelight_load_model"]


@hookimpl(trylast=True)
def limelight_load_model(spec: str, weights: str | None) -> LoadedModel | None:
    """``torchvision:NAME`` (``weights="none"``: random) and TorchScript ``.pt`` files.

    Files are never unpickled: TorchScript only (``torch.jit.load``); a plain state dict
    has no architecture, so it is refused with a hint.
    """
    if spec.startswith("torchvision:"):
        return _torchvision(spec.split(":", 1)[1], weights)
    if spec.endswith((".pt", ".pth")):
        return _torchscript(spec)
    return None


def _torchvision(name: str, weights: str | None) -> LoadedModel:
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(name)
    except (ValueError, KeyError):
        raise UnknownModelError(
            f"torchvision has no model {name!r}; e.g. resnet18, resnet50, vgg16, densenet121."
        ) from None
    chosen = None if (weights or "").lower() == "none" else enum.DEFAULT
    model = torchvision.models.get_model(name, weights=chosen).eval()
    preprocess = on_nhwc(enum.DEFAULT.transforms())  # the weights' own preprocessing
    return LoadedModel(model, "torch", list(enum.DEFAULT.meta["categories"]), preprocess, None)


def _torchscript(path: str) -> LoadedModel:
    if not os.path.exists(path):
        raise UnknownModelError(f"no such model file: {path}")
    import torch

    try:
        model = torch.jit.load(path, map_location="cpu").eval()
    except RuntimeError:
        raise UnknownModelError(
            f"{path} is not a TorchScript file. limelight never unpickles arbitrary objects: "
            "save with torch.jit.script(model).save(path), or use package.module:factory."
        ) from None
    return LoadedModel(model, "torch")
