import numpy as np
import pytest

from limelight.core.ops import bilinear_matrix, minmax_normalize, resize_bilinear


@pytest.mark.parametrize("size", [(224, 160), (5, 3), (7, 7), (1, 9)])
def test_resize_matches_cv2_and_torch(size):
    cv2 = pytest.importorskip("cv2")
    torch = pytest.importorskip("torch")
    maps = np.random.RandomState(1).rand(3, 7, 5).astype(np.float32)
    ours = resize_bilinear(maps, size)
    ref_cv2 = np.stack([cv2.resize(m, (size[1], size[0]), interpolation=cv2.INTER_LINEAR) for m in maps])
    ref_torch = torch.nn.functional.interpolate(
        torch.from_numpy(maps)[:, None], size=size, mode="bilinear", align_corners=False
    )[:, 0].numpy()
    np.testing.assert_allclose(ours, ref_torch, atol=1e-6)
    if size[0] >= 7 and size[1] >= 5:  # cv2 agrees for upsampling (it antialiases nothing either)
        np.testing.assert_allclose(ours, ref_cv2, atol=1e-6)


def test_resize_matches_tf_image_resize():
    tf = pytest.importorskip("tensorflow")
    maps = np.random.RandomState(2).rand(2, 6, 4, 3).astype(np.float32)
    ours = resize_bilinear(maps, (30, 17))
    ref = tf.image.resize(maps, (30, 17), method="bilinear", antialias=False).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_interpolation_rows_sum_to_one():
    m = bilinear_matrix(7, 224)
    np.testing.assert_allclose(m.sum(axis=1), 1.0)
    assert (m >= 0).all()


def test_minmax_zero_and_constant_maps_stay_zero():
    maps = np.stack([np.zeros((4, 4)), np.full((4, 4), 3.0), np.arange(16.0).reshape(4, 4)])
    out = minmax_normalize(maps)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[0], 0)
    np.testing.assert_array_equal(out[1], 0)
    np.testing.assert_allclose(out[2], np.arange(16.0).reshape(4, 4) / 15, rtol=1e-6)


def test_minmax_is_scale_free():
    base = np.random.RandomState(3).rand(1, 5, 5)
    np.testing.assert_allclose(minmax_normalize(base * 1e-11), minmax_normalize(base), atol=1e-6)


def test_displayable_pixel_values():
    from limelight.core.ops import displayable

    unit = np.random.RandomState(4).rand(2, 3, 3, 3).astype(np.float32)
    np.testing.assert_array_equal(displayable(unit), unit)
    np.testing.assert_allclose(displayable(unit * 255), unit, rtol=1e-6)
    normalized = np.stack([unit[0] * 4 - 2, unit[1] * 10 - 1])  # per image, different scales
    out = displayable(normalized)
    assert out.shape == normalized.shape
    np.testing.assert_allclose(out.reshape(2, -1).min(1), 0, atol=1e-7)
    np.testing.assert_allclose(out.reshape(2, -1).max(1), 1, atol=1e-6)
    np.testing.assert_allclose(displayable(normalized[0]), out[0], atol=1e-6)  # one image alone
