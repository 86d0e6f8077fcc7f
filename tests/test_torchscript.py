"""TorchScript models (torch.jit.script / torch.jit.trace): gradient-of-input methods work; layer
methods raise one clear UnsupportedError (no hook runs inside a scripted graph); DeepLIFT,
whose rules cannot enter the graph, is refused instead of returning wrong values, and the
auto "shap" choice picks expected gradients, whose completeness holds."""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import limelight  # noqa: E402
from limelight.core.errors import UnsupportedError  # noqa: E402
from limelight.testing.models import small_images, torch_cnn  # noqa: E402


def _jit(kind, model, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
        return torch.jit.script(model) if kind == "script" else torch.jit.trace(model, x)


@pytest.fixture(scope="module")
def cnn():
    model = torch_cnn()
    x = torch.from_numpy(small_images(3, layout="nchw"))
    bg = torch.from_numpy(small_images(4, seed=1, layout="nchw"))
    return model, x, bg


@pytest.mark.parametrize("kind", ["script", "trace"])
def test_gradient_of_input_methods_equal_the_eager_model(cnn, kind):
    model, x, bg = cnn
    scripted = _jit(kind, model, x)
    eager = limelight.explain(model, x, "shap-gradient", background=bg, nsamples=8, seed=0)
    ours = limelight.explain(scripted, x, "shap-gradient", background=bg, nsamples=8, seed=0)
    np.testing.assert_allclose(ours.values, eager.values, rtol=1e-5, atol=1e-6 * np.abs(eager.values).max())
    np.testing.assert_array_equal(ours.targets, eager.targets)


@pytest.mark.parametrize("kind", ["script", "trace"])
@pytest.mark.parametrize("method", ["gradcam", "scorecam", "ablationcam"])
def test_layer_methods_raise_one_clear_error(cnn, kind, method):
    model, x, _ = cnn
    scripted = _jit(kind, model, x)
    for layer in (None, "5"):
        with pytest.raises(UnsupportedError, match=r"TorchScript.*eager nn.Module.*'shap-gradient'"):
            limelight.explain(scripted, x, method, layer=layer)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["script", "trace"])
def test_gradcam_on_a_scripted_resnet18_is_the_documented_error(kind):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    scripted = _jit(kind, model, x)
    with pytest.raises(UnsupportedError, match="TorchScript model") as err:
        limelight.explain(scripted, x, "gradcam", layer="layer4")
    assert "hooks" in str(err.value)
    # the eager model explains fine, and the scripted one still predicts the same
    assert limelight.explain(model, x, "gradcam", layer="layer4").values.max() > 0.99
    wrapped = limelight.wrap(scripted)
    np.testing.assert_allclose(
        wrapped.to_numpy(wrapped.predict(wrapped.canonical(x))), model(x).detach().numpy(), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("kind", ["script", "trace"])
def test_shap_deep_refuses_scripted_models_and_auto_picks_gradients(cnn, kind):
    model, x, bg = cnn
    scripted = _jit(kind, model, x)
    with pytest.raises(UnsupportedError, match="TorchScript.*cannot enter a scripted or traced graph"):
        limelight.explain(scripted, x, "shap-deep", background=bg)
    wrapped = limelight.wrap(scripted)
    assert any("TorchScript" in op for op in wrapped.deeplift_unsupported(wrapped.canonical(x)))
    auto = limelight.explain(scripted, x, "shap", background=bg, nsamples=200, seed=0)
    assert auto.params["algorithm"] == "shap-gradient" and "TorchScript" in auto.params["reason"]
    # completeness of expected gradients: Σ values ≈ f(x) - E f(background)
    out = model(x).detach().numpy()[np.arange(3), auto.targets]
    total = auto.values.reshape(3, -1).sum(axis=1)
    np.testing.assert_allclose(total, out - auto.base_values, rtol=0.05, atol=0.02 * np.abs(out).max())
    # the eager model still gets DeepLIFT
    assert limelight.explain(model, x, "shap", background=bg).params["algorithm"] == "shap-deep"


def test_a_scripted_submodule_is_reported_too(cnn):
    model, x, bg = cnn
    mixed = torch.nn.Sequential(_jit("script", model[:6], x), *model[6:]).eval()
    wrapped = limelight.wrap(mixed)
    (reason,) = wrapped.deeplift_unsupported(wrapped.canonical(x))
    assert "'0'" in reason and "TorchScript" in reason
    assert limelight.explain(mixed, x, "shap", background=bg, nsamples=4).params["algorithm"] == "shap-gradient"


def test_a_layer_inside_a_scripted_submodule_is_a_clear_error(cnn):
    model, x, _ = cnn
    mixed = torch.nn.Sequential(_jit("script", model[:6], x), *model[6:]).eval()
    for layer in ("0", "0.3"):
        with pytest.raises(limelight.LimelightError, match=f"layer '{layer}' is \\(inside\\) a TorchScript submodule"):
            limelight.explain(mixed, x, "gradcam", layer=layer)
    with pytest.raises(limelight.LimelightError, match="pass layer="):  # no hook on the scripted part
        limelight.explain(mixed, x, "gradcam")


@pytest.mark.parametrize("kind", ["script", "trace"])
def test_sanity_checks_on_a_scripted_model_are_a_clear_error(cnn, kind):
    from limelight.evaluation import evaluate

    model, x, bg = cnn
    scripted = _jit(kind, model, x)
    with pytest.raises(UnsupportedError, match="TorchScript.*eager nn.Module"):
        limelight.wrap(scripted).randomized(["5"])
    exp = limelight.explain(scripted, x, "shap-gradient", background=bg, nsamples=4, seed=0)
    with pytest.raises(UnsupportedError, match="TorchScript"):
        evaluate(scripted, x, {"shap-gradient": exp}, metrics=["sparseness"], sanity=True,
                 method_params={"shap-gradient": {"background": bg}})
