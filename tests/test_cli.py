"""The command line: its promise is "one line, exit 2, nothing written" on every error, and
files only once everything is computed. Called in-process (``cli.main``) for speed; one
subprocess checks the console entry point."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from limelight import cli
from limelight.core.errors import InputError

TINY = textwrap.dedent("""
    import torch


    class TinyNet(torch.nn.Module):
        '''The user's own nn.Module subclass (not from torch's namespace).'''

        def __init__(self):
            super().__init__()
            self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU())
            self.head = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.head(self.features(x).mean((2, 3)))


    def make():
        torch.manual_seed(0)
        return TinyNet().eval()
""")


def assert_picture(path, min_side=100):
    """A real PNG: Pillow decodes it, it has a sensible size and it is not one flat colour."""
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG", path
        pixels = np.asarray(image.convert("RGB"))
    assert min(pixels.shape[:2]) >= min_side, (path, pixels.shape)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 16, path  # more than a few flat colours


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """``--model limelight_cli_tiny:make``: a small user-defined torch model."""
    pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("models")
    (folder / "limelight_cli_tiny.py").write_text(TINY)
    sys.path.insert(0, str(folder))
    yield "limelight_cli_tiny:make"
    sys.path.remove(str(folder))
    sys.modules.pop("limelight_cli_tiny", None)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A real photo that ships inside scikit-image's wheel."""
    from PIL import Image
    from skimage import data

    path = tmp_path_factory.mktemp("img") / "photo.png"
    Image.fromarray(data.chelsea()).save(path)
    return path


def save(path, seed=0, shape=(40, 48)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.random.RandomState(seed).rand(*shape, 3) * 255).astype(np.uint8)).save(path)
    return path


def main(capsys, *args):
    """Run the CLI in-process: (exit code, stdout, the ``limelight:`` lines of stderr)."""
    code = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, [line for line in captured.err.splitlines() if line.startswith("limelight:")]


def run(*args):
    return subprocess.run([sys.executable, "-m", "limelight.cli", *args], capture_output=True, text=True)


def test_plugins_and_methods_through_the_console_entry_point():
    done = run("plugins")
    assert done.returncode == 0, done.stderr
    assert "limelight.plugins.cam  (builtin, limelight" in done.stdout
    assert "explainers: gradcam, gradcam++, xgradcam, hirescam, layercam, eigencam, eigengradcam" in done.stdout
    assert "limelight.backends.torch" in done.stdout and "backend" in done.stdout


def test_methods_lists_names_with_a_summary(capsys):
    code, out, _ = main(capsys, "methods")
    assert code == 0
    lines = dict(line.split(maxsplit=1) for line in out.splitlines())
    assert lines["gradcam"].startswith("Grad-CAM (Selvaraju")
    assert set(lines) >= {"gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam", "eigengradcam", "shap"}


def test_unknown_command_fails_cleanly(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["frobnicate"])
    assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("model, methods", [("torchvision:resnet18", "gradcam,shap"), ("keras:MobileNetV2", "gradcam,shap")])
