"""The Grad-CAM family, written once against :class:`limelight.Model` and its ``xp``.

Each method is a small class that says only how its map is computed from the layer's
activations ``A`` and gradients ``G`` (both ``(N, h, w, C)``, channels-last, backend
arrays on the model's device); the shared
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

import abc
from types import MappingProxyType
from typing import Any, ClassVar

from ..core.errors import LayerError
from ..core.explainer import Explainer
from ..core.explanation import Explanation
from ..core.hookspecs import hookimpl
from ..core.inputs import spatial_input
from ..core.model import Array, Model, SupportsGradients, SupportsLayers
from ..core.ops import minmax_normalize
from ..core.targets import Target

__all__ = [
    "CAMExplainer",
    "GradCAM",
    "GradCAMPlusPlus",
    "XGradCAM",
    "HiResCAM",
    "LayerCAM",
    "EigenCAM",
    "EigenGradCAM",
    "principal_projection",
    "postprocess",
    "not_spatial",
]


def postprocess(model: Model, maps: Array, x: Array, *, relu: bool, upsample: bool, normalize: bool) -> Array:
    """The family's post-processing of raw ``(N, h, w)`` maps for inputs ``x``: ReLU,
    bilinear upsampling to ``x``'s ``(H, W)`` with half-pixel centres, per-map min-max."""
    xp = model.xp
    if relu:
        maps = xp.clip(maps, min=0.0)
    if upsample and x.ndim == 4:
        maps = model.resize(maps, (int(x.shape[1]), int(x.shape[2])))
    if normalize:
        maps = minmax_normalize(maps, xp)
    return maps


def not_spatial(method: str, model: SupportsLayers, layer: str, shape: tuple[int, ...], x: Array) -> LayerError:
    """The error for a layer whose activations (``shape``, batch first) are not ``(h, w, C)``."""
    try:
        hint = f", such as the default {model.default_layer(x)!r}"
    except LayerError:
        hint = "; this model has none"
    return LayerError(
        f"layer {layer!r} outputs shape {shape[1:]} per sample, which is not spatial; "
        f"{method} needs a layer with an (h, w, channels) output{hint}."
    )


class CAMExplainer(Explainer):
    """Base of the class-activation-map methods: ``values`` are ``(N, H, W)`` maps.

    Subclasses implement :meth:`cam` with ``self.xp``. Parameters: ``layer`` (None: the
    backend's default, the last spatial layer), ``relu``, ``upsample``, ``normalize`` (see
    the module doc). Maps are computed in float32 on the model's device.
    """

    defaults = MappingProxyType({"layer": None, "relu": True, "upsample": True, "normalize": True})
    requires: ClassVar[tuple[type, ...]] = (SupportsGradients, SupportsLayers)
    #: several inputs: maps sized by the one image input (or ``explain_input``'s)
    several_inputs = True

    @abc.abstractmethod
    def cam(self, activations: Array, gradients: Array) -> Array:
        """The raw map ``(N, h, w)`` from activations and gradients ``(N, h, w, C)``
        (gradients None for methods that take none)."""

    def explain(self, x: Array, target: Target) -> Explanation:
        model, xp = self.model, self.xp
        assert isinstance(model, SupportsLayers)
        image = spatial_input(x, self.params.get("explain_input"))
        layer = self.params["layer"]
        layer = model.default_layer(x) if layer is None else model.resolve_layer(layer)
        activations, gradients, outputs = self.layer_arrays(x, target, layer)
        if activations.ndim != 4:
            raise not_spatial(self.name, model, layer, tuple(activations.shape), x)
        maps = self.cam(
            xp.astype(activations, xp.float32, copy=False),
            None if gradients is None else xp.astype(gradients, xp.float32, copy=False),
        )
        maps = postprocess(model, maps, image, **{k: self.params[k] for k in ("relu", "upsample", "normalize")})
        return self.result(x, maps, self.classes(target, outputs), outputs, layer=layer)

    def layer_arrays(self, x: Array, target: Target, layer: str) -> tuple[Array, Array | None, Array]:
        """The layer's activations, the target's gradients there and the outputs."""
        assert isinstance(self.model, SupportsGradients)
        grads = self.model.gradients(x, target, layer, batch_size=self.batch_size)
        return grads.activations, grads.gradients, grads.outputs



class _WeightedCAM(CAMExplainer):
    """Maps that are a weighted sum of activation channels: ``Σ_c w[n, c] · A[n, ..., c]``."""

    @abc.abstractmethod
    def weights(self, activations: Array, gradients: Array) -> Array:
        """Channel weights ``(N, C)``."""

    def cam(self, activations: Array, gradients: Array) -> Array:
        weights = self.weights(activations, gradients)
        return self.xp.sum(activations * weights[:, None, None, :], axis=-1)


