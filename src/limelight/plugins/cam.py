"""The Grad-CAM family, written once against :class:`limelight.Model` and its ``xp``.

Each method is a small class that says only how its map is computed from the layer's
activations ``A`` and gradients ``G`` (both ``(N, h, w, C)``, channels-last, backend
arrays on the model's device; ``(N, l, C)`` for 1-D signals and ``(N, d, h, w, C)`` for
volumes, which give ``(N, L)`` and ``(N, D, H, W)`` maps); the shared
:class:`CAMExplainer` base does the rest.

Token layers of vision transformers, ``(N, T, C)`` for image inputs, become ``(N, h, w, C)``
before the method sees them: the prefix tokens (class, distillation, registers) in front are
dropped and the grid is inferred from ``T`` and the input's ``(H, W)``
(:func:`~limelight.core.tokens.infer_grid`); ``reshape=(h, w)`` sets the grid (the
``T - h·w`` tokens in front are dropped). Gradients get the same reshape.

Post-processing (the defaults, each can be turned off for raw maps):

1. ``relu=True``: keep the positive part of the map.
2. ``upsample=True``: bilinear resize to the input's ``(H, W)`` with half-pixel centres
   (cv2 ``INTER_LINEAR`` ≡ torch ``align_corners=False`` ≡ ``tf.image.resize``); linear
   and trilinear, same convention, for 1-D and 3-D maps.
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

from ..core.errors import InputError, LayerError
from ..core.explainer import Explainer
from ..core.explanation import Explanation
from ..core.hookspecs import hookimpl
from ..core.inputs import spatial_input
from ..core.model import Array, Model, SupportsGradients, SupportsLayers
from ..core.ops import minmax_normalize
from ..core.targets import Target
from ..core.tokens import grid_from_reshape, infer_grid, tokens_to_grid

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
    "to_spatial",
    "weighted_sum",
]


def postprocess(model: Model, maps: Array, x: Array, *, relu: bool, upsample: bool, normalize: bool) -> Array:
    """The family's post-processing of raw ``(N, h, w)`` maps for inputs ``x``: ReLU,
    bilinear upsampling to ``x``'s ``(H, W)`` with half-pixel centres, per-map min-max.
    Maps ``(N, *s)`` of any rank ``k = len(s)`` are resized to ``x.shape[1:1 + k]`` (the
    spatial axes of channels-last inputs: ``(L,)`` of ``(N, L, C)``, ``(D, H, W)`` of
    ``(N, D, H, W, C)``, ``(H, W)`` of ``(N, H, W)`` grayscale batches)."""
    xp = model.xp
    if relu:
        maps = xp.clip(maps, min=0.0)
    rank = maps.ndim - 1
    if upsample and rank >= 1 and x.ndim >= rank + 1:
        maps = model.resize(maps, tuple(int(s) for s in x.shape[1 : rank + 1]))
    if normalize:
        maps = minmax_normalize(maps, xp)
    return maps


def to_spatial(
    xp: Any, x: Array, layer: str, activations: Array, gradients: Array | None, reshape: Any = None
) -> tuple[Array, Array | None] | None:
    """A layer's channels-last activations and gradients as maps of positions ``(N, *s, C)``.

    ``(N, h, w, C)`` and ``(N, d, h, w, C)`` pass; ``(N, l, C)`` passes for 3-D inputs (1-D
    signals). Tokens ``(N, T, C)`` of image inputs ``(N, H, W, C)`` become ``(N, h, w, C)``
    (prefix tokens dropped, grid from :func:`~limelight.core.tokens.infer_grid`), or the
    grid ``reshape`` (a LayerError when the tokens fit no grid). None: not spatial.
    """
    ndim = activations.ndim
    if reshape is not None:
        if ndim != 3:
            raise LayerError(
                f"reshape= arranges token layers (N, T, C) on a grid; layer {layer!r} outputs shape "
                f"{tuple(activations.shape)[1:]} per sample: leave reshape out."
            )
        prefix, grid = grid_from_reshape(reshape, int(activations.shape[1]))
    elif ndim == 3 and x.ndim >= 4:
        tokens = int(activations.shape[1])
        found = infer_grid(tokens, tuple(int(s) for s in x.shape[1:3])) if x.ndim == 4 else None
        if found is None:
            raise LayerError(
                f"layer {layer!r} outputs {tokens} tokens, which form no grid of the input's spatial "
                f"size {tuple(int(s) for s in x.shape[1:-1])} after 0 to 8 class/register tokens; "
                "pass reshape=(h, w) with the grid of patch tokens (the tokens in front are dropped)."
            )
        prefix, grid = found
    elif ndim in (4, 5) or (ndim == 3 and x.ndim == 3):
        return activations, gradients
    else:
        return None
    reshaped = None if gradients is None else tokens_to_grid(xp, gradients, prefix, grid)
    return tokens_to_grid(xp, activations, prefix, grid), reshaped


def not_spatial(method: str, model: SupportsLayers, layer: str, shape: tuple[int, ...], x: Array) -> LayerError:
    """The error for a layer whose activations (``shape``, batch first) are not ``(h, w, C)``."""
    try:
        default = model.default_layer(x)
        hint = f", such as the default {default!r}" if default != layer else ""
    except LayerError:
        hint = "; this model has none"
    return LayerError(
        f"layer {layer!r} outputs shape {shape[1:]} per sample, which is not spatial; "
        f"{method} needs a layer with an (h, w, channels) output{hint}."
    )


class CAMExplainer(Explainer):
    """Base of the class-activation-map methods: ``values`` are ``(N, H, W)`` maps.

    Subclasses implement :meth:`cam` with ``self.xp``. Parameters: ``layer`` (None: the
    backend's default, the last spatial layer; the first norm of the last block of a vision
    transformer), ``reshape`` (the ``(h, w)`` grid of a token layer; None: inferred),
    ``relu``, ``upsample``, ``normalize`` (see the module doc). Maps are computed in float32
    on the model's device.
    """

    defaults = MappingProxyType({"layer": None, "reshape": None, "relu": True, "upsample": True, "normalize": True})
    requires: ClassVar[tuple[type, ...]] = (SupportsGradients, SupportsLayers)
    #: several inputs: maps sized by the one image input (or ``explain_input``'s)
    several_inputs = True

    @abc.abstractmethod
    def cam(self, activations: Array, gradients: Array) -> Array:
        """The raw map ``(N, h, w)`` from activations and gradients ``(N, h, w, C)``
        (gradients None for methods that take none); ``(N, *s)`` from ``(N, *s, C)``."""

    def explain(self, x: Array, target: Target) -> Explanation:
        model, xp = self.model, self.xp
        assert isinstance(model, SupportsLayers)
        image = spatial_input(x, self.params.get("explain_input"))
        if image is not x and image.ndim < 3:  # several inputs: a table named to map
            raise InputError(
                f"{self.name} maps positions of an image or signal input; the input it would size its "
                f"maps by has shape {tuple(image.shape)}: name the image input with explain_input=."
            )
        layer = self.params["layer"]
        layer = model.default_layer(x) if layer is None else model.resolve_layer(layer)
        activations, gradients, outputs = self.layer_arrays(x, target, layer)
        spatial = to_spatial(xp, image, layer, activations, gradients, self.params["reshape"])
        if spatial is None:
            raise not_spatial(self.name, model, layer, tuple(activations.shape), x)
        activations, gradients = spatial
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



def weighted_sum(xp: Any, activations: Array, weights: Array) -> Array:
    """``Σ_c w[n, c] · A[n, ..., c]``: maps ``(N, *s)`` from ``(N, *s, C)`` and ``(N, C)``."""
    shape = (int(weights.shape[0]), *([1] * (activations.ndim - 2)), int(weights.shape[1]))
    return xp.sum(activations * xp.reshape(weights, shape), axis=-1)


def _positions(a: Array) -> tuple[int, ...]:
    """The position axes of channels-last ``(N, *s, C)``: ``(1, 2)`` for ``(N, h, w, C)``."""
    return tuple(range(1, a.ndim - 1))


class _WeightedCAM(CAMExplainer):
    """Maps that are a weighted sum of activation channels: ``Σ_c w[n, c] · A[n, ..., c]``."""

    @abc.abstractmethod
    def weights(self, activations: Array, gradients: Array) -> Array:
        """Channel weights ``(N, C)``."""

    def cam(self, activations: Array, gradients: Array) -> Array:
        return weighted_sum(self.xp, activations, self.weights(activations, gradients))


class GradCAM(_WeightedCAM):
    """Grad-CAM (Selvaraju et al. 2017): ``L = Σ_c mean_hw(∂y/∂A_c) · A_c``.

    >>> limelight.explain(model, x, "gradcam", layer="layer4")   # doctest: +SKIP
    """

    name = "gradcam"

    def weights(self, activations: Array, gradients: Array) -> Array:
        return self.xp.mean(gradients, axis=_positions(gradients))


class GradCAMPlusPlus(_WeightedCAM):
    """Grad-CAM++ (Chattopadhyay et al. 2018), with the usual exp-output closed form:
    ``α = G² / (2G² + Σ_hw A · G³ + 1e-6)`` (0 where ``G = 0``),
    ``w_c = Σ_hw relu(G) · α``, ``L = Σ_c w_c · A_c``."""

    name = "gradcam++"

    def weights(self, activations: Array, gradients: Array) -> Array:
        xp = self.xp
        g2 = gradients**2
        g3 = g2 * gradients
        axes = _positions(activations)
        sum_a = xp.sum(activations, axis=axes, keepdims=True)
        alpha = g2 / (2 * g2 + sum_a * g3 + 1e-6)
        alpha = xp.where(gradients != 0, alpha, xp.zeros_like(alpha))
        return xp.sum(xp.clip(gradients, min=0.0) * alpha, axis=axes)


class XGradCAM(_WeightedCAM):
    """XGrad-CAM (Fu et al. 2020): ``w_c = Σ_hw G_c · A_c / (Σ_hw A_c + 1e-7)``,
    ``L = Σ_c w_c · A_c``."""

    name = "xgradcam"

    def weights(self, activations: Array, gradients: Array) -> Array:
        xp = self.xp
        axes = _positions(activations)
        sum_a = xp.sum(activations, axis=axes, keepdims=True)
        return xp.sum(gradients * activations / (sum_a + 1e-7), axis=axes)


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

    Returns ``(N, h, w)`` (``(N, *s)`` for ``(N, *s, C)`` features; computed in float64,
    returned float32). An SVD's sign is
    arbitrary; limelight fixes it so that the projection correlates positively with the
    channel-mean of ``features`` (the map points where the features are large).
    """
    n, *spatial, c = (int(s) for s in features.shape)
    matrix = xp.reshape(xp.astype(features, xp.float64), (n, -1, c))
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
    return xp.astype(xp.reshape(projection, (n, *spatial)), xp.float32)


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