def test_explain_writes_pictures_values_and_summary(photo, tmp_path, capsys, model, methods):
    out = tmp_path / "out"
    code, _, errors = main(capsys, "explain", photo, "--model", model, "--weights", "none", "--method", methods, "--background", "2", "--out", out)
    assert code == 0, errors
    summary = json.loads((out / "summary.json").read_text())
    assert summary["methods"] == methods.split(",")
    assert summary["predictions"][0]["name"]  # ImageNet class names
    assert summary["algorithms"]["shap"] in ("shap-deep", "shap-gradient")
    with np.load(out / "values.npz") as values:
        assert values["gradcam"].shape == (1, 224, 224)
        assert values["shap"].shape == (1, 224, 224, 3)
    assert set(summary) == {"model", "images", "files", "predictions", "targets", "layers", "algorithms", "methods", "seconds"}
    assert summary["model"] == model and summary["images"] == [str(photo)] and summary["files"] == {str(photo): "photo"}
    top = summary["predictions"][0]["class"]
    assert summary["targets"] == {m: [top] for m in methods.split(",")}  # the predicted class by default
    assert summary["layers"]["gradcam"] and set(summary["seconds"]) == set(methods.split(","))
    with np.load(out / "values.npz") as values:
        assert np.isfinite(values["gradcam"]).all() and values["gradcam"].min() >= 0  # Grad-CAM's ReLU
        assert np.isfinite(values["shap"]).all() and np.abs(values["shap"]).max() > 0
    for method in methods.split(","):
        assert_picture(out / f"photo_{method}.png")
    assert_picture(out / "comparison.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left


@pytest.mark.parametrize("args, message", [
    (["missing.png"], "no such image file"),
    (["notes.txt"], "is not an image Pillow can read"),
    (["photo.png", "--model", "torchvision:resnet99"], "torchvision has no model 'resnet99'"),
    (["photo.png", "--model", "nonsense"], "no plugin can load the model spec 'nonsense'"),
    (["photo.png", "--method", "gradkam"], "unknown method 'gradkam'. Did you mean: 'gradcam'"),
    (["photo.png", "--layer", "layer4.7"], "unknown layer 'layer4.7'"),
    (["photo.png", "--target", "1000"], "target class 1000 (sample 0) is out of range"),
    (["photo.png", "--target", "tabby kat"], "--target 'tabby kat' is not one of the model's class names. Did you mean: 'tabby'"),
    (["photo.png", "--out", "notes.txt"], "exists and is not a folder"),
    (["photo.png", "--out", "notes.txt/out"], "notes.txt is a file, not a folder"),
    (["folder"], "no image files in the folder"),
    (["*.bmp"], "no image files match"),
    (["photo.png", "--background", "0", "--method", "shap-gradient"], "--background N needs N >= 1"),
])
def test_bad_input_is_one_clear_line_and_writes_nothing(photo, tmp_path, capsys, args, message):
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "folder").mkdir()
    (tmp_path / "photo.png").write_bytes(photo.read_bytes())
    args = [tmp_path / args[0], *args[1:]]
    if "--model" not in args:
        args += ["--model", "torchvision:resnet18"]
    if "--out" in args:
        args[args.index("--out") + 1] = tmp_path / args[args.index("--out") + 1]
    else:
        args += ["--out", tmp_path / "out"]
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, lines = main(capsys, "explain", *args, "--weights", "none")
    assert code == 2
    assert len(lines) == 1 and message in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_out_without_permission_is_one_line(tiny, tmp_path, capsys, monkeypatch):
    image = save(tmp_path / "a.png")
    monkeypatch.setattr(cli.os, "access", lambda *args, **kwargs: False)  # root ignores chmod
    code, _, lines = main(capsys, "explain", image, "--model", tiny, "--out", tmp_path / "out")
    assert code == 2 and len(lines) == 1 and "permission denied" in lines[0]
    assert not (tmp_path / "out").exists()


def test_a_failure_while_writing_leaves_nothing_behind(tiny, tmp_path, capsys, monkeypatch):
    from limelight.core.explanation import Explanation

    image = save(tmp_path / "in" / "a.png")
    old = tmp_path / "old"
    old.mkdir()
    (old / "a_gradcam.png").write_bytes(b"earlier run")

    def broken(*args, **kwargs):
        raise InputError("disk full (simulated)")

    monkeypatch.setattr(Explanation, "plot", broken)  # comparison.png is already written
    for out in (tmp_path / "new", old):
        code, _, lines = main(capsys, "explain", image, "--model", tiny, "--size", 32, "--out", out)
        assert code == 2 and "disk full" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "old"]
    assert [p.name for p in old.iterdir()] == ["a_gradcam.png"] and (old / "a_gradcam.png").read_bytes() == b"earlier run"


def test_same_stems_do_not_overwrite_each_other(tiny, tmp_path, capsys):
    png, jpg = save(tmp_path / "cat.png", 0), save(tmp_path / "cat.jpg", 1)
    code, _, lines = main(capsys, "explain", png, jpg, "--model", tiny, "--size", 32, "--out", tmp_path / "out")
    assert code == 0, lines
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cat_jpg_gradcam.png", "cat_png_gradcam.png", "comparison.png", "summary.json", "values.npz"]
    assert_picture(tmp_path / "out" / "cat_png_gradcam.png")
    assert_picture(tmp_path / "out" / "cat_jpg_gradcam.png")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["files"] == {str(png): "cat_png", str(jpg): "cat_jpg"}
    assert cli._unique_stems([tmp_path / "a" / "x.png", tmp_path / "b" / "x.png", tmp_path / "y.png"]) == ["x_png-1", "x_png-2", "y"]


def test_debug_works_after_the_subcommand(tmp_path, capsys):
    with pytest.raises(InputError, match="no such image file"):
        cli.main(["explain", str(tmp_path / "missing.png"), "--model", "torchvision:resnet18", "--debug"])
    with pytest.raises(InputError, match="no such image file"):
        cli.main(["--debug", "explain", str(tmp_path / "missing.png"), "--model", "torchvision:resnet18"])
    assert cli.main(["explain", str(tmp_path / "missing.png"), "--model", "torchvision:resnet18"]) == 2


def test_user_module_subclass_from_a_factory_is_fed_as_torch(tiny, tmp_path, capsys):
    code, _, lines = main(capsys, "explain", save(tmp_path / "a.png"), "--model", tiny, "--size", 32, "--out", tmp_path / "out")
    assert code == 0, lines
    with np.load(tmp_path / "out" / "values.npz") as values:
        assert values["gradcam"].shape == (1, 32, 32)


