"""Moved to :mod:`limelight.evaluation.benchmark`; this name keeps working (nothing inside
limelight imports it)."""

from __future__ import annotations

from ..evaluation.benchmark import method_params, reading, report, run

__all__ = ["method_params", "reading", "report", "run"]
