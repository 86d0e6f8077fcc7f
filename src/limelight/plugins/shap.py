"""The SHAP family, written once against :class:`limelight.Model` in NumPy.

Attributions are ``(N, H, W, C)`` channels-last at input resolution (a trailing ``T`` axis
when ``(N, T)`` targets are explained); positive values push the explained output up.
``base_values`` hold the expected output the attributions are measured from.

* ``shap-gradient``: expected gradients (shap's GradientExplainer algorithm, same draws).
* ``shap-deep``: DeepSHAP, DeepLIFT's rescale rule averaged over the background; needs the
  backend capability ``deeplift``.
* ``shap-partition``: Owen values through shap's own PartitionExplainer and Image masker;
  calls only :meth:`Model.predict`.
* ``shap``: ``shap-deep`` where the backend and the model's operations allow it, else
  ``shap-gradient``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import numpy as np

from ..core.cache import model_cache
from ..core.errors import FrameworkNotInstalledError, InputError, ParameterError
from ..core.explainer import Explainer
from ..core.explanation import Explanation
from ..core.hookspecs import hookimpl
from ..core.model import DEEPLIFT, GRADIENTS
from ..core.targets import resolve_targets

__all__ = ["ShapGradient", "ShapDeep", "ShapPartition", "ShapAuto"]

#: Samples (or background rows) per framework call when ``batch_size`` is not given.
BATCH_SIZE = 50


def _shap() -> Any:
    try:
        import shap
    except ImportError as exc:
        raise FrameworkNotInstalledError("shap", extra="shap") from exc
    return shap


class _ShapExplainer(Explainer):
    """Shared parts: the background, batching, base values, the Explanation.

    Work is cut in batches of ``explain(..., batch_size=)`` samples (default
    :data:`BATCH_SIZE`), so peak memory does not grow with ``nsamples`` or the background.
    """

    multi_target = True

    def batch_size(self) -> int:
        """Samples per framework call: ``explain(..., batch_size=)``, else :data:`BATCH_SIZE`."""
        return self.model.batch_size or BATCH_SIZE

    def background(self) -> np.ndarray:
        """The ``background`` parameter in canonical layout (converted once, cached)."""
        if not hasattr(self, "_background"):
            given = self.params.get("background")
            if given is None:
                raise ParameterError(
                    f"{self.name} needs background=: a batch of reference inputs, given the way "
                    "you feed the model (e.g. 50-100 training images)."
                )
            self._background = self.model.canonical(given)
        return self._background

    def background_outputs(self) -> np.ndarray:
        """``predict(background)``, cached per model and background contents."""
        bg = self.background()
        key = ("background outputs", bg.shape, hashlib.sha1(np.ascontiguousarray(bg).data).hexdigest())
        cache = model_cache(self.model.native)
        if key not in cache:
            cache[key] = self.model.predict(bg)
        return cache[key]

    def finish(
        self, x: np.ndarray, values: np.ndarray, targets: np.ndarray, outputs: np.ndarray,
        base_values: np.ndarray, single: bool, **extra: Any,
    ) -> Explanation:
        """Package ``values (N, T, ...)`` as an Explanation (dropping T for single targets)."""
        values = np.moveaxis(values, 1, -1).astype(np.float32)
        if single:
            values, targets, base_values = values[..., 0], targets[:, 0], base_values[:, 0]
        params = {k: v for k, v in self.params.items() if k != "background"}
        return Explanation(
            method=self.name,
            values=values,
            targets=targets,
            outputs=outputs,
            inputs=x,
            base_values=base_values,
            params={**params, **extra},
            framework=self.model.framework,
        )


def _columns(targets: np.ndarray | None, outputs: np.ndarray) -> tuple[np.ndarray, bool]:
    resolved = resolve_targets(targets, outputs)
    return resolved.reshape(len(resolved), -1), resolved.ndim == 1


class ShapGradient(_ShapExplainer):
    """Expected gradients (shap's GradientExplainer): E[(x - x') ⊙ ∇f(x' + t(x - x'))].

    Draws follow shap's order exactly: for each row, for each sample, ``choice`` of a
    background row, then ``uniform`` for t, then (with ``local_smoothing``) Gaussian noise
    added to x, all from ``numpy.random.RandomState(seed)``. So a seeded run equals
    ``shap.GradientExplainer(...).shap_values(x, nsamples, rseed=seed)`` and gives the same
    values for a torch model and its Keras twin. One forward pass serves all targets.
    """

    name = "shap-gradient"
    requires = frozenset({GRADIENTS})
    defaults = MappingProxyType(
        {"background": None, "nsamples": 200, "seed": None, "local_smoothing": 0.0}
    )

    def _draws(self, x: np.ndarray, bg: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(row, sample point, x - x') in shap's draw order, one sample at a time."""
        rng = np.random.RandomState(self.params["seed"])
        smoothing = float(self.params["local_smoothing"])
        for row in range(len(x)):
            for _ in range(int(self.params["nsamples"])):
                ref = bg[rng.choice(len(bg))].astype(np.float64)
                t = rng.uniform()
                point = x[row].astype(np.float64)
                if smoothing > 0:
                    point = point + rng.randn(*point.shape) * smoothing
                yield row, t * point + (1 - t) * ref, point - ref

    def explain(self, x: np.ndarray, targets: np.ndarray | None) -> Explanation:
        nsamples, batch_size = int(self.params["nsamples"]), self.batch_size()
        if nsamples < 1:
            raise ParameterError(f"nsamples must be a positive int, got {nsamples}.")
        bg = self.background()
        outputs = self.model.predict(x)
        columns, single = _columns(targets, outputs)
        phis = np.zeros((len(x), columns.shape[1], *x.shape[1:]), np.float64)
        batch: list[tuple[int, np.ndarray, np.ndarray]] = []
        for draw in self._draws(x, bg):
            batch.append(draw)
            if len(batch) == batch_size:
                self._accumulate(batch, columns, phis)
                batch = []
        if batch:
            self._accumulate(batch, columns, phis)
        phis /= nsamples
        base = self.background_outputs().mean(axis=0)[columns]
        return self.finish(x, phis, columns, outputs, base, single)

    def _accumulate(self, batch: list[Any], columns: np.ndarray, phis: np.ndarray) -> None:
        rows = np.array([row for row, _, _ in batch])
        points = np.stack([point for _, point, _ in batch]).astype(np.float32)
        deltas = np.stack([delta for _, _, delta in batch])
        grads = self.model.multi_gradients(points, columns[rows]).gradients  # (b, T, ...)
        for i, row in enumerate(rows):  # in draw order, in float64 (np.add.at is 25x slower)
            for t in range(grads.shape[1]):
                phis[row, t] += grads[i, t] * deltas[i]


