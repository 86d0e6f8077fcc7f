"""Moved to :mod:`limelight.evaluation` (the built-in metrics plugin is now
:mod:`limelight.evaluation.metrics`); these names keep working (nothing inside limelight
imports this module, and it is not a plugin any more)."""

from __future__ import annotations

from ..evaluation.faithfulness import (
    ConfidenceDrop,
    ConfidenceIncrease,
    Deletion,
    Insertion,
    RoadLerf,
    RoadMorf,
    _baseline_image,
    _box_blur,
    noisy_linear_imputation,
)
from ..evaluation.localisation import EnergyPointingGame, PointingGame, RelevanceMass, RelevanceRank
from ..evaluation.metrics import BUILTIN_METRICS
from ..evaluation.properties import Completeness, Complexity, Sparseness

__all__ = [
    "BUILTIN_METRICS",
    "Completeness",
    "Complexity",
    "ConfidenceDrop",
    "ConfidenceIncrease",
    "Deletion",
    "EnergyPointingGame",
    "Insertion",
    "PointingGame",
    "RelevanceMass",
    "RelevanceRank",
    "RoadLerf",
    "RoadMorf",
    "Sparseness",
    "_baseline_image",
    "_box_blur",
    "noisy_linear_imputation",
]
