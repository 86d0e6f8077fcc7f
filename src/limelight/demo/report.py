"""``limelight demo``: explain sample shapes images with Grad-CAM and SHAP in PyTorch and in
Keras (the same weights), and write ``report.html`` with the pictures and the numbers."""

from __future__ import annotations

import html
import json
import os
import pathlib
import time
from typing import Any

import numpy as np

from .. import datasets

METHODS = {"gradcam": {}, "shap-gradient": {"nsamples": 64, "seed": 0}}
LABELS = {"gradcam": "Grad-CAM", "shap-gradient": "SHAP"}


def run(out: str | os.PathLike[str], n_images: int = 6, seed: int = 7,
        benchmark_images: int = 16, benchmark_seeds: int = 1) -> pathlib.Path:
    """Run the demo; returns the path of ``report.html`` in ``out``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import limelight

    from . import models

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = datasets.shapes(n_images, seed=seed)
    background = datasets.shapes(16, seed=seed + 1).images
    explanations: dict[str, Any] = {}
    timings: dict[str, float] = {}
    frameworks = models()
    for method, params in METHODS.items():
        for framework, (model, feed) in frameworks.items():
            extra = {"background": feed(background)} if method.startswith("shap") else {}
            start = time.perf_counter()
            exp = limelight.explain(model, feed(data.images), method, **params, **extra)
            timings[f"{method}/{framework}"] = time.perf_counter() - start
            explanations[f"{LABELS[method]} · {framework}"] = exp

    agreement = {
        method: float(np.abs(explanations[f"{LABELS[method]} · PyTorch"].values
                             - explanations[f"{LABELS[method]} · Keras"].values).max())
        for method in METHODS
    }
    from ..evaluation.localisation import PointingGame
    from ..evaluation.metric import relevance_map

    pointing_game = PointingGame()
    pointing = {
        label: float(pointing_game(relevance_map(exp), masks=data.masks).mean())
        for label, exp in explanations.items()
    }
    from ..viz import comparison_grid

    figure = comparison_grid(explanations, class_names=datasets.CLASSES, masks=data.masks)
    figure.savefig(out / "comparison.png", dpi=110)
    import matplotlib.pyplot as plt

    plt.close(figure)
    torch_exp = explanations["Grad-CAM · PyTorch"]
    predictions = [datasets.CLASSES[int(i)] for i in torch_exp.outputs.argmax(1)]
    summary = {
        "images": n_images,
        "truth": [datasets.CLASSES[int(i)] for i in data.labels],
        "predictions": predictions,
        "max_abs_difference_torch_vs_keras": agreement,
        "pointing_game": pointing,
        "seconds": timings,
    }
    from ..evaluation.benchmark import report as benchmark_report
    from ..evaluation.benchmark import run as run_benchmark

    analysis = benchmark_report(run_benchmark(n_images=benchmark_images, seeds=benchmark_seeds))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "comparative_analysis.md").write_text(analysis + "\n")
    setting = f"{benchmark_images} more images × {benchmark_seeds} draw{'s' * (benchmark_seeds > 1)}"
    (out / "report.html").write_text(_html(summary, analysis, setting))
    return out / "report.html"


def _markdown_to_html(text: str) -> str:
    """Just enough Markdown for the analysis: headings, tables, bullets, paragraphs."""
    out: list[str] = []
    rows: list[str] = []

    def flush() -> None:
        if rows:
            cells = [[c.strip() for c in r.strip("|").split("|")] for r in rows if not set(r) <= set("|-: ")]
            head, body = cells[0], cells[1:]
            out.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
                       + "</table>")
            rows.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            rows.append(line)
            continue
        flush()
        if line.startswith("### "):
            out.append(f"<h3>{html.escape(line[4:])}</h3>")
        elif line.startswith("- "):
            item = html.escape(line[2:])
            while "**" in item:
                item = item.replace("**", "<b>", 1).replace("**", "</b>", 1)
            out.append(f"<li>{item}</li>")
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    flush()
    return "\n".join(out)


def _html(summary: dict[str, Any], analysis: str = "", setting: str = "") -> str:
    rows = "".join(
        f"<tr><td>{i}</td><td>{html.escape(t)}</td><td>{html.escape(p)}</td></tr>"
        for i, (t, p) in enumerate(zip(summary["truth"], summary["predictions"], strict=True))
    )
    agree = "".join(
        f"<tr><td>{LABELS[m]}</td><td>{d:.2e}</td></tr>" for m, d in summary["max_abs_difference_torch_vs_keras"].items()
    )
    point = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.2f}</td></tr>" for k, v in summary["pointing_game"].items())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>limelight demo</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 10px}}img{{max-width:100%}}</style></head><body>
<h1>limelight demo: one model, two frameworks, two explanations</h1>
<p>A tiny CNN trained on synthetic shapes (square, disk, triangle, cross; a ring or a line is a
distractor that says nothing about the class) runs in PyTorch and, with the same weights, in
Keras. Each image is explained with Grad-CAM and with SHAP (expected gradients) in both.
The white outline is the ground truth: the pixels of the class-defining shape.</p>
<h2>How to read the colours</h2>
<ul><li><b>Grad-CAM</b>: warm (red/yellow) = influential for the predicted class, blue = not.</li>
<li><b>SHAP</b>: red pixels push the class score up, blue pixels push it down; white is neutral.</li></ul>
<h2>Maps</h2><img src="comparison.png" alt="comparison grid">
<h2>Predictions</h2><table><tr><th>image</th><th>truth</th><th>predicted</th></tr>{rows}</table>
<h2>PyTorch vs Keras</h2><p>Largest difference between the two frameworks' maps (same weights):</p>
<table><tr><th>method</th><th>max |torch − keras|</th></tr>{agree}</table>
<h2>Does the map point at the shape?</h2><p>Pointing game: fraction of images whose map
peaks inside the ground-truth shape.</p><table><tr><th>map</th><th>pointing game</th></tr>{point}</table>
<h2>Comparative analysis</h2><p>Every registered method × every registered metric on {setting},
in both frameworks, beside model-free baselines (↑ higher is better, ↓ lower is better;
<code>limelight benchmark</code> runs 3 × 48 images, <code>limelight demo --benchmark-images 48
--benchmark-seeds 3</code> puts that run here).</p>
{_markdown_to_html(analysis)}
</body></html>
"""
