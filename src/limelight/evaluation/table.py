"""``limelight.evaluate``: methods × metrics in one table, with trivial baselines beside them."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.api import explain, wrap
from ..core.errors import InputError, ParameterError, UnsupportedError, close_matches
from ..core.explanation import Explanation
from ..core.inputs import leaves, several
from ..core.model import Model
from ..core.registry import registry
from ..core.targets import TargetsLike, resolve_target
from .metric import (
    DEFAULT_BATCH_SIZE,
    Metric,
    as_host,
    check_class_explanation,
    check_class_outputs,
    check_class_targets,
    host_classes,
    relevance_map,
)

__all__ = ["BASELINES", "Evaluation", "baseline_maps", "evaluate"]

#: The model-free maps scored beside every method.
BASELINES = ("random", "centre", "edge")


@dataclass(frozen=True)
class Evaluation:
    """Per-sample scores ``scores[row][metric]`` ``(N,)``; rows are methods then baselines.

    ``output_kinds[metric]`` says how each metric that reads the model's probabilities took
    them: ``"logits"`` (softmax applied) or ``"probabilities"`` (the outputs as they are),
    the choice ``output_kind="auto"`` made or the one given in ``metric_params``."""

    scores: dict[str, dict[str, np.ndarray]]
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    output_kinds: dict[str, str] = field(default_factory=dict)

    @classmethod
    def concatenate(cls, evaluations: Sequence[Evaluation]) -> Evaluation:
        """One evaluation of all samples of several (e.g. runs on different seeds)."""
        first = evaluations[0]
        scores = {row: {m: np.concatenate([e.scores[row][m] for e in evaluations]) for m in cols}
                  for row, cols in first.scores.items()}
        return cls(scores, dict(first.higher_is_better), dict(first.output_kinds))

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
    check_class_outputs(tuple(outputs.shape), "evaluate's metrics")
    target = target.check(int(outputs.shape[-1]))
    data = [model.asarray(d) for d in target.data()]
    return host_classes(model, target.classes(model.xp, outputs, *data))


def class_metrics(chosen: Mapping[str, Metric], sanity: bool) -> str:
    """What among ``chosen`` (and the sanity checks) scores a class's output, in words for
    an error message; ``""`` when nothing does."""
    names = [name for name, metric in chosen.items() if metric.reads_class]
    if sanity:
        names.append("sanity=True's random-logit and randomisation checks")
    return f"the metrics {', '.join(names)}" if names else ""


def _chosen_metrics(
    metrics: Sequence[str], metric_params: Mapping[str, Mapping[str, Any]] | None, batch_size: int | None
) -> dict[str, Metric]:
    """The metrics by name, built with their params; unknown names are refused (with the
    closest registered names) before any work."""
    table = registry.metrics()
    if isinstance(metrics, str):
        metrics = [metrics]
    params = metric_params or {}
    for name in [*metrics, *params]:
        if name not in table:
            raise ParameterError(
                f"unknown metric {name!r}." + close_matches(name, table) + f" Registered metrics: {', '.join(table)}."
            )
    return {name: table[name](**{"batch_size": batch_size, **params.get(name, {})}) for name in metrics}


def _checked_maps(explanations: Mapping[str, Explanation], shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Each explanation's relevance map, checked to be ``(N, H, W)`` of the inputs."""
    maps = {}
    for name, exp in explanations.items():
        if not isinstance(exp, Explanation):
            raise InputError(f"explanations[{name!r}] must be a limelight Explanation, got {type(exp).__name__}.")
        m = relevance_map(exp)
        if m.shape != shape:
            raise InputError(
                f"explanation {name!r} has maps of shape {m.shape} (N, H, W), but the inputs are {shape[0]} "
                f"images of {shape[1]}x{shape[2]}: explain the same inputs you evaluate."
            )
        maps[name] = m
    return maps


