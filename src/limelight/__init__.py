"""limelight: Grad-CAM-family heatmaps and SHAP attributions for PyTorch and Keras models.

>>> import limelight
>>> exp = limelight.explain(model, images, method="gradcam")   # doctest: +SKIP
>>> exp.values.shape                                            # (N, H, W) in [0, 1]
"""

from __future__ import annotations

from . import plugins  # callable: limelight.plugins() lists the installed plugins
from ._version import __version__
from .core.api import explain, explainers, wrap
from .core.errors import LimelightError
from .core.explainer import Explainer
from .core.explanation import Explanation
from .core.hookspecs import hookimpl
from .core.model import Gradients, Model
from .evaluation.table import evaluate

__all__ = [
    "Explainer",
    "Explanation",
    "Gradients",
    "LimelightError",
    "Model",
    "__version__",
    "evaluate",
    "explain",
    "explainers",
    "hookimpl",
    "plugins",
    "wrap",
]
