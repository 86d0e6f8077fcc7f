"""Half-precision models: a float16 / bfloat16 torch model, and a Keras model under the
``mixed_float16`` policy, give finite explanations close to the float32 model's with the same
weights, for every family of methods (gradient CAMs, gradient-free CAMs, SHAP)."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch

import limelight
from limelight.plugins.gradient_free import ABLATION_OFFSET, ablation_offset

# maps in [0, 1]; float16 keeps ~3 decimal digits, bfloat16 ~2 (Ablation-CAM's drops y - y_c
# cancel, so it loses one more)
TOLERANCE = {torch.float16: 2e-3, torch.bfloat16: 3e-2}
ABLATION_TOLERANCE = {torch.float16: 2e-2, torch.bfloat16: 1e-1}
CAMS = {
    "gradcam": {},
    "gradcam++": {},
    "layercam": {},
    "eigencam": {},
    "scorecam": {},
    "ablationcam": {},
    "rise": {"n_masks": 64, "seed": 0},
}


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.Conv2d(8, 8, 3, padding=1),  # "2": its minimum is < 0 and nothing zeroes -inf after it
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 4),
    ).eval()


def _inputs() -> torch.Tensor:
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def _close(full: limelight.Explanation, half: limelight.Explanation, atol: float) -> None:
    got, want = np.asarray(half.values, np.float64), np.asarray(full.values, np.float64)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, atol=atol)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("method", sorted(CAMS))
def test_torch_half_precision_maps_match_float32(method: str, dtype: torch.dtype) -> None:
    model, x = _model(), _inputs()
    half = copy.deepcopy(model).to(dtype)
    params = {"layer": "2", **CAMS[method]} if method != "rise" else CAMS[method]
    full = limelight.explain(model, x, method, targets=[1, 2], **params)
    atol = (ABLATION_TOLERANCE if method == "ablationcam" else TOLERANCE)[dtype]
    _close(full, limelight.explain(half, x.to(dtype), method, targets=[1, 2], **params), atol)


def test_ablation_value_stays_finite_in_float16() -> None:
    """min(A) - 1e7 is -inf in float16: the ablated network then gave NaN/inf scores and a
    map off by 1 from the float32 one (test above); the offset is capped to stay finite."""
    import numpy as xp

    assert ablation_offset(xp, xp.float32) == ABLATION_OFFSET
    assert ablation_offset(xp, xp.float64) == ABLATION_OFFSET
    assert ablation_offset(xp, xp.float16) == pytest.approx(np.sqrt(65504.0))
    assert np.isfinite(np.float16(-3.0) - np.float16(ablation_offset(xp, xp.float16)))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_torch_half_precision_shap(dtype: torch.dtype) -> None:
    """SHAP values in half precision within 1% (float16) / 3% (bfloat16) of their range;
    shap-partition on a float16 model feeds shap's Image masker float32 (OpenCV's blur
    takes no float16: a raw cv2.error before)."""
    model, x = _model(), _inputs()
    background = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    half = copy.deepcopy(model).to(dtype)
    cases = {
        "shap-gradient": {"background": background, "nsamples": 16, "seed": 0},
        "shap-deep": {"background": background},
    }
    if dtype == torch.float16:  # bfloat16's 8-bit outputs swamp this model's tiny Owen values
        cases["shap-partition"] = {"max_evals": 64}
    for method, params in cases.items():
        full = limelight.explain(model, x, method, targets=[1, 2], **params)
        low = {k: v.to(dtype) if torch.is_tensor(v) else v for k, v in params.items()}
        got = limelight.explain(half, x.to(dtype), method, targets=[1, 2], **low)
        scale = float(np.abs(np.asarray(full.values)).max())
        _close(full, got, (1e-2 if dtype == torch.float16 else 3e-2) * scale)


def test_keras_mixed_float16_matches_float32() -> None:
    """A Keras model under ``mixed_float16`` (float16 compute, float32 variables) and its
    float32 twin with the same weights."""
    import keras

    def build(policy: str) -> keras.Model:
        inputs = keras.Input((16, 16, 3))
        h = keras.layers.Conv2D(8, 3, padding="same", name="c1", dtype=policy)(inputs)
        h = keras.layers.Conv2D(8, 3, padding="same", name="c2", dtype=policy)(h)
        h = keras.layers.GlobalAveragePooling2D(dtype=policy)(h)
        h = keras.layers.Dense(4, dtype=policy)(h)
        return keras.Model(inputs, keras.layers.Activation("linear", dtype="float32")(h))

    keras.utils.set_random_seed(0)
    full_model = build("float32")
    half_model = build("mixed_float16")
    half_model.set_weights(full_model.get_weights())
    x = np.random.RandomState(0).randn(2, 16, 16, 3).astype("float32")
    for method in ("gradcam", "scorecam", "ablationcam"):
        full = limelight.explain(full_model, x, method, targets=[1, 2], layer="c2")
        _close(full, limelight.explain(half_model, x, method, targets=[1, 2], layer="c2"), 2e-3)
    background = np.random.RandomState(1).randn(4, 16, 16, 3).astype("float32")
    full = limelight.explain(full_model, x, "shap-deep", targets=[1, 2], background=background)
    half = limelight.explain(half_model, x, "shap-deep", targets=[1, 2], background=background)
    _close(full, half, 1e-2 * float(np.abs(np.asarray(full.values)).max()))


def test_ablationcam_warns_when_bfloat16_rounding_swamps_the_drops() -> None:
    """A score of ~100 (bfloat16 rounds it in steps of 0.5) and channel drops of ~0.1: the
    weights are rounding; a UserWarning says so. float32 and float16 give none."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),  # "1": minimum 0, so a channel is ablated to 0
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 2),
    ).eval()
    with torch.no_grad():
        model[4].bias += 100.0
    x = _inputs()
    with pytest.warns(UserWarning, match="ablationcam: the typical score drop y - y_c is .* rounding steps"):
        limelight.explain(copy.deepcopy(model).to(torch.bfloat16), x.to(torch.bfloat16), "ablationcam",
                          targets=[0, 1], layer="1")
    for dtype in (torch.float32, torch.float16):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            limelight.explain(copy.deepcopy(model).to(dtype), x.to(dtype), "ablationcam", targets=[0, 1], layer="1")