def _sanity_method(
    row: str, exp: Explanation, given: Mapping[str, Any] | None
) -> tuple[str, dict[str, Any]]:
    """The method and params that re-make a given explanation on randomised models: its own
    ``method`` and recorded ``params``; ``method_params[row]`` may fill in what an
    explanation does not record (SHAP's ``background``). Refused when the method is not
    registered or a parameter is missing (its default would make another map)."""
    explainers = registry.explainers()
    if exp.method not in explainers:
        raise ParameterError(
            f"sanity=True re-runs each explanation's method on randomised models, but explanation {row!r} "
            f"was made by {exp.method!r}, which is not a registered method. Pass method names instead of "
            "explanations, or run evaluate(..., sanity=False)."
        )
    accepted = {*explainers[exp.method].defaults, "precision"}
    recorded = {k: v for k, v in exp.params.items() if k in accepted}
    params = {**dict(given or {}), **recorded}
    missing = sorted(accepted - set(params) - {"precision"})
    if missing:
        raise ParameterError(
            f"sanity=True re-runs {exp.method!r} for explanation {row!r} with its own parameters, but it does "
            f"not record {', '.join(missing)} (not kept with the explanation); pass "
            f"method_params={{{row!r}: {{{', '.join(repr(k) + ': ...' for k in missing)}}}}} as you explained it."
        )
    return exp.method, params


def image_batch_shape(x: Any, who: str, what: str) -> tuple[int, int, int]:
    """``(N, H, W)`` of canonical images ``x``; one clear error for several inputs or other
    shapes (``who`` and ``what`` name the caller and the batch in the message)."""
    if several(x):
        raise UnsupportedError(
            f"{who} scores maps of one image input; this model is fed {len(leaves(x))} inputs. "
            "Wrap the model in one that takes the image and holds the other inputs fixed, and "
            "evaluate that."
        )
    if len(x.shape) != 4:
        raise InputError(f"{who} scores maps of images (N, H, W, C); {what} {tuple(x.shape)}.")
    return (int(x.shape[0]), int(x.shape[1]), int(x.shape[2]))


def baseline_classes(resolved: Mapping[str, np.ndarray], need_class: str) -> np.ndarray | None:
    """The classes the baseline rows are scored on: those of the given explanations when they
    all explain the same classes. When they differ, None (and a warning when ``need_class``,
    the chosen metrics that read the class's output, is not empty): a baseline row scored on
    one explanation's classes would compare with that row only."""
    rows = list(resolved)
    first = resolved[rows[0]]
    differ = [row for row in rows[1:] if not np.array_equal(resolved[row], first)]
    if not differ:
        return first
    if need_class:
        warnings.warn(
            f"evaluate: the given explanations explain different classes ({rows[0]!r} and {differ[0]!r} differ "
            f"for some images); each is scored on its own classes, but the baseline rows (random, centre, "
            f"edge) have no one set of classes, so {need_class} score NaN for them. Evaluate the explanations "
            "of each set of targets separately to get baselines for each.",
            UserWarning,
            stacklevel=3,
        )
    return None


