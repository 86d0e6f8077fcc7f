"""``limelight.evaluate_dataset``: the metrics of :func:`limelight.evaluate` over a whole dataset,
streamed batch by batch, with means, standard errors and bootstrap confidence intervals.

>>> ev = limelight.evaluate_dataset(model, loader, ["gradcam", "scorecam"],
...                                 ["pointing-game", "deletion"])      # doctest: +SKIP
>>> print(ev)                      # Markdown: mean [95% CI] per method (and baseline) and metric
>>> ev.stats()["gradcam"]["deletion"].se                                  # doctest: +SKIP

Each batch is explained with each method, scored with each metric (the registered metric
classes, exactly as :func:`limelight.evaluate` calls them) and dropped: what stays is one
float per image per (row, metric). Memory is therefore the model, one batch and its
explanations, plus ``8 bytes × images × rows × metrics`` of scores (a million images, 5 rows
and 10 metrics: 400 MB) — nothing else grows with the dataset.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.api import explain, wrap
from ..core.errors import InputError, ParameterError
from ..core.model import Model
from ..evaluation.metric import DEFAULT_BATCH_SIZE, Metric, as_host, check_class_explanation
from ..evaluation.table import (
    Evaluation,
    _checked_maps,
    _chosen_metrics,
    baseline_maps,
    class_metrics,
    image_batch_shape,
    sanity_rows,
    score_rows,
)

__all__ = ["DatasetEvaluation", "Stat", "evaluate_dataset"]

#: Most bootstrap resamples × images drawn at once (bounds the bootstrap's memory: 80 MB).
_BOOT_CHUNK = 10_000_000


@dataclass(frozen=True)
class Stat:
    """The summary of one (row, metric) cell: ``mean``, standard error ``se`` (sample standard
    deviation with ddof=1 over √n), the percentile-bootstrap ``level`` confidence interval
    ``[low, high]`` of the mean, and ``n`` the images scored (NaN scores — a metric that does
    not apply, such as completeness of a CAM — are not counted)."""

    mean: float
    se: float
    low: float
    high: float
    n: int
    level: float = 0.95

    def to_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "se": self.se, "ci_low": self.low, "ci_high": self.high, "n": self.n,
                "level": self.level}


def summarise(scores: np.ndarray, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> Stat:
    """:class:`Stat` of per-image ``scores`` (NaN left out). The bootstrap resamples the
    images ``n_boot`` times with ``numpy.random.default_rng(seed)`` (the same draws for every
    cell of the same size, so the intervals of two methods are paired), in chunks of bounded
    memory."""
    values = np.asarray(scores, np.float64).reshape(-1)
    values = values[~np.isnan(values)]
    n = int(values.size)
    if n == 0:
        return Stat(math.nan, math.nan, math.nan, math.nan, 0, level)
    mean = float(values.mean())
    se = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    if n_boot <= 0:
        return Stat(mean, se, math.nan, math.nan, n, level)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    step = max(1, _BOOT_CHUNK // n)
    for start in range(0, n_boot, step):
        k = min(step, n_boot - start)
        means[start:start + k] = values[rng.integers(0, n, size=(k, n))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Stat(mean, se, float(low), float(high), n, level)


@dataclass(frozen=True)
class DatasetEvaluation:
    """Per-image scores of a dataset, ``scores[row][metric]`` ``(n,)`` in the order the images
    came; rows are the methods, then the random / centre / edge baselines (as in
    :class:`~limelight.evaluation.Evaluation`). Summaries are computed on demand with the
    bootstrap settings kept here (``n_boot`` resamples, ``seed``).

    - :meth:`stats` — ``{row: {metric: Stat}}`` (mean, SE, CI, n);
    - :meth:`table` — ``{row: {metric: mean}}``, like :meth:`Evaluation.table`;
    - ``str(ev)`` / :meth:`to_markdown` — a Markdown table of ``mean [low, high]``;
    - :meth:`to_dict` — everything as plain Python (JSON-ready);
    - :attr:`evaluation` — the scores as an :class:`~limelight.evaluation.Evaluation`.
    """

    scores: dict[str, dict[str, np.ndarray]]
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    output_kinds: dict[str, str] = field(default_factory=dict)
    n_boot: int = 1000
    seed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def n(self) -> int:
        """Images evaluated."""
        for cols in self.scores.values():
            for values in cols.values():
                return int(len(values))
        return 0

    @property
    def evaluation(self) -> Evaluation:
        return Evaluation(self.scores, dict(self.higher_is_better), dict(self.output_kinds))

    @classmethod
    def from_evaluation(cls, evaluation: Evaluation, *, n_boot: int = 1000, seed: int = 0) -> DatasetEvaluation:
        return cls(evaluation.scores, dict(evaluation.higher_is_better), dict(evaluation.output_kinds), n_boot, seed)

    @classmethod
    def concatenate(cls, evaluations: Sequence[DatasetEvaluation]) -> DatasetEvaluation:
        """One evaluation of the images of several (e.g. several datasets, or runs on
        different seeds), with the first one's bootstrap settings."""
        first = evaluations[0]
        pooled = Evaluation.concatenate([e.evaluation for e in evaluations])
        failures = [f for e in evaluations for f in e.failures]
        return cls(pooled.scores, pooled.higher_is_better, pooled.output_kinds, first.n_boot, first.seed, failures)

    def stats(self) -> dict[str, dict[str, Stat]]:
        """``{row: {metric: Stat}}``: mean, standard error, bootstrap CI and n per cell."""
        return {row: {m: summarise(v, n_boot=self.n_boot, seed=self.seed) for m, v in cols.items()}
                for row, cols in self.scores.items()}

    def table(self) -> dict[str, dict[str, float]]:
        """Mean score per row and metric (NaN where a metric does not apply to a row)."""
        return {row: {m: summarise(v, n_boot=0).mean for m, v in cols.items()} for row, cols in self.scores.items()}

    def to_markdown(self) -> str:
        """The table in Markdown: ``mean [low, high]`` per cell (95% percentile-bootstrap CI
        of the mean), arrows saying which direction is better, and the number of images."""
        stats = self.stats()
        if not stats:
            return "(no rows)"
        metrics = list(next(iter(stats.values())))
        head = [f"{m} {'↑' if self.higher_is_better.get(m, True) else '↓'}" for m in metrics]
        lines = ["| method | " + " | ".join(head) + " |", "|---|" + "---:|" * len(metrics)]
        for row, cols in stats.items():
            cells = ("—" if cols[m].n == 0 else f"{cols[m].mean:.3f} [{cols[m].low:.3f}, {cols[m].high:.3f}]"
                     for m in metrics)
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        lines += ["", f"{self.n} images; mean [95% percentile-bootstrap CI over images, {self.n_boot} resamples]."]
        if self.failures:
            lines.append(f"{len(self.failures)} samples could not be loaded and are not counted.")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_markdown()

    def to_dict(self) -> dict[str, Any]:
        """``{"n", "n_boot", "seed", "higher_is_better", "output_kinds", "failures",
        "stats": {row: {metric: {mean, se, ci_low, ci_high, n, level}}}}`` (no per-image
        scores: they are :attr:`scores`)."""
        return {
            "n": self.n,
            "n_boot": self.n_boot,
            "seed": self.seed,
            "higher_is_better": dict(self.higher_is_better),
            "output_kinds": dict(self.output_kinds),
            "failures": [{"id": i, "error": e} for i, e in self.failures],
            "stats": {row: {m: s.to_dict() for m, s in cols.items()} for row, cols in self.stats().items()},
        }


