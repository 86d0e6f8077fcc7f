"""The PyTorch model zoo (a built-in ``limelight_load_model`` plugin): ``torchvision:NAME``
and TorchScript ``.pt`` files. torch is imported only when a spec names it."""

from __future__ import annotations

import os

from ..core.hookspecs import LoadedModel, hookimpl
from .presets import on_nhwc
from .specs import UnknownModelError, WeightsUnavailableError, _download_failure

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
    local = weights if weights and weights.lower() != "none" else None
    chosen = None if weights else enum.DEFAULT
    if local is not None and not os.path.isfile(local):
        raise UnknownModelError(f"--weights {local!r}: no such weights file (or 'none' for random weights)")
    try:
        model = torchvision.models.get_model(name, weights=chosen).eval()
    except Exception as exc:  # urllib, http and hub errors all mean "no download"
        if chosen is None or not _download_failure(exc):
            raise
        raise WeightsUnavailableError(
            f"cannot download the pretrained weights of torchvision:{name} ({type(exc).__name__}: {exc}). "
            "Run with --weights none for random weights, or --weights FILE for a local state dict "
            "(e.g. the file from torchvision's URL), or put that file in torch's hub cache "
            "(~/.cache/torch/hub/checkpoints)."
        ) from None
    if local is not None:
        import torch

        try:
            model.load_state_dict(torch.load(local, map_location="cpu", weights_only=True))
        except Exception as exc:  # noqa: BLE001 - pickle, zip and key-mismatch errors alike
            raise UnknownModelError(f"--weights {local}: not a state dict of torchvision:{name} ({type(exc).__name__}: {exc})") from None
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