def evaluate(
    model: object,
    inputs: Any,
    explanations: Sequence[str] | Mapping[str, Explanation],
    metrics: Sequence[str],
    masks: Any = None,
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
    ``(N, H, W)`` (NumPy, or a framework's tensor) are needed by localisation metrics.
    ``batch_size`` is the most images per model call of the metrics that run the model (a
    metric's own ``batch_size`` in ``metric_params`` wins). Metrics that read the target's
    probability take ``output_kind`` (``"auto"``: outputs whose rows are non-negative and sum
    to 1 are probabilities, others logits; the choice is in :attr:`Evaluation.output_kinds`).

    ``sanity=True`` adds the randomisation checks: ``randomisation`` (Spearman correlation
    with the map of the fully re-initialised model) and ``random-logit`` (with the map of
    another class), each averaged over ``repeats`` draws (seeds ``seed``, ``seed + 1``,
    ...); lower is better, and the model-free baselines score 1 by construction (random-logit
    is NaN, with a warning, for a model of one output: there is no other class). A given
    explanation is re-made on the randomised models with its own ``method`` and ``params``
    (``method_params[name]`` fills in what it does not record, such as SHAP's background).

    Each given explanation is scored on its own targets (as a Quantus metric scores each
    ``a_batch`` against its ``y_batch``); the baselines on the explanations' targets. When
    given explanations explain different classes, a baseline row scored on one of them would
    compare with that row only, so the metrics that read the class's output (those that run
    the model, completeness) are NaN for the baselines, with a warning; evaluate each set of
    targets separately for its baselines.
    """
    wrapped = wrap(model)
    x = wrapped.canonical(inputs)  # the model's array, on its device
    shape = image_batch_shape(x, "evaluate", "the inputs are")
    chosen = _chosen_metrics(metrics, metric_params, batch_size)
    need_class = class_metrics(chosen, sanity)
    if need_class:  # refused before any work (given explanations: by their outputs, below)
        check_class_targets(targets, need_class)
        if not isinstance(explanations, Mapping):
            check_class_outputs(tuple(wrapped.predict(x[:1]).shape), need_class)
    if masks is not None:
        masks = as_host(masks)
        if masks.shape != shape:
            raise InputError(f"masks have shape {masks.shape}; the inputs need (N, H, W) = {shape}.")
    computed = not isinstance(explanations, Mapping)
    if not isinstance(explanations, Mapping):
        if isinstance(explanations, str):
            explanations = [explanations]
        params = method_params or {}
        explanations = {m: explain(model, inputs, m, targets=targets, **params.get(m, {})) for m in explanations}
    maps = _checked_maps(explanations, shape)
    if need_class:
        for exp in explanations.values():
            check_class_explanation(exp, need_class)
    methods: dict[str, tuple[str, dict[str, Any]]] = {}
    if sanity and not computed:  # refuse before the metrics run
        methods = {row: _sanity_method(row, exp, (method_params or {}).get(row)) for row, exp in explanations.items()}
    maps.update(baseline_maps(wrapped.to_numpy(x), seed))
    kinds: dict[str, str] = {}
    fallback = None if explanations else _predicted_classes(wrapped, x, targets, batch_size)
    scores = score_rows(maps, explanations, chosen, x=x, model=wrapped, masks=masks, kinds=kinds, fallback=fallback)
    better = {name: metric.higher_is_better for name, metric in chosen.items()}
    if sanity:
        if computed:  # made here from the names, with the params the user gave
            methods = {row: (row, dict((method_params or {}).get(row, {}))) for row in explanations}
        sanity_rows(scores, maps, explanations, methods, model, inputs, range(seed, seed + repeats))
        better.update({"randomisation": False, "random-logit": False})
    return Evaluation(scores, better, kinds)


def score_rows(
    maps: Mapping[str, np.ndarray],
    explanations: Mapping[str, Explanation],
    metrics: Mapping[str, Metric],
    *,
    x: Any,
    model: Model,
    masks: np.ndarray | None,
    kinds: dict[str, str],
    fallback: np.ndarray | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """``{row: {metric: (N,) scores}}`` for every map ``(N, H, W)`` in ``maps``: a given
    explanation's row on its own targets, a baseline's on the explanations' shared classes
    (:func:`baseline_classes`: NaN for the metrics that read the class when they differ;
    ``fallback`` when there are no explanations). ``kinds`` collects each metric's
    ``output_kind_used``. Shared by :func:`evaluate` and :func:`limelight.evaluate_dataset`
    (one batch at a time)."""
    classes = {row: host_classes(model, exp.targets) for row, exp in explanations.items()}
    baselines = baseline_classes(classes, class_metrics(metrics, False)) if classes else fallback
    scores: dict[str, dict[str, np.ndarray]] = {}
    for row, m in maps.items():
        scores[row] = {}
        row_classes = classes.get(row, baselines)
        for name, metric in metrics.items():
            if row_classes is None and metric.reads_class:
                scores[row][name] = np.full(len(m), np.nan)  # a baseline of explanations of other classes
                continue
            scores[row][name] = metric(m, x=x, targets=row_classes, masks=masks, model=model,
                                       explanation=explanations.get(row))
            used = getattr(metric, "output_kind_used", None)
            if used is not None:
                kinds.setdefault(name, used)
    return scores


def sanity_rows(
    scores: dict[str, dict[str, np.ndarray]],
    maps: Mapping[str, np.ndarray],
    explanations: Mapping[str, Explanation],
    methods: Mapping[str, tuple[str, dict[str, Any]]],
    model: object,
    inputs: Any,
    seeds: Sequence[int],
) -> None:
    """Add ``randomisation`` and ``random-logit`` to every row of ``scores``: an explanation
    re-made (``methods[row]``: its method and params) on randomised models and for other
    classes; a baseline, the same map whatever the weights or the class, scores 1 (NaN
    random-logit for a model of one output)."""
    from .sanity import full_randomization, one_output, random_logit_row, spearman

    no_other_class = any(one_output(exp) for exp in explanations.values())
    for row, row_scores in scores.items():
        if row in BASELINES:
            unchanged = spearman(maps[row], maps[row])
            row_scores["randomisation"] = unchanged
            row_scores["random-logit"] = np.full(len(maps[row]), np.nan) if no_other_class else unchanged
            continue
        method, params = methods[row]
        exp = explanations[row]
        row_scores["randomisation"] = full_randomization(model, inputs, method, seeds, params, original=exp)
        row_scores["random-logit"] = random_logit_row(model, inputs, method, seeds, params, exp)