def _batches(model: Model, source: Any, batch_size: int, kw: Mapping[str, Any]) -> Iterator[Any]:
    """``iter_batches``; image files are fed NCHW to a torch model unless a ``preprocess``
    says otherwise (as :func:`~limelight.streaming.run.explain_dataset` does)."""
    from .run import _nchw
    from .sources import _is_paths, iter_batches

    kw = dict(kw)
    if kw.get("preprocess") is None and _is_paths(source) and model.framework == "torch":
        kw["preprocess"] = _nchw
    return iter(iter_batches(source, batch_size=batch_size, **kw))


class _BatchScorer:
    """What :func:`limelight.evaluate` does, one batch at a time: explain with each method,
    add the baselines, score every metric, and (``sanity``) the randomisation checks. The
    random baseline is drawn from one ``RandomState(seed)`` stream across batches, so its maps
    are those :func:`limelight.evaluate` draws for all images at once."""

    def __init__(self, model: Any, methods: list[str], metrics: dict[str, Metric], *, targets: Any,
                 method_params: Mapping[str, Mapping[str, Any]], seed: int, sanity: bool, repeats: int) -> None:
        self.model, self.wrapped = model, wrap(model)
        self.methods, self.metrics, self.targets = methods, metrics, targets
        self.method_params, self.seed, self.sanity, self.repeats = method_params, seed, sanity, repeats
        self.rng = np.random.RandomState(seed)
        self.output_kinds: dict[str, str] = {}

    def __call__(self, inputs: Any, masks: Any) -> dict[str, dict[str, np.ndarray]]:
        wrapped: Model = self.wrapped
        x = wrapped.canonical(inputs)
        shape = image_batch_shape(x, "evaluate_dataset", "a batch is")
        if masks is not None:
            masks = as_host(masks)
            if masks.shape != shape:
                raise InputError(f"a batch's masks have shape {masks.shape}; its inputs need (N, H, W) = {shape}.")
        explanations = {m: explain(self.model, inputs, m, targets=self.targets, **self.method_params.get(m, {}))
                        for m in self.methods}
        maps = _checked_maps(explanations, shape)
        need_class = class_metrics(self.metrics, self.sanity)
        if need_class:  # dense outputs: refused before the metrics run
            for exp in explanations.values():
                check_class_explanation(exp, need_class)
        baselines = baseline_maps(wrapped.to_numpy(x), self.seed)
        baselines["random"] = self.rng.rand(*shape)  # the stream continues across batches
        maps.update(baselines)
        scores = score_rows(maps, explanations, self.metrics, x=x, model=wrapped, masks=masks, kinds=self.output_kinds)
        if self.sanity:
            methods = {row: (row, dict(self.method_params.get(row, {}))) for row in explanations}
            sanity_rows(scores, maps, explanations, methods, self.model, inputs,
                        range(self.seed, self.seed + self.repeats))
        return scores


