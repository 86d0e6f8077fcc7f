"""SHAP on a linear model solved by hand: φ = w ⊙ (x − E[bg]), and model-agnostic Partition."""

import numpy as np
import pytest

import limelight
from limelight.core.errors import ParameterError, UnsupportedError

from .shap_models import LinearGradientsOnly, LinearImageModel, LinearPredictOnly

RNG = np.random.RandomState(0)


def sampling(method, nsamples, seed):
    """The sampling parameters, for the methods that sample."""
    return {"nsamples": nsamples, "seed": seed} if method == "shap-gradient" else {}


W = RNG.randn(4, 5, 3, 6)
B = RNG.randn(6)
X = RNG.rand(3, 4, 5, 3).astype(np.float32)
BG = RNG.rand(7, 4, 5, 3).astype(np.float32)


@pytest.mark.parametrize("method", ["shap-gradient", "shap-deep"])
def test_linear_one_background_row_is_exact(method):
    model = LinearImageModel(W, B)
    targets = np.array([1, 4, 0])
    exp = limelight.explain(model, X, method, background=BG[:1], targets=targets, **sampling(method, 7, 0))
    expected = np.moveaxis(W[..., targets], -1, 0) * (X - BG[:1])
    np.testing.assert_allclose(exp.values, expected, rtol=1e-5, atol=1e-6)
    assert exp.values.shape == (3, 4, 5, 3) and exp.targets.tolist() == [1, 4, 0]
    np.testing.assert_allclose(exp.base_values, model.predict(BG[:1])[0, targets], rtol=1e-6)


@pytest.mark.parametrize("method", ["shap-gradient", "shap-deep"])
def test_linear_many_background_rows_uses_the_mean(method):
    """With a linear model the expectation over background rows is w ⊙ (x − E[bg]); for
    expected gradients only in expectation (exact for shap-deep)."""
    model = LinearImageModel(W, B)
    exp = limelight.explain(model, X, method, background=BG, targets=[[0, 5]] * 3, **sampling(method, 2000, 1))
    expected = np.stack([W[..., k] * (X - BG.mean(0)) for k in (0, 5)], axis=-1)
    assert exp.values.shape == (3, 4, 5, 3, 2)
    tolerance = 1e-5 if method == "shap-deep" else 0.08 * np.abs(expected).max()
    np.testing.assert_allclose(exp.values, expected, atol=tolerance)
    # completeness: Σφ = f(x) − E f(bg) per target (exact for shap-deep; in expectation over
    # the sampled background rows for expected gradients)
    totals = exp.values.reshape(3, -1, 2).sum(1)
    gap = exp.outputs[:, [0, 5]] - exp.base_values
    np.testing.assert_allclose(totals, gap, atol=1e-4 if method == "shap-deep" else 0.05 * np.abs(gap).max())


def test_partition_needs_only_predict_and_is_exactly_complete():
    pytest.importorskip("shap")
    model = LinearPredictOnly(W, B)  # a backend without gradients
    exp = limelight.explain(model, X, "shap-partition", mask=0.0, max_evals=200, targets=[[2, 3]] * 3)
    totals = exp.values.reshape(3, -1, 2).sum(1)
    np.testing.assert_allclose(totals, exp.outputs[:, [2, 3]] - exp.base_values, rtol=1e-5, atol=1e-5)
    masked = model.predict(np.zeros_like(X))[:, [2, 3]]
    np.testing.assert_allclose(exp.base_values, masked, rtol=1e-5, atol=1e-6)
    again = limelight.explain(model, X, "shap-partition", mask=0.0, max_evals=200, targets=[[2, 3]] * 3)
    np.testing.assert_allclose(again.values, exp.values, rtol=1e-6, atol=1e-7)  # float32 rounding


def test_gradient_error_shrinks_like_one_over_sqrt_nsamples():
    """Completeness error of expected gradients (MC over background and path) on a
    non-linear function: ~ 1/√nsamples, measured over seeds."""
    w = RNG.randn(4, 5, 3, 2)

    class Squares(LinearGradientsOnly):
        def _forward(self, x):
            return np.einsum("nhwc,hwck->nk", x.astype(np.float64) ** 2, self.weights).astype(np.float32)

        def input_gradients(self, x, classes):
            return 2 * x[:, None].astype(np.float64) * np.moveaxis(self.weights[..., classes], (-2, -1), (0, 1))

    model = Squares(w, np.zeros(2))
    errors = {}
    for nsamples in (16, 256):
        errs = []
        for seed in range(8):
            exp = limelight.explain(model, X[:1], "shap-gradient", background=BG, targets=0, nsamples=nsamples, seed=seed)
            errs.append(exp.values.sum() - (exp.outputs[0, 0] - exp.base_values[0]))
        errors[nsamples] = np.sqrt(np.mean(np.square(errs)))
    ratio = errors[16] / errors[256]
    assert 2.0 < ratio < 8.0, errors  # √(256/16) = 4


def test_missing_background_is_a_clear_error():
    with pytest.raises(ParameterError, match="needs background="):
        limelight.explain(LinearImageModel(W, B), X, "shap-gradient")


def test_shap_deep_needs_the_capability_before_any_work():
    model = LinearGradientsOnly(W, B)  # no deeplift_gradients: not SupportsDeepLift
    with pytest.raises(UnsupportedError, match="'shap-deep' needs the backend capability SupportsDeepLift"):
        limelight.explain(model, X, "shap-deep", background=BG)
    assert model.forward_passes == 0


def test_auto_picks_deep_when_possible_else_gradient():
    deep = limelight.explain(LinearImageModel(W, B), X, "shap", background=BG[:1], nsamples=5, seed=0)
    assert deep.method == "shap" and deep.params["algorithm"] == "shap-deep"
    grad = limelight.explain(LinearGradientsOnly(W, B), X, "shap", background=BG[:1], nsamples=5, seed=0)
    assert grad.params["algorithm"] == "shap-gradient" and "no DeepLIFT capability" in grad.params["reason"]
    np.testing.assert_allclose(deep.values, grad.values, rtol=1e-5, atol=1e-6)  # linear: both exact


def test_capabilities_are_the_methods_a_backend_implements():
    from limelight.core.model import SupportsDeepLift, SupportsGradients

    predict_only, gradients_only, full = LinearPredictOnly(W, B), LinearGradientsOnly(W, B), LinearImageModel(W, B)
    assert not isinstance(predict_only, SupportsGradients) and not isinstance(predict_only, SupportsDeepLift)
    assert isinstance(gradients_only, SupportsGradients) and not isinstance(gradients_only, SupportsDeepLift)
    assert isinstance(full, SupportsGradients) and isinstance(full, SupportsDeepLift)
    with pytest.raises(UnsupportedError, match="'shap-gradient' needs the backend capability SupportsGradients"):
        limelight.explain(predict_only, X, "shap-gradient", background=BG)
    assert predict_only.forward_passes == 0
