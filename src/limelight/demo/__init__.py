"""The embedded demo model: a tiny CNN trained on :func:`limelight.datasets.shapes`, shipped
as a NumPy weights file, loadable as a PyTorch module and as its Keras twin.

``scripts/train_demo_model.py`` reproduces the weights. The frameworks are imported only
when a model is built.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

import numpy as np

__all__ = ["WEIGHTS_FILE", "INPUT_SIZE", "CONV_CHANNELS", "load_weights", "build_torch", "torch_model", "keras_model", "models"]

WEIGHTS_FILE = "shapes_cnn.npz"
INPUT_SIZE = 32
#: Output channels of the three 3×3 convolutions; each is followed by ReLU, the first two by
#: 2×2 max pooling; then global average pooling and a dense layer to the 4 classes.
CONV_CHANNELS = (16, 32, 64)
NUM_CLASSES = 4


def load_weights() -> dict[str, np.ndarray]:
    """The shipped weights, in PyTorch's layout, keyed by ``state_dict`` names."""
    with resources.files(__name__).joinpath(WEIGHTS_FILE).open("rb") as handle:
        with np.load(handle, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}


def build_torch() -> Any:
    """The demo architecture as a freshly initialised ``torch.nn.Sequential``."""
    from torch import nn

    c1, c2, c3 = CONV_CHANNELS
    return nn.Sequential(
        nn.Conv2d(3, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c3, NUM_CLASSES),
    )


def torch_model(weights: dict[str, np.ndarray] | None = None) -> Any:
    """The demo CNN as a ``torch.nn.Sequential`` in eval mode (NCHW inputs in [0, 1]),
    with the shipped weights (or ``weights``, keyed like its ``state_dict``)."""
    import torch

    model = build_torch()
    state = load_weights() if weights is None else weights
    model.load_state_dict({key: torch.from_numpy(np.asarray(value)) for key, value in state.items()})
    return model.eval()


def keras_model(weights: dict[str, np.ndarray] | None = None) -> Any:
    """The same CNN in Keras (NHWC inputs in [0, 1]), with the same weights transposed:
    conv kernels ``(out, in, h, w) -> (h, w, in, out)``, dense ``.T``."""
    from ..core.lazy import import_triton_first

    import_triton_first()  # TensorFlow before triton segfaults a later torchvision import
    import keras

    c1, c2, c3 = CONV_CHANNELS
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((INPUT_SIZE, INPUT_SIZE, 3)),
            layers.Conv2D(c1, 3, padding="same", name="conv1"), layers.ReLU(name="relu1"),
            layers.MaxPooling2D(2, name="pool1"),
            layers.Conv2D(c2, 3, padding="same", name="conv2"), layers.ReLU(name="relu2"),
            layers.MaxPooling2D(2, name="pool2"),
            layers.Conv2D(c3, 3, padding="same", name="conv3"), layers.ReLU(name="relu3"),
            layers.GlobalAveragePooling2D(name="gap"), layers.Dense(NUM_CLASSES, name="fc"),
        ],
        name="shapes_cnn",
    )
    state = load_weights() if weights is None else weights
    for index, name in ((0, "conv1"), (3, "conv2"), (6, "conv3")):
        model.get_layer(name).set_weights([state[f"{index}.weight"].transpose(2, 3, 1, 0), state[f"{index}.bias"]])
    model.get_layer("fc").set_weights([state["10.weight"].T, state["10.bias"]])
    return model


def models(frameworks: Sequence[str] = ("PyTorch", "Keras")) -> dict[str, tuple[Any, Callable[[np.ndarray], Any]]]:
    """``{framework: (demo model, feed)}`` where ``feed`` turns ``(N, H, W, 3)`` images into
    what that model takes. torch is imported first: TensorFlow before torchvision crashes the
    process (README, known issues)."""
    import torch

    feeds = {
        "PyTorch": (torch_model, lambda a: torch.from_numpy(a.transpose(0, 3, 1, 2).copy())),
        "Keras": (keras_model, lambda a: a),
    }
    return {name: (feeds[name][0](), feeds[name][1]) for name in frameworks}
