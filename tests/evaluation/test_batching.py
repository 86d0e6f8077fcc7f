"""Metrics that run the model, on a host-only NumpyModel: the perturbed images go through the
model in batches of ``batch_size``, and the scores equal the step-by-step host computation
(v1's implementation, kept here as the reference)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from limelight.core.model import NumpyModel
from limelight.evaluation import (
    ConfidenceDrop,
    ConfidenceIncrease,
    Deletion,
    Insertion,
    RoadLerf,
    RoadMorf,
    evaluate,
    noisy_linear_imputation,
)
from limelight.evaluation.faithfulness import _baseline_image


class Linear(NumpyModel):
    """Logits = flattened image @ W; counts its predict calls and their sizes."""

    def __init__(self, weights: np.ndarray) -> None:
        super().__init__(weights)
        self.weights = weights
        self.calls: list[int] = []

    def predict(self, x, *, batch_size=None):
        assert isinstance(x, np.ndarray) and x.dtype == np.float32
        self.calls.append(len(x))
        return (x.reshape(len(x), -1).astype(np.float64) @ self.weights).astype(np.float32)


def _setup(n=5, h=6, w=7, c=3, k=4, seed=0):
    rng = np.random.RandomState(seed)
    model = Linear(rng.randn(h * w * c, k) / 4)
    x = rng.rand(n, h, w, c).astype(np.float32)
    maps = rng.rand(n, h, w)
    maps[0, :2] = 0.5  # ties: the stable order must be kept
    targets = rng.randint(0, k, n)
    return model, x, maps, targets


def _probability(model, images, targets):
    """v1: float64 softmax of the host logits."""
    z = model.predict(np.asarray(images, np.float32)).astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return (p / p.sum(axis=1, keepdims=True))[np.arange(len(targets)), targets]


def _reference_perturbation(model, maps, x, targets, steps, baseline, insert):
    n, h, w = maps.shape
    order = np.argsort(-maps.reshape(n, -1), axis=1, kind="stable")
    base = _baseline_image(x, baseline)
    curves = np.zeros((n, steps + 1))
    for step in range(steps + 1):
        k = round(step / steps * h * w)
        chosen = np.zeros((n, h * w), bool)
        np.put_along_axis(chosen, order[:, :k], True, axis=1)
        chosen = chosen.reshape(n, h, w, 1)
        images = np.where(chosen, x, base) if insert else np.where(chosen, base, x)
        curves[:, step] = _probability(model, images, targets)
    return np.trapezoid(curves, dx=1.0 / steps, axis=1)


def _reference_road(model, maps, x, targets, fractions, most_relevant_first, noise=0.01, seed=0):
    n, h, w = maps.shape
    sign = -1.0 if most_relevant_first else 1.0
    order = np.argsort(sign * maps.reshape(n, -1), axis=1, kind="stable")
    rng = np.random.RandomState(seed)
    curves = np.zeros((n, len(fractions)))
    for j, fraction in enumerate(fractions):
        removed = np.zeros((n, h * w), bool)
        np.put_along_axis(removed, order[:, : round(fraction * h * w)], True, axis=1)
        images = np.stack([noisy_linear_imputation(img, r.reshape(h, w), noise, rng)
                           for img, r in zip(x, removed, strict=True)])
        curves[:, j] = _probability(model, images, targets)
    return curves.mean(axis=1)


@pytest.mark.parametrize(("cls", "insert"), [(Deletion, False), (Insertion, True)])
@pytest.mark.parametrize("batch_size", [1, 7, 64, None])
def test_deletion_and_insertion_batch_their_model_calls(cls, insert, batch_size):
    model, x, maps, targets = _setup()
    steps = 8
    got = cls(steps=steps, batch_size=batch_size)(maps, x=x, targets=targets, model=model)
    total = len(x) * (steps + 1)
    expected_calls = 1 if batch_size is None else math.ceil(total / batch_size)
    assert len(model.calls) == expected_calls
    assert sum(model.calls) == total and max(model.calls) <= (batch_size or total)
    expected = _reference_perturbation(model, maps, x, targets, steps, 0.0, insert)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("baseline", [0.5, "blur"])
def test_baselines_match_the_reference(baseline):
    pytest.importorskip("scipy")
    model, x, maps, targets = _setup(seed=1)
    got = Deletion(steps=4, baseline=baseline)(maps, x=x, targets=targets, model=model)
    np.testing.assert_allclose(got, _reference_perturbation(model, maps, x, targets, 4, baseline, False), rtol=1e-6)


@pytest.mark.parametrize(("cls", "first"), [(RoadMorf, True), (RoadLerf, False)])
def test_road_batches_its_model_calls_and_keeps_the_noise_order(cls, first):
    pytest.importorskip("scipy")
    model, x, maps, targets = _setup(seed=2)
    fractions = (0.2, 0.5, 0.7)
    got = cls(fractions=fractions, batch_size=4)(maps, x=x, targets=targets, model=model)
    assert model.calls == [4, 4, 4, 3]  # 5 images x 3 fractions
    model.calls.clear()
    np.testing.assert_allclose(got, _reference_road(model, maps, x, targets, fractions, first), rtol=1e-6)


def test_confidence_metrics_feed_originals_and_masked_images_together():
    model, x, maps, targets = _setup(seed=3)
    drop = ConfidenceDrop(batch_size=64)(maps, x=x, targets=targets, model=model)
    assert model.calls == [2 * len(x)]
    flat = maps.reshape(len(maps), -1)
    weights = ((flat - flat.min(1, keepdims=True)) / np.ptp(flat, axis=1, keepdims=True)).reshape(maps.shape)
    original = _probability(model, x, targets)
    masked = _probability(model, x * weights[..., None], targets)
    np.testing.assert_allclose(drop, np.maximum(0, original - masked) / original, rtol=1e-5, atol=1e-7)
    increase = ConfidenceIncrease(batch_size=3)(maps, x=x, targets=targets, model=model)
    np.testing.assert_array_equal(increase, (masked > original).astype(float))


def test_targets_may_be_two_dimensional_and_batch_size_is_checked():
    model, x, maps, targets = _setup(seed=4)
    one = Deletion(steps=2)(maps, x=x, targets=targets, model=model)
    two = Deletion(steps=2)(maps, x=x, targets=np.stack([targets, targets + 1], 1), model=model)
    np.testing.assert_array_equal(one, two)  # the first column, as relevance_map takes the first map
    with pytest.raises(Exception, match="batch_size must be a positive int"):
        Deletion(batch_size=0)


def test_evaluate_passes_its_batch_size_to_the_metrics():
    model, x, maps, targets = _setup(seed=5)
    from limelight import Explanation

    exp = Explanation(method="given", values=maps, targets=targets, outputs=np.zeros((len(x), 4)))
    ev = evaluate(model, x, {"given": exp}, ["deletion", "sparseness"],
                  metric_params={"deletion": {"steps": 4}}, batch_size=10)
    assert model.calls == [10, 10, 5] * 4  # 25 images per row: the method, then 3 baselines
    expected = _reference_perturbation(model, maps, x, targets, 4, 0.0, False)
    np.testing.assert_allclose(ev.scores["given"]["deletion"], expected, rtol=1e-6)


class StrictLinear(Linear):
    """The same linear model on array-api-strict arrays: the metrics' device code may use
    only standard functions and the model's helpers."""

    framework = "array-api-strict"

    @property
    def xp(self):
        return pytest.importorskip("array_api_strict")

    def asarray(self, a, like=None):
        host = np.asarray(a)
        if like is not None and host.dtype.kind == "f":
            host = host.astype(np.float32)
        return self.xp.asarray(host)

    def to_numpy(self, a):
        return np.from_dlpack(a) if not isinstance(a, np.ndarray) else a

    def canonical(self, inputs):
        return self.asarray(np.asarray(inputs, np.float32))

    def predict(self, x, *, batch_size=None):
        xp = self.xp
        assert not isinstance(x, np.ndarray)
        self.calls.append(x.shape[0])
        return xp.reshape(x, (x.shape[0], -1)) @ self.asarray(self.weights.astype(np.float32))


