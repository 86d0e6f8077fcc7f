"""``limelight explain --model file.onnx``: the load hook, the CLI, and imports."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from limelight import cli
from limelight.core.errors import LimelightError
from limelight.zoo.specs import load_model

from limelight_onnx import OnnxModel


def test_load_model_reads_the_input_size_and_lays_images_out(resnet18_onnx):
    loaded = load_model(str(resnet18_onnx))
    assert isinstance(loaded.model, OnnxModel)
    assert loaded.framework == "onnx" and loaded.input_size == (64, 64) and loaded.class_names is None
    rgb = np.random.RandomState(0).rand(2, 64, 64, 3).astype(np.float32)
    fed = loaded.preprocess(rgb)
    assert fed.shape == (2, 3, 64, 64) and fed.dtype == np.float32
    np.testing.assert_array_equal(fed, rgb.transpose(0, 3, 1, 2))  # no normalisation
    with pytest.raises(LimelightError, match="carries its own weights"):
        load_model(str(resnet18_onnx), "none")
    with pytest.raises(LimelightError, match="no plugin can load"):
        load_model("model.onnx.txt")


def test_class_names_from_metadata(resnet18_onnx, tmp_path):
    import onnx

    proto = onnx.load(resnet18_onnx)
    onnx.helper.set_model_props(proto, {"class_names": json.dumps([f"c{i}" for i in range(1000)])})
    path = tmp_path / "named.onnx"
    onnx.save(proto, path)
    assert load_model(str(path)).class_names[:2] == ["c0", "c1"]


def save_image(path, shape=(40, 48)):
    from PIL import Image

    Image.fromarray((np.random.RandomState(0).rand(*shape, 3) * 255).astype(np.uint8)).save(path)
    return path


@pytest.mark.parametrize("method", ["eigencam", "scorecam"])
def test_cli_explains_an_onnx_file_at_its_input_size(resnet18_onnx, tmp_path, capsys, method):
    pytest.importorskip("matplotlib")
    from limelight.core.model import SupportsGradients
    from limelight.core.registry import registry

    if method not in registry.explainers():
        pytest.skip(f"the method {method!r} is not registered in this limelight")
    if SupportsGradients in registry.explainer(method).requires:
        pytest.skip(f"limelight's {method} declares requires=(SupportsGradients, ...)")
    image = save_image(tmp_path / "img.png")  # 40×48: resized to the graph's 64×64
    out = tmp_path / "out"
    code = cli.main(["explain", str(image), "--model", str(resnet18_onnx), "--method", method, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["layers"][method] == "/layer4/layer4.1/relu_1/Relu_output_0"
    with np.load(out / "values.npz") as values:
        assert values[method].shape == (1, 64, 64)
        assert np.isfinite(values[method]).all() and values[method].max() == pytest.approx(1.0)
    assert (out / f"img_{method}.png").is_file() and (out / "comparison.png").is_file()


def test_cli_error_is_one_line(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    image = save_image(tmp_path / "img.png")
    code = cli.main(["explain", str(image), "--model", str(tmp_path / "missing.onnx"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("limelight: error: no such ONNX file") and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_loading_plugins_imports_neither_onnx_nor_onnxruntime():
    code = (
        "import sys, limelight\n"
        "assert any(p.name == 'onnx' and p.error is None for p in limelight.plugins())\n"
        "try:\n    limelight.wrap(object())\nexcept limelight.LimelightError:\n    pass\n"
        "from limelight.zoo.specs import load_model\n"
        "try:\n    load_model('pkg_that_is_not_there:make')\nexcept limelight.LimelightError:\n    pass\n"
        "print(sorted(m for m in ('onnx', 'onnxruntime') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
