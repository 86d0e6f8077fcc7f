"""Small models to run contract checks on: the same tiny CNN in torch and in Keras (identical
weights drawn from NumPy), seeded images, and :class:`ModelCase`, a model with its inputs.

Frameworks are imported only when a factory is called (torch before TensorFlow, see
:func:`limelight.core.lazy.import_triton_first`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "ModelCase",
    "TWIN_LAYERS",
    "builtin_cases",
    "cnn_weights",
    "keras_cnn",
    "small_images",
    "torch_batch_probe",
    "torch_cnn",
]

#: The default layers of :func:`torch_cnn` and :func:`keras_cnn` (the last ReLU), which match.
TWIN_LAYERS = ("5", "relu2")


@dataclass(frozen=True)
class ModelCase:
    """A model to check an explainer on: ``factory()`` returns a fresh native model (or a
    :class:`limelight.Model`), ``inputs`` a small batch as that model is fed, ``background``
    reference inputs fed the same way (default: ``inputs``), ``params`` extra explainer
    parameters for this model only (e.g. a ``layer`` name)."""

    name: str
    factory: Callable[[], object]
    inputs: Any
    background: Any = None
    params: Mapping[str, Any] = field(default_factory=dict)


def small_images(n: int = 4, size: int = 16, channels: int = 3, *, seed: int = 0, layout: str = "nhwc") -> np.ndarray:
    """``n`` seeded float32 images in [0, 1), ``(n, size, size, channels)`` (``layout="nchw"``:
    ``(n, channels, size, size)``, the same values)."""
    if layout not in ("nhwc", "nchw"):
        raise ValueError(f"layout must be 'nhwc' or 'nchw', got {layout!r}")
    images = np.random.RandomState(seed).rand(n, size, size, channels).astype(np.float32)
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)) if layout == "nchw" else images


def cnn_weights(seed: int = 0, classes: int = 5) -> dict[str, list[np.ndarray]]:
    """The weights of the tiny CNN in Keras order (kernels ``(h, w, in, out)``, dense
    ``(in, out)``; batch norm gamma, beta, mean, variance), drawn from NumPy."""
    rng = np.random.RandomState(seed)

    def uniform(bound: float, *shape: int) -> np.ndarray:
        return rng.uniform(-bound, bound, shape).astype(np.float32)

    return {
        "conv1": [uniform(27**-0.5, 3, 3, 3, 8), uniform(27**-0.5, 8)],
        "conv2": [uniform(72**-0.5, 3, 3, 8, 16), uniform(72**-0.5, 16)],
        "bn": [
            rng.uniform(0.5, 1.5, 16).astype(np.float32),
            uniform(0.2, 16),
            uniform(0.5, 16),
            rng.uniform(0.5, 2.0, 16).astype(np.float32),
        ],
        "fc": [uniform(0.25, 16, classes), uniform(0.25, classes)],
    }


def torch_cnn_layers(classes: int = 5) -> Any:
    """The architecture of :func:`torch_cnn` with torch's own initialisation (drawn from its
    global generator: seed it first), in training mode."""
    import torch

    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1),
        torch.nn.BatchNorm2d(16),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, classes),
    )


def torch_cnn(seed: int = 0, classes: int = 5) -> Any:
    """Conv(3→8) ReLU MaxPool(2) Conv(8→16) BatchNorm ReLU GAP Linear(``classes``) as a
    ``torch.nn.Sequential`` in eval mode, taking ``(N, 3, H, W)``; default layer ``"5"``;
    weights from :func:`cnn_weights` (the same as :func:`keras_cnn`'s)."""
    import torch

    w = cnn_weights(seed, classes)
    model = torch_cnn_layers(classes)
    layers: list[Any] = list(model)
    with torch.no_grad():
        for module, (kernel, bias) in ((layers[0], w["conv1"]), (layers[3], w["conv2"])):
            module.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
            module.bias.copy_(torch.from_numpy(bias))
        bn = layers[4]
        for tensor, value in zip((bn.weight, bn.bias, bn.running_mean, bn.running_var), w["bn"], strict=True):
            tensor.copy_(torch.from_numpy(value))
        layers[8].weight.copy_(torch.from_numpy(w["fc"][0].T.copy()))
        layers[8].bias.copy_(torch.from_numpy(w["fc"][1]))
    return model.eval()


def keras_cnn_layers(classes: int = 5, size: int = 16) -> Any:
    """The architecture of :func:`keras_cnn` (layers ``conv1 relu1 pool conv2 bn relu2 gap
    fc``) with Keras's own initialisation."""
    from ..core.lazy import import_triton_first

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import_triton_first()
    import keras

    return keras.Sequential(
        [
            keras.Input((size, size, 3)),
            keras.layers.Conv2D(8, 3, padding="same", name="conv1"),
            keras.layers.ReLU(name="relu1"),
            keras.layers.MaxPooling2D(2, name="pool"),
            keras.layers.Conv2D(16, 3, padding="same", name="conv2"),
            keras.layers.BatchNormalization(epsilon=1e-5, name="bn"),
            keras.layers.ReLU(name="relu2"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(classes, name="fc"),
        ]
    )


def keras_cnn(seed: int = 0, classes: int = 5, size: int = 16) -> Any:
    """The same CNN as :func:`torch_cnn`, same weights, as a Keras ``Sequential`` taking
    ``(N, size, size, 3)``; default layer ``"relu2"``."""
    w = cnn_weights(seed, classes)
    model = keras_cnn_layers(classes, size)
    for name, arrays in w.items():
        model.get_layer(name).set_weights(arrays)
    return model


def _installed(module: str) -> bool:
    return module in sys.modules or importlib.util.find_spec(module) is not None


def builtin_cases(n: int = 4, seed: int = 0) -> list[ModelCase]:
    """The twin CNNs of the installed frameworks (torch first), with ``n`` seeded images
    (the same pictures in each framework's layout) and a background of 4 others."""
    cases = []
    if _installed("torch"):
        import torch  # before TensorFlow

        cases.append(
            ModelCase(
                "torch",
                torch_cnn,
                torch.from_numpy(small_images(n, seed=seed, layout="nchw")),
                torch.from_numpy(small_images(4, seed=seed + 1, layout="nchw")),
            )
        )
    if _installed("keras") and _installed("tensorflow"):
        cases.append(ModelCase("keras", keras_cnn, small_images(n, seed=seed), small_images(4, seed=seed + 1)))
    return cases


@contextlib.contextmanager
def torch_batch_probe(native: object) -> Iterator[list[int]]:
    """Record the batch size of every call of a ``torch.nn.Module`` (a forward pre-hook on
    the root module, removed on exit); yields the list it appends to."""
    import torch

    if not isinstance(native, torch.nn.Module):
        raise TypeError(f"torch_batch_probe needs a torch.nn.Module, got {type(native).__name__}")
    seen: list[int] = []

    def hook(module: Any, args: Any) -> None:
        first = args[0] if args else None
        if isinstance(first, torch.Tensor) and first.ndim:
            seen.append(int(first.shape[0]))

    handle = native.register_forward_pre_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()
