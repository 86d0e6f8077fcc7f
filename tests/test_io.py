"""Images in: Pillow loading of every common mode, and the zoos' own preprocessing."""

import numpy as np
import pytest

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from limelight import io  # noqa: E402
from limelight.core.errors import InputError  # noqa: E402

RGB = (np.random.RandomState(0).rand(6, 8, 3) * 255).round().astype(np.uint8)


def test_rgb_png_round_trip(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "a.png")
    np.testing.assert_allclose(io.load_image(tmp_path / "a.png"), RGB / 255.0, atol=1e-7)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "I;16", "1", "CMYK"])
def test_modes_become_rgb01(tmp_path, mode):
    if mode == "I;16":
        image = Image.fromarray(RGB[..., 0].astype(np.uint16) * 257)
        assert image.mode == "I;16"
    else:
        image = Image.fromarray(RGB).convert(mode)
    path = tmp_path / ("a.tiff" if mode in ("I;16", "CMYK") else "a.png")
    image.save(path)
    out = io.load_image(path)
    assert out.shape == (6, 8, 3) and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    if mode == "L":
        np.testing.assert_allclose(out[..., 0], np.asarray(image) / 255.0, atol=1e-7)
    if mode == "I;16":
        np.testing.assert_allclose(out[..., 0], RGB[..., 0] / 255.0, atol=1e-6)


def test_alpha_is_composited_on_white(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)  # fully transparent black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    np.testing.assert_allclose(io.load_image(tmp_path / "t.png"), 1.0)


def test_exif_rotation_is_applied(tmp_path):
    image = Image.fromarray(RGB)
    exif = image.getexif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    image.save(tmp_path / "r.jpg", exif=exif, quality=100)
    assert io.load_image(tmp_path / "r.jpg").shape == (8, 6, 3)


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="no such image file"):
        io.load_image(tmp_path / "missing.png")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match=r"notes.txt is not an image Pillow can read"):
        io.load_image(tmp_path / "notes.txt")


def test_batch_needs_equal_sizes_or_size():
    with pytest.raises(InputError, match="different sizes"):
        io.load_images([RGB, RGB[:4]])
    assert io.load_images([RGB, RGB[:4]], size=5).shape == (2, 5, 5, 3)


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_keras_presets_are_keras_own_preprocessing_and_invert(mode):
    keras = pytest.importorskip("keras")
    images = np.random.RandomState(1).rand(2, 5, 5, 3).astype(np.float32)
    fed = io.preset(mode).apply(images)
    np.testing.assert_allclose(fed, keras.applications.imagenet_utils.preprocess_input(images * 255.0, mode=mode), rtol=1e-6)
    np.testing.assert_allclose(io.preset(mode).inverse(fed), images, atol=1e-5)


def test_torchvision_preset_matches_the_weights_transform_and_inverts():
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    images = np.random.RandomState(2).rand(1, 256, 256, 3).astype(np.float32)
    fed = io.preset("torchvision").apply(images)
    reference = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.transforms()(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()))
    np.testing.assert_allclose(fed, reference.numpy(), atol=1e-5)
    assert fed.shape == (1, 3, 224, 224)
    np.testing.assert_allclose(io.preset("torchvision").inverse(fed), images[:, 16:240, 16:240], atol=1e-5)


def test_unknown_preset():
    with pytest.raises(InputError, match="unknown preset 'imagenet'"):
        io.preset("imagenet")


def test_decompression_bomb_is_a_clear_error(tmp_path, monkeypatch):
    Image.fromarray(RGB).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # 48 pixels > 2 x 10: Pillow refuses
    with pytest.raises(InputError, match=r"bomb.png is too large to load safely.*MAX_IMAGE_PIXELS"):
        io.load_image(tmp_path / "bomb.png")
