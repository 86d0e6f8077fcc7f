"""Randomisation sanity checks (Adebayo et al. 2018): an explanation that does not change when
the model's weights are randomised, or when another class is explained, is not explaining
the model. The weight randomisation needs a backend with the capability
:class:`~limelight.core.model.SupportsRandomize`; the user's model is never touched."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..core.api import explain, wrap
from ..core.errors import LimelightError, UnsupportedError
from ..core.explanation import Explanation
from ..core.model import Model, SupportsRandomize
from ..core.targets import Target
from .metric import check_class_explanation, check_class_targets, relevance_map

__all__ = ["cascading_randomization", "full_randomization", "random_logit", "spearman"]


def _ranks(a: np.ndarray) -> np.ndarray:
    """Row-wise ranks of ``(N, D)`` with ties given their average rank (as
    ``scipy.stats.rankdata``): ReLU'd maps have many zeros, and breaking those ties by position
    would correlate any two maps through their layout alone."""
    out = np.empty(a.shape, np.float64)
    for i, row in enumerate(a):
        order = np.argsort(row, kind="stable")
        position = np.empty_like(order)
        position[order] = np.arange(len(row))
        ordered = row[order]
        starts = np.r_[True, ordered[1:] != ordered[:-1]]
        group = np.cumsum(starts)[position]  # 1-based tie group of each element
        bounds = np.r_[np.flatnonzero(starts), len(row)]
        out[i] = 0.5 * (bounds[group - 1] + bounds[group] - 1)
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-sample Spearman rank correlation of two batches of maps ``(N, ...)`` (ties share
    their average rank; a constant map correlates 0)."""
    ra, rb = _ranks(a.reshape(len(a), -1)), _ranks(b.reshape(len(b), -1))
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    denominator = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    return np.divide((ra * rb).sum(1), denominator, out=np.zeros(len(a)), where=denominator > 0)


def _randomizable(model: object) -> SupportsRandomize:
    """The wrapped model, checked to provide :class:`SupportsRandomize`."""
    wrapped = wrap(model)
    if not isinstance(wrapped, SupportsRandomize):
        raise UnsupportedError(
            f"the {wrapped.framework} backend ({type(wrapped).__name__}) cannot make randomised copies: "
            "the sanity checks need the backend capability SupportsRandomize."
        )
    return wrapped


def _randomized(wrapped: SupportsRandomize, layers: list[str], seed: int) -> Model:
    """``wrapped.randomized(layers, seed)``; a backend's failure to copy the model (e.g. a
    subclassed Keras model that ``clone_model`` rebuilds with other layer names) becomes
    one clear :class:`UnsupportedError`."""
    try:
        return wrapped.randomized(layers, seed=seed)
    except LimelightError:
        raise
    except Exception as exc:
        framework = getattr(wrapped, "framework", type(wrapped).__name__)
        hint = ("Subclassed Keras models often cannot be cloned; a functional or Sequential model can, or run "
                if framework in ("keras", "tensorflow") else "Run ")
        raise UnsupportedError(
            f"the sanity checks could not make a randomised copy of this {framework} model "
            f"({type(exc).__name__}: {exc}). {hint}evaluate(..., sanity=False) to skip them."
        ) from exc


