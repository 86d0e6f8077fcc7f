"""Contract tests for plugin authors: the checks limelight's own backends and explainers pass.

>>> from limelight.testing import check_backend, check_explainer
>>> check_explainer(MyExplainer)                         # doctest: +SKIP
>>> check_backend(make_my_model, my_inputs)              # doctest: +SKIP

Each check raises an :class:`AssertionError` naming what was wrong, so the calls are
ready-made pytest tests. Fixtures: ``pytest_plugins = ["limelight.testing.fixtures"]``.
Importing this package imports neither a framework nor pytest.
"""

from __future__ import annotations

from ._common import Report
from .backend import BatchProbe, check_backend
from .explainer import QUICK_PARAMS, check_explainer, quick_params
from .models import (
    TWIN_LAYERS,
    ModelCase,
    builtin_cases,
    cnn_weights,
    keras_cnn,
    small_images,
    torch_batch_probe,
    torch_cnn,
)
from .registration import registered

__all__ = [
    "BatchProbe",
    "ModelCase",
    "QUICK_PARAMS",
    "Report",
    "TWIN_LAYERS",
    "builtin_cases",
    "check_backend",
    "check_explainer",
    "cnn_weights",
    "keras_cnn",
    "quick_params",
    "registered",
    "small_images",
    "torch_batch_probe",
    "torch_cnn",
]
