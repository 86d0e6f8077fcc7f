"""A model file passed where a model goes — ``limelight.explain("model.keras", x)``,
``limelight.wrap(path)`` — is loaded as ``limelight explain --model FILE`` loads it, and gives
the loaded model's explanation; a string that is no file, or a file no loader reads, is one
clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import limelight
from limelight.core.errors import UnknownModelError, UnsupportedModelError
from tests.conftest import small_torch_cnn


def test_torchscript_file(tmp_path) -> None:
    torch.manual_seed(0)
    scripted = torch.jit.script(small_torch_cnn().eval())
    path = tmp_path / "model.pt"
    scripted.save(str(path))
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    background = torch.zeros(2, 3, 16, 16)
    want = limelight.explain(scripted, x, "shap-gradient", targets=[1, 2], background=background, seed=0)
    for model in (path, str(path), limelight.wrap(path)):
        got = limelight.explain(model, x, "shap-gradient", targets=[1, 2], background=background, seed=0)
        np.testing.assert_allclose(got.values, want.values, rtol=1e-6, atol=1e-7)
    assert limelight.wrap(str(path)).framework == "torch"


def test_keras_file(tmp_path) -> None:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, name="conv"), keras.layers.GlobalAveragePooling2D(),
         keras.layers.Dense(3)]
    )
    path = tmp_path / "model.keras"
    model.save(path)
    x = np.random.RandomState(0).rand(2, 16, 16, 3).astype("float32")
    want = limelight.explain(model, x, "gradcam", targets=[0, 2], layer="conv")
    got = limelight.explain(str(path), x, "gradcam", targets=[0, 2], layer="conv")
    np.testing.assert_allclose(got.values, want.values, atol=1e-6)
    assert got.params["layer"] == "conv"


def test_a_string_that_is_no_file(tmp_path) -> None:
    with pytest.raises(UnsupportedModelError, match="is a string but no file.*limelight.zoo.load_model"):
        limelight.explain(str(tmp_path / "missing.keras"), np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(UnsupportedModelError, match="no file"):
        limelight.wrap("torchvision:resnet18")


def test_a_file_no_loader_reads(tmp_path) -> None:
    path = tmp_path / "weights.txt"
    path.write_text("not a model")
    with pytest.raises(UnknownModelError, match="no plugin can load the model spec"):
        limelight.wrap(path)


def test_a_loader_plugin_that_gives_a_model(tmp_path) -> None:
    """A ``limelight_load_model`` plugin may return a ``limelight.Model`` itself (the ONNX
    plugin's loader does): the path then explains with it."""
    from limelight.core.hookspecs import LoadedModel, hookimpl
    from limelight.core.model import NumpyModel
    from limelight.core.registry import registry

    class Linear(NumpyModel):
        def predict(self, x, batch_size=None):
            return x.reshape(len(x), -1)[:, :3] * 2.0

    class Loader:
        @hookimpl
        def limelight_load_model(self, spec, weights):
            return LoadedModel(Linear(None), "numpy") if spec.endswith(".fake") else None

    path = tmp_path / "model.fake"
    path.write_text("weights")
    plugin = Loader()
    registry.pm.register(plugin)
    try:
        x = np.random.RandomState(0).rand(1, 4, 4, 3).astype("float32")
        exp = limelight.explain(str(path), x, "rise", targets=[1], n_masks=16, seed=0)
        assert exp.framework == "numpy" and exp.values.shape == (1, 4, 4)
    finally:
        registry.pm.unregister(plugin)
