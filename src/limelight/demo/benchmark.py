"""``limelight benchmark``: every registered explainer × every registered metric on the shapes
dataset, for the demo model in PyTorch and in Keras, with a short reading of the numbers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import datasets
from ..core.evaluate import BASELINES, Evaluation


def method_params(method: str, background: Any) -> dict[str, Any]:
    """Settings that keep the benchmark quick; SHAP methods get the background."""
    if method in ("shap", "shap-gradient"):
        return {"background": background, "nsamples": 32, "seed": 0}
    if method == "shap-deep":
        return {"background": background}
    if method == "shap-partition":
        return {"max_evals": 100, "mask": 0.0}
    return {}


def run(n_images: int = 48, seed: int = 21, frameworks: Sequence[str] = ("PyTorch", "Keras"),
        methods: Sequence[str] | None = None) -> dict[str, Evaluation]:
    """Evaluate the demo model on ``n_images`` shapes images in each framework."""
    import torch  # torch before TensorFlow (README, known issues)

    import limelight
    from limelight.core.registry import registry

    from . import keras_model, torch_model

    data = datasets.shapes(n_images, seed=seed)
    background = datasets.shapes(16, seed=seed + 1).images
    methods = list(methods or limelight.explainers())
    results = {}
    for framework in frameworks:
        if framework == "PyTorch":
            model, feed = torch_model(), (lambda a: torch.from_numpy(a.transpose(0, 3, 1, 2).copy()))
        else:
            model, feed = keras_model(), (lambda a: a)
        params = {m: method_params(m, feed(background)) for m in methods}
        results[framework] = limelight.evaluate(
            model, feed(data.images), methods, list(registry.metrics()), masks=data.masks,
            method_params=params, sanity=True,
        )
    return results


def reading(evaluation: Evaluation) -> str:
    """A few sentences on strengths and limitations, drawn from the numbers."""
    table = evaluation.table()
    methods = [m for m in table if m not in BASELINES]
    lines = []
    for metric, higher in evaluation.higher_is_better.items():
        scores = {m: table[m][metric] for m in methods}
        best = max(scores, key=scores.get) if higher else min(scores, key=scores.get)
        lines.append(f"- **{metric}**: best {best} ({scores[best]:.2f}); random baseline {table['random'][metric]:.2f}.")
    failing = [m for m in methods if table[m].get("randomisation", 0) > 0.5]
    agnostic = [m for m in methods if table[m].get("random-logit", 0) > 0.9]
    if failing:
        lines.append(f"- Randomisation check: {', '.join(failing)} keep more than half of their rank order after "
                     "every weight is randomised — like the model-free edge map, they partly show the image, "
                     "not the model.")
    if agnostic:
        lines.append(f"- {', '.join(agnostic)} barely change when another class is explained: class-agnostic maps.")
    same = [m for m in methods if m != "gradcam" and "gradcam" in table
            and np.allclose(list(table[m].values()), list(table["gradcam"].values()), atol=1e-6)]
    if same:
        lines.append(f"- {', '.join(same)} equal Grad-CAM here: with a global-average-pooling + linear head "
                     "their maps coincide.")
    return "\n".join(lines)


def report(results: dict[str, Evaluation]) -> str:
    """Markdown: one table per framework, then the reading of the first."""
    parts = []
    for framework, evaluation in results.items():
        parts += [f"### {framework}", "", evaluation.to_markdown(), ""]
    parts += ["### Reading the numbers", "", reading(next(iter(results.values())))]
    return "\n".join(parts)
