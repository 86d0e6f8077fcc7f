"""The functions of limelight's public face: :func:`explain`, :func:`wrap` and the listings."""

from __future__ import annotations

import copy
import os
from typing import Any

from .errors import UnsupportedModelError
from .explainer import several_inputs_error
from .explanation import Explanation
from .inputs import several
from .model import Model
from .outputs import OutputSelector, check_selector
from .registry import PluginInfo, registry
from .targets import TargetsLike

__all__ = ["explain", "wrap", "explainers", "plugins"]


def wrap(model: object, output: OutputSelector = None) -> Model:
    """Adapt a native model (torch ``nn.Module``, Keras model, ...) to :class:`Model`.

    ``output`` picks the tensor to explain from structured outputs: a key or attribute name
    (``"logits"``, ``"out"``; a Keras output name), a position (int) in a tuple / list, or a
    callable ``fn(raw_outputs) -> tensor``; None: a single tensor, else a mapping's
    ``"logits"`` or ``"out"`` (see :mod:`limelight.core.outputs`). It is stored as
    ``Model.output``. An already wrapped :class:`Model` is returned as is, or, with
    ``output`` given, as a copy with it set. A path (``str`` / ``os.PathLike``) of a model file
    is loaded as ``limelight explain --model FILE`` loads it (TorchScript ``.pt``/``.pth``,
    ``.keras``, a plugin's format), on every call: wrap it once and pass the :class:`Model` to reuse it.
    """
    output = check_selector(output)
    if isinstance(model, Model):
        if output is None or model.output is output:
            return model
        changed = copy.copy(model)
        changed.output = output
        return changed
    wrapped = registry.wrap(model)
    if wrapped is None and isinstance(model, str | os.PathLike) and os.path.isfile(model):
        return wrap(registry.load_model(os.fspath(model)).model, output)  # as --model FILE (maybe a Model)
    if wrapped is None and isinstance(model, str | os.PathLike):
        raise UnsupportedModelError(
            f"the model {os.fspath(model)!r} is a string but no file. Pass a model object, or the path "
            "of a model file (a TorchScript .pt, a .keras, or what an installed plugin reads, e.g. "
            ".onnx); a spec such as 'torchvision:resnet18' is loaded with "
            "limelight.zoo.load_model(spec, weights=...).model."
        )
    if wrapped is None:
        backends = [p.name for p in registry.plugins() if p.backend]
        raise UnsupportedModelError(
            f"no installed backend can explain a {type(model).__module__}.{type(model).__qualname__}. "
            f"Backends: {', '.join(backends) or 'none'}. limelight takes torch.nn.Module and "
            "Keras 3 models on the TensorFlow backend; wrap anything else in a "
            "limelight.Model subclass."
        )
    if output is not None:
        wrapped.output = output
    return wrapped


def explain(
    model: object,
    inputs: Any,
    method: str = "gradcam",
    targets: TargetsLike = None,
    layer: Any = None,
    batch_size: int | None = None,
    output: OutputSelector = None,
    **params: Any,
) -> Explanation:
    """Explain ``model``'s outputs on ``inputs`` with ``method``.

    Args:
        model: a native model (torch ``nn.Module`` taking NCHW, Keras model taking NHWC; a
            ``torch.compile`` / ``DataParallel`` one is explained through the module it
            wraps), a :class:`Model`, or a model file's path (see :func:`wrap`).
        inputs: a batch as the model is fed: a torch tensor / array in NCHW for torch, an
            array in NHWC for Keras; ``(N, D)`` for flat inputs. A model fed several inputs
            takes a tuple (torch: positional arguments; Keras: inputs in order, a list too)
            or a dict (torch: keyword arguments; Keras: named inputs); ``values`` come back in
            the same structure, and ``background=`` is given in it too.
        method: a registered explainer name (see :func:`explainers`).
        targets: None (each sample's predicted class), an int, one int per sample,
            ``(N, T)`` ints for methods that explain several outputs at once (SHAP), or a
            a target object from :mod:`limelight.targets` (``Class``, ``Region`` for dense
            outputs, ``Function``, ``Similarity``).
        layer: the layer to explain at, for methods that use one (a name from
            ``wrap(model).layers()``, or a layer object); None picks the method's default.
        batch_size: samples per framework call; None processes the batch at once (SHAP
            methods: 50).
        output: which tensor of structured outputs to explain (a key, attribute name,
            Keras output name, position or callable; see :func:`wrap`); recorded in
            ``params["output"]``. Dense outputs (segmentation, ``(N, K, H, W)`` from torch)
            are explained channels-last, ``(N, H, W, K)``.
        **params: method-specific parameters (see the method's ``defaults``),
            ``explain_input`` (several inputs: the dict key or tuple position of the one input
            to explain; SHAP methods then attribute it alone, the others held at each
            sample's values, and CAM maps are sized by it), and ``precision`` (``"auto"``,
            ``"highest"``: TF32 off, ``"default"``: your global
            setting), recorded in ``params``.

    Returns:
        An :class:`Explanation` whose ``values`` are channels-last at input resolution.
    """
    wrapped = wrap(model, output=output)
    explainer_cls = registry.explainer(method)
    if layer is not None:
        params["layer"] = layer
    explainer = explainer_cls(wrapped, batch_size=batch_size, **params)
    x = wrapped.canonical(inputs)
    if several(x) and not explainer_cls.several_inputs:
        able = [name for name, cls in registry.explainers().items() if cls.several_inputs]
        raise several_inputs_error(method, type(x).__name__, ", ".join(able) or "none")
    return explainer(x, targets)


def explainers() -> list[str]:
    """Names of every registered explainer, sorted."""
    return list(registry.explainers())


def plugins() -> list[PluginInfo]:
    """Every installed plugin (built-in or entry point), what it provides, and any load error."""
    return registry.plugins()
