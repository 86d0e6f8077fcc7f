"""The built-in metrics plugin (``limelight_register_metrics``): every metric of
:mod:`~limelight.evaluation.localisation`, :mod:`~limelight.evaluation.faithfulness` and
:mod:`~limelight.evaluation.properties`.

Localisation (need masks): ``pointing-game``, ``energy-pointing-game``, ``relevance-mass``,
``relevance-rank``. Faithfulness (need the model): ``deletion``, ``insertion``,
``road-morf``, ``road-lerf``, ``confidence-drop``, ``confidence-increase``. Additive methods:
``completeness``. Complexity: ``sparseness`` and ``complexity``.
"""

from __future__ import annotations

from collections.abc import Callable

from ..core.hookspecs import hookimpl
from .faithfulness import ConfidenceDrop, ConfidenceIncrease, Deletion, Insertion, RoadLerf, RoadMorf
from .localisation import EnergyPointingGame, PointingGame, RelevanceMass, RelevanceRank
from .metric import Metric
from .properties import Completeness, Complexity, Sparseness

__all__ = ["BUILTIN_METRICS", "limelight_register_metrics"]

BUILTIN_METRICS: tuple[type[Metric], ...] = (
    PointingGame, EnergyPointingGame, RelevanceMass, RelevanceRank, Deletion, Insertion,
    RoadMorf, RoadLerf, ConfidenceDrop, ConfidenceIncrease, Completeness, Sparseness, Complexity,
)


@hookimpl(trylast=True)
def limelight_register_metrics(register: Callable[[type], None]) -> None:
    """Register the built-in metrics."""
    for cls in BUILTIN_METRICS:
        register(cls)
