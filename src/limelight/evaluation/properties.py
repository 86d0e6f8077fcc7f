"""Properties of a map on its own (no mask, no model): ``completeness`` of additive
explanations (Σφ against f(x) − base value), ``sparseness`` (Gini index) and ``complexity``
(entropy)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .metric import Metric, check_class_explanation

__all__ = ["Completeness", "Complexity", "Sparseness"]


class Completeness(Metric):
    """Relative completeness error of an additive explanation,
    ``|Σφ − (f(x) − base)| / |f(x) − base|`` with ``f`` the explained output and ``base`` the
    explanation's ``base_values`` (lower is better). NaN for maps that are not additive
    (CAMs, the baselines): the property does not apply to them."""

    name = "completeness"
    higher_is_better = False
    needs_class = True

    def score(self, maps: np.ndarray, explanation: Any = None, **_: Any) -> np.ndarray:
        if explanation is None or explanation.base_values is None:
            return np.full(len(maps), np.nan)
        check_class_explanation(explanation, "the completeness metric (f(x) is the explained class's output)")
        values, base, targets = explanation.values, explanation.base_values, explanation.targets
        if targets.ndim == 2:  # several targets per sample: the first, as relevance_map does
            values, base, targets = values[..., 0], base[:, 0], targets[:, 0]
        total = values.reshape(len(values), -1).sum(axis=1, dtype=np.float64)
        gap = explanation.outputs[np.arange(len(targets)), targets].astype(np.float64) - base
        return np.abs(total - gap) / np.maximum(np.abs(gap), 1e-12)


class Complexity(Metric):
    """Entropy of the normalized |map| (Bhatt et al. 2020), in nats; lower = simpler."""

    name = "complexity"
    higher_is_better = False

    def score(self, maps: np.ndarray, **_: Any) -> np.ndarray:
        flat = np.abs(maps.reshape(len(maps), -1))
        total = flat.sum(axis=1, keepdims=True)
        p = np.divide(flat, total, out=np.zeros_like(flat), where=total > 0)
        logs = np.log(p, out=np.zeros_like(p), where=p > 0)
        return -(p * logs).sum(axis=1)


class Sparseness(Metric):
    """Gini index of |map| (Chalasani et al. 2020): 1 = all relevance on one pixel, 0 = flat."""

    name = "sparseness"

    def score(self, maps: np.ndarray, **_: Any) -> np.ndarray:
        flat = np.sort(np.abs(maps.reshape(len(maps), -1)), axis=1)
        d = flat.shape[1]
        index = np.arange(1, d + 1)
        total = flat.sum(axis=1)
        gini = ((2 * index - d - 1) * flat).sum(axis=1) / (d * np.where(total > 0, total, 1))
        return np.where(total > 0, gini, 0.0)
