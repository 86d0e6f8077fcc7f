"""limelight-onnx: an ONNX Runtime backend for limelight.

Installed, it lets :func:`limelight.explain` take ``.onnx`` files, ONNX ``bytes``,
``onnx.ModelProto`` and ``onnxruntime.InferenceSession`` objects, and ``limelight explain
--model model.onnx`` load them. Gradient-free methods run on it (``eigencam``,
``shap-partition``, and any method that needs only predictions, layer activations or
activation edits); gradient methods are refused with an ``UnsupportedError``.

>>> import limelight
>>> exp = limelight.explain("resnet18.onnx", images_nchw, method="shap-partition")  # doctest: +SKIP
"""

from __future__ import annotations

from .model import OnnxModel, OnnxModelError, detect_layout

__version__ = "0.1.0"

__all__ = ["OnnxModel", "OnnxModelError", "__version__", "detect_layout"]
