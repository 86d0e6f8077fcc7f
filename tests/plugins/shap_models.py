"""A small model for the SHAP tests: a NumPy linear backend solved by hand."""

from __future__ import annotations

import numpy as np

from limelight import Gradients, Model
from limelight.core.model import DEEPLIFT, GRADIENTS


class LinearImageModel(Model):
    """f(x)_k = Σ_hwc x[h, w, c] W[h, w, c, k] + b_k on (N, H, W, C) inputs, solved by hand.

    ``capabilities`` can be cut down to make a predict-only backend.
    """

    framework = "numpy"
    capabilities = frozenset({GRADIENTS, DEEPLIFT})

    def __init__(self, weights: np.ndarray, bias: np.ndarray, capabilities=None):
        super().__init__((weights, bias))
        self.weights, self.bias = weights.astype(np.float64), bias.astype(np.float64)
        if capabilities is not None:
            self.capabilities = frozenset(capabilities)
        self.forward_passes = 0

    def predict(self, x):
        self.forward_passes += 1
        return (np.einsum("nhwc,hwck->nk", x.astype(np.float64), self.weights) + self.bias).astype(np.float32)

    def gradients(self, x, targets, layer=None):
        outputs = self.predict(x)
        t = outputs.argmax(1) if targets is None else targets
        return Gradients(outputs, x, np.moveaxis(self.weights[..., t], -1, 0).astype(np.float32))

    def multi_gradients(self, x, targets, layer=None):
        outputs = self.predict(x)
        grads = np.moveaxis(self.weights[..., targets], (-2, -1), (0, 1))  # (N, T, H, W, C)
        return Gradients(outputs, x, grads.astype(np.float32))

    def deeplift_gradients(self, x, references, targets):
        return np.moveaxis(self.weights[..., targets], (-2, -1), (0, 1)).astype(np.float32)

    def deeplift_unsupported(self, x):
        return []