class ShapPartition(_ShapExplainer):
    """Owen values with shap's own ``PartitionExplainer`` and ``shap.maskers.Image``.

    Model-agnostic: calls only :meth:`Model.predict`, so it works for any backend. ``mask``
    is shap's mask spec (``"blur(32,32)"``, ``"inpaint_telea"``, ...) or a constant value.
    Completeness is exact: values sum to ``f(x) - f(fully masked x)`` (``base_values``).
    Deterministic for a given input; ``seed`` is passed on for maskers that sample.
    """

    name = "shap-partition"
    requires = frozenset()
    defaults = MappingProxyType({"mask": "blur(32,32)", "max_evals": 500, "seed": 0})

    def explain(self, x: np.ndarray, targets: np.ndarray | None) -> Explanation:
        shap = _shap()
        if x.ndim != 4:
            raise InputError(f"{self.name} explains images (N, H, W, C); got shape {x.shape}.")
        outputs = self.model.predict(x)
        columns, single = _columns(targets, outputs)
        mask = self.params["mask"]
        values = np.zeros((len(x), columns.shape[1], *x.shape[1:]), np.float64)
        base = np.zeros(columns.shape, np.float64)
        for row in range(len(x)):
            wanted = columns[row]

            def f(batch: np.ndarray, wanted: np.ndarray = wanted) -> np.ndarray:
                return self.model.predict(np.asarray(batch, np.float32))[:, wanted]

            # A fresh masker per image: shap's Image masker caches the blurred input by id(),
            # and our per-row slices can reuse an id, which silently blurs the wrong image.
            masker = shap.maskers.Image(mask, x.shape[1:])
            explainer = shap.PartitionExplainer(f, masker, seed=self.params["seed"])
            result = explainer(
                x[row : row + 1],
                max_evals=int(self.params["max_evals"]),
                batch_size=self.batch_size(),
                silent=True,
            )
            values[row] = np.moveaxis(np.asarray(result.values[0]), -1, 0)
            base[row] = np.asarray(result.base_values[0])
        return self.finish(x, values, columns, outputs, base, single)


