"""Explaining from inside training code: under torch.no_grad() (Lightning validation loops)
limelight enables gradients where it needs them; inside torch.inference_mode() it raises a
clear error with the fix; inference tensors made there are accepted afterwards."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import limelight  # noqa: E402
from limelight.core.errors import UnsupportedError  # noqa: E402
from limelight.testing.models import small_images, torch_cnn  # noqa: E402

GRADIENT_METHODS = [
    ("gradcam", {}),
    ("gradcam++", {}),
    ("layercam", {"layer": "3"}),
    ("shap-gradient", {"nsamples": 4, "seed": 0}),
    ("shap-deep", {}),
]


@pytest.fixture(scope="module")
def cnn():
    model = torch_cnn()
    x = torch.from_numpy(small_images(2, layout="nchw"))
    bg = torch.from_numpy(small_images(3, seed=1, layout="nchw"))
    return model, x, bg


def _params(method, params, bg):
    return {**params, "background": bg} if method.startswith("shap") else dict(params)


@pytest.mark.parametrize("method, params", GRADIENT_METHODS)
def test_explain_inside_no_grad_equals_outside(cnn, method, params):
    model, x, bg = cnn
    expected = limelight.explain(model, x, method, **_params(method, params, bg))
    with torch.no_grad():
        got = limelight.explain(model, x, method, **_params(method, params, bg))
        assert not torch.is_grad_enabled()  # the caller's setting is left as it was
    np.testing.assert_array_equal(got.values, expected.values)
    assert np.abs(expected.values).max() > 0


@pytest.mark.parametrize("method, params", GRADIENT_METHODS)
def test_inference_mode_is_a_clear_error_with_the_fix(cnn, method, params):
    model, x, bg = cnn
    with torch.inference_mode(), pytest.raises(UnsupportedError, match=r"inside torch.inference_mode\(\)") as err:
        limelight.explain(model, x, method, **_params(method, params, bg))
    assert "torch.no_grad() is fine" in str(err.value)
    assert "Call limelight outside torch.inference_mode()" in str(err.value)


def test_forward_only_methods_run_inside_inference_mode(cnn):
    model, x, _ = cnn
    expected = limelight.explain(model, x, "rise", n_masks=16, seed=0)
    with torch.inference_mode():
        got = limelight.explain(model, x, "rise", n_masks=16, seed=0)
    np.testing.assert_array_equal(got.values, expected.values)


@pytest.mark.parametrize("method, params", GRADIENT_METHODS)
def test_inference_tensors_are_accepted_outside_inference_mode(cnn, method, params):
    model, x, bg = cnn
    with torch.inference_mode():
        x_inf, bg_inf = x.clone(), bg.clone()
    assert x_inf.is_inference()
    expected = limelight.explain(model, x, method, **_params(method, params, bg))
    got = limelight.explain(model, x_inf, method, **_params(method, params, bg_inf))
    np.testing.assert_array_equal(got.values, expected.values)


def _state(model):
    return (
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        [b.clone() for b in model.buffers()],
    )


def test_a_lightning_style_validation_loop_leaves_the_model_as_it_was(cnn):
    """What Lightning does around validation_step: model.eval() and torch.no_grad(), then
    model.train() again; an explanation in the step must not change modes, flags, buffers or
    gradients, and must equal the one made outside the loop."""
    model, x, bg = cnn
    model = torch_cnn()
    model[0].weight.requires_grad_(False)  # a frozen layer stays frozen
    expected = limelight.explain(model, x, "gradcam")
    model.train()
    before = _state(model)
    maps = []
    model.eval()  # validation starts
    with torch.no_grad():
        for batch in (x[:1], x[1:]):
            logits = model(batch)  # the step's own forward
            exp = limelight.explain(model, batch, "gradcam")
            maps.append(exp.values)
            assert all(not m.training for m in model.modules())  # still eval, as Lightning set it
            assert not logits.requires_grad
    model.train()  # validation ends
    after = _state(model)
    assert after[0] == before[0] and after[1] == before[1]
    for a, b in zip(after[2], before[2], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # BatchNorm statistics untouched
    assert all(p.grad is None for p in model.parameters())
    np.testing.assert_allclose(np.concatenate(maps), expected.values, atol=1e-6)


def test_explaining_a_model_in_training_mode_restores_it(cnn):
    model, x, bg = cnn
    model = torch_cnn().train()
    before = _state(model)
    eval_exp = limelight.explain(torch_cnn(), x, "shap-deep", background=bg)
    exp = limelight.explain(model, x, "shap-deep", background=bg)  # runs in eval mode
    np.testing.assert_array_equal(exp.values, eval_exp.values)
    after = _state(model)
    assert after[0] == before[0] and all(after[0])
    for a, b in zip(after[2], before[2], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
