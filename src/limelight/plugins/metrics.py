"""Built-in evaluation metrics, in NumPy against :class:`limelight.Model`.

Localisation (need masks): ``pointing-game`` (optional pixel ``tolerance``, as the original
paper allowed 15 px), ``energy-pointing-game`` (mask's bounding box), ``relevance-mass``,
``relevance-rank``. Faithfulness (need the model): ``deletion`` and ``insertion`` AUC of the
target's softmax probability as pixels are removed / added most-relevant first (baseline a
value or ``"blur"``), ``road-morf`` and ``road-lerf`` (ROAD: pixels removed most / least
relevant first and filled by noisy linear imputation), ``confidence-drop`` and
``confidence-increase`` (the image multiplied by its map). Additive methods: ``completeness``
(Σφ against f(x) − base value). Complexity: ``sparseness`` (Gini index) and ``complexity``
(entropy).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import numpy as np

from ..core.errors import ParameterError
from ..core.hookspecs import hookimpl
from ..core.metric import Metric

__all__ = [
    "PointingGame", "EnergyPointingGame", "RelevanceMass", "RelevanceRank",
    "Deletion", "Insertion", "RoadMorf", "RoadLerf", "ConfidenceDrop", "Completeness", "ConfidenceIncrease", "Sparseness", "Complexity",
]


class PointingGame(Metric):
    """1 if the map's maximum lies on the mask (within ``tolerance`` pixels), else 0."""

    name = "pointing-game"
    needs_mask = True
    defaults = MappingProxyType({"tolerance": 0.0})

    def score(self, maps: np.ndarray, masks: np.ndarray, **_: Any) -> np.ndarray:
        hits = np.zeros(len(maps))
        for i, (m, mask) in enumerate(zip(maps, masks, strict=True)):
            peak = np.array(np.unravel_index(np.argmax(m), m.shape))
            inside = np.argwhere(mask)
            if len(inside):
                hits[i] = np.sqrt(((inside - peak) ** 2).sum(1)).min() <= self.params["tolerance"]
        return hits


