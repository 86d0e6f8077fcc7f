"""The limelight plugin of limelight-onnx, registered as the entry point ``onnx`` of the
``limelight`` group. It implements two hooks:

* ``limelight_wrap_model``: ``.onnx`` paths, ONNX ``bytes``, ``onnx.ModelProto`` and
  ``onnxruntime.InferenceSession`` objects become an :class:`~limelight_onnx.OnnxModel`;
* ``limelight_load_model``: ``limelight explain --model model.onnx``.

Importing this module (limelight does so whenever it loads its plugins) imports neither
onnx nor onnxruntime.
"""

from __future__ import annotations

import sys

from limelight.core.hookspecs import LoadedModel, hookimpl
from limelight.core.model import Model

from .model import OnnxModel, OnnxModelError, is_onnx_path

__all__ = ["limelight_load_model", "limelight_wrap_model"]


@hookimpl
def limelight_wrap_model(model: object) -> Model | None:
    """An :class:`OnnxModel` for a ``.onnx`` path (``str`` or ``os.PathLike``), ``bytes``
    of a serialized model, an ``onnx.ModelProto`` or an ``onnxruntime.InferenceSession``;
    None for anything else. onnx is imported only for those; a ModelProto or a session
    means its module is already imported, so it is looked up in ``sys.modules``."""
    if is_onnx_path(model) or isinstance(model, bytes | bytearray):
        return OnnxModel(model)
    onnx, ort = sys.modules.get("onnx"), sys.modules.get("onnxruntime")
    if onnx is not None and isinstance(model, onnx.ModelProto):
        return OnnxModel(model)
    if ort is not None and isinstance(model, ort.InferenceSession):
        return OnnxModel(model)
    return None


@hookimpl
def limelight_load_model(spec: str, weights: str | None) -> LoadedModel | None:
    """``model.onnx``: the file, with the input size its graph fixes ((224, 224), the CLI's
    own default, when the graph leaves height or width open; ``--size`` overrides both) and
    preprocessing into
    the graph's layout and dtype, without normalisation (see :meth:`OnnxModel.preprocess`).
    ONNX files carry their weights: ``weights`` must be None."""
    if not is_onnx_path(spec):
        return None
    if weights is not None:
        raise OnnxModelError(
            f"--weights {weights!r}: an ONNX file carries its own weights; leave --weights out for {spec}."
        )
    model = OnnxModel(spec)
    return LoadedModel(
        model=model,
        framework=model.framework,
        class_names=_class_names(model),
        preprocess=model.preprocess,
        input_size=model.input_size() or (224, 224),
    )


def _class_names(model: OnnxModel) -> list[str] | None:
    """Class names from the model's metadata, when it has a ``class_names`` entry holding a
    JSON list of strings, one per output column (``onnx.helper.set_model_props(proto,
    {"class_names": json.dumps(names)})``)."""
    import json

    try:
        text = model.metadata().get("class_names")
        names = json.loads(text) if text else None
    except ValueError:
        return None
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        return names
    return None
