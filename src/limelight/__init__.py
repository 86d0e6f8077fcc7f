"""limelight: Grad-CAM-family heatmaps and SHAP attributions for PyTorch and Keras models.

>>> import limelight
>>> exp = limelight.explain(model, images, method="gradcam")   # doctest: +SKIP
>>> exp.values.shape                                            # (N, H, W) in [0, 1]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import plugins  # callable: limelight.plugins() lists the installed plugins
from ._version import __version__
from .core.api import explain, explainers, wrap
from .core.errors import LimelightError
from .core.explainer import Explainer
from .core.explanation import Explanation
from .core.hookspecs import hookimpl
from .core.model import Gradients, Model
from .evaluation.table import evaluate

if TYPE_CHECKING:  # imported on first use: see _LAZY
    from .streaming.evaluate import evaluate_dataset
    from .streaming.run import explain_dataset
    from .streaming.store import open_results

__all__ = [
    "Explainer",
    "Explanation",
    "Gradients",
    "LimelightError",
    "Model",
    "__version__",
    "evaluate",
    "evaluate_dataset",
    "explain",
    "explain_dataset",
    "explainers",
    "hookimpl",
    "open_results",
    "plugins",
    "wrap",
]

#: Public names imported on first use (``limelight.streaming`` pulls in more than ``import
#: limelight`` should): name -> module.
_LAZY = {
    "evaluate_dataset": ".streaming.evaluate",
    "explain_dataset": ".streaming.run",
    "open_results": ".streaming.store",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'limelight' has no attribute {name!r}")
