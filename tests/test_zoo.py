"""limelight.zoo: model specs through the limelight_load_model hook, presets, class names."""

import subprocess
import sys
import textwrap

import pytest

from limelight import zoo
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
    loaded = load_model("my_factories:make")
    assert isinstance(loaded, LoadedModel) and loaded.model == {"a model": 1} and loaded.framework == "builtins"
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