class EnergyPointingGame(Metric):
    """Share of the (positive) relevance inside the mask's bounding box (Score-CAM)."""

    name = "energy-pointing-game"
    needs_mask = True

    def score(self, maps: np.ndarray, masks: np.ndarray, **_: Any) -> np.ndarray:
        out = np.zeros(len(maps))
        for i, (m, mask) in enumerate(zip(maps, masks, strict=True)):
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            box = np.zeros_like(mask, bool)
            if len(rows):
                box[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = True
            positive = np.maximum(m, 0)
            out[i] = positive[box].sum() / positive.sum() if positive.sum() > 0 else 0.0
        return out


class RelevanceMass(Metric):
    """Share of the (positive) relevance inside the mask (Arras et al. 2022)."""

    name = "relevance-mass"
    needs_mask = True

    def score(self, maps: np.ndarray, masks: np.ndarray, **_: Any) -> np.ndarray:
        positive = np.maximum(maps, 0)
        total = positive.sum(axis=(1, 2))
        inside = (positive * masks).sum(axis=(1, 2))
        return np.divide(inside, total, out=np.zeros_like(total), where=total > 0)


class RelevanceRank(Metric):
    """Share of the K most relevant pixels that lie on the mask, K = mask size."""

    name = "relevance-rank"
    needs_mask = True

    def score(self, maps: np.ndarray, masks: np.ndarray, **_: Any) -> np.ndarray:
        out = np.zeros(len(maps))
        for i, (m, mask) in enumerate(zip(maps, masks, strict=True)):
            k = int(mask.sum())
            if k:
                top = np.argsort(-m.ravel(), kind="stable")[:k]
                out[i] = mask.ravel()[top].mean()
        return out


def _probability(model: Any, images: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The softmax probability ``(N,)`` of each image's target class."""
    z = model.predict(np.asarray(images, np.float32)).astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return (p / p.sum(axis=1, keepdims=True))[np.arange(len(targets)), targets]


def _box_blur(x: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)² window with edge padding, per image and channel: ``(N, H, W, C)``."""
    from scipy.ndimage import uniform_filter

    k = 2 * radius + 1
    return uniform_filter(x, size=(1, k, k, 1), mode="nearest").astype(x.dtype)


def _baseline_image(x: np.ndarray, baseline: Any) -> np.ndarray:
    """``baseline`` is a value, or ``"blur"`` (a box blur of radius H/8)."""
    if isinstance(baseline, str):
        if baseline != "blur":
            raise ValueError(f"baseline must be a number or 'blur', got {baseline!r}")
        return _box_blur(x, max(1, x.shape[1] // 8))
    return np.full_like(x, float(baseline))


class _Perturbation(Metric):
    needs_model = True
    defaults = MappingProxyType({"steps": 16, "baseline": 0.0})
    insert = False

    def score(self, maps: np.ndarray, x: np.ndarray, targets: np.ndarray, model: Any, **_: Any) -> np.ndarray:
        steps = int(self.params["steps"])
        n, h, w = maps.shape
        order = np.argsort(-maps.reshape(n, -1), axis=1, kind="stable")
        base = _baseline_image(x, self.params["baseline"])
        curves = np.zeros((n, steps + 1))
        for step in range(steps + 1):
            k = int(round(step / steps * h * w))
            chosen = np.zeros((n, h * w), bool)
            np.put_along_axis(chosen, order[:, :k], True, axis=1)
            chosen = chosen.reshape(n, h, w, 1)
            images = np.where(chosen, x, base) if self.insert else np.where(chosen, base, x)
            curves[:, step] = _probability(model, images, targets)
        return np.trapezoid(curves, dx=1.0 / steps, axis=1)


class Deletion(_Perturbation):
    """AUC of the target probability as the most relevant pixels are replaced by
    ``baseline`` first (lower is better: a faithful map destroys the evidence fast)."""

    name = "deletion"
    higher_is_better = False


class Insertion(_Perturbation):
    """AUC of the target probability as the most relevant pixels are inserted into the
    ``baseline`` image first (higher is better)."""

    name = "insertion"
    insert = True


#: ROAD's neighbour weights (Rong et al. 2022): a removed pixel is the weighted mean of its
#: 8 neighbours, direct ones counting twice the diagonal ones.
_NEIGHBOURS = (((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12),
               ((0, -1), 1 / 6), ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6))


def noisy_linear_imputation(image: np.ndarray, removed: np.ndarray, noise: float = 0.01,
                            rng: np.random.RandomState | None = None) -> np.ndarray:
    """ROAD's imputation of one image ``(H, W, C)``: the ``removed`` pixels ``(H, W)`` are
    solved for jointly so that each equals the weighted mean of its in-image neighbours
    (one sparse linear system shared by the channels), plus Gaussian noise of std ``noise``
    (canonical units). Known pixels are unchanged."""
    from scipy.sparse import coo_matrix, diags
    from scipy.sparse.linalg import spsolve

    h, w, c = image.shape
    flat_removed = np.asarray(removed, bool).ravel()
    unknown = np.flatnonzero(flat_removed)
    out = image.reshape(h * w, c).astype(np.float64)
    if unknown.size == 0:
        return out.reshape(h, w, c).astype(image.dtype)
    if unknown.size == h * w:
        raise ValueError("ROAD cannot impute an image with every pixel removed")
    variable = np.full(h * w, -1)
    variable[unknown] = np.arange(unknown.size)
    row, col = np.divmod(unknown, w)
    b = np.zeros((unknown.size, c))
    diagonal = np.zeros(unknown.size)
    a_rows, a_cols, a_vals = [], [], []
    for (dy, dx), weight in _NEIGHBOURS:
        r, q = row + dy, col + dx
        inside = (r >= 0) & (r < h) & (q >= 0) & (q < w)
        equations, neighbour = np.flatnonzero(inside), r[inside] * w + q[inside]
        diagonal[equations] += weight
        free = flat_removed[neighbour]
        b[equations[~free]] -= weight * out[neighbour[~free]]
        a_rows.append(equations[free])
        a_cols.append(variable[neighbour[free]])
        a_vals.append(np.full(free.sum(), weight))
    n = unknown.size
    a = coo_matrix((np.concatenate(a_vals), (np.concatenate(a_rows), np.concatenate(a_cols))), shape=(n, n))
    solved = spsolve((a - diags(diagonal)).tocsc(), b).reshape(n, c)
    rng = rng if rng is not None else np.random.RandomState(0)
    out[unknown] = solved + noise * rng.randn(n, c)
    return out.reshape(h, w, c).astype(image.dtype)


class _Road(Metric):
    """ROAD, RemOve And Debias (Rong et al. 2022): for each fraction of pixels removed in map
    order, the removed pixels are filled by :func:`noisy_linear_imputation` (which, unlike a
    constant, does not leak the removal pattern to the model), and the target's softmax
    probability is recorded. The score is the mean over ``fractions``."""

    needs_model = True
    defaults = MappingProxyType({"fractions": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
                                 "noise": 0.01, "seed": 0})
    most_relevant_first: bool

    def score(self, maps: np.ndarray, x: np.ndarray, targets: np.ndarray, model: Any, **_: Any) -> np.ndarray:
        n, h, w = maps.shape
        sign = -1.0 if self.most_relevant_first else 1.0
        order = np.argsort(sign * maps.reshape(n, -1), axis=1, kind="stable")
        rng = np.random.RandomState(self.params["seed"])
        fractions = [float(f) for f in self.params["fractions"]]
        if not fractions or not all(0 <= f < 1 for f in fractions):
            raise ParameterError(f"{self.name}: fractions must be in [0, 1) (the share of pixels removed), "
                                 f"got {self.params['fractions']!r}.")
        curves = np.zeros((n, len(fractions)))
        for j, fraction in enumerate(fractions):
            removed = np.zeros((n, h * w), bool)
            np.put_along_axis(removed, order[:, : int(round(fraction * h * w))], True, axis=1)
            images = np.stack([noisy_linear_imputation(img, r.reshape(h, w), self.params["noise"], rng)
                               for img, r in zip(x, removed, strict=True)])
            curves[:, j] = _probability(model, images, targets)
        return curves.mean(axis=1)


class RoadMorf(_Road):
    """ROAD with the most relevant pixels removed first (lower is better)."""

    name = "road-morf"
    higher_is_better = False
    most_relevant_first = True


class RoadLerf(_Road):
    """ROAD with the least relevant pixels removed first (higher is better)."""

    name = "road-lerf"
    most_relevant_first = False


class Completeness(Metric):
    """Relative completeness error of an additive explanation,
    ``|Σφ − (f(x) − base)| / |f(x) − base|`` with ``f`` the explained output and ``base`` the
    explanation's ``base_values`` (lower is better). NaN for maps that are not additive
    (CAMs, the baselines): the property does not apply to them."""

    name = "completeness"
    higher_is_better = False

    def score(self, maps: np.ndarray, explanation: Any = None, **_: Any) -> np.ndarray:
        if explanation is None or explanation.base_values is None:
            return np.full(len(maps), np.nan)
        values, base, targets = explanation.values, explanation.base_values, explanation.targets
        if targets.ndim == 2:  # several targets per sample: the first, as relevance_map does
            values, base, targets = values[..., 0], base[:, 0], targets[:, 0]
        total = values.reshape(len(values), -1).sum(axis=1, dtype=np.float64)
        gap = explanation.outputs[np.arange(len(targets)), targets].astype(np.float64) - base
        return np.abs(total - gap) / np.maximum(np.abs(gap), 1e-12)


class _Confidence(Metric):
    """Scores of the image multiplied by its (min-max normalized) map, vs the image's own
    (Grad-CAM++, Chattopadhyay et al. 2018), on the target's softmax probability."""

    needs_model = True

    def _scores(self, maps: np.ndarray, x: np.ndarray, targets: np.ndarray, model: Any) -> tuple[np.ndarray, np.ndarray]:
        flat = maps.reshape(len(maps), -1)
        low, span = flat.min(1, keepdims=True), np.ptp(flat, axis=1, keepdims=True)
        weights = np.divide(flat - low, span, out=np.zeros_like(flat), where=span > 0).reshape(maps.shape)
        original = _probability(model, x, targets)
        masked = _probability(model, x * weights[..., None], targets)
        return original, masked


class ConfidenceDrop(_Confidence):
    """``max(0, p - p_masked) / p`` per image: how much confidence is lost when only what the
    map highlights is kept ("average drop"; lower is better)."""

    name = "confidence-drop"
    higher_is_better = False

    def score(self, maps: np.ndarray, x: np.ndarray, targets: np.ndarray, model: Any, **_: Any) -> np.ndarray:
        original, masked = self._scores(maps, x, targets, model)
        return np.maximum(0.0, original - masked) / np.maximum(original, 1e-12)


class ConfidenceIncrease(_Confidence):
    """1 where keeping only what the map highlights raises the confidence, else 0
    ("increase in confidence"; higher is better)."""

    name = "confidence-increase"

    def score(self, maps: np.ndarray, x: np.ndarray, targets: np.ndarray, model: Any, **_: Any) -> np.ndarray:
        original, masked = self._scores(maps, x, targets, model)
        return (masked > original).astype(np.float64)


class Complexity(Metric):
    """Entropy of the normalized |map| (Bhatt et al. 2020), in nats; lower = simpler."""

    name = "complexity"
    higher_is_better = False

    def score(self, maps: np.ndarray, **_: Any) -> np.ndarray:
        flat = np.abs(maps.reshape(len(maps), -1))
        total = flat.sum(axis=1, keepdims=True)
        p = np.divide(flat, total, out=np.zeros_like(flat), where=total > 0)
        logs = np.log(p, out=np.zeros_like(p), where=p > 0)
        return -(p * logs).sum(axis=1)


class Sparseness(Metric):
    """Gini index of |map| (Chalasani et al. 2020): 1 = all relevance on one pixel, 0 = flat."""

    name = "sparseness"

    def score(self, maps: np.ndarray, **_: Any) -> np.ndarray:
        flat = np.sort(np.abs(maps.reshape(len(maps), -1)), axis=1)
        d = flat.shape[1]
        index = np.arange(1, d + 1)
        total = flat.sum(axis=1)
        gini = ((2 * index - d - 1) * flat).sum(axis=1) / (d * np.where(total > 0, total, 1))
        return np.where(total > 0, gini, 0.0)


BUILTIN_METRICS = (
    PointingGame, EnergyPointingGame, RelevanceMass, RelevanceRank, Deletion, Insertion,
    RoadMorf, RoadLerf, ConfidenceDrop, ConfidenceIncrease, Completeness, Sparseness, Complexity,
)


@hookimpl(trylast=True)
def limelight_register_metrics(register: Any) -> None:
    """Register the built-in metrics."""
    for cls in BUILTIN_METRICS:
        register(cls)