def capture_fed(monkeypatch):
    """Replace explain(): record what the model would be fed, then stop the CLI."""
    import limelight.core.api

    fed = []

    def fake(model, inputs, method, **kwargs):
        fed.append((np.asarray(inputs), method, kwargs))
        raise InputError("stop here")

    monkeypatch.setattr(limelight.core.api, "explain", fake)
    return fed


def test_torchvision_models_get_exactly_torchvisions_preprocessing(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    from limelight import io

    path = save(tmp_path / "wide.png", shape=(300, 460))
    fed = capture_fed(monkeypatch)
    assert main(capsys, "explain", path, "--model", "torchvision:resnet18", "--weights", "none")[0] == 2
    image = torch.from_numpy(io.load_image(path).transpose(2, 0, 1).copy())[None]
    reference = torchvision.models.ResNet18_Weights.DEFAULT.transforms()(image).numpy()
    assert fed[0][0].shape == reference.shape == (1, 3, 224, 224)
    np.testing.assert_allclose(fed[0][0], reference, atol=1e-5)


def test_folders_and_globs_expand_to_the_images_inside(tiny, tmp_path, capsys, monkeypatch):
    for name in ("a.png", "b.jpg", "sub/c.png"):
        save(tmp_path / "in" / name)
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    fed = capture_fed(monkeypatch)
    cases = [
        ([tmp_path / "in"], 2),
        ([tmp_path / "in", "--recursive"], 3),
        ([tmp_path / "in" / "*.png"], 1),
        ([tmp_path / "in" / "**" / "*.png", "-r"], 2),
    ]
    for args, count in cases:
        assert main(capsys, "explain", *args, "--model", tiny, "--size", 16, "--out", tmp_path / "out")[0] == 2
        assert fed[-1][0].shape == (count, 3, 16, 16)
    assert [p.name for p in cli._expand([str(tmp_path / "in")], True)] == ["a.png", "b.jpg", "c.png"]


def test_size_comes_from_a_keras_models_input_shape(tmp_path, capsys):
    keras = pytest.importorskip("keras")
    model = keras.Sequential([
        keras.Input((96, 96, 3)), keras.layers.Conv2D(4, 3, name="conv"), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3),
    ])
    model.save(tmp_path / "small.keras")
    code, _, lines = main(capsys, "explain", save(tmp_path / "a.png"), "--model", tmp_path / "small.keras", "--out", tmp_path / "out")
    assert code == 0, lines
    with np.load(tmp_path / "out" / "values.npz") as values:
        assert values["gradcam"].shape == (1, 96, 96)


def test_target_by_class_name(photo, tmp_path, capsys, monkeypatch, tiny):
    fed = capture_fed(monkeypatch)
    main(capsys, "explain", photo, "--model", "torchvision:resnet18", "--weights", "none", "--target", "Goldfish")
    assert fed[-1][2]["targets"] == 1
    code, _, lines = main(capsys, "explain", photo, "--model", tiny, "--target", "cat")
    assert code == 2 and "this model has no class names; give a class index" in lines[0]


def test_shap_methods_get_a_background_and_shap_means_what_it_means_in_the_api(tiny, tmp_path, capsys, monkeypatch):
    import limelight
    from limelight.zoo import load_model

    images = [save(tmp_path / "in" / f"{i}.png", i) for i in range(2)]
    code, _, lines = main(capsys, "explain", *images, "--model", tiny, "--size", 16, "--method", "shap-gradient,shap", "--out", tmp_path / "out")
    assert code == 0, lines
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    x = np.random.RandomState(0).rand(2, 3, 16, 16).astype(np.float32)
    api = limelight.explain(load_model(tiny).model, x, "shap", background=x)
    assert summary["algorithms"] == {"shap": api.params["algorithm"]}

    fed = capture_fed(monkeypatch)
    main(capsys, "explain", images[0], "--model", tiny, "--size", 16, "--method", "shap-deep")
    assert fed[-1][2]["background"].shape == (cli.BACKGROUND_ROWS, 3, 16, 16)  # the default
    main(capsys, "explain", images[0], "--model", tiny, "--size", 16, "--method", "shap", "--background", tmp_path / "in")
    assert fed[-1][2]["background"].shape == (2, 3, 16, 16)
    main(capsys, "explain", images[0], "--model", tiny, "--size", 16, "--method", "gradcam")
    assert "background" not in fed[-1][2]


def test_offline_pretrained_weights_are_one_clear_line(photo, tmp_path, capsys, monkeypatch):
    import urllib.error

    torchvision = pytest.importorskip("torchvision")

    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models._api.WeightsEnum, "get_state_dict", offline)
    code, _, lines = main(capsys, "explain", photo, "--model", "torchvision:resnet18", "--out", tmp_path / "out")
    assert code == 2 and len(lines) == 1
    assert "cannot download the pretrained weights of torchvision:resnet18" in lines[0] and "--weights none" in lines[0]
    assert not (tmp_path / "out").exists()
