"""``limelight.evaluate``: methods × metrics in one table, with trivial baselines beside them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.api import explain, wrap
from ..core.explanation import Explanation
from ..core.model import Model
from ..core.registry import registry
from ..core.targets import TargetsLike, resolve_target
from .metric import DEFAULT_BATCH_SIZE, host_classes, relevance_map

__all__ = ["BASELINES", "Evaluation", "baseline_maps", "evaluate"]

#: The model-free maps scored beside every method.
BASELINES = ("random", "centre", "edge")


@dataclass(frozen=True)
class Evaluation:
    """Per-sample scores ``scores[row][metric]`` ``(N,)``; rows are methods then baselines."""

    scores: dict[str, dict[str, np.ndarray]]
    higher_is_better: dict[str, bool] = field(default_factory=dict)

    @classmethod
    def concatenate(cls, evaluations: Sequence[Evaluation]) -> Evaluation:
        """One evaluation of all samples of several (e.g. runs on different seeds)."""
        first = evaluations[0]
        scores = {row: {m: np.concatenate([e.scores[row][m] for e in evaluations]) for m in cols}
                  for row, cols in first.scores.items()}
        return cls(scores, dict(first.higher_is_better))

    def table(self) -> dict[str, dict[str, float]]:
        """Mean score per row and metric; NaN where a metric does not apply to a row (e.g.
        completeness of a CAM)."""
        return {row: {m: float(np.mean(v)) for m, v in cols.items()} for row, cols in self.scores.items()}

    def to_markdown(self) -> str:
        """The table in Markdown; arrows say which direction is better."""
        table = self.table()
        metrics = list(next(iter(table.values())))
        head = [f"{m} {'↑' if self.higher_is_better.get(m, True) else '↓'}" for m in metrics]
        lines = ["| method | " + " | ".join(head) + " |", "|---|" + "---:|" * len(metrics)]
        for row, cols in table.items():
            cells = ("—" if np.isnan(cols[m]) else f"{cols[m]:.3f}" for m in metrics)
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def baseline_maps(x: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Model-free maps ``(N, H, W)`` for canonical images ``x`` (NumPy): uniform noise, a
    centred Gaussian, and the image's edge magnitude (a map that a randomisation check must
    flag)."""
    n, h, w = x.shape[:3]
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    centre = np.exp(-(((yy - (h - 1) / 2) / (h / 4)) ** 2 + ((xx - (w - 1) / 2) / (w / 4)) ** 2) / 2)
    gray = np.asarray(x).mean(axis=-1).astype(np.float64)
    gy, gx = np.gradient(gray, axis=(1, 2))
    return {
        "random": rng.rand(n, h, w),
        "centre": np.broadcast_to(centre, (n, h, w)).copy(),
        "edge": np.sqrt(gx**2 + gy**2),
    }


def _predicted_classes(model: Model, x: Any, targets: TargetsLike, batch_size: int | None) -> np.ndarray:
    """``targets=`` resolved to ``(N,)`` host ints: the predicted class where None."""
    target = resolve_target(targets, int(x.shape[0]))
    outputs = model.predict(x, batch_size=batch_size)
    target = target.check(int(outputs.shape[1]))
    data = [model.asarray(d) for d in target.data()]
    return host_classes(model, target.classes(model.xp, outputs, *data))


def evaluate(
    model: object,
    inputs: Any,
    explanations: Sequence[str] | Mapping[str, Explanation],
    metrics: Sequence[str],
    masks: np.ndarray | None = None,
    targets: Any = None,
    method_params: Mapping[str, Mapping[str, Any]] | None = None,
    metric_params: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
    sanity: bool = False,
    repeats: int = 3,
    batch_size: int | None = DEFAULT_BATCH_SIZE,
) -> Evaluation:
    """Score explanations (given, or method names computed here) with registered metrics.

    The random, centre and edge baselines are always scored beside them. ``masks``
    ``(N, H, W)`` are needed by localisation metrics. ``batch_size`` is the most images per
    model call of the metrics that run the model (a metric's own ``batch_size`` in
    ``metric_params`` wins). ``sanity=True`` adds the randomisation checks (method names
    only): ``randomisation`` (Spearman correlation with the map of the fully re-initialised
    model) and ``random-logit`` (with the map of another class), each averaged over
    ``repeats`` draws (seeds ``seed``, ``seed + 1``, ...); lower is better, and the
    model-free baselines score 1 by construction.
    """
    wrapped = wrap(model)
    x = wrapped.canonical(inputs)  # the model's array, on its device
    if not isinstance(explanations, Mapping):
        params = method_params or {}
        explanations = {m: explain(model, inputs, m, targets=targets, **params.get(m, {})) for m in explanations}
    first = next(iter(explanations.values()), None)
    resolved = (
        host_classes(wrapped, first.targets) if first is not None
        else _predicted_classes(wrapped, x, targets, batch_size)
    )
    maps = {name: relevance_map(exp) for name, exp in explanations.items()}
    maps.update(baseline_maps(wrapped.to_numpy(x), seed))
    table = registry.metrics()
    chosen = {
        name: table[name](**{"batch_size": batch_size, **(metric_params or {}).get(name, {})}) for name in metrics
    }
    scores = {
        row: {
            name: metric(m, x=x, targets=resolved, masks=masks, model=wrapped, explanation=explanations.get(row))
            for name, metric in chosen.items()
        }
        for row, m in maps.items()
    }
    better = {name: metric.higher_is_better for name, metric in chosen.items()}
    if sanity:
        from .sanity import full_randomization, random_logit, spearman

        params = method_params or {}
        seeds = range(seed, seed + repeats)
        for row, row_scores in scores.items():
            if row in BASELINES:  # the same map whatever the weights or the class
                unchanged = spearman(maps[row], maps[row])
                row_scores["randomisation"], row_scores["random-logit"] = unchanged, unchanged
                continue
            row_scores["randomisation"] = full_randomization(model, inputs, row, seeds, params.get(row))
            row_scores["random-logit"] = random_logit(model, inputs, row, seeds, params.get(row))
        better.update({"randomisation": False, "random-logit": False})
    return Evaluation(scores, better)
