"""Randomisation sanity checks (Adebayo et al. 2018): an explanation that does not change when
the model's weights are randomised, or when another class is explained, is not explaining
the model. Needs the backend capability ``randomize``; the user's model is never touched."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .api import explain, wrap
from .errors import UnsupportedError
from .metric import relevance_map
from .model import RANDOMIZE

__all__ = ["spearman", "cascading_randomization", "random_logit"]


def _ranks(a: np.ndarray) -> np.ndarray:
    order = np.argsort(a, axis=1, kind="stable")
    ranks = np.empty_like(order, dtype=np.float64)
    np.put_along_axis(ranks, order, np.arange(a.shape[1], dtype=np.float64)[None].repeat(len(a), 0), axis=1)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-sample Spearman rank correlation of two batches of maps ``(N, ...)`` (ties broken
    by position; a constant map correlates 0)."""
    ra, rb = _ranks(a.reshape(len(a), -1)), _ranks(b.reshape(len(b), -1))
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    denominator = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    return np.divide((ra * rb).sum(1), denominator, out=np.zeros(len(a)), where=denominator > 0)


def cascading_randomization(
    model: object, inputs: Any, method: str, seed: int = 0, params: Mapping[str, Any] | None = None
) -> list[tuple[str, float]]:
    """Randomise the weights layer by layer from the output down; after each step, the mean
    Spearman correlation between the original map and the map of the randomised model (same
    targets). Returns ``[(last randomised layer, correlation), ...]``; near 0 at the end is
    what a model-dependent explanation shows."""
    wrapped = wrap(model)
    if not wrapped.supports(RANDOMIZE):
        raise UnsupportedError(f"the {wrapped.framework} backend cannot make randomised copies.")
    params = dict(params or {})
    original = explain(wrapped, inputs, method, **params)
    base = relevance_map(original)
    layers = wrapped.parameter_layers()[::-1]
    curve = []
    for k in range(1, len(layers) + 1):
        randomized = wrapped.randomized(layers[:k], seed=seed)
        if "layer" in original.params and method not in ("shap", "shap-gradient", "shap-deep", "shap-partition"):
            params["layer"] = original.params["layer"]
        exp = explain(randomized, inputs, method, targets=original.targets, **params)
        curve.append((layers[k - 1], float(spearman(base, relevance_map(exp)).mean())))
    return curve


def random_logit(model: object, inputs: Any, method: str, seed: int = 0, params: Mapping[str, Any] | None = None) -> float:
    """Mean Spearman correlation between the map of the predicted class and the map of a
    random other class; a class-sensitive explanation gives a low value."""
    wrapped = wrap(model)
    original = explain(wrapped, inputs, method, **dict(params or {}))
    k = original.outputs.shape[1]
    rng = np.random.RandomState(seed)
    other = (original.targets + rng.randint(1, k, size=len(original.targets))) % k
    changed = explain(wrapped, inputs, method, targets=other, **dict(params or {}))
    return float(spearman(relevance_map(original), relevance_map(changed)).mean())
