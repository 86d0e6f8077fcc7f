"""Parity with the reference implementations on torchvision resnet18 (weights=None, seed 0)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
pytest.importorskip("pytorch_grad_cam")
pytest.importorskip("captum")

import pytorch_grad_cam as pgc  # noqa: E402
from captum.attr import LayerGradCam  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection  # noqa: E402

import limelight  # noqa: E402
from limelight.core.ops import minmax_normalize, resize_bilinear  # noqa: E402
from limelight.core.targets import resolve_target  # noqa: E402

TARGETS = [3, 7, 1]


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(3, 3, 160, 160, generator=torch.Generator().manual_seed(0))
    return model, x


def test_raw_gradcam_equals_captum(setup):
    model, x = setup
    ref = LayerGradCam(model, model.layer4).attribute(x, target=TARGETS, relu_attributions=True)
    ours = limelight.explain(model, x, "gradcam", targets=TARGETS, layer="layer4", upsample=False, normalize=False)
    ref = ref[:, 0].detach().numpy()
    assert ref.shape == ours.values.shape == (3, 5, 5) and ref.max() > 0
    np.testing.assert_allclose(ours.values, ref, rtol=1e-5, atol=1e-5 * ref.max())


@pytest.mark.parametrize(
    "method, reference",
    [
        ("gradcam", pgc.GradCAM),
        ("gradcam++", pgc.GradCAMPlusPlus),
        ("xgradcam", pgc.XGradCAM),
        ("hirescam", pgc.HiResCAM),
        ("layercam", pgc.LayerCAM),
    ],
)
@pytest.mark.parametrize("targets", [TARGETS, None])
def test_normalized_maps_equal_pytorch_grad_cam(setup, method, reference, targets):
    model, x = setup
    ours = limelight.explain(model, x, method, targets=targets)
    with reference(model=model, target_layers=[model.layer4[-1]]) as cam:
        ref = cam(input_tensor=x, targets=None if targets is None else [ClassifierOutputTarget(t) for t in targets])
    assert ours.params["layer"] == "layer4.1"
    assert ours.values.shape == ref.shape == (3, 160, 160)
    assert (ref.reshape(3, -1).max(axis=1) > 0.99).all()  # non-trivial maps
    np.testing.assert_allclose(ours.values, ref, atol=1e-5)


@pytest.mark.parametrize("method, reference", [("eigencam", pgc.EigenCAM), ("eigengradcam", pgc.EigenGradCAM)])
def test_eigen_methods_match_up_to_the_documented_sign(setup, method, reference):
    model, x = setup
    raw = limelight.explain(model, x, method, targets=TARGETS, relu=False, upsample=False, normalize=False).values
    wrapped = limelight.wrap(model)
    grads = wrapped.gradients(wrapped.canonical(x), resolve_target(TARGETS, len(TARGETS)), "layer4.1")
    acts, gradients = wrapped.to_numpy(grads.activations), wrapped.to_numpy(grads.gradients)
    decomposed = acts if method == "eigencam" else acts * gradients
    theirs_raw = get_2d_projection(decomposed.transpose(0, 3, 1, 2).copy())
    signs = []
    for ours_i, theirs_i, feats in zip(raw, theirs_raw, decomposed, strict=True):
        sign = 1.0 if np.allclose(ours_i, theirs_i, rtol=1e-4, atol=1e-5 * np.abs(theirs_i).max()) else -1.0
        np.testing.assert_allclose(ours_i, sign * theirs_i, rtol=1e-4, atol=1e-5 * np.abs(theirs_i).max())
        # the rule: the map correlates positively with the channel-mean of what is decomposed
        assert np.corrcoef(ours_i.ravel(), feats.mean(axis=-1).ravel())[0, 1] > 0
        signs.append(sign)
    # full pipeline: equal to pytorch-grad-cam where the SVD's sign agreed, else to its mirror
    ours = limelight.explain(model, x, method, targets=TARGETS).values
    with reference(model=model, target_layers=[model.layer4[-1]]) as cam:
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in TARGETS])
    mirrored = minmax_normalize(resize_bilinear(np.maximum(-theirs_raw, 0), (160, 160)))
    for i, sign in enumerate(signs):
        np.testing.assert_allclose(ours[i], ref[i] if sign > 0 else mirrored[i], atol=1e-5)
