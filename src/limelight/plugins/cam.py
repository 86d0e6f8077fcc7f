"""The Grad-CAM family, written once against :class:`limelight.Model` in NumPy.

Each method is a small class that says only how its map is computed from the layer's
activations ``A`` and gradients ``G`` (both ``(N, h, w, C)``, channels-last); the shared
:class:`CAMExplainer` base does the rest.

Post-processing (the defaults, each can be turned off for raw maps):

1. ``relu=True``: keep the positive part of the map.
2. ``upsample=True``: bilinear resize to the input's ``(H, W)`` with half-pixel centres
   (cv2 ``INTER_LINEAR`` ≡ torch ``align_corners=False`` ≡ ``tf.image.resize``).
3. ``normalize=True``: per-image min-max to [0, 1]; a constant map (e.g. all zero) becomes
   all zeros, never NaN.

Formulas and constants follow pytorch-grad-cam, so the normalized maps agree with it; raw
Grad-CAM (``upsample=False, normalize=False``) equals Captum's ``LayerGradCam`` with
``relu_attributions=True``.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import abc

import numpy as np

from ..core.errors import LayerError
from ..core.explainer import Explainer
from ..core.explanation import Explanation
from ..core.hookspecs import hookimpl
from ..core.model import LAYERS
from ..core.ops import minmax_normalize, resize_bilinear
from ..core.targets import resolve_targets

__all__ = [
    "CAMExplainer",
    "GradCAM",
    "GradCAMPlusPlus",
    "XGradCAM",
    "HiResCAM",
    "LayerCAM",
    "EigenCAM",
    "EigenGradCAM",
]


class CAMExplainer(Explainer):
    """Base of the class-activation-map methods: ``values`` are ``(N, H, W)`` maps.

    Subclasses implement :meth:`cam`. Parameters: ``layer`` (None: the backend's default,
    the last spatial layer), ``relu``, ``upsample``, ``normalize`` (see the module doc).
    """

    defaults = MappingProxyType({"layer": None, "relu": True, "upsample": True, "normalize": True})
    requires = frozenset({LAYERS})

    @abc.abstractmethod
    def cam(self, activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
        """The raw map ``(N, h, w)`` from activations and gradients ``(N, h, w, C)``."""

    def explain(self, x: np.ndarray, targets: np.ndarray | None) -> Explanation:
        layer = self.params["layer"]
        layer = self.model.default_layer(x) if layer is None else self.model.resolve_layer(layer)
        grads = self.model.gradients(x, targets, layer)
        activations = grads.activations
        if activations.ndim != 4:
            raise self._not_spatial(layer, activations.shape, x)
        maps = self.cam(activations.astype(np.float32), grads.gradients.astype(np.float32))
        if self.params["relu"]:
            maps = np.maximum(maps, 0)
        if self.params["upsample"] and x.ndim == 4:
            maps = resize_bilinear(maps, x.shape[1:3])
        if self.params["normalize"]:
            maps = minmax_normalize(maps)
        return Explanation(
            method=self.name,
            values=maps.astype(np.float32),
            targets=resolve_targets(targets, grads.outputs),
            outputs=grads.outputs,
            inputs=x,
            params={**self.params, "layer": layer},
            framework=self.model.framework,
        )

    def _not_spatial(self, layer: str, shape: tuple[int, ...], x: np.ndarray) -> LayerError:
        try:
            hint = f", such as the default {self.model.default_layer(x)!r}"
        except LayerError:
            hint = "; this model has none"
        return LayerError(
            f"layer {layer!r} outputs shape {shape[1:]} per sample, which is not spatial; "
            f"{self.name} needs a layer with an (h, w, channels) output{hint}."
        )


class _WeightedCAM(CAMExplainer):
    """Maps that are a weighted sum of activation channels: ``sum_c w[n, c] * A[n, ..., c]``."""

    @abc.abstractmethod
    def weights(self, activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
        """Channel weights ``(N, C)``."""

    def cam(self, activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
        return np.einsum("nhwc,nc->nhw", activations, self.weights(activations, gradients))


class GradCAM(_WeightedCAM):
    """Grad-CAM (Selvaraju et al. 2017): weights are spatially averaged gradients."""

    name = "gradcam"

    def weights(self, activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
        return gradients.mean(axis=(1, 2))


class GradCAMPlusPlus(_WeightedCAM):
    """Grad-CAM++ (Chattopadhyay et al. 2018), with the usual exp-output closed form."""

    name = "gradcam++"

    def weights(self, activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
        g2 = gradients**2
        g3 = g2 * gradients
        sum_a = activations.sum(axis=(1, 2), keepdims=True)
        alpha = g2 / (2 * g2 + sum_a * g3 + 1e-6)
        alpha = np.where(gradients != 0, alpha, 0)
        return (np.maximum(gradients, 0) * alpha).sum(axis=(1, 2))


class XGradCAM(_WeightedCAM):
    """XGrad-CAM (Fu et al. 2020): gradients weighted by normalized activations."""

    name = "xgradcam"

    def weights(self, activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
        sum_a = activations.sum(axis=(1, 2), keepdims=True)
        return (gradients * activations / (sum_a + 1e-7)).sum(axis=(1, 2))


class HiResCAM(CAMExplainer):
    """HiResCAM (Draelos & Carin 2020): element-wise gradient × activation, summed over channels."""

    name = "hirescam"

    def cam(self, activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
        return (gradients * activations).sum(axis=-1)


class LayerCAM(CAMExplainer):
    """LayerCAM (Jiang et al. 2021): positive gradients × activations, summed over channels."""

    name = "layercam"

    def cam(self, activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
        return (np.maximum(gradients, 0) * activations).sum(axis=-1)


def principal_projection(features: np.ndarray) -> np.ndarray:
    """Project each sample's ``(h, w, C)`` features on their first principal component.

    Returns ``(N, h, w)``. An SVD's sign is arbitrary; limelight fixes it so that the
    projection correlates positively with the channel-mean of ``features`` (the map points
    where the features are large, not where they are small).
    """
    n, h, w, c = features.shape
    out = np.zeros((n, h, w), dtype=np.float32)
    for i in range(n):
        matrix = np.nan_to_num(features[i].reshape(h * w, c).astype(np.float64))
        centred = matrix - matrix.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        projection = centred @ vt[0]
        mean_map = matrix.mean(axis=1)
        if np.dot(projection - projection.mean(), mean_map - mean_map.mean()) < 0:
            projection = -projection
        out[i] = projection.reshape(h, w)
    return out


class EigenCAM(CAMExplainer):
    """Eigen-CAM (Muhammad & Yeasin 2020): first principal component of the activations.

    Class-agnostic: the map does not depend on the target.
    """

    name = "eigencam"

    def cam(self, activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
        return principal_projection(activations)


class EigenGradCAM(CAMExplainer):
    """Eigen-Grad-CAM: first principal component of gradient × activation (class-specific)."""

    name = "eigengradcam"

    def cam(self, activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
        return principal_projection(gradients * activations)


BUILTIN_CAMS: tuple[type[CAMExplainer], ...] = (
    GradCAM,
    GradCAMPlusPlus,
    XGradCAM,
    HiResCAM,
    LayerCAM,
    EigenCAM,
    EigenGradCAM,
)


@hookimpl(trylast=True)
def limelight_register_explainers(register: Any) -> None:
    """Register the Grad-CAM family."""
    for cls in BUILTIN_CAMS:
        register(cls)