class GradCAM(_WeightedCAM):
    """Grad-CAM (Selvaraju et al. 2017): ``L = Σ_c mean_hw(∂y/∂A_c) · A_c``.

    >>> limelight.explain(model, x, "gradcam", layer="layer4")   # doctest: +SKIP
    """

    name = "gradcam"

    def weights(self, activations: Array, gradients: Array) -> Array:
        return self.xp.mean(gradients, axis=(1, 2))


class GradCAMPlusPlus(_WeightedCAM):
    """Grad-CAM++ (Chattopadhyay et al. 2018), with the usual exp-output closed form:
    ``α = G² / (2G² + Σ_hw A · G³ + 1e-6)`` (0 where ``G = 0``),
    ``w_c = Σ_hw relu(G) · α``, ``L = Σ_c w_c · A_c``."""

    name = "gradcam++"

    def weights(self, activations: Array, gradients: Array) -> Array:
        xp = self.xp
        g2 = gradients**2
        g3 = g2 * gradients
        sum_a = xp.sum(activations, axis=(1, 2), keepdims=True)
        alpha = g2 / (2 * g2 + sum_a * g3 + 1e-6)
        alpha = xp.where(gradients != 0, alpha, xp.zeros_like(alpha))
        return xp.sum(xp.clip(gradients, min=0.0) * alpha, axis=(1, 2))


class XGradCAM(_WeightedCAM):
    """XGrad-CAM (Fu et al. 2020): ``w_c = Σ_hw G_c · A_c / (Σ_hw A_c + 1e-7)``,
    ``L = Σ_c w_c · A_c``."""

    name = "xgradcam"

    def weights(self, activations: Array, gradients: Array) -> Array:
        xp = self.xp
        sum_a = xp.sum(activations, axis=(1, 2), keepdims=True)
        return xp.sum(gradients * activations / (sum_a + 1e-7), axis=(1, 2))


class HiResCAM(CAMExplainer):
    """HiResCAM (Draelos & Carin 2020): ``L = Σ_c G_c ⊙ A_c`` (element-wise)."""

    name = "hirescam"

    def cam(self, activations: Array, gradients: Array) -> Array:
        return self.xp.sum(gradients * activations, axis=-1)


class LayerCAM(CAMExplainer):
    """LayerCAM (Jiang et al. 2021): ``L = Σ_c relu(G_c) ⊙ A_c``."""

    name = "layercam"

    def cam(self, activations: Array, gradients: Array) -> Array:
        return self.xp.sum(self.xp.clip(gradients, min=0.0) * activations, axis=-1)


def principal_projection(xp: Any, features: Array) -> Array:
    """Project each sample's ``(h, w, C)`` features on their first principal component.

    Returns ``(N, h, w)`` (computed in float64, returned float32). An SVD's sign is
    arbitrary; limelight fixes it so that the projection correlates positively with the
    channel-mean of ``features`` (the map points where the features are large).
    """
    n, h, w, c = (int(s) for s in features.shape)
    matrix = xp.reshape(xp.astype(features, xp.float64), (n, h * w, c))
    matrix = xp.where(xp.isfinite(matrix), matrix, xp.zeros_like(matrix))
    centred = matrix - xp.mean(matrix, axis=1, keepdims=True)
    _, _, vt = xp.linalg.svd(centred, full_matrices=False)
    projection = xp.sum(centred * vt[:, :1, :], axis=-1)  # (N, hw)
    mean_map = xp.mean(matrix, axis=2)
    agree = xp.sum(
        (projection - xp.mean(projection, axis=1, keepdims=True))
        * (mean_map - xp.mean(mean_map, axis=1, keepdims=True)),
        axis=1,
        keepdims=True,
    )
    projection = xp.where(agree < 0, -projection, projection)
    return xp.astype(xp.reshape(projection, (n, h, w)), xp.float32)


class EigenCAM(CAMExplainer):
    """Eigen-CAM (Muhammad & Yeasin 2020): ``L = A · v₁``, the projection of the centred
    activations on their first principal component. Class-agnostic: needs activations and
    outputs, no gradients (so it runs on gradient-free backends such as ONNX Runtime)."""

    name = "eigencam"
    requires = (SupportsLayers,)

    def layer_arrays(self, x: Array, target: Target, layer: str) -> tuple[Array, Array | None, Array]:
        assert isinstance(self.model, SupportsLayers)
        activations = self.model.activations(x, layer, batch_size=self.batch_size)
        return activations, None, self.model.predict(x, batch_size=self.batch_size)

    def cam(self, activations: Array, gradients: Array | None) -> Array:
        return principal_projection(self.xp, activations)


class EigenGradCAM(CAMExplainer):
    """Eigen-Grad-CAM: first principal component of ``G ⊙ A`` (class-specific)."""

    name = "eigengradcam"

    def cam(self, activations: Array, gradients: Array) -> Array:
        return principal_projection(self.xp, gradients * activations)


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
