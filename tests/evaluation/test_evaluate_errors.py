"""evaluate() hardening (issue 12): one clear LimelightError for every wrong call, masks as a
framework's tensor, and sanity checks of given explanations with their own method and params."""

from __future__ import annotations

import numpy as np
import pytest

import limelight
from limelight import Explanation
from limelight.core.errors import InputError, LimelightError, ParameterError, UnsupportedError
from limelight.core.model import NumpyModel
from limelight.evaluation import evaluate


class Linear(NumpyModel):
    def __init__(self, weights):
        super().__init__(weights)
        self.weights = weights

    def predict(self, x, *, batch_size=None):
        return (np.asarray(x).reshape(len(x), -1) @ self.weights).astype(np.float32)


def _setup(n=4, h=6, w=5, k=3, seed=0):
    rng = np.random.RandomState(seed)
    model = Linear(rng.randn(h * w * 3, k))
    x = rng.rand(n, h, w, 3).astype(np.float32)
    exp = Explanation(method="given", values=rng.rand(n, h, w), targets=rng.randint(0, k, n),
                      outputs=np.zeros((n, k), np.float32))
    return model, x, exp


def test_an_unknown_metric_name_is_one_clear_error_with_the_closest_names():
    model, x, exp = _setup()
    with pytest.raises(ParameterError, match=r"unknown metric 'delition'\. Did you mean: 'deletion'"):
        evaluate(model, x, {"given": exp}, ["sparseness", "delition"])
    with pytest.raises(ParameterError, match=r"unknown metric 'sparsenes'\. Did you mean: 'sparseness'"):
        evaluate(model, x, {"given": exp}, ["sparseness"], metric_params={"sparsenes": {}})


@pytest.mark.parametrize("metric", ["sparseness", "relevance-mass", "deletion"])
def test_explanations_of_other_inputs_are_refused(metric):
    model, x, exp = _setup()
    masks = np.ones(x.shape[:3], bool)
    with pytest.raises(InputError, match=r"explanation 'given' has maps of shape \(4, 6, 5\).*3 images of 6x5"):
        evaluate(model, x[:3], {"given": exp}, [metric], masks=masks[:3])
    _, other_size, _ = _setup(h=7)
    with pytest.raises(InputError, match=r"maps of shape \(4, 6, 5\).*4 images of 7x5"):
        evaluate(model, other_size, {"given": exp}, [metric], masks=np.ones((4, 7, 5), bool))
    with pytest.raises(InputError, match=r"masks have shape \(4, 5, 6\)"):
        evaluate(model, x, {"given": exp}, [metric], masks=np.ones((4, 5, 6), bool))


def test_masks_may_be_a_torch_tensor():
    torch = pytest.importorskip("torch")
    model, x, exp = _setup()
    masks = np.zeros(x.shape[:3], bool)
    masks[:, 1:4, 2:4] = True
    names = ["pointing-game", "relevance-mass", "relevance-rank", "energy-pointing-game"]
    expected = evaluate(model, x, {"given": exp}, names, masks=masks)
    for given in (torch.from_numpy(masks), torch.from_numpy(masks.astype(np.float32)).requires_grad_()):
        got = evaluate(model, x, {"given": exp}, names, masks=given)
        for row, cols in expected.scores.items():
            for name, values in cols.items():
                np.testing.assert_allclose(got.scores[row][name], values, rtol=1e-6)
    metric = limelight.evaluation.RelevanceMass()
    np.testing.assert_array_equal(metric(exp.values, masks=torch.from_numpy(masks)), metric(exp.values, masks=masks))


# -- sanity=True with given explanations ---------------------------------------------------


def _torch_data(n=4, seed=21):
    torch = pytest.importorskip("torch")
    from limelight import datasets, demo

    images = datasets.shapes(n, seed=seed).images
    return torch, demo.torch_model(), torch.from_numpy(images.transpose(0, 3, 1, 2).copy())


def test_sanity_of_a_given_explanation_uses_its_own_method_and_params():
    """Issue 12, item 5: the randomised maps are made with the explanation's method, layer,
    params and targets, not with the method named by the dict key and its defaults."""
    from limelight.evaluation import full_randomization, random_logit

    _, model, x = _torch_data()
    params = {"layer": "3", "relu": False}
    exp = limelight.explain(model, x, "gradcam", targets=2, **params)
    seeds = range(2)
    full = full_randomization(model, x, "gradcam", seeds, {**params, "targets": 2})
    logit = random_logit(model, x, "gradcam", seeds, {**params, "targets": 2})
    defaults = full_randomization(model, x, "gradcam", seeds)
    assert not np.allclose(full, defaults)  # the old answer: another map's score
    ev = evaluate(model, x, {"gradcam": exp}, ["sparseness"], sanity=True, repeats=2)
    np.testing.assert_allclose(ev.scores["gradcam"]["randomisation"], full, atol=1e-6)
    np.testing.assert_allclose(ev.scores["gradcam"]["random-logit"], logit, atol=1e-6)
    named = evaluate(model, x, {"mine": exp}, ["sparseness"], sanity=True, repeats=2)  # any key: exp.method
    np.testing.assert_allclose(named.scores["mine"]["randomisation"], full, atol=1e-6)
    np.testing.assert_allclose(named.scores["mine"]["random-logit"], logit, atol=1e-6)


def test_sanity_refuses_given_explanations_it_cannot_remake():
    _, model, x = _torch_data(n=2)
    n, k = 2, 4
    made_elsewhere = Explanation(method="given", values=np.random.rand(n, 32, 32), targets=np.zeros(n, int),
                                 outputs=np.zeros((n, k), np.float32))
    with pytest.raises(ParameterError, match="'given', which is not a registered method"):
        evaluate(model, x, {"mine": made_elsewhere}, ["sparseness"], sanity=True)
    pytest.importorskip("shap")
    background = x[:1] * 0
    shap = limelight.explain(model, x, "shap-gradient", background=background, nsamples=4)
    with pytest.raises(ParameterError, match=r"does not record background.*method_params=\{'s': \{'background'"):
        evaluate(model, x, {"s": shap}, ["sparseness"], sanity=True)


def test_sanity_on_a_subclassed_keras_model_is_one_clear_error():
    pytest.importorskip("torch")  # torch before TensorFlow
    keras = pytest.importorskip("keras")

    class Net(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.conv = keras.layers.Conv2D(4, 3, activation="relu", padding="same")
            self.pool = keras.layers.GlobalAveragePooling2D()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(self.pool(self.conv(x)))

    model = Net()
    x = np.random.RandomState(0).rand(2, 8, 8, 3).astype(np.float32)
    model(x)
    with pytest.raises(LimelightError) as info:
        evaluate(model, x, ["gradcam"], ["sparseness"], sanity=True, repeats=1)
    assert isinstance(info.value, UnsupportedError)
    assert "could not make a randomised copy" in str(info.value) and "sanity=False" in str(info.value)
