"""Moved to :mod:`limelight.evaluation.table`; this name keeps working (nothing inside
limelight imports it)."""

from __future__ import annotations

from ..evaluation.table import BASELINES, Evaluation, baseline_maps, evaluate

__all__ = ["BASELINES", "Evaluation", "baseline_maps", "evaluate"]
