"""``limelight benchmark``: every registered explainer × every registered metric on the shapes
dataset, for the demo model in PyTorch and in Keras, with a short reading of the numbers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import datasets
from .table import BASELINES, Evaluation

if TYPE_CHECKING:
    from ..streaming.evaluate import DatasetEvaluation

__all__ = ["method_params", "reading", "report", "run"]


def method_params(method: str, background: Any) -> dict[str, Any]:
    """Settings that keep the benchmark quick; SHAP methods get the background, RISE 500 masks."""
    if method in ("shap", "shap-gradient"):
        return {"background": background, "nsamples": 32, "seed": 0}
    if method == "shap-deep":
        return {"background": background}
    if method == "shap-partition":
        return {"max_evals": 100, "mask": 0.0}
    if method == "rise":
        return {"n_masks": 500, "seed": 0}
    return {}


def run(n_images: int = 48, seed: int = 21, frameworks: Sequence[str] = ("PyTorch", "Keras"),
        methods: Sequence[str] | None = None, seeds: int = 3, n_boot: int = 1000) -> dict[str, DatasetEvaluation]:
    """Evaluate the demo model on ``seeds`` draws of ``n_images`` shapes images (dataset seeds
    ``seed``, ``seed + 1``, ...) in each framework, each draw streamed through
    :func:`~limelight.streaming.evaluate.evaluate_dataset`; the draws' per-image scores are
    pooled, so each cell's mean, standard error and bootstrap CI are over all
    ``seeds × n_images`` images. Draw ``k`` seeds its random baseline and its sanity checks'
    redraw with ``k`` (one redraw per draw: the randomisation rows average ``seeds``
    different randomised networks, as before)."""
    from ..core.api import explainers
    from ..core.registry import registry
    from ..demo import models
    from ..streaming.evaluate import DatasetEvaluation, evaluate_dataset

    methods = list(methods or explainers())
    results = {}
    for framework, (model, feed) in models(frameworks).items():
        runs = []
        for k in range(seeds):
            data = datasets.shapes(n_images, seed=seed + k)
            background = feed(datasets.shapes(16, seed=seed + 100 + k).images)
            ids = [f"draw{k}/{i}" for i in range(n_images)]
            runs.append(evaluate_dataset(
                model, [(feed(data.images), ids, data.masks)], methods, list(registry.metrics()),
                batch_size=n_images, method_params={m: method_params(m, background) for m in methods},
                sanity=True, seed=k, repeats=1, n_boot=n_boot, progress=False,
            ))
        results[framework] = DatasetEvaluation.concatenate(runs)
    return results


def reading(evaluation: Evaluation | DatasetEvaluation) -> str:
    """A few sentences on strengths and limitations, drawn from the numbers."""
    table = evaluation.table()
    methods = [m for m in table if m not in BASELINES]
    lines = []
    for metric, higher in evaluation.higher_is_better.items():
        scores = {m: table[m][metric] for m in methods if not np.isnan(table[m][metric])}
        if not scores:
            continue
        best = max(scores, key=scores.__getitem__) if higher else min(scores, key=scores.__getitem__)
        if metric == "completeness":
            worst = max(scores, key=scores.__getitem__)
            lines.append(f"- **completeness** (additive methods only): Σφ misses f(x) − base by {scores[best]:.1%} "
                         f"for {best}, {scores[worst]:.1%} for {worst} (sampling error shrinks like 1/√nsamples).")
            continue
        lines.append(f"- **{metric}**: best {best} ({scores[best]:.2f}); random baseline {table['random'][metric]:.2f}.")
    failing = [m for m in methods if table[m].get("randomisation", 0) > 0.5]
    agnostic = [m for m in methods if table[m].get("random-logit", 0) > 0.9]
    if failing:
        lines.append(f"- Randomisation check: {', '.join(failing)} keep more than half of their rank order after "
                     "every weight is randomised — like the model-free edge map, they partly show the image, "
                     "not the model.")
    if agnostic:
        lines.append(f"- {', '.join(agnostic)} barely change when another class is explained: class-agnostic maps.")
    lines += ["", "Per method (rank among the methods, 1 = best; duplicates of an earlier row left out):", ""]
    lines += _per_method(table, evaluation.higher_is_better, methods)

    def same_numbers(a: str, b: str) -> bool:
        return np.allclose(list(table[a].values()), list(table[b].values()), atol=1e-6, equal_nan=True)

    same = [m for m in methods if m != "gradcam" and "gradcam" in table and same_numbers(m, "gradcam")]
    if same:
        lines.append(f"- {', '.join(same)} equal Grad-CAM here: with a global-average-pooling + linear head "
                     "their maps coincide.")
    if "shap" in table and "shap-deep" in table and same_numbers("shap", "shap-deep"):
        lines.append("- `shap` chose DeepSHAP (every operation of this model has a rule), hence its row.")
    return "\n".join(lines)


def _per_method(table: dict[str, dict[str, float]], higher: dict[str, bool], methods: list[str]) -> list[str]:
    """One line per distinct method: the metrics it ranks best and worst on among the methods,
    and where it does no better than the random map."""
    metrics = [m for m in higher if m != "completeness"]
    distinct: list[str] = []
    for m in sorted(methods, key=lambda m: m == "shap"):  # "shap" is an alias of what it picked
        if not any(np.allclose([table[m][k] for k in metrics], [table[d][k] for k in metrics]) for d in distinct):
            distinct.append(m)
    ranks = {}
    for metric in metrics:
        ordered = sorted(distinct, key=lambda m: table[m][metric], reverse=higher[metric])
        for m in distinct:
            ranks[m, metric] = ordered.index(m) + 1
    lines = []
    for m in distinct:
        by_rank = sorted(metrics, key=lambda k: ranks[m, k])
        strong = [f"{k} ({table[m][k]:.2f}, #{ranks[m, k]})" for k in by_rank[:3] if ranks[m, k] <= max(2, len(distinct) // 3)]
        weak = [f"{k} ({table[m][k]:.2f}, #{ranks[m, k]})" for k in by_rank[::-1][:3] if ranks[m, k] > len(distinct) // 2]
        no_better = [k for k in metrics if k not in ("randomisation", "random-logit")
                     and (table[m][k] <= table["random"][k] if higher[k] else table[m][k] >= table["random"][k])]
        text = f"- **{m}**: strengths {', '.join(strong) or 'none stand out'}; limitations {', '.join(weak) or 'none stand out'}"
        if no_better:
            text += f"; no better than the random map on {', '.join(no_better)}"
        lines.append(text + ".")
    return lines


def report(results: Mapping[str, Evaluation | DatasetEvaluation]) -> str:
    """Markdown: one table per framework (``mean [95% bootstrap CI]`` over the pooled images
    for a :class:`~limelight.streaming.evaluate.DatasetEvaluation`), then the reading of the
    first."""
    parts = []
    for framework, evaluation in results.items():
        parts += [f"### {framework}", "", evaluation.to_markdown(), ""]
    parts += ["### Reading the numbers", "", reading(next(iter(results.values())))]
    return "\n".join(parts)
