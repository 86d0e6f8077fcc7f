"""Figures render to real files; `limelight demo` writes its report offline."""

import json
import subprocess
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
torch = pytest.importorskip("torch")

import matplotlib.pyplot as plt  # noqa: E402

import limelight  # noqa: E402
from limelight import datasets, demo, viz  # noqa: E402


@pytest.fixture(scope="module")
def explained():
    data = datasets.shapes(3, seed=2)
    x = torch.from_numpy(data.images.transpose(0, 3, 1, 2).copy())
    model = demo.torch_model()
    cam = limelight.explain(model, x, "gradcam")
    shap_exp = limelight.explain(model, x, "shap-gradient", background=x, nsamples=8, seed=0)
    return data, cam, shap_exp


def assert_picture(path, size=None):
    """A real PNG: Pillow decodes it, at the figure's (height, width) when given, not one flat colour."""
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG", path
        pixels = np.asarray(image.convert("RGB"))
    if size is not None:
        assert pixels.shape[:2] == size, (path, pixels.shape)
    assert min(pixels.shape[:2]) >= 100, (path, pixels.shape)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 16, path  # more than a few flat colours


def test_overlay_blends_in_range():
    image = np.zeros((4, 4, 3), np.float32)
    heat = np.ones((4, 4), np.float32)
    out = viz.overlay(image, heat, alpha=0.5)
    assert out.shape == (4, 4, 3) and 0 <= out.min() and out.max() <= 1
    np.testing.assert_allclose(out, 0.5 * np.array(plt.get_cmap("jet")(1.0)[:3]) * np.ones((4, 4, 1)), atol=1e-6)


@pytest.mark.parametrize("which", ["cam", "shap"])
def test_explanation_plot_saves_png_and_pdf(explained, which, tmp_path):
    _, cam, shap_exp = explained
    fig = (cam if which == "cam" else shap_exp).plot(class_names=datasets.CLASSES)
    exp = cam if which == "cam" else shap_exp
    assert fig.axes[0].get_title().startswith(f"{exp.method}: {datasets.CLASSES[exp.targets[0]]}")
    expected = tuple(round(v) for v in fig.get_size_inches()[::-1] * fig.dpi)
    for suffix in ("png", "pdf"):
        fig.savefig(tmp_path / f"f.{suffix}")
    plt.close(fig)
    assert_picture(tmp_path / "f.png", expected)
    pdf = (tmp_path / "f.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF") and b"/Image" in pdf


def test_comparison_grid_has_a_row_per_image_and_a_column_per_explanation(explained, tmp_path):
    data, cam, shap_exp = explained
    fig = viz.comparison_grid({"Grad-CAM": cam, "SHAP": shap_exp}, class_names=datasets.CLASSES, masks=data.masks)
    assert len(fig.axes) == 3 * 3
    expected = tuple(round(v) for v in fig.get_size_inches()[::-1] * fig.dpi)
    fig.savefig(tmp_path / "grid.png")
    plt.close(fig)
    assert_picture(tmp_path / "grid.png", expected)


@pytest.mark.slow
def test_demo_command_writes_report(tmp_path):
    done = subprocess.run([sys.executable, "-m", "limelight.cli", "demo", "--out", str(tmp_path),
                           "--benchmark-images", "4"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = (tmp_path / "report.html").read_text()
    assert "How to read the colours" in report and "comparison.png" in report
    assert "Comparative analysis" in report and "randomisation" in report and "<table>" in report
    assert "4 more images × 1 draw" in report and "road-morf" in report and "shap-partition" in report
    assert "<p>Per method (rank among the methods" in report and "<b>gradcam</b>: strengths" in report
    assert_picture(tmp_path / "comparison.png")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["predictions"] == summary["truth"]
    assert max(summary["max_abs_difference_torch_vs_keras"].values()) <= 1e-5
    assert summary["pointing_game"]["Grad-CAM · PyTorch"] >= 0.8


def test_benchmark_tables_agree_between_frameworks():
    from limelight.evaluation.benchmark import reading, run

    results = run(n_images=6, methods=["gradcam", "shap-deep"], seeds=1)
    torch_table, keras_table = results["PyTorch"].table(), results["Keras"].table()
    assert list(torch_table) == ["gradcam", "shap-deep", "random", "centre", "edge"]
    for row in torch_table:
        for metric, value in torch_table[row].items():
            assert keras_table[row][metric] == pytest.approx(value, abs=1e-5, nan_ok=True), (row, metric)
    text = reading(results["PyTorch"])
    assert "best" in text and "- **gradcam**: strengths" in text and "- **shap-deep**: strengths" in text


def test_comparison_grid_titles_name_the_explained_target_not_the_prediction(explained):
    data, _, _ = explained
    x = torch.from_numpy(data.images.transpose(0, 3, 1, 2).copy())
    model = demo.torch_model()
    predicted = model(x).argmax(1).numpy()
    other = (predicted + 1) % len(datasets.CLASSES)  # never the predicted class
    cam = limelight.explain(model, x, "gradcam", targets=other)
    fig = viz.comparison_grid({"Grad-CAM": cam}, class_names=datasets.CLASSES)
    titles = [fig.axes[2 * row + 1].get_title() for row in range(3)]
    plt.close(fig)
    for row, title in enumerate(titles):
        assert datasets.CLASSES[other[row]] in title and datasets.CLASSES[predicted[row]] not in title
        assert f"({cam.outputs[row, other[row]]:.2f})" in title


def test_comparison_grid_and_plot_show_every_target_of_a_multi_target_explanation(explained):
    data, _, _ = explained
    x = torch.from_numpy(data.images.transpose(0, 3, 1, 2).copy())
    targets = np.array([[0, 1], [1, 2], [2, 0]])
    exp = limelight.explain(demo.torch_model(), x, "shap-gradient", targets=targets, background=x, nsamples=4, seed=0)
    assert exp.targets.shape == (3, 2)
    fig = viz.comparison_grid({"SHAP": exp}, class_names=datasets.CLASSES)
    assert len(fig.axes) == 3 * 3  # input + one column per target
    titles = [[fig.axes[3 * row + 1 + t].get_title() for t in range(2)] for row in range(3)]
    plt.close(fig)
    for row in range(3):
        for t in range(2):
            assert datasets.CLASSES[targets[row, t]] in titles[row][t]
    fig = exp.plot(index=-1, class_names=datasets.CLASSES, colorbar=False)
    assert [ax.get_title() for ax in fig.axes] == [f"shap-gradient: {datasets.CLASSES[t]}" for t in targets[-1]]
    plt.close(fig)


def test_plot_of_tabular_values_is_a_bar_plot_and_odd_shapes_a_clear_error():
    from limelight.core.errors import UnsupportedError

    tabular = limelight.Explanation(
        method="shap-gradient", values=np.array([[0.5, -1.0, 2.0]]), targets=np.array([1]),
        outputs=np.zeros((1, 2)), inputs=np.ones((1, 3)),
    )
    fig = tabular.plot()
    bars = fig.axes[0].patches
    assert [round(b.get_height(), 3) for b in bars] == [0.5, -1.0, 2.0]
    plt.close(fig)
    odd = limelight.Explanation(
        method="custom", values=np.zeros((1, 2, 3, 4, 5)), targets=np.array([1]), outputs=np.zeros((1, 2)),
    )
    with pytest.raises(UnsupportedError, match=r"cannot draw 'custom' values of shape \(1, 2, 3, 4, 5\)"):
        odd.plot()
    with pytest.raises(UnsupportedError, match="tabular"):
        viz.comparison_grid({"tab": tabular})
