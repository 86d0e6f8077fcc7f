"""Faithfulness metrics: does the model's confidence follow the map? They run the model.

``deletion`` and ``insertion``: AUC of the target's softmax probability as pixels are removed
/ added most-relevant first (baseline a value or ``"blur"``). ``road-morf`` and
``road-lerf`` (ROAD: pixels removed most / least relevant first and filled by noisy linear
imputation). ``confidence-drop`` and ``confidence-increase`` (the image multiplied by its
map).

The perturbed images are built on the model's device with ``model.xp`` (the inputs moved
there once), every step's images of every sample go through the model in batches of at most
``batch_size``, the target's softmax probability is taken on the device, and only the scores
``(N,)`` come back. ROAD's imputation is a sparse solve on the host (SciPy); its images are
fed in the same batches.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import numpy as np

from ..core.errors import ParameterError
from ..core.model import Array, Model, batches
from .metric import Metric, on_device, on_host

__all__ = [
    "ConfidenceDrop",
    "ConfidenceIncrease",
    "Deletion",
    "Insertion",
    "RoadLerf",
    "RoadMorf",
    "noisy_linear_imputation",
]


def _probability(model: Model, images: Array, classes: np.ndarray) -> Array:
    """The softmax probability ``(B,)`` of each image's class, on the device: one model
    call on ``images`` (a backend array), ``classes`` ``(B,)`` host ints."""
    xp = model.xp
    z = model.predict(images, batch_size=max(1, int(images.shape[0])))
    z = z if z.dtype == xp.float64 else xp.astype(z, xp.float32)  # half-precision outputs: softmax in float32
    e = xp.exp(z - xp.max(z, axis=1, keepdims=True))
    index = model.asarray(np.asarray(classes, np.int64).reshape(-1, 1))
    return xp.take_along_axis(e, index, axis=1)[:, 0] / xp.sum(e, axis=1)


def _probabilities(
    model: Model, count: int, images: Callable[[np.ndarray], Array], classes: np.ndarray, batch_size: int | None
) -> np.ndarray:
    """The target probability of ``count`` images, ``(count,)`` float64 on the host.

    ``images(index)`` builds the images of the flat indices ``index`` (a slice of
    ``arange(count)``, in order) as a backend array; ``classes`` ``(count,)`` gives each
    image's class. One model call per ``batch_size`` images; one copy out at the end.
    """
    if count == 0:
        return np.zeros(0)
    xp = model.xp
    parts = []
    for part in batches(count, batch_size):
        index = np.arange(part.start, part.stop)
        parts.append(_probability(model, images(index), classes[index]))
    out = parts[0] if len(parts) == 1 else xp.concat(parts)
    return np.asarray(model.to_numpy(out), np.float64)


def _box_blur(x: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)² window with edge padding, per image and channel: ``(N, H, W, C)``."""
    from scipy.ndimage import uniform_filter

    k = 2 * radius + 1
    return uniform_filter(x, size=(1, k, k, 1), mode="nearest").astype(x.dtype)