@pytest.mark.parametrize("name", ["deletion", "insertion", "road-morf", "confidence-drop", "confidence-increase"])
def test_device_code_is_standard_array_api(name):
    pytest.importorskip("scipy")
    from limelight.core.registry import registry

    model, x, maps, targets = _setup(seed=6)
    strict = StrictLinear(model.weights)
    params = {"fractions": (0.3, 0.6)} if name.startswith("road") else {}
    metric = registry.metrics()[name](batch_size=8, **params)
    expected = metric(maps, x=x, targets=targets, model=model)
    for x_in in (x, strict.canonical(x)):  # host inputs, or the model's own array
        np.testing.assert_allclose(metric(maps, x=x_in, targets=targets, model=strict), expected, rtol=1e-5, atol=1e-6)


def test_evaluate_resolves_targets_when_no_explanation_is_given():
    model, x, _, _ = _setup(seed=7)
    predicted = (x.reshape(len(x), -1).astype(np.float64) @ model.weights).argmax(1)
    auto = evaluate(model, x, {}, ["deletion"])
    assert list(auto.scores) == ["random", "centre", "edge"]
    explicit = evaluate(model, x, {}, ["deletion"], targets=predicted)
    np.testing.assert_array_equal(auto.scores["edge"]["deletion"], explicit.scores["edge"]["deletion"])
    fixed = evaluate(model, x, {}, ["deletion"], targets=2)
    other = evaluate(model, x, {}, ["deletion"], targets=np.full(len(x), 2))
    np.testing.assert_array_equal(fixed.scores["edge"]["deletion"], other.scores["edge"]["deletion"])


