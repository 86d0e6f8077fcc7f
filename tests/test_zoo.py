"""limelight.zoo: model specs through the limelight_load_model hook, presets, class names."""

import subprocess
import sys
import textwrap

import pytest

from limelight import zoo
from limelight.core.errors import UnsupportedModelError
from limelight.core.hookspecs import LoadedModel
from limelight.zoo import UnknownModelError, load_model


def test_imagenet_class_names_are_package_data_equal_to_torchvision():
    names = zoo.imagenet_class_names()
    assert len(names) == 1000 and names[0] == "tench" and names[-1] == "toilet tissue"
    torchvision = pytest.importorskip("torchvision")
    assert names == list(torchvision.models.ResNet50_Weights.DEFAULT.meta["categories"])


def test_factory_specs_and_clear_errors(tmp_path, monkeypatch, fresh_registry):
    (tmp_path / "my_factories.py").write_text("def make():\n    return {'a model': 1}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UnsupportedModelError, match="my_factories:make gave a builtins.dict, which no installed backend"):
        load_model("my_factories:make")
    with pytest.raises(UnknownModelError, match="cannot load 'my_factories:nothing'"):
        load_model("my_factories:nothing")
    with pytest.raises(UnknownModelError, match=r"no plugin can load the model spec 'nonsense'.*torchvision:NAME"):
        load_model("nonsense")
    with pytest.raises(UnknownModelError, match="no such model file"):
        load_model(str(tmp_path / "missing.pt"))
    with pytest.raises(UnknownModelError, match="no such model file"):
        load_model(str(tmp_path / "missing.keras"))


def test_old_names_are_the_new_objects():
    from limelight.core import loading

    assert loading.LoadedModel is zoo.LoadedModel is LoadedModel
    assert loading.load_model is load_model and loading.UnknownModelError is UnknownModelError


def test_keras_specs_never_import_torchvision():
    """The Keras zoo's class names come from package data: no torchvision (which crashes the
    process when imported after TensorFlow)."""
    pytest.importorskip("keras")
    code = textwrap.dedent("""
        import sys
        from limelight.zoo import load_model
        loaded = load_model("keras:MobileNetV2", "none")
        assert loaded.class_names[:2] == ["tench", "goldfish"], loaded.class_names[:2]
        assert loaded.input_size == (224, 224) and loaded.framework == "tensorflow"
        assert "torchvision" not in sys.modules and "torch" not in sys.modules
    """)
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_factory_framework_comes_from_the_backends_not_module_names(tmp_path, monkeypatch):
    """A user's own nn.Module subclass (defined in their package) is a torch model; a Keras
    model from a factory declares its input size."""
    pytest.importorskip("torch")
    (tmp_path / "user_pkg_models.py").write_text(textwrap.dedent("""
        import torch

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = torch.nn.Linear(3, 2)

            def forward(self, x):
                return self.fc(x.mean((2, 3)))

        def make():
            return Net()

        def make_keras():
            import keras
            return keras.Sequential([keras.Input((40, 50, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = load_model("user_pkg_models:make")
    assert loaded.framework == "torch" and loaded.input_size is None
    pytest.importorskip("keras")
    loaded = load_model("user_pkg_models:make_keras")
    assert loaded.framework == "tensorflow" and loaded.input_size == (40, 50)


def test_local_weights_files_and_offline_errors(tmp_path, monkeypatch):
    import urllib.error

    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    from limelight.zoo.specs import WeightsUnavailableError

    torch.manual_seed(0)
    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    loaded = load_model("torchvision:resnet18", str(tmp_path / "r18.pth"))
    assert torch.equal(loaded.model.fc.weight, reference.fc.weight)
    with pytest.raises(UnknownModelError, match="no such weights file"):
        load_model("torchvision:resnet18", str(tmp_path / "missing.pth"))

    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models._api.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(WeightsUnavailableError, match=r"cannot download .*--weights none for random weights, or --weights FILE"):
        load_model("torchvision:resnet18")
