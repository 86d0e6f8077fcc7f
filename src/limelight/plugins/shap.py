"""The SHAP family, written once against :class:`limelight.Model` and its ``xp``.

Attributions are ``(N, H, W, C)`` channels-last at input resolution (a trailing ``T`` axis
when ``(N, T)`` targets are explained); positive values push the explained output up.
``base_values`` hold the expected output the attributions are measured from.

* ``shap-gradient``: expected gradients (shap's GradientExplainer algorithm, same draws).
* ``shap-deep``: DeepSHAP, DeepLIFT's rescale rule averaged over the background; needs the
  backend capability :class:`~limelight.core.model.SupportsDeepLift`; runs with
  ``precision="highest"`` by default (TF32 off), since completeness depends on it.
* ``shap-partition``: Owen values through shap's own PartitionExplainer and Image masker;
  calls only :meth:`Model.predict`.
* ``shap``: ``shap-deep`` where the backend and the model's operations allow it, else
  ``shap-gradient``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import numpy as np

from ..core.errors import FrameworkNotInstalledError, InputError, ParameterError, UnsupportedError
from ..core.explainer import Explainer
from ..core.explanation import Explanation
from ..core.hookspecs import hookimpl
from ..core.model import Array, SupportsDeepLift, SupportsGradients
from ..core.targets import Target

__all__ = ["ShapGradient", "ShapDeep", "ShapPartition", "ShapAuto"]

#: Samples (or (input, reference) pairs) per framework call when ``batch_size`` is not given.
BATCH_SIZE = 50


def _shap() -> Any:
    try:
        import shap
    except ImportError as exc:
        raise FrameworkNotInstalledError("shap", extra="shap") from exc
    return shap


def _checked_background(explainer: Explainer, x: Array) -> Array:
    """``explainer``'s ``background`` parameter in canonical layout, on the model's device,
    checked against the canonical inputs ``x`` before any work: finite, and one sample has the
    shape of one input (same H×W and channels)."""
    given = explainer.params.get("background")
    if given is None:
        raise ParameterError(
            f"{explainer.name} needs background=: a batch of reference inputs, given the way "
            "you feed the model (e.g. 50-100 training images)."
        )
    try:
        bg = explainer.model.canonical(given)
    except InputError as exc:  # the backend names what it checks "inputs"
        message = re.sub(r"^inputs\b", "background rows", str(exc))
        raise InputError(
            f"{message} (background= is checked like the inputs, whose canonical channels-last "
            f"shape is {tuple(x.shape)})"
        ) from exc
    if tuple(bg.shape[1:]) != tuple(x.shape[1:]):
        raise InputError(
            f"background= samples have shape {tuple(bg.shape[1:])} but the inputs' have shape "
            f"{tuple(x.shape[1:])} (canonical channels-last layout; background "
            f"{tuple(bg.shape)}, inputs {tuple(x.shape)}): give a background of the same "
            "size and channels as the inputs, fed the same way."
        )
    return bg


class _ShapExplainer(Explainer):
    """Shared parts: the background, batching, base values, the Explanation.

    Work is cut in batches of ``explain(..., batch_size=)`` samples (default
    :data:`BATCH_SIZE`), so peak memory does not grow with ``nsamples`` or the background.
    Attributions accumulate in float64 on the model's device.
    """

    multi_target = True

    def size(self) -> int:
        """Samples per framework call: ``explain(..., batch_size=)``, else :data:`BATCH_SIZE`."""
        return self.batch_size or BATCH_SIZE

    def background(self, x: Array) -> Array:
        """The ``background`` parameter in canonical layout, on the model's device, checked
        against the canonical inputs ``x`` (see :func:`_checked_background`)."""
        return _checked_background(self, x)

    def base_values(self, bg: Array, target: Target, n: int) -> Array:
        """The explained scores' mean over the background (the mean output of each explained
        class, ...): ``(n, T)`` on the device."""
        return self.expected_scores(target, self.model.predict(bg, batch_size=self.size()), n)

    def finish(
        self, x: Array, values: Array, classes: np.ndarray, outputs: Array, base: Array, target: Target,
        **extra: Any,
    ) -> Explanation:
        """Package ``values (N, T, ...)`` as an Explanation: ``T`` moved last, dropped for
        single targets."""
        xp = self.xp
        values = xp.moveaxis(values, 1, -1)
        targets: Any = classes
        if target.single:
            values, targets, base = values[..., 0], classes[:, 0], base[:, 0]
        result = self.result(x, values, targets, outputs, base_values=base, **extra)
        return replace(result, params={k: v for k, v in result.params.items() if k != "background"})

    def pairs(self, n: int, m: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All ``(row, reference)`` index pairs of ``n`` inputs and ``m`` references, row
        by row, ``size() // 2`` pairs a batch (a DeepLIFT pass runs input and reference
        together, so the model sees at most ``size()`` samples)."""
        rows, refs = np.divmod(np.arange(n * m), m)
        step = max(1, self.size() // 2)
        for start in range(0, n * m, step):
            yield rows[start : start + step], refs[start : start + step]


class ShapGradient(_ShapExplainer):
    """Expected gradients (shap's GradientExplainer): ``φ = E[(x - x') ⊙ ∇f(x' + t(x - x'))]``.

    Draws follow shap's order exactly: for each row, for each sample, ``choice`` of a
    background row, then ``uniform`` for t, then (with ``local_smoothing``) Gaussian noise
    added to x, all from ``numpy.random.RandomState(seed)`` on the host; the points are
    built and the gradients taken on the model's device, a batch at a time. So a seeded run
    equals ``shap.GradientExplainer(...).shap_values(x, nsamples, rseed=seed)`` and gives
    the same values for a torch model and its Keras twin. One forward pass serves all
    targets.
    """

    name = "shap-gradient"
    requires = (SupportsGradients,)
    defaults = MappingProxyType(
        {"background": None, "nsamples": 200, "seed": None, "local_smoothing": 0.0}
    )

    def _draws(self, n: int, n_bg: int, shape: tuple[int, ...]) -> Iterator[tuple[np.ndarray, ...]]:
        """Batches of ``(rows, background rows, t, noise or None)`` in shap's draw order."""
        rng = np.random.RandomState(self.params["seed"])
        smoothing = float(self.params["local_smoothing"])
        batch: list[tuple[int, int, float, Any]] = []
        for row in range(n):
            for _ in range(int(self.params["nsamples"])):
                ref = rng.choice(n_bg)
                t = rng.uniform()
                noise = rng.randn(*shape) * smoothing if smoothing > 0 else None
                batch.append((row, ref, t, noise))
                if len(batch) == self.size():
                    yield self._stack(batch)
                    batch = []
        if batch:
            yield self._stack(batch)

    @staticmethod
    def _stack(batch: list[tuple[int, int, float, Any]]) -> tuple[np.ndarray, ...]:
        rows, refs, ts, noise = zip(*batch, strict=True)
        stacked = None if noise[0] is None else np.stack(noise)
        return np.array(rows), np.array(refs), np.array(ts), stacked  # type: ignore[return-value]

    def explain(self, x: Array, target: Target) -> Explanation:
        model, xp = self.model, self.xp
        assert isinstance(model, SupportsGradients)
        nsamples = int(self.params["nsamples"])
        if nsamples < 1:
            raise ParameterError(f"nsamples must be a positive int, got {nsamples}.")
        bg = self.background(x)
        outputs = model.predict(x, batch_size=self.size())
        target, classes = self.fix_target(target, outputs)
        x64, bg64 = xp.astype(x, xp.float64), xp.astype(bg, xp.float64)
        phis = xp.zeros((int(x.shape[0]), classes.shape[1], *x.shape[1:]), dtype=xp.float64, device=x.device)
        for rows, refs, ts, noise in self._draws(int(x.shape[0]), int(bg.shape[0]), tuple(x.shape[1:])):
            rows_d = model.asarray(rows)
            points = xp.take(x64, rows_d, axis=0)
            if noise is not None:
                points = points + model.asarray(noise, like=x64)
            references = xp.take(bg64, model.asarray(refs), axis=0)
            t = xp.reshape(model.asarray(ts, like=x64), (-1, *([1] * (x.ndim - 1))))
            samples = xp.astype(t * points + (1 - t) * references, x.dtype)
            grads = model.gradients(samples, target[rows], batch_size=None).gradients
            if target.single:
                grads = xp.expand_dims(grads, axis=1)
            phis = model.index_add(phis, rows_d, xp.astype(grads, xp.float64) * xp.expand_dims(points - references, axis=1))
        phis = phis / nsamples
        return self.finish(x, phis, classes, outputs, self.base_values(bg, target, len(classes)), target)


class ShapPartition(_ShapExplainer):
    """Owen values with shap's own ``PartitionExplainer`` and ``shap.maskers.Image``.

    Model-agnostic: calls only :meth:`Model.predict`, so it works for any backend. shap's
    maskers work on the host: each masked batch goes to the device, and only the explained
    columns come back. ``mask`` is shap's mask spec (``"blur(32,32)"``, ``"inpaint_telea"``,
    ...) or a constant value. Completeness is exact: values sum to ``f(x) - f(fully masked
    x)`` (``base_values``). Deterministic for a given input; ``seed`` is passed on for
    maskers that sample.
    """

    name = "shap-partition"
    requires = ()
    defaults = MappingProxyType({"mask": "blur(32,32)", "max_evals": 500, "seed": 0})

    def explain(self, x: Array, target: Target) -> Explanation:
        shap = _shap()
        model, xp = self.model, self.xp
        if x.ndim != 4:
            raise InputError(f"{self.name} explains images (N, H, W, C); got shape {tuple(x.shape)}.")
        outputs = model.predict(x, batch_size=self.size())
        target, classes = self.fix_target(target, outputs)
        host = model.to_numpy(x)
        mask = self.params["mask"]
        values = np.zeros((len(host), classes.shape[1], *host.shape[1:]), np.float64)
        base = np.zeros(classes.shape, np.float64)
        for row in range(len(host)):
            one = target[np.array([row])]  # this row's target, scored on each masked batch

            def f(batch: np.ndarray, one: Target = one) -> np.ndarray:
                out = model.predict(model.asarray(np.asarray(batch, host.dtype), like=x))
                data = [model.asarray(np.repeat(d, len(batch), axis=0), like=out) for d in one.data()]
                return model.to_numpy(one.scores(xp, out, *data))

            # A fresh masker per image: shap's Image masker caches the blurred input by id(),
            # and our per-row slices can reuse an id, which silently blurs the wrong image.
            masker = shap.maskers.Image(mask, host.shape[1:])
            explainer = shap.PartitionExplainer(f, masker, seed=self.params["seed"])
            result = explainer(
                host[row : row + 1],
                max_evals=int(self.params["max_evals"]),
                batch_size=self.size(),
                silent=True,
            )
            values[row] = np.moveaxis(np.asarray(result.values[0]), -1, 0)
            base[row] = np.asarray(result.base_values[0])
        return self.finish(x, model.asarray(values), classes, outputs, model.asarray(base), target)  # float64


class ShapDeep(_ShapExplainer):
    """DeepSHAP: DeepLIFT's rescale rule with each background row as the reference,
    averaged over the background: ``φ = mean_r m(x, r) ⊙ (x - r)``. Needs
    :class:`~limelight.core.model.SupportsDeepLift`; an operation the rule cannot handle
    raises :class:`~limelight.core.errors.UnsupportedError` naming it. Completeness: values
    sum to ``f(x) - mean f(background)``. The (input, reference) pairs of all rows run in
    batches of ``batch_size // 2`` pairs (``batch_size`` samples a pass), with TF32 off
    unless ``precision="default"``.
    """

    name = "shap-deep"
    requires = (SupportsDeepLift,)
    defaults = MappingProxyType({"background": None})
    full_precision = True

    def explain(self, x: Array, target: Target) -> Explanation:
        model, xp = self.model, self.xp
        assert isinstance(model, SupportsDeepLift)
        bg = self.background(x)
        outputs = model.predict(x, batch_size=self.size())
        target, classes = self.fix_target(target, outputs)
        phis = xp.zeros((int(x.shape[0]), classes.shape[1], *x.shape[1:]), dtype=xp.float64, device=x.device)
        for rows, refs in self.pairs(int(x.shape[0]), int(bg.shape[0])):
            rows_d = model.asarray(rows)
            points = xp.take(x, rows_d, axis=0)
            references = xp.take(bg, model.asarray(refs), axis=0)
            multipliers = model.deeplift_gradients(points, references, target[rows], batch_size=None)
            deltas = xp.astype(points, xp.float64) - xp.astype(references, xp.float64)
            phis = model.index_add(phis, rows_d, xp.astype(multipliers, xp.float64) * xp.expand_dims(deltas, axis=1))
        phis = phis / int(bg.shape[0])
        return self.finish(x, phis, classes, outputs, self.base_values(bg, target, len(classes)), target)


class ShapAuto(Explainer):
    """What the classic notebook does by hand: ``shap-deep`` when the backend supports
    DeepLIFT, the model has only supported operations (no TorchScript graph, which DeepLIFT's
    rules cannot enter) and the target is linear in the outputs, else ``shap-gradient``. The
    choice is recorded in ``params["algorithm"]``."""

    name = "shap"
    multi_target = True
    defaults = MappingProxyType({**ShapGradient.defaults, **ShapDeep.defaults})

    def explain(self, x: Array, target: Target) -> Explanation:
        _checked_background(self, x)  # a missing or mismatched background fails before any work
        chosen: type[_ShapExplainer] = ShapGradient
        reason = f"the {self.model.framework} backend has no DeepLIFT capability"
        if not target.linear:
            reason = f"a {type(target).__name__} target's score is not linear in the outputs"
        elif isinstance(self.model, SupportsDeepLift):
            unsupported = self.model.deeplift_unsupported(x)
            if not unsupported:
                chosen, reason = ShapDeep, "every operation has a DeepLIFT rule"
            else:
                reason = "no DeepLIFT rule for " + ", ".join(unsupported)
        params = {k: v for k, v in self.params.items() if k in chosen.defaults}
        inner = chosen(self.model, batch_size=self.batch_size, precision=self._precision, **params)
        with self.model.precision(inner.params["precision"]):
            exp = inner.explain(x, target)
        return replace(exp, method=self.name, params={**exp.params, "algorithm": chosen.name, "reason": reason})

    def __init__(self, model: Any, *, batch_size: int | None = None, **params: Any) -> None:
        self._precision = params.get("precision", "auto")  # resolved by the chosen method
        super().__init__(model, batch_size=batch_size, **params)
        if not isinstance(model, SupportsDeepLift | SupportsGradients):
            raise UnsupportedError(
                f"explainer {self.name!r} needs the backend capability SupportsDeepLift or "
                f"SupportsGradients, which the {model.framework} backend ({type(model).__name__}) "
                "does not provide; shap-partition needs only predict."
            )


@hookimpl(trylast=True)
def limelight_register_explainers(register: Any) -> None:
    """Register the SHAP family."""
    for cls in (ShapGradient, ShapDeep, ShapPartition, ShapAuto):
        register(cls)


