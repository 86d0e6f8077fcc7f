"""Localisation metrics: how well a map falls on a ground-truth mask ``(N, H, W)``.

``pointing-game`` (optional pixel ``tolerance``, as the original paper allowed 15 px),
``energy-pointing-game`` (the mask's bounding box), ``relevance-mass`` and
``relevance-rank``. Host-only: they never run the model.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import numpy as np

from .metric import Metric

__all__ = ["EnergyPointingGame", "PointingGame", "RelevanceMass", "RelevanceRank"]


class PointingGame(Metric):
    """1 if the map's maximum lies on the mask (within ``tolerance`` pixels), else 0."""

    name = "pointing-game"
    needs_mask = True
    defaults = MappingProxyType({"tolerance": 0.0})

    def score(self, maps: np.ndarray, masks: np.ndarray, **_: Any) -> np.ndarray:
        hits = np.zeros(len(maps))
        for i, (m, mask) in enumerate(zip(maps, masks, strict=True)):
            peak = np.array(np.unravel_index(np.argmax(m), m.shape))
            inside = np.argwhere(mask)
            if len(inside):
                hits[i] = np.sqrt(((inside - peak) ** 2).sum(1)).min() <= self.params["tolerance"]
        return hits


class EnergyPointingGame(Metric):
    """Share of the (positive) relevance inside the mask's bounding box (Score-CAM)."""

    name = "energy-pointing-game"
    needs_mask = True

    def score(self, maps: np.ndarray, masks: np.ndarray, **_: Any) -> np.ndarray:
        out = np.zeros(len(maps))
        for i, (m, mask) in enumerate(zip(maps, masks, strict=True)):
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            box = np.zeros_like(mask, bool)
            if len(rows):
                box[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = True
            positive = np.maximum(m, 0)
            out[i] = positive[box].sum() / positive.sum() if positive.sum() > 0 else 0.0
        return out


class RelevanceMass(Metric):
    """Share of the (positive) relevance inside the mask (Arras et al. 2022)."""

    name = "relevance-mass"
    needs_mask = True

    def score(self, maps: np.ndarray, masks: np.ndarray, **_: Any) -> np.ndarray:
        positive = np.maximum(maps, 0)
        total = positive.sum(axis=(1, 2))
        inside = (positive * masks).sum(axis=(1, 2))
        return np.divide(inside, total, out=np.zeros_like(total), where=total > 0)


class RelevanceRank(Metric):
    """Share of the K most relevant pixels that lie on the mask, K = mask size."""

    name = "relevance-rank"
    needs_mask = True

    def score(self, maps: np.ndarray, masks: np.ndarray, **_: Any) -> np.ndarray:
        out = np.zeros(len(maps))
        for i, (m, mask) in enumerate(zip(maps, masks, strict=True)):
            k = int(mask.sum())
            if k:
                top = np.argsort(-m.ravel(), kind="stable")[:k]
                out[i] = mask.ravel()[top].mean()
        return out