class SoftmaxLinear(Linear):
    """The same linear model ending in a softmax: its outputs are probabilities."""

    def predict(self, x, *, batch_size=None):
        z = super().predict(x, batch_size=batch_size).astype(np.float64)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class StrictSoftmaxLinear(StrictLinear):
    def predict(self, x, *, batch_size=None):
        xp = self.xp
        z = super().predict(x, batch_size=batch_size)
        e = xp.exp(z - xp.max(z, axis=1, keepdims=True))
        return e / xp.sum(e, axis=1, keepdims=True)


_FAITHFULNESS = ["deletion", "insertion", "road-morf", "road-lerf", "confidence-drop", "confidence-increase"]


def _faithfulness(name, **params):
    from limelight.core.registry import registry

    if name.startswith("road"):
        pytest.importorskip("scipy")
        params.setdefault("fractions", (0.2, 0.5))
    return registry.metrics()[name](batch_size=8, **params)


@pytest.mark.parametrize("name", _FAITHFULNESS)
def test_a_model_ending_in_softmax_is_not_softmaxed_twice(name):
    """Issue 12, item 4: the metrics of a softmax model equal the logits model's, whose
    probabilities they compute; softmax applied to probabilities flattens the curves."""
    model, x, maps, targets = _setup(seed=8, k=3)
    if not name.startswith("confidence"):  # (a map whose kept pixels lose confidence, for those)
        maps = np.where(x.mean(-1) > 0.5, maps + 1, maps)
    probabilities = SoftmaxLinear(model.weights)
    metric = _faithfulness(name)
    expected = metric(maps, x=x, targets=targets, model=model)
    assert metric.output_kind_used == "logits"
    got = metric(maps, x=x, targets=targets, model=probabilities)
    assert metric.output_kind_used == "probabilities"
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    explicit = _faithfulness(name, output_kind="probabilities")(maps, x=x, targets=targets, model=probabilities)
    np.testing.assert_allclose(explicit, expected, rtol=1e-5, atol=1e-6)
    if name in ("deletion", "insertion"):  # the curve's shape: not flat, as the logits model's
        best, worst = (metric(m, x=x, targets=targets, model=probabilities) for m in (maps, -maps))
        np.testing.assert_allclose(best - worst, metric(maps, x=x, targets=targets, model=model)
                                   - metric(-maps, x=x, targets=targets, model=model), rtol=1e-5, atol=1e-6)
    twice = _faithfulness(name, output_kind="logits")(maps, x=x, targets=targets, model=probabilities)
    if name != "confidence-increase":  # the old behaviour: softmax of the probabilities
        assert expected.any() and not np.allclose(twice, expected, rtol=1e-3)


@pytest.mark.parametrize("name", ["deletion", "road-morf", "confidence-drop"])
def test_output_kind_is_decided_on_the_device_in_standard_array_api(name):
    model, x, maps, targets = _setup(seed=9)
    metric = _faithfulness(name)
    expected = metric(maps, x=x, targets=targets, model=model)
    strict = StrictSoftmaxLinear(model.weights)
    got = metric(maps, x=strict.canonical(x), targets=targets, model=strict)
    assert metric.output_kind_used == "probabilities"
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_evaluate_records_the_output_kind_and_refuses_an_unknown_one():
    model, x, maps, targets = _setup(seed=10)
    from limelight import Explanation
    from limelight.core.errors import ParameterError

    exp = Explanation(method="given", values=maps, targets=targets, outputs=np.zeros((len(x), 4)))
    names = ["deletion", "road-lerf", "sparseness"]
    params = {"deletion": {"steps": 4}, "road-lerf": {"fractions": (0.5,)}}
    logits = evaluate(model, x, {"given": exp}, names, metric_params=params)
    softmax = evaluate(SoftmaxLinear(model.weights), x, {"given": exp}, names, metric_params=params)
    assert logits.output_kinds == {"deletion": "logits", "road-lerf": "logits"}
    assert softmax.output_kinds == {"deletion": "probabilities", "road-lerf": "probabilities"}
    for row in logits.scores:
        np.testing.assert_allclose(softmax.scores[row]["deletion"], logits.scores[row]["deletion"], rtol=1e-5)
    forced = evaluate(model, x, {"given": exp}, ["deletion"], metric_params={"deletion": {"output_kind": "probabilities"}})
    assert forced.output_kinds == {"deletion": "probabilities"}
    assert type(softmax).concatenate([softmax, softmax]).output_kinds == softmax.output_kinds
    with pytest.raises(ParameterError, match="output_kind must be one of"):
        Deletion(output_kind="probs")