def evaluate_dataset(
    model: object,
    source: Any,
    methods: str | Sequence[str],
    metrics: str | Sequence[str],
    *,
    batch_size: int = 32,
    n_boot: int = 1000,
    seed: int = 0,
    method_params: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool | None = True,
    metric_params: Mapping[str, Mapping[str, Any]] | None = None,
    targets: int | None = None,
    sanity: bool = False,
    repeats: int = 3,
    metric_batch_size: int | None = DEFAULT_BATCH_SIZE,
    **kw: Any,
) -> DatasetEvaluation:
    """Score ``methods`` with ``metrics`` over every image of ``source``, streamed.

    Args:
        model: a PyTorch or Keras model (anything :func:`limelight.wrap` takes).
        source: what :func:`limelight.streaming.sources.iter_batches` reads — a torch
            DataLoader, a ``tf.data.Dataset``, an iterable of batches (``inputs``,
            ``(inputs, ids)``, ``(inputs, ids, masks)`` or dicts), or a folder / glob / list of
            image files. Localisation metrics need the masks ``(n, H, W)`` from the source.
        methods, metrics: registered names (as for :func:`limelight.evaluate`).
        batch_size: images per batch read from ``source`` (a source that is already
            batched is re-batched).
        n_boot, seed: bootstrap resamples and their seed; ``seed`` also seeds the random
            baseline and the sanity checks' redraws, as in :func:`limelight.evaluate`.
        method_params: ``{method: params}`` passed to :func:`limelight.explain`.
        progress: a progress bar (images, images/s) on stderr; None: only on a terminal.
        metric_params: ``{metric: params}``, as for :func:`limelight.evaluate`.
        targets: None (each image's predicted class) or one class for every image.
        sanity, repeats: add the randomisation checks (``randomisation``, ``random-logit``),
            as :func:`limelight.evaluate` does, batch by batch.
        metric_batch_size: the most images per model call of the metrics that run the model.
        **kw: passed to ``iter_batches`` (``preprocess=``, ``recursive=``, ``size=``).

    Returns a :class:`DatasetEvaluation`: per (method or baseline, metric) the per-image
    scores, with mean, standard error and bootstrap CI on demand. The per-image scores are the
    only thing kept from a batch; samples the source could not load are in ``failures``.

    Every metric scores each image on its own, so the result does not depend on
    ``batch_size`` and equals :func:`limelight.evaluate` on all images at once — except
    ``random-logit`` (its random classes are drawn per batch) and methods whose map of an
    image depends on the rest of its batch.
    """
    if isinstance(methods, str):
        methods = [methods]
    methods = list(methods)
    if not methods:
        raise ParameterError("evaluate_dataset needs at least one method.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ParameterError(f"batch_size must be a positive int, got {batch_size!r}.")
    if isinstance(metrics, str):
        metrics = [metrics]
    chosen = _chosen_metrics(list(metrics), metric_params, metric_batch_size)  # unknown names refused now
    if targets is not None and (isinstance(targets, bool) or not isinstance(targets, int | np.integer)):
        raise ParameterError(
            "evaluate_dataset takes targets=None (the predicted classes) or one class (an int); its "
            f"metrics score a class's output, so target objects are not taken (got {targets!r})."
        )
    scorer = _BatchScorer(model, methods, chosen, targets=targets, method_params=dict(method_params or {}),
                          seed=seed, sanity=sanity, repeats=repeats)
    parts: dict[str, dict[str, list[np.ndarray]]] = {}
    failures: list[tuple[str, str]] = []
    from .progress import Progress
    from .sources import source_length

    total = source_length(source, recursive=bool(kw.get("recursive", False))) if progress is not False else None
    bar = Progress(total, enabled=progress, desc="evaluating")
    try:
        for batch in _batches(scorer.wrapped, source, batch_size, kw):
            failures += list(getattr(batch, "failures", None) or [])
            if len(batch.ids) == 0:
                continue
            for row, cols in scorer(batch.inputs, batch.masks).items():
                for name, values in cols.items():
                    parts.setdefault(row, {}).setdefault(name, []).append(np.asarray(values, np.float64))
            bar.update(len(batch.ids))
    finally:
        bar.close()
    if not parts:
        raise InputError("evaluate_dataset: the source gave no images.")
    scores = {row: {name: np.concatenate(chunks) for name, chunks in cols.items()} for row, cols in parts.items()}
    better = {name: metric.higher_is_better for name, metric in chosen.items()}
    if sanity:
        better.update({"randomisation": False, "random-logit": False})
    return DatasetEvaluation(scores, better, dict(scorer.output_kinds), n_boot, seed, failures)