class ShapDeep(_ShapExplainer):
    """DeepSHAP: DeepLIFT's rescale rule with each background row as the reference,
    averaged over the background. Needs the backend capability ``deeplift``; an operation
    the rule cannot handle raises :class:`~limelight.core.errors.UnsupportedError` naming it.
    Completeness: values sum to ``f(x) - mean f(background)``.
    """

    name = "shap-deep"
    requires = frozenset({DEEPLIFT})
    defaults = MappingProxyType({"background": None})

    def explain(self, x: np.ndarray, targets: np.ndarray | None) -> Explanation:
        bg = self.background()
        batch_size = self.batch_size()
        outputs = self.model.predict(x)
        columns, single = _columns(targets, outputs)
        phis = np.zeros((len(x), columns.shape[1], *x.shape[1:]), np.float64)
        for row in range(len(x)):
            for start in range(0, len(bg), batch_size):
                refs = bg[start : start + batch_size]
                points = np.repeat(x[row : row + 1], len(refs), axis=0)
                multipliers = self.model.deeplift_gradients(points, refs, np.repeat(columns[row : row + 1], len(refs), 0))
                deltas = (points.astype(np.float64) - refs)[:, None]
                phis[row] += (multipliers.astype(np.float64) * deltas).sum(axis=0)
        phis /= len(bg)
        base = self.background_outputs().mean(axis=0)[columns]
        return self.finish(x, phis, columns, outputs, base, single)


class ShapAuto(Explainer):
    """What the classic notebook does by hand: ``shap-deep`` when the backend has the
    ``deeplift`` capability and the model has only supported operations, else
    ``shap-gradient``. The choice is recorded in ``params["algorithm"]``."""

    name = "shap"
    multi_target = True
    defaults = MappingProxyType({**ShapGradient.defaults, **ShapDeep.defaults})

    def explain(self, x: np.ndarray, targets: np.ndarray | None) -> Explanation:
        chosen: type[_ShapExplainer] = ShapGradient
        reason = f"the {self.model.framework} backend has no DeepLIFT capability"
        if self.model.supports(DEEPLIFT):
            unsupported = self.model.deeplift_unsupported(x)
            if not unsupported:
                chosen, reason = ShapDeep, "every operation has a DeepLIFT rule"
            else:
                reason = "no DeepLIFT rule for " + ", ".join(unsupported)
        params = {k: v for k, v in self.params.items() if k in chosen.defaults}
        exp = chosen(self.model, **params).explain(x, targets)
        return Explanation(
            method=self.name,
            values=exp.values,
            targets=exp.targets,
            outputs=exp.outputs,
            inputs=exp.inputs,
            base_values=exp.base_values,
            params={**exp.params, "algorithm": chosen.name, "reason": reason},
            framework=exp.framework,
        )


@hookimpl(trylast=True)
def limelight_register_explainers(register: Any) -> None:
    """Register the SHAP family."""
    for cls in (ShapGradient, ShapDeep, ShapPartition, ShapAuto):
        register(cls)


