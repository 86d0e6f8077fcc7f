"""limelight: Grad-CAM-family heatmaps and SHAP attributions for PyTorch and Keras models.

>>> import limelight
>>> exp = limelight.explain(model, images, method="gradcam")   # doctest: +SKIP
>>> exp.values.shape                                            # (N, H, W) in [0, 1]
"""

from __future__ import annotations

from . import plugins  # callable: limelight.plugins() lists the installed plugins
from .core.api import explain, explainers, wrap
from .core.errors import LimelightError
from .core.evaluate import evaluate
from .core.explainer import Explainer
from .core.explanation import Explanation
from .core.hookspecs import hookimpl
from .core.model import Gradients, Model

__version__ = "0.1.0"

__all__ = [
    "Explainer",
    "Explanation",
    "Gradients",
    "LimelightError",
    "Model",
    "__version__",
    "explain",
    "evaluate",
    "explainers",
    "hookimpl",
    "plugins",
    "wrap",
]
