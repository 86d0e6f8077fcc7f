"""Faithfulness metrics: does the model's confidence follow the map? They run the model.

``deletion`` and ``insertion``: AUC of the target's probability as pixels are removed
/ added most-relevant first (baseline a value or ``"blur"``). ``road-morf`` and
``road-lerf`` (ROAD: pixels removed most / least relevant first and filled by noisy linear
imputation). ``confidence-drop`` and ``confidence-increase`` (the image multiplied by its
map).

The target's probability is the softmax of the model's outputs when they are logits, the
output itself when the model already ends in a softmax: every one of these metrics takes
``output_kind`` (``"logits"``, ``"probabilities"``, or ``"auto"``, the default: outputs
whose rows are non-negative and sum to 1 are probabilities, decided on the device from the
first batch, only a boolean comes back). The kind used is in ``metric.output_kind_used``
after a call, and :func:`~limelight.evaluation.evaluate` records it.

The perturbed images are built on the model's device with ``model.xp`` (the inputs moved
there once), every step's images of every sample go through the model in batches of at most
``batch_size``, the target's probability is taken on the device, and only the scores
``(N,)`` come back. ROAD's imputation is a sparse solve on the host (SciPy); its images are
fed in the same batches.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import numpy as np

from ..core.errors import ParameterError
from ..core.lazy import require
from ..core.model import Array, Model, batches
from .metric import DEFAULT_BATCH_SIZE, Metric, check_class_outputs, on_device, on_host

__all__ = [
    "OUTPUT_KINDS",
    "ConfidenceDrop",
    "ConfidenceIncrease",
    "Deletion",
    "Insertion",
    "RoadLerf",
    "RoadMorf",
    "noisy_linear_imputation",
]

#: What a model's outputs are: ``"auto"`` decides from the outputs (rows non-negative and
#: summing to 1 within :data:`_SUM_TOLERANCE` are probabilities).
OUTPUT_KINDS = ("auto", "logits", "probabilities")

#: How far from 1 a row of probabilities may sum (float16 softmax outputs included).
_SUM_TOLERANCE = 1e-3


def _are_probabilities(model: Model, z: Array) -> bool:
    """Whether outputs ``z`` ``(B, K)`` look like probabilities: checked on the device, one
    boolean comes back."""
    xp = model.xp
    sums = xp.sum(z, axis=1)
    flag = xp.logical_and(xp.all(z >= 0), xp.all(xp.abs(sums - 1.0) <= _SUM_TOLERANCE))
    return bool(np.asarray(model.to_numpy(flag)))


def _probability(model: Model, images: Array, classes: np.ndarray, output_kind: str) -> tuple[Array, str]:
    """The probability ``(B,)`` of each image's class, on the device: one model call on
    ``images`` (a backend array), ``classes`` ``(B,)`` host ints. The softmax of the outputs
    for ``output_kind="logits"``, the outputs themselves for ``"probabilities"``; ``"auto"``
    is decided here. Returns the probabilities and the kind used."""
    xp = model.xp
    z = model.predict(images, batch_size=max(1, int(images.shape[0])))
    check_class_outputs(tuple(z.shape), "the faithfulness metrics")
    z = z if z.dtype == xp.float64 else xp.astype(z, xp.float32)  # half-precision outputs: float32
    if output_kind == "auto":
        output_kind = "probabilities" if _are_probabilities(model, z) else "logits"
    index = model.asarray(np.asarray(classes, np.int64).reshape(-1, 1))
    if output_kind == "probabilities":
        return xp.take_along_axis(z, index, axis=1)[:, 0], output_kind
    e = xp.exp(z - xp.max(z, axis=1, keepdims=True))
    return xp.take_along_axis(e, index, axis=1)[:, 0] / xp.sum(e, axis=1), output_kind


class _ModelOutputs(Metric):
    """A metric that reads the target's probability from the model's outputs: checks
    ``output_kind`` and records the kind used in :attr:`output_kind_used`."""

    needs_model = True
    #: The output kind the last call used ("logits" or "probabilities"); None before a call.
    output_kind_used: str | None = None

    def __init__(self, *, batch_size: int | None = DEFAULT_BATCH_SIZE, **params: Any) -> None:
        super().__init__(batch_size=batch_size, **params)
        if self.params["output_kind"] not in OUTPUT_KINDS:
            raise ParameterError(
                f"metric {self.name!r}: output_kind must be one of {', '.join(map(repr, OUTPUT_KINDS))}; "
                f"got {self.params['output_kind']!r}."
            )
        self.output_kind_used = None

    def _probabilities(
        self, model: Model, count: int, images: Callable[[np.ndarray], Array], classes: np.ndarray
    ) -> np.ndarray:
        """The target probability of ``count`` images, ``(count,)`` float64 on the host.

        ``images(index)`` builds the images of the flat indices ``index`` (a slice of
        ``arange(count)``, in order) as a backend array; ``classes`` ``(count,)`` gives each
        image's class. One model call per ``batch_size`` images; one copy out at the end.
        ``output_kind="auto"`` is decided on the first batch and kept for the others.
        """
        if count == 0:
            return np.zeros(0)
        xp = model.xp
        kind = str(self.params["output_kind"])
        parts = []
        for part in batches(count, self.batch_size):
            index = np.arange(part.start, part.stop)
            probability, kind = _probability(model, images(index), classes[index], kind)
            parts.append(probability)
        self.output_kind_used = kind
        out = parts[0] if len(parts) == 1 else xp.concat(parts)
        return np.asarray(model.to_numpy(out), np.float64)


def _box_blur(x: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)² window with edge padding, per image and channel: ``(N, H, W, C)``."""
    uniform_filter = require("scipy.ndimage", "eval", "scipy").uniform_filter  # missing: the install hint

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


class _Perturbation(_ModelOutputs):
    defaults = MappingProxyType({"steps": 16, "baseline": 0.0, "output_kind": "auto"})
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
        curves = self._probabilities(model, n * (steps + 1), images, per_image).reshape(n, steps + 1)
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
    sparse = require("scipy.sparse", "eval", "scipy")  # missing: the install hint
    coo_matrix, diags = sparse.coo_matrix, sparse.diags
    spsolve = require("scipy.sparse.linalg", "eval", "scipy").spsolve

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


class _Road(_ModelOutputs):
    """ROAD, RemOve And Debias (Rong et al. 2022): for each fraction of pixels removed in map
    order, the removed pixels are filled by :func:`noisy_linear_imputation` (which, unlike a
    constant, does not leak the removal pattern to the model), and the target's probability
    is recorded. The score is the mean over ``fractions``."""

    defaults = MappingProxyType({"fractions": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
                                 "noise": 0.01, "seed": 0, "output_kind": "auto"})
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
        curves = self._probabilities(model, n * len(fractions), images, per_image)
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


class _Confidence(_ModelOutputs):
    """Scores of the image multiplied by its (min-max normalized) map, vs the image's own
    (Grad-CAM++, Chattopadhyay et al. 2018), on the target's probability."""

    defaults = MappingProxyType({"output_kind": "auto"})

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

        scores = self._probabilities(model, 2 * n, images, np.tile(targets, 2))
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
