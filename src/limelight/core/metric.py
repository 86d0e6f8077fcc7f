"""Moved to :mod:`limelight.evaluation.metric`; this name keeps working (nothing inside
limelight imports it)."""

from __future__ import annotations

from ..evaluation.metric import Metric, relevance_map

__all__ = ["Metric", "relevance_map"]
