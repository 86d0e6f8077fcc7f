"""Preprocessing presets of the model zoos and the ImageNet class names.

Each preset maps ``(N, H, W, 3)`` RGB in [0, 1] to what a zoo's models are fed, with the
framework's own code (imported on first use). The ImageNet class names (the standard order
shared by torchvision and ``keras.applications``) ship with limelight as package data, so
no framework is needed to read them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib import resources
from typing import Any

import numpy as np

from ..core.errors import FrameworkNotInstalledError

__all__ = ["CLASS_NAMES_FILE", "imagenet_class_names", "imagenet_transform", "keras_preprocess", "on_nhwc"]

#: The package-data file of the 1000 ImageNet class names, one a line (generated once from
#: torchvision's ``ResNet50_Weights.DEFAULT.meta["categories"]``).
CLASS_NAMES_FILE = "imagenet_classes.txt"


def on_nhwc(transform: Callable[[Any], Any]) -> Callable[[np.ndarray], Any]:
    """A torchvision transform of NCHW tensors as a function of ``(N, H, W, 3)`` arrays."""

    def apply(images: np.ndarray) -> Any:
        import torch

        return transform(torch.from_numpy(np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2))))

    return apply


def imagenet_transform(resize: int = 256, crop: int = 224) -> Callable[[np.ndarray], Any]:
    """torchvision's ImageNet classification transform (resize, centre crop, normalize with
    its mean/std) from ``(N, H, W, 3)`` RGB in [0, 1] to an NCHW tensor."""
    try:
        from torchvision.transforms._presets import ImageClassification
    except ImportError as exc:
        raise FrameworkNotInstalledError("torchvision", extra="torch") from exc
    return on_nhwc(ImageClassification(crop_size=crop, resize_size=resize))


def keras_preprocess(mode: str) -> Callable[[np.ndarray], np.ndarray]:
    """``keras.applications.imagenet_utils.preprocess_input`` with ``mode`` ("caffe", "tf",
    "torch") from ``(N, H, W, 3)`` RGB in [0, 1] (it takes 0-255 pixels); NHWC out."""
    from ..core.lazy import import_triton_first

    import_triton_first()  # TensorFlow before triton segfaults a later torchvision import
    try:
        from keras.applications import imagenet_utils
    except ImportError as exc:
        raise FrameworkNotInstalledError("keras", extra="tensorflow") from exc
    return lambda images: imagenet_utils.preprocess_input(images * 255.0, mode=mode)


@functools.cache
def _class_names() -> tuple[str, ...]:
    text = resources.files(__name__.rpartition(".")[0]).joinpath(CLASS_NAMES_FILE).read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line)


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names, in class-index order (no framework imported)."""
    return list(_class_names())
