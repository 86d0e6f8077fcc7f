"""Evaluation: metrics (plugins), randomisation sanity checks, :func:`evaluate` and the
benchmark on the shapes dataset.

- :mod:`~limelight.evaluation.metric`: the :class:`Metric` base class and
  :func:`relevance_map`;
- :mod:`~limelight.evaluation.localisation`, :mod:`~limelight.evaluation.faithfulness`,
  :mod:`~limelight.evaluation.properties`: the built-in metrics, registered by the plugin
  module :mod:`~limelight.evaluation.metrics`;
- :mod:`~limelight.evaluation.sanity`: randomisation checks (Adebayo et al. 2018);
- :mod:`~limelight.evaluation.table`: :func:`evaluate`, methods × metrics in one table;
- :mod:`~limelight.evaluation.benchmark`: every method × every metric on the demo model
  (``limelight benchmark``).
"""

from __future__ import annotations

from .faithfulness import (
    ConfidenceDrop,
    ConfidenceIncrease,
    Deletion,
    Insertion,
    RoadLerf,
    RoadMorf,
    noisy_linear_imputation,
)
from .localisation import EnergyPointingGame, PointingGame, RelevanceMass, RelevanceRank
from .metric import DEFAULT_BATCH_SIZE, Metric, relevance_map
from .metrics import BUILTIN_METRICS
from .properties import Completeness, Complexity, Sparseness
from .sanity import cascading_randomization, full_randomization, random_logit, spearman
from .table import BASELINES, Evaluation, baseline_maps, evaluate

__all__ = [
    "BASELINES",
    "BUILTIN_METRICS",
    "DEFAULT_BATCH_SIZE",
    "Completeness",
    "Complexity",
    "ConfidenceDrop",
    "ConfidenceIncrease",
    "Deletion",
    "EnergyPointingGame",
    "Evaluation",
    "Insertion",
    "Metric",
    "PointingGame",
    "RelevanceMass",
    "RelevanceRank",
    "RoadLerf",
    "RoadMorf",
    "Sparseness",
    "baseline_maps",
    "cascading_randomization",
    "evaluate",
    "full_randomization",
    "noisy_linear_imputation",
    "random_logit",
    "relevance_map",
    "spearman",
]
