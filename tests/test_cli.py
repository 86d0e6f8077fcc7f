import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "limelight.cli", *args], capture_output=True, text=True)


def test_plugins_lists_builtins_and_what_they_provide():
    done = run("plugins")
    assert done.returncode == 0, done.stderr
    assert "limelight.plugins.cam  (builtin, limelight" in done.stdout
    assert "explainers: gradcam, gradcam++, xgradcam, hirescam, layercam, eigencam, eigengradcam" in done.stdout
    assert "limelight.backends.torch" in done.stdout and "backend" in done.stdout


def test_methods_lists_names_with_a_summary():
    done = run("methods")
    assert done.returncode == 0
    lines = dict(line.split(maxsplit=1) for line in done.stdout.splitlines())
    assert lines["gradcam"].startswith("Grad-CAM (Selvaraju")
    assert set(lines) >= {"gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam", "eigengradcam"}


def test_unknown_command_fails_cleanly():
    done = run("frobnicate")
    assert done.returncode != 0 and "invalid choice" in done.stderr


import json  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A real photo that ships inside scikit-image's wheel."""
    from PIL import Image
    from skimage import data

    path = tmp_path_factory.mktemp("img") / "photo.png"
    Image.fromarray(data.chelsea()).save(path)
    return path


@pytest.mark.parametrize("model, methods", [("torchvision:resnet18", "gradcam,shap"), ("keras:MobileNetV2", "gradcam,shap")])
def test_explain_writes_pictures_values_and_summary(photo, tmp_path, model, methods):
    out = tmp_path / "out"
    done = run("explain", str(photo), "--model", model, "--weights", "none", "--method", methods, "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["methods"] == methods.split(",")
    assert summary["predictions"][0]["name"]  # ImageNet class names
    with np.load(out / "values.npz") as values:
        assert values["gradcam"].shape == (1, 224, 224)
    for method in methods.split(","):
        assert (out / f"photo_{method}.png").stat().st_size > 5000
    assert (out / "comparison.png").exists()


@pytest.mark.parametrize("args, message", [
    (["missing.png"], "no such image file"),
    (["notes.txt"], "is not an image Pillow can read"),
    (["photo.png", "--model", "torchvision:resnet99"], "torchvision has no model 'resnet99'"),
    (["photo.png", "--model", "nonsense"], "no plugin can load the model spec 'nonsense'"),
    (["photo.png", "--method", "gradkam"], "unknown method 'gradkam'. Did you mean: 'gradcam'"),
    (["photo.png", "--layer", "layer4.7"], "unknown layer 'layer4.7'"),
    (["photo.png", "--target", "1000"], "target class 1000 (sample 0) is out of range"),
])
def test_bad_input_is_one_clear_line_and_writes_nothing(photo, tmp_path, args, message):
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "photo.png").write_bytes(photo.read_bytes())
    args = [str(tmp_path / args[0]), *args[1:]]
    if "--model" not in args:
        args += ["--model", "torchvision:resnet18"]
    done = run("explain", *args, "--weights", "none", "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("limelight:")]
    assert len(lines) == 1 and message in lines[0], done.stderr[-1500:]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()
