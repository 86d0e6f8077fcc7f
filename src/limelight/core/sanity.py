"""Moved to :mod:`limelight.evaluation.sanity`; this name keeps working (nothing inside
limelight imports it)."""

from __future__ import annotations

from ..evaluation.sanity import cascading_randomization, full_randomization, random_logit, spearman

__all__ = ["cascading_randomization", "full_randomization", "random_logit", "spearman"]
