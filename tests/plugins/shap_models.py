"""Small models for the SHAP tests: a NumPy linear backend solved by hand.

Capabilities are the protocols a class implements: :class:`LinearPredictOnly` has only
``predict`` (a host-only backend without gradients), :class:`LinearGradientsOnly` adds
``gradients`` (:class:`~limelight.core.model.SupportsGradients`), and
:class:`LinearImageModel` adds DeepLIFT (:class:`~limelight.core.model.SupportsDeepLift`).
"""

from __future__ import annotations

import numpy as np

from limelight import Gradients
from limelight.core.model import NumpyModel, batches


class LinearPredictOnly(NumpyModel):
    """f(x)_k = Σ_hwc x[h, w, c] W[h, w, c, k] + b_k on (N, H, W, C) inputs; predict only."""

    def __init__(self, weights: np.ndarray, bias: np.ndarray) -> None:
        super().__init__((weights, bias))
        self.weights, self.bias = weights.astype(np.float64), bias.astype(np.float64)
        self.forward_passes = 0

    def _forward(self, x: np.ndarray) -> np.ndarray:
        self.forward_passes += 1
        return (np.einsum("nhwc,hwck->nk", x.astype(np.float64), self.weights) + self.bias).astype(np.float32)

    def predict(self, x, *, batch_size=None):
        return np.concatenate([self._forward(x[b]) for b in batches(len(x), batch_size)])


class LinearGradientsOnly(LinearPredictOnly):
    """The linear model with input gradients (SupportsGradients), no DeepLIFT."""

    def input_gradients(self, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """d f(x)_classes / dx: ``(N, T, H, W, C)`` for ``classes`` ``(N, T)``."""
        grads = np.moveaxis(self.weights[..., classes], (-2, -1), (0, 1))
        return np.broadcast_to(grads, (len(x), *grads.shape[1:]))

    def _classes(self, target, outputs, rows) -> np.ndarray:
        """The class behind each target column, resolved by the target (in core)."""
        target = target.check(outputs.shape[1])
        data = [d[rows] for d in target.data()]
        return np.asarray(target.classes(self.xp, outputs, *data)).reshape(len(outputs), -1)

    def gradients(self, x, target, layer=None, *, batch_size=None):
        assert layer is None, "the linear model has no layers"
        outs, grads = [], []
        for rows in batches(len(x), batch_size):
            out = self._forward(x[rows])
            outs.append(out)
            grads.append(self.input_gradients(x[rows], self._classes(target, out, rows)).astype(np.float32))
        outputs, gradients = np.concatenate(outs), np.concatenate(grads)
        return Gradients(outputs, x, gradients[:, 0] if target.single else gradients)


class LinearImageModel(LinearGradientsOnly):
    """The linear model with gradients and DeepLIFT (for a linear model the rescale
    multipliers are the weights)."""

    def deeplift_gradients(self, x, references, target, *, batch_size=None):
        parts = []
        for rows in batches(len(x), batch_size):
            outputs = self._forward(x[rows])
            parts.append(self.input_gradients(x[rows], self._classes(target, outputs, rows)).astype(np.float32))
        return np.concatenate(parts)

    def deeplift_unsupported(self, x):
        return []
