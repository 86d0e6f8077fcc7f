"""Quickstart: the same small CNN in PyTorch and in Keras (copied weights), explained with
every Grad-CAM-family method through one call, and the two frameworks compared.

    make demo        # or: .venv/bin/python examples/quickstart.py
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import torch

import limelight
from limelight.core.registry import registry


def build_twins() -> tuple[torch.nn.Module, keras.Model]:
    torch.manual_seed(0)
    tm = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 5),
    ).eval()
    km = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Conv2D(8, 3, padding="same"), keras.layers.ReLU(), keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(16, 3, padding="same"), keras.layers.ReLU(name="last_relu"),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5),
    ])
    convs = [m for m in tm if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    dense = [layer for layer in km.layers if layer.weights]
    for t, k in zip(convs, dense, strict=True):
        w = t.weight.detach().numpy()
        k.set_weights([w.transpose(2, 3, 1, 0) if w.ndim == 4 else w.T, t.bias.detach().numpy()])
    return tm, km


def main() -> None:
    tm, km = build_twins()
    images = np.random.RandomState(0).rand(4, 32, 32, 3).astype(np.float32)  # NHWC
    print(f"limelight {limelight.__version__}: methods {', '.join(limelight.explainers())}\n")
    print(f"{'method':<16}{'torch layer':<14}{'keras layer':<14}{'targets':<14}max |torch - keras|")
    # SHAP methods measure from a background (reference inputs): here, 8 random images
    background = np.random.RandomState(1).rand(8, 32, 32, 3).astype(np.float32)
    for method in limelight.explainers():
        extra: dict[str, Any] = {}
        if "background" in registry.explainer(method).defaults:
            extra = {"background": background}
        et = limelight.explain(tm, nchw(images), method, **{k: nchw(v) for k, v in extra.items()})
        ek = limelight.explain(km, images, method, **extra)
        diff = np.abs(et.values - ek.values).max()
        layers = et.params.get("layer", "-"), ek.params.get("layer", "-")
        print(f"{method:<16}{layers[0]:<14}{layers[1]:<14}{str(et.targets.tolist()):<14}{diff:.2e}")
        if method == "gradcam":
            maps = et.values.shape
    print(f"\nGrad-CAM maps: {maps} float32 in [0, 1] (N, H, W), one per image, at input resolution;")
    print("SHAP values: (N, H, W, C), one per input pixel and channel")


def nchw(images: np.ndarray) -> torch.Tensor:
    """The torch model's layout: NHWC arrays -> NCHW tensors."""
    return torch.from_numpy(images.transpose(0, 3, 1, 2).copy())


if __name__ == "__main__":
    main()
