"""Contract every CAM explainer passes (Xplique-style), plus the post-processing options."""

import numpy as np
import pytest

pytest.importorskip("torch")

import limelight
from limelight.core.errors import LayerError
from limelight.core.targets import resolve_target
from limelight.plugins.cam import BUILTIN_CAMS, principal_projection

xp = pytest.importorskip("array_api_compat.numpy")

METHODS = [cls.name for cls in BUILTIN_CAMS]
CLASS_AGNOSTIC = {"eigencam"}


@pytest.mark.parametrize("method", METHODS)
def test_contract(twin_cnn, method):
    tm, _, layer, _, x_nchw, x_nhwc = twin_cnn
    exp = limelight.explain(tm, x_nchw, method)
    assert isinstance(exp, limelight.Explanation)
    assert exp.method == method and exp.framework == "torch"
    assert exp.values.shape == (4, 16, 16) and exp.values.dtype == np.float32
    assert np.isfinite(exp.values).all() and exp.values.min() >= 0 and exp.values.max() <= 1
    np.testing.assert_array_equal(exp.targets, exp.outputs.argmax(1))
    np.testing.assert_array_equal(exp.inputs, x_nhwc)
    assert exp.params == {"layer": layer, "reshape": None, "relu": True, "upsample": True, "normalize": True, "precision": "default"}
    # deterministic, and batch composition does not matter
    again = limelight.explain(tm, x_nchw[2:], method, batch_size=1)
    np.testing.assert_allclose(again.values, exp.values[2:], atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_targets_matter_unless_class_agnostic(twin_cnn, method):
    tm, _, _, _, x_nchw, _ = twin_cnn
    a = limelight.explain(tm, x_nchw, method, targets=0, relu=False, normalize=False)
    b = limelight.explain(tm, x_nchw, method, targets=4, relu=False, normalize=False)
    assert np.array_equal(a.values, b.values) == (method in CLASS_AGNOSTIC)


def test_postprocessing_steps(twin_cnn):
    tm, _, _, _, x_nchw, _ = twin_cnn
    raw = limelight.explain(tm, x_nchw, "hirescam", targets=4, relu=False, upsample=False, normalize=False).values
    assert raw.shape == (4, 8, 8) and raw.min() < 0  # signed, at layer resolution
    relu = limelight.explain(tm, x_nchw, "hirescam", targets=4, upsample=False, normalize=False).values
    np.testing.assert_allclose(relu, np.maximum(raw, 0), rtol=1e-6)
    up = limelight.explain(tm, x_nchw, "hirescam", targets=4, normalize=False).values
    assert up.shape == (4, 16, 16)
    # upsampling by an exact factor 2 with half-pixel centres: corners copy input corners,
    # interior pixels are 3:1 blends of neighbours
    np.testing.assert_allclose(up[:, 0, 0], relu[:, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(up[:, 1, 1], (9 * relu[:, 0, 0] + 3 * relu[:, 0, 1] + 3 * relu[:, 1, 0] + relu[:, 1, 1]) / 16, rtol=1e-5)
    full = limelight.explain(tm, x_nchw, "hirescam", targets=4).values
    low = up.reshape(4, -1).min(1)[:, None, None]
    span = up.reshape(4, -1).max(1)[:, None, None] - low
    assert (span == 0).any() and (span > 0).any()  # some maps are all negative before the ReLU
    expected = np.divide(up - low, span, out=np.zeros_like(up), where=span > 0)
    np.testing.assert_allclose(full, expected, atol=1e-6)


def test_all_zero_map_stays_zero_not_nan():
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(2, 2))
    with torch.no_grad():
        model[0].bias.fill_(-100.0)  # ReLU kills everything: zero activations
    exp = limelight.explain(model, torch.rand(2, 3, 4, 4), layer="1")
    assert np.isfinite(exp.values).all()
    np.testing.assert_array_equal(exp.values, 0)


class _SignedSVD:
    """``xp`` whose ``linalg.svd`` returns its singular vectors times ``sign``: an SVD's sign
    is arbitrary, so both signs are legitimate answers the rule must handle."""

    def __init__(self, sign):
        self.sign, self.used = sign, 0
        self.linalg = self

    def svd(self, a, full_matrices=True):
        self.used += 1
        u, s, vt = xp.linalg.svd(a, full_matrices=full_matrices)
        return u * self.sign, s, vt * self.sign

    def __getattr__(self, name):
        return getattr(xp, name)


def test_principal_projection_sign_rule():
    rng = np.random.RandomState(0)
    blob = np.zeros((6, 6))
    blob[1:3, 1:3] = 1.0
    feats = (blob[None, :, :, None] * rng.uniform(1, 2, size=(1, 1, 1, 8)) + 0.01 * rng.rand(1, 6, 6, 8)).astype(
        np.float32
    )
    results = []
    for sign in (1.0, -1.0):  # whatever sign the SVD returns, the blob is positive
        ns = _SignedSVD(sign)
        proj = np.asarray(principal_projection(ns, feats))
        assert ns.used == 1
        assert proj[0, 1:3, 1:3].min() > proj[0, 4:, 4:].max()
        results.append(proj)
    # the unfixed projection is negated between the two calls, so one of them took the flip
    # branch; both give the same map
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6, atol=1e-6)


def test_non_spatial_layer_for_cam_on_flat_model():
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    with pytest.raises(LayerError, match="no module with a spatial|no layer with a spatial"):
        limelight.explain(model, torch.rand(2, 4))
    with pytest.raises(LayerError, match="not spatial"):
        limelight.explain(model, torch.rand(2, 4), layer="1")


def test_cam_methods_take_one_target_per_sample(twin_cnn):
    from limelight.core.errors import TargetError

    tm, _, _, _, x_nchw, _ = twin_cnn
    with pytest.raises(TargetError, match="'gradcam' explains one output per sample"):
        limelight.explain(tm, x_nchw, "gradcam", targets=[[0, 1]] * 4)


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_multi_column_targets_share_one_forward_and_match_single_columns(twin_cnn, framework):
    tm, km, t_layer, k_layer, x_nchw, x_nhwc = twin_cnn
    model, layer = (limelight.wrap(tm), t_layer) if framework == "torch" else (limelight.wrap(km), k_layer)
    x = model.canonical(x_nchw if framework == "torch" else x_nhwc)
    targets = np.array([[0, 4], [1, 3], [2, 2], [3, 1]])
    forwards = []
    if framework == "torch":
        handle = tm[0].register_forward_hook(lambda *args: forwards.append(1))
    multi = model.gradients(x, resolve_target(targets, 4), layer)
    if framework == "torch":
        handle.remove()
        assert len(forwards) == 1
    assert multi.gradients.shape == (4, 2, 8, 8, 16)
    for t in range(2):
        single = model.gradients(x, resolve_target(targets[:, t], 4), layer)
        np.testing.assert_allclose(model.to_numpy(multi.gradients)[:, t], model.to_numpy(single.gradients),
                                   rtol=1e-5, atol=1e-9)