def _baseline_image(x: np.ndarray, baseline: Any) -> np.ndarray:
    """``baseline`` is a value, or ``"blur"`` (a box blur of radius H/8); host version."""
    if isinstance(baseline, str):
        if baseline != "blur":
            raise ValueError(f"baseline must be a number or 'blur', got {baseline!r}")
        return _box_blur(x, max(1, x.shape[1] // 8))
    return np.full_like(x, float(baseline))


def _baseline_on_device(model: Model, x: Any, x_dev: Array, baseline: Any) -> Array:
    """The baseline image on the device: a constant made there; a blur made on the host."""
    if isinstance(baseline, str):
        blurred = _baseline_image(on_host(model, x).astype(np.float32, copy=False), baseline)
        return model.asarray(blurred, like=x_dev)
    return model.xp.full_like(x_dev, float(baseline))


def _ranks(maps: np.ndarray, sign: float) -> np.ndarray:
    """``(N, H*W)`` int32: each pixel's position when the pixels are sorted by ``sign * map``
    ascending (stable), i.e. most relevant first for ``sign = -1``."""
    n = len(maps)
    order = np.argsort(sign * maps.reshape(n, -1), axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(order.shape[1]), order.shape), axis=1)
    return ranks.astype(np.int32)


class _Perturbation(Metric):
    needs_model = True
    defaults = MappingProxyType({"steps": 16, "baseline": 0.0})
    insert = False

    def score(self, maps: np.ndarray, x: Any, targets: np.ndarray, model: Model, **_: Any) -> np.ndarray:
        steps = int(self.params["steps"])
        n, h, w = maps.shape
        xp = model.xp
        x_dev = on_device(model, x)
        base = _baseline_on_device(model, x, x_dev, self.params["baseline"])
        ranks = model.asarray(_ranks(maps, -1.0))  # (N, H*W): position in most-relevant-first order
        chosen_counts = np.array([round(step / steps * h * w) for step in range(steps + 1)], np.int32)

        def images(index: np.ndarray) -> Array:  # flat index = sample * (steps + 1) + step
            sample, step = np.divmod(index, steps + 1)
            rows = model.asarray(sample)
            chosen = xp.take(ranks, rows, axis=0) < model.asarray(chosen_counts[step].reshape(-1, 1))
            chosen = xp.reshape(chosen, (len(index), h, w, 1))
            kept, replaced = xp.take(x_dev, rows, axis=0), xp.take(base, rows, axis=0)
            return xp.where(chosen, kept, replaced) if self.insert else xp.where(chosen, replaced, kept)

        per_image = np.repeat(targets, steps + 1)
        curves = _probabilities(model, n * (steps + 1), images, per_image, self.batch_size).reshape(n, steps + 1)
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

    def score(self, maps: np.ndarray, x: Any, targets: np.ndarray, model: Model, **_: Any) -> np.ndarray:
        n, h, w = maps.shape
        fractions = [float(f) for f in self.params["fractions"]]
        if not fractions or not all(0 <= f < 1 for f in fractions):
            raise ParameterError(f"{self.name}: fractions must be in [0, 1) (the share of pixels removed), "
                                 f"got {self.params['fractions']!r}.")
        sign = -1.0 if self.most_relevant_first else 1.0
        order = np.argsort(sign * maps.reshape(n, -1), axis=1, kind="stable")
        counts = [round(fraction * h * w) for fraction in fractions]
        rng = np.random.RandomState(self.params["seed"])
        noise = self.params["noise"]
        host = on_host(model, x)
        like = None if isinstance(x, np.ndarray) else x

        def images(index: np.ndarray) -> Array:  # flat index = fraction * N + sample: the draw order of the noise
            out = []
            for j, i in zip(*np.divmod(index, n), strict=True):
                removed = np.zeros(h * w, bool)
                removed[order[i, : counts[j]]] = True
                out.append(noisy_linear_imputation(host[i], removed.reshape(h, w), noise, rng))
            return model.asarray(np.asarray(np.stack(out), np.float32), like=like)

        per_image = np.tile(targets, len(fractions))
        curves = _probabilities(model, n * len(fractions), images, per_image, self.batch_size)
        return curves.reshape(len(fractions), n).mean(axis=0)


class RoadMorf(_Road):
    """ROAD with the most relevant pixels removed first (lower is better)."""

    name = "road-morf"
    higher_is_better = False
    most_relevant_first = True


class RoadLerf(_Road):
    """ROAD with the least relevant pixels removed first (higher is better)."""

    name = "road-lerf"
    most_relevant_first = False


class _Confidence(Metric):
    """Scores of the image multiplied by its (min-max normalized) map, vs the image's own
    (Grad-CAM++, Chattopadhyay et al. 2018), on the target's softmax probability."""

    needs_model = True

    def _scores(self, maps: np.ndarray, x: Any, targets: np.ndarray, model: Model) -> tuple[np.ndarray, np.ndarray]:
        xp = model.xp
        n = len(maps)
        flat = maps.reshape(n, -1)
        low, span = flat.min(1, keepdims=True), np.ptp(flat, axis=1, keepdims=True)
        weights = np.divide(flat - low, span, out=np.zeros_like(flat), where=span > 0).reshape(maps.shape)
        x_dev = on_device(model, x)
        w_dev = model.asarray(weights[..., None], like=x_dev)

        def images(index: np.ndarray) -> Array:  # flat index: the N originals, then the N masked images
            rows = model.asarray(index % n)
            original = model.asarray((index < n).reshape(-1, 1, 1, 1))
            xs = xp.take(x_dev, rows, axis=0)
            return xp.where(original, xs, xs * xp.take(w_dev, rows, axis=0))

        scores = _probabilities(model, 2 * n, images, np.tile(targets, 2), self.batch_size)
        return scores[:n], scores[n:]


class ConfidenceDrop(_Confidence):
    """``max(0, p - p_masked) / p`` per image: how much confidence is lost when only what the
    map highlights is kept ("average drop"; lower is better)."""

    name = "confidence-drop"
    higher_is_better = False

    def score(self, maps: np.ndarray, x: Any, targets: np.ndarray, model: Model, **_: Any) -> np.ndarray:
        original, masked = self._scores(maps, x, targets, model)
        return np.maximum(0.0, original - masked) / np.maximum(original, 1e-12)


class ConfidenceIncrease(_Confidence):
    """1 where keeping only what the map highlights raises the confidence, else 0
    ("increase in confidence"; higher is better)."""

    name = "confidence-increase"

    def score(self, maps: np.ndarray, x: Any, targets: np.ndarray, model: Model, **_: Any) -> np.ndarray:
        original, masked = self._scores(maps, x, targets, model)
        return (masked > original).astype(np.float64)
