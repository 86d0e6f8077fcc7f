"""The shipped demo model: small, accurate, and the same in both frameworks."""

import os
from importlib import resources

import numpy as np
import pytest

from limelight import datasets, demo

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

import limelight  # noqa: E402


@pytest.fixture(scope="module")
def test_set():
    return datasets.shapes(1000, seed=1000, size=demo.INPUT_SIZE)


def test_weights_file_is_small_and_has_no_pickles():
    path = resources.files("limelight.demo").joinpath(demo.WEIGHTS_FILE)
    assert os.path.getsize(path) <= 1_000_000
    weights = demo.load_weights()  # np.load(allow_pickle=False)
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in weights.values())


def test_accuracy_of_the_shipped_weights(test_set):
    model = demo.torch_model()
    with torch.no_grad():
        predicted = model(torch.from_numpy(test_set.images.transpose(0, 3, 1, 2).copy())).argmax(1).numpy()
    assert (predicted == test_set.labels).mean() >= 0.97


def test_torch_and_keras_twins_agree(test_set):
    tm, km = demo.torch_model(), demo.keras_model()
    x = test_set.images[:64]
    with torch.no_grad():
        t_out = tm(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    np.testing.assert_allclose(km(x).numpy(), t_out, rtol=1e-4, atol=1e-5)
    et = limelight.explain(tm, torch.from_numpy(x[:8].transpose(0, 3, 1, 2).copy()), "gradcam")
    ek = limelight.explain(km, x[:8], "gradcam")
    np.testing.assert_allclose(et.values, ek.values, atol=1e-5)