def _randomised_maps(
    model: object,
    inputs: Any,
    method: str,
    copies: list[tuple[list[str], int]],
    params: Mapping[str, Any] | None,
    original: Explanation | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The original map and the map of each randomised copy ``(layers re-initialised, seed)``,
    for the same targets (and the same layer for CAMs)."""
    wrapped = _randomizable(model)
    params = dict(params or {})
    if original is None:
        original = explain(wrapped, inputs, method, **params)
    if "layer" in original.params:  # a CAM: the layer picked on the original model
        params["layer"] = original.params["layer"]
    if not isinstance(params.get("targets"), Target):  # a target object is re-used as it is
        if (original.targets < 0).any() or original.outputs.ndim != 2:
            raise UnsupportedError(
                f"the randomisation check re-explains the same targets on randomised models, but the "
                f"{original.method!r} explanation's targets are no class indices (a target object: "
                "Function, Similarity or Region): pass the same object in params['targets']."
            )
        params["targets"] = original.targets
    maps = [relevance_map(explain(_randomized(wrapped, layers, seed), inputs, method, **params))
            for layers, seed in copies]
    return relevance_map(original), maps


def cascading_randomization(
    model: object, inputs: Any, method: str, seed: int = 0, params: Mapping[str, Any] | None = None
) -> list[tuple[str, float]]:
    """Re-initialise the weights layer by layer from the output down; after each step, the
    mean Spearman correlation between the original map and the map of the randomised model
    (same targets). Returns ``[(last randomised layer, correlation), ...]``; near 0 at the end
    is what a model-dependent explanation shows."""
    layers = _randomizable(model).parameter_layers()[::-1]
    steps = [(layers[:k], seed) for k in range(1, len(layers) + 1)]
    base, maps = _randomised_maps(model, inputs, method, steps, params)
    return [(name, float(spearman(base, m).mean())) for name, m in zip(layers, maps, strict=True)]


def full_randomization(
    model: object,
    inputs: Any,
    method: str,
    seeds: Sequence[int] = (0,),
    params: Mapping[str, Any] | None = None,
    *,
    original: Explanation | None = None,
) -> np.ndarray:
    """Per-sample Spearman correlation ``(N,)`` between the original map and the map of the
    fully re-initialised model (the cascade's last step), averaged over ``seeds``: redraws
    of a small network differ a lot, so the check is an expectation over redraws.

    ``original``: the explanation of ``method`` with ``params`` on ``inputs``, when it is
    already computed (its targets and layer are used for the randomised models)."""
    layers = _randomizable(model).parameter_layers()
    base, maps = _randomised_maps(model, inputs, method, [(layers, s) for s in seeds], params, original)
    return np.mean([spearman(base, m) for m in maps], axis=0)


def random_logit(
    model: object,
    inputs: Any,
    method: str,
    seeds: Sequence[int] = (0,),
    params: Mapping[str, Any] | None = None,
    *,
    original: Explanation | None = None,
) -> np.ndarray:
    """Per-sample Spearman correlation ``(N,)`` between the map of the explained class and the
    map of a random other class (one draw per seed, averaged); a class-sensitive explanation
    gives a low value. ``original``: the explanation of ``method`` with ``params`` on
    ``inputs``, when it is already computed."""
    what = "random-logit's maps (of another class than the explained one)"
    wrapped = wrap(model)
    params = dict(params or {})
    check_class_targets(params.get("targets"), what)
    if original is None:
        original = explain(wrapped, inputs, method, **params)
    check_class_explanation(original, what)
    if "layer" in original.params:  # the layer the original map was taken at
        params["layer"] = original.params["layer"]
    base, k = relevance_map(original), original.outputs.shape[-1]
    if k < 2:
        raise UnsupportedError(
            f"random-logit compares the map of the explained class with the map of another class, but this "
            f"model has {k} output (outputs {tuple(original.outputs.shape)}): it needs at least 2 classes. "
            "The randomisation check (full_randomization) still applies."
        )
    classes = original.targets[:, 0] if original.targets.ndim == 2 else original.targets  # the first, as relevance_map
    scores = []
    for seed in seeds:
        other = (classes + np.random.RandomState(seed).randint(1, k, size=len(classes))) % k
        changed = explain(wrapped, inputs, method, **{**params, "targets": other})
        scores.append(spearman(base, relevance_map(changed)))
    return np.mean(scores, axis=0)


def one_output(exp: Explanation) -> bool:
    """Whether ``exp`` explains a model of one output ``(N, 1)``: no other class for
    random-logit."""
    return exp.outputs.ndim == 2 and exp.outputs.shape[-1] < 2


def random_logit_row(
    model: object,
    inputs: Any,
    method: str,
    seeds: Sequence[int],
    params: Mapping[str, Any] | None,
    original: Explanation,
) -> np.ndarray:
    """:func:`random_logit` for a row of an evaluation table: NaN (with a warning) where the
    check does not apply, a model of one output, as other metrics that do not apply to a row
    are NaN; any other refusal is raised."""
    if one_output(original):
        warnings.warn(
            f"random-logit needs a model of at least 2 classes (it compares with the map of another class); "
            f"this one has outputs {tuple(original.outputs.shape)}, so random-logit is NaN for {method!r}.",
            UserWarning,
            stacklevel=3,
        )
        return np.full(len(original), np.nan)
    return random_logit(model, inputs, method, seeds, params, original=original)
