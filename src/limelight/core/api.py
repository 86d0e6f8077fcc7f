"""The functions of limelight's public face: :func:`explain`, :func:`wrap` and the listings."""

from __future__ import annotations

from typing import Any

from .errors import UnsupportedModelError
from .explanation import Explanation
from .model import Model
from .registry import PluginInfo, registry
from .targets import TargetsLike

__all__ = ["explain", "wrap", "explainers", "plugins"]


def wrap(model: object) -> Model:
    """Adapt a native model (torch ``nn.Module``, Keras model, ...) to :class:`Model`.

    An already wrapped :class:`Model` is returned as is.
    """
    if isinstance(model, Model):
        return model
    wrapped = registry.wrap(model)
    if wrapped is None:
        backends = [p.name for p in registry.plugins() if p.backend]
        raise UnsupportedModelError(
            f"no installed backend can explain a {type(model).__module__}.{type(model).__qualname__}. "
            f"Backends: {', '.join(backends) or 'none'}. limelight takes torch.nn.Module and "
            "Keras 3 models on the TensorFlow backend; wrap anything else in a "
            "limelight.Model subclass."
        )
    return wrapped


def explain(
    model: object,
    inputs: Any,
    method: str = "gradcam",
    targets: TargetsLike = None,
    layer: Any = None,
    batch_size: int | None = None,
    **params: Any,
) -> Explanation:
    """Explain ``model``'s outputs on ``inputs`` with ``method``.

    Args:
        model: a native model (torch ``nn.Module`` taking NCHW, Keras model taking NHWC) or a
            :class:`Model`.
        inputs: a batch as the model is fed: a torch tensor / array in NCHW for torch, an
            array in NHWC for Keras; ``(N, D)`` for flat inputs. A model fed several inputs
            takes a tuple (torch: positional arguments; Keras: inputs in order, a list too)
            or a dict (torch: keyword arguments; Keras: named inputs); ``values`` come back in
            the same structure, and ``background=`` is given in it too.
        method: a registered explainer name (see :func:`explainers`).
        targets: None (each sample's predicted class), an int, one int per sample,
            ``(N, T)`` ints for methods that explain several outputs at once (SHAP), or a
            :class:`~limelight.core.targets.Target`.
        layer: the layer to explain at, for methods that use one (a name from
            ``wrap(model).layers()``, or a layer object); None picks the method's default.
        batch_size: samples per framework call; None processes the batch at once (SHAP
            methods: 50).
        **params: method-specific parameters (see the method's ``defaults``),
            ``explain_input`` (several inputs: the dict key or tuple position of the one input
            to explain; SHAP methods then attribute it alone, the others held at each
            sample's values, and CAM maps are sized by it), and ``precision`` (``"auto"``, ``"highest"``: TF32 off, ``"default"``: your global
            setting), recorded in ``params``.

    Returns:
        An :class:`Explanation` whose ``values`` are channels-last at input resolution.
    """
    wrapped = wrap(model)
    explainer_cls = registry.explainer(method)
    if layer is not None:
        params["layer"] = layer
    explainer = explainer_cls(wrapped, batch_size=batch_size, **params)
    return explainer(wrapped.canonical(inputs), targets)


def explainers() -> list[str]:
    """Names of every registered explainer, sorted."""
    return list(registry.explainers())


def plugins() -> list[PluginInfo]:
    """Every installed plugin (built-in or entry point), what it provides, and any load error."""
    return registry.plugins()
