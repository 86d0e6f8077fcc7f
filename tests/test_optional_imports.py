"""A missing optional package is one :class:`FrameworkNotInstalledError` naming the extra
that installs it (``pip install 'limelight[eval]'``), never a raw ``ImportError``: scipy for
the metrics, tqdm, matplotlib and Pillow for the command line, the image loader and the plots.

Each test makes the package unimportable with ``sys.modules[name] = None`` (the package and
the submodules limelight imports, which may already be loaded)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from limelight import cli
from limelight.core.errors import FrameworkNotInstalledError
from limelight.core.lazy import require
from limelight.core.model import NumpyModel
from limelight.evaluation import Deletion, RoadMorf, noisy_linear_imputation

SCIPY = ("scipy", "scipy.ndimage", "scipy.sparse", "scipy.sparse.linalg")
PILLOW = ("PIL", "PIL.Image", "PIL.ImageOps", "PIL.ImageFilter")


def hide(monkeypatch, *modules):
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def hint(extra):
    return f"pip install 'limelight[{extra}]'"


class Linear(NumpyModel):
    def __init__(self, weights):
        super().__init__(weights)
        self.weights = weights

    def predict(self, x, *, batch_size=None):
        return (x.reshape(len(x), -1).astype(np.float64) @ self.weights).astype(np.float32)


def _setup():
    rng = np.random.RandomState(0)
    model = Linear(rng.randn(6 * 7 * 3, 4) / 4)
    x = rng.rand(2, 6, 7, 3).astype(np.float32)
    return model, x, rng.rand(2, 6, 7), np.array([0, 1])


def test_require_names_the_package_and_the_extra(monkeypatch):
    hide(monkeypatch, *SCIPY)
    with pytest.raises(FrameworkNotInstalledError, match="'scipy'") as info:
        require("scipy.sparse.linalg", "eval", "scipy")
    assert hint("eval") in str(info.value)
    assert isinstance(info.value, ImportError) and info.value.extra == "eval"


@pytest.mark.parametrize("metric", [Deletion(steps=3, baseline="blur"), RoadMorf(fractions=(0.5,))])
def test_metrics_that_need_scipy_name_the_eval_extra(monkeypatch, metric):
    model, x, maps, targets = _setup()
    hide(monkeypatch, *SCIPY)
    with pytest.raises(FrameworkNotInstalledError, match="scipy") as info:
        metric(maps, x=x, targets=targets, model=model)
    assert hint("eval") in str(info.value)


def test_noisy_linear_imputation_without_scipy(monkeypatch):
    hide(monkeypatch, *SCIPY)
    removed = np.zeros((4, 4), bool)
    removed[1:3, 1:3] = True
    with pytest.raises(FrameworkNotInstalledError, match=r"pip install 'limelight\[eval\]'"):
        noisy_linear_imputation(np.zeros((4, 4, 3), np.float32), removed)


def test_metrics_without_scipy_still_work(monkeypatch):
    """Only the metrics that use scipy need it."""
    model, x, maps, targets = _setup()
    hide(monkeypatch, *SCIPY)
    assert Deletion(steps=3, baseline=0.0)(maps, x=x, targets=targets, model=model).shape == (2,)


def explain_cli(capsys, *args):
    code = cli.main(["explain", *map(str, args)])
    lines = capsys.readouterr().err.strip().splitlines()
    return code, lines


@pytest.mark.parametrize(("modules", "package"), [
    (("tqdm",), "'tqdm'"),
    (("matplotlib", "matplotlib.pyplot"), "'matplotlib'"),
])
def test_cli_without_a_viz_package_is_one_line_naming_the_extra(tmp_path, capsys, monkeypatch, modules, package):
    hide(monkeypatch, *modules)
    code, lines = explain_cli(capsys, tmp_path / "a.png", "--model", "torchvision:resnet18", "--weights", "none",
                              "--out", tmp_path / "out")
    assert code == 2 and len(lines) == 1, lines
    assert package in lines[0] and hint("viz") in lines[0]
    assert not (tmp_path / "out").exists()


def test_cli_folder_without_pillow_is_one_line_naming_the_extra(tmp_path, capsys, monkeypatch):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"")
    hide(monkeypatch, *PILLOW)
    code, lines = explain_cli(capsys, tmp_path / "images", "--model", "torchvision:resnet18", "--weights", "none",
                              "--out", tmp_path / "out")
    assert code == 2 and len(lines) == 1, lines
    assert "'Pillow'" in lines[0] and hint("viz") in lines[0]


def test_cli_blurred_background_without_pillow(monkeypatch):
    hide(monkeypatch, *PILLOW)
    with pytest.raises(FrameworkNotInstalledError, match=r"'Pillow'.*limelight\[viz\]"):
        cli._blurred(np.zeros((8, 8, 3), np.float32), 0, 1)


def test_load_image_and_plots_without_their_packages(monkeypatch):
    from limelight import io, viz

    hide(monkeypatch, *PILLOW, "matplotlib", "matplotlib.pyplot")
    with pytest.raises(FrameworkNotInstalledError, match=r"'Pillow'.*limelight\[viz\]"):
        io.load_image(np.zeros((8, 8, 3), np.float32), (4, 4))
    with pytest.raises(FrameworkNotInstalledError, match=r"'matplotlib'.*limelight\[viz\]"):
        viz.overlay(np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.float32))
