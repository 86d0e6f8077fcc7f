"""Probe fixes in evaluation: each given explanation scored on its own targets, sanity checks
on one-output and bfloat16 models."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from limelight import Explanation
from limelight.evaluation import evaluate
from tests.evaluation.test_evaluate_errors import Linear  # a NumPy linear model of (N, H, W, 3)


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


def _torch_net(k):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, k)).eval()


def test_a_bfloat16_torch_model_gets_a_randomised_bfloat16_copy():
    import torch

    from limelight.backends.torch import TorchModel

    net = _torch_net(5).bfloat16()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    copy = TorchModel(net).randomized(["4"], seed=0)
    weight = copy.native.get_submodule("4").weight
    assert weight.dtype == torch.bfloat16
    bound = 1 / np.sqrt(8)  # uniform in ±1/sqrt(fan_in), as for float32 weights
    drawn = np.random.RandomState(0).uniform(-bound, bound, (8, 5)).T  # drawn in Keras's (in, out) order
    np.testing.assert_allclose(weight.detach().float().numpy(), drawn, atol=bound / 64)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # the user's model untouched


def test_sanity_checks_of_a_bfloat16_torch_model_run():
    import torch

    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)).bfloat16()
    table = evaluate(_torch_net(5).bfloat16(), x, ["gradcam"], ["sparseness"], sanity=True, repeats=1).table()
    assert np.isfinite(table["gradcam"]["randomisation"]) and np.isfinite(table["gradcam"]["random-logit"])


def test_a_torch_copy_failure_is_not_worded_for_keras():
    from limelight.core.errors import UnsupportedError
    from limelight.evaluation.sanity import _randomized

    class Failing:
        framework = "torch"

        def randomized(self, layers, seed=0):
            raise RuntimeError("no copy")

    with pytest.raises(UnsupportedError, match=r"torch model \(RuntimeError: no copy\)") as info:
        _randomized(Failing(), ["a"], 0)
    assert "Keras" not in str(info.value) and "sanity=False" in str(info.value)


def test_random_logit_of_a_one_output_model():
    import torch

    from limelight.core.errors import UnsupportedError
    from limelight.evaluation import random_logit

    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with pytest.raises(UnsupportedError, match="random-logit .* needs at least 2 classes"):
        random_logit(_torch_net(1), x, "gradcam")
    # in evaluate it does not apply (NaN, with a warning), as other metrics that do not apply to a row
    with pytest.warns(UserWarning, match="random-logit needs a model of at least 2 classes"):
        scores = evaluate(_torch_net(1), x, ["gradcam"], ["sparseness"], sanity=True, repeats=1).scores
    assert all(np.isnan(scores[row]["random-logit"]).all() for row in ("gradcam", "random", "edge"))
    assert np.isfinite(scores["gradcam"]["randomisation"]).all() and np.isfinite(scores["gradcam"]["sparseness"]).all()


def test_evaluate_dataset_treats_a_one_output_model_as_evaluate_does():
    """evaluate_dataset shares evaluate's row scoring: random-logit NaN with a warning for a
    model of one output (it raised the new UnsupportedError before), the rest equal."""
    import torch

    from limelight import evaluate_dataset

    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    model = _torch_net(1)
    with pytest.warns(UserWarning, match="random-logit needs a model of at least 2 classes"):
        whole = evaluate(model, x, ["gradcam"], ["sparseness"], sanity=True, repeats=1).scores
    with pytest.warns(UserWarning, match="random-logit needs a model of at least 2 classes"):
        streamed = evaluate_dataset(model, [x[:2], x[2:]], ["gradcam"], ["sparseness"], batch_size=2,
                                    sanity=True, repeats=1, progress=False, n_boot=0).scores
    for row in ("gradcam", "centre", "edge"):
        assert np.isnan(streamed[row]["random-logit"]).all()
        np.testing.assert_allclose(streamed[row]["sparseness"], whole[row]["sparseness"], atol=1e-6)
        np.testing.assert_allclose(streamed[row]["randomisation"], whole[row]["randomisation"], atol=1e-6)
