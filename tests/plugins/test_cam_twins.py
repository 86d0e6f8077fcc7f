"""The same CNN in torch and in Keras (copied weights) gives the same maps for every method."""

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("keras")

import limelight
from limelight.core.targets import Predicted
from limelight.plugins.cam import BUILTIN_CAMS

METHODS = [cls.name for cls in BUILTIN_CAMS]


def test_twins_agree_on_outputs_and_gradients(twin_cnn):
    tm, km, t_layer, k_layer, x_nchw, x_nhwc = twin_cnn
    t, k = limelight.wrap(tm), limelight.wrap(km)
    xt, xk = t.canonical(x_nchw), k.canonical(x_nhwc)
    np.testing.assert_allclose(t.to_numpy(t.predict(xt)), k.to_numpy(k.predict(xk)), rtol=1e-5, atol=1e-6)
    gt, gk = t.gradients(xt, Predicted(), t_layer), k.gradients(xk, Predicted(), k_layer)
    pairs = [(t.to_numpy(a), k.to_numpy(b)) for a, b in ((gt.activations, gk.activations), (gt.gradients, gk.gradients))]
    for a, b in pairs:
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * np.abs(a).max())


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("raw", [False, True])
def test_twins_give_identical_maps(twin_cnn, method, raw):
    tm, km, t_layer, k_layer, x_nchw, x_nhwc = twin_cnn
    options = dict(relu=False, upsample=False, normalize=False) if raw else {}
    et = limelight.explain(tm, x_nchw, method, targets=[0, 1, 2, 3], layer=t_layer, **options)
    ek = limelight.explain(km, x_nhwc, method, targets=[0, 1, 2, 3], layer=k_layer, **options)
    assert et.framework == "torch" and ek.framework == "tensorflow"
    assert et.values.shape == ek.values.shape == ((4, 8, 8) if raw else (4, 16, 16))
    scale = np.abs(et.values).max()
    assert scale > 0
    np.testing.assert_allclose(et.values, ek.values, atol=1e-5 * scale)


def test_twins_default_layers_and_predicted_targets(twin_cnn):
    tm, km, t_layer, k_layer, x_nchw, x_nhwc = twin_cnn
    et, ek = limelight.explain(tm, x_nchw), limelight.explain(km, x_nhwc)
    assert (et.params["layer"], ek.params["layer"]) == (t_layer, k_layer)
    np.testing.assert_array_equal(et.targets, ek.targets)
    np.testing.assert_allclose(et.values, ek.values, atol=1e-5)
