"""Images in: load files, PIL images or arrays with Pillow, and the model zoos' preprocessing
(with its inverse, for display).

Loaded images are ``(H, W, 3)`` float32 RGB in [0, 1]. Presets turn a batch ``(N, H, W, 3)``
into what a model is fed, using each framework's own preprocessing code (built by
:mod:`limelight.zoo.presets`, so this module holds no framework code):

* ``"torchvision"``: torchvision's ImageNet classification transform (resize the short side
  to 256, centre crop 224, normalize with its mean/std); output NCHW. It sets the size
  itself: apply it to each image at its own size, not to images squashed to a square first.
* ``"caffe"``, ``"tf"``, ``"torch"``: ``keras.applications.imagenet_utils.preprocess_input``
  with that mode on 0-255 pixels; output NHWC.

Each preset's inverse is found by probing the framework's own function (it is affine per
pixel), so no normalization constant is written down twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .core.errors import InputError
from .core.lazy import require

__all__ = ["PRESETS", "Preset", "load_image", "load_images", "preset"]

PRESETS = ("torchvision", "caffe", "tf", "torch")


def _pil() -> Any:
    return require("PIL.Image", "viz", "Pillow"), require("PIL.ImageOps", "viz", "Pillow")


def _to_rgb01(image: Any) -> np.ndarray:
    Image, ImageOps = _pil()
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.repeat((np.asarray(image, np.float32) / 65535.0)[..., None], 3, axis=-1)
    if image.mode in ("I", "F"):
        arr = np.asarray(image, np.float32)
        scale = 65535.0 if arr.max() > 255 else 255.0
        return np.repeat(np.clip(arr / scale, 0, 1)[..., None], 3, axis=-1)
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return np.asarray(image.convert("RGB"), np.float32) / 255.0


def load_image(source: str | os.PathLike[str] | Any, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """One image as ``(H, W, 3)`` float32 RGB in [0, 1] from a path, a PIL image or an array.

    Grayscale, palette, alpha (composited on white), 16-bit and EXIF-rotated images are
    handled. ``size`` (``(H, W)`` or one int for square) resizes bilinearly.
    """
    Image, _ = _pil()
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise InputError(f"no such image file: {path}")
        try:
            with Image.open(path) as opened:
                opened.load()
                rgb = _to_rgb01(opened)
        except Image.DecompressionBombError as exc:
            raise InputError(
                f"{path} is too large to load safely ({exc}). If you trust the file, raise "
                "PIL.Image.MAX_IMAGE_PIXELS (or set it to None) before calling limelight."
            ) from None
        except (OSError, Image.UnidentifiedImageError, SyntaxError) as exc:
            raise InputError(f"{path} is not an image Pillow can read ({type(exc).__name__}: {exc})") from None
    elif isinstance(source, Image.Image):
        rgb = _to_rgb01(source)
    else:
        arr = np.asarray(source, np.float32)
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=-1)
        if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
            raise InputError(f"an image array must be (H, W), (H, W, 1|3|4); got {arr.shape}")
        arr = arr[..., :3] if arr.shape[-1] != 1 else np.repeat(arr, 3, axis=-1)
        rgb = arr / 255.0 if arr.max() > 1 else arr
    if size is not None:
        height, width = (size, size) if isinstance(size, int) else size
        pil = Image.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8))
        rgb = np.asarray(pil.resize((width, height), Image.BILINEAR), np.float32) / 255.0
    return rgb.astype(np.float32)


def load_images(sources: Sequence[Any], size: int | tuple[int, int] | None = None) -> np.ndarray:
    """Several images as one batch ``(N, H, W, 3)``; give ``size`` when their sizes differ."""
    images = [load_image(s, size) for s in sources]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise InputError(f"images have different sizes {sorted(shapes)}; pass size= to resize them")
    return np.stack(images)


@dataclass(frozen=True)
class Preset:
    """A model zoo's preprocessing: :meth:`apply` and its :meth:`inverse` for display."""

    name: str
    layout: str  # "NCHW" or "NHWC": how the output is laid out
    _forward: Callable[[np.ndarray], np.ndarray] = field(repr=False)

    def apply(self, images: np.ndarray) -> np.ndarray:
        """``(N, H, W, 3)`` RGB in [0, 1] -> the model's input (float32, in :attr:`layout`)."""
        return np.asarray(self._forward(np.asarray(images, np.float32)), np.float32)

    def inverse(self, inputs: np.ndarray) -> np.ndarray:
        """The model's input -> ``(N, H, W, 3)`` RGB in [0, 1] (the crop, if any, stays)."""
        matrix, offset = self._affine()
        nhwc = np.moveaxis(inputs, 1, -1) if self.layout == "NCHW" else np.asarray(inputs)
        rgb = (nhwc - offset) @ np.linalg.inv(matrix).T
        return np.clip(rgb, 0, 1).astype(np.float32)

    def _affine(self) -> tuple[np.ndarray, np.ndarray]:
        """Probe the per-pixel map y = M x + b on constant images (it is affine)."""
        probe_size = 256 if self.name == "torchvision" else 4
        def at(color: np.ndarray) -> np.ndarray:
            out = self.apply(np.broadcast_to(color, (1, probe_size, probe_size, 3)).copy())
            out = np.moveaxis(out, 1, -1) if self.layout == "NCHW" else out
            return out[0, 0, 0]
        offset = at(np.zeros(3, np.float32))
        matrix = np.stack([at(np.eye(3, dtype=np.float32)[c]) - offset for c in range(3)], axis=1)
        return matrix, offset


def preset(name: str) -> Preset:
    """The preset called ``name`` (one of :data:`PRESETS`)."""
    if name == "torchvision":
        from .zoo.presets import imagenet_transform

        return Preset("torchvision", "NCHW", imagenet_transform())
    if name in ("caffe", "tf", "torch"):
        from .zoo.presets import keras_preprocess

        return Preset(name, "NHWC", keras_preprocess(name))
    raise InputError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
