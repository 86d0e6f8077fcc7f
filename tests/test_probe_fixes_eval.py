"""Probe fixes in evaluation: each given explanation scored on its own targets, sanity checks
on one-output and bfloat16 models."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from limelight import Explanation
from limelight.core.model import NumpyModel
from limelight.evaluation import evaluate


class Linear(NumpyModel):
    def __init__(self, weights):
        super().__init__(weights)
        self.weights = weights

    def predict(self, x, *, batch_size=None):
        return (np.asarray(x).reshape(len(x), -1) @ self.weights).astype(np.float32)


def _given(n=3, h=6, w=5, k=4, seed=0):
    rng = np.random.RandomState(seed)
    model = Linear(rng.randn(h * w * 3, k))
    x = rng.rand(n, h, w, 3).astype(np.float32)
    values = rng.rand(n, h, w)
    exps = {c: Explanation(method="given", values=values, targets=np.full(n, c), outputs=np.zeros((n, k), np.float32))
            for c in (0, 3)}
    return model, x, exps


def test_each_given_explanation_is_scored_on_its_own_targets():
    model, x, exps = _given()
    with pytest.warns(UserWarning, match="explain different classes"):
        both = evaluate(model, x, {"c0": exps[0], "c3": exps[3]}, ["deletion", "sparseness"]).scores
    alone = {c: evaluate(model, x, {"c": exps[c]}, ["deletion"]).scores["c"]["deletion"] for c in (0, 3)}
    np.testing.assert_allclose(both["c0"]["deletion"], alone[0])
    np.testing.assert_allclose(both["c3"]["deletion"], alone[3])
    assert not np.allclose(alone[0], alone[3])  # the same map: only the targets differ
    # the baselines have no one set of classes: NaN where a metric reads the class, scored otherwise
    assert np.isnan(both["random"]["deletion"]).all()
    assert np.isfinite(both["random"]["sparseness"]).all()


def test_baselines_are_scored_on_the_explanations_targets_when_they_agree():
    model, x, exps = _given()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        two = evaluate(model, x, {"a": exps[3], "b": exps[3]}, ["deletion"]).scores
    one = evaluate(model, x, {"a": exps[3]}, ["deletion"]).scores
    np.testing.assert_allclose(two["random"]["deletion"], one["random"]["deletion"])
    np.testing.assert_allclose(two["b"]["deletion"], one["a"]["deletion"])
