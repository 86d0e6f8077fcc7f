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

Several inputs (a tuple or dict, see :mod:`limelight.core.inputs`): ``shap-gradient``,
``shap-deep`` and ``shap`` attribute every input (values in the inputs' structure; values
summed over all inputs meet completeness), given ``background=`` in the same structure.
``explain_input=`` (a dict key or tuple position) attributes that input only, the others
held at each sample's own values: they are never interpolated towards (expected gradients)
or replaced by (DeepSHAP) the background, so ``base_values`` are then each sample's mean
output with only that input taken from the background, and ``values`` one array.
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
from ..core.inputs import describe, get, held, leaves, map_inputs, names, rebuild, rows, select, several, shapes
from ..core.model import Array, SupportsDeepLift, SupportsGradients
from ..core.targets import Target, deeplift_target

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
    if several(x) and (
        not isinstance(given, tuple | list | dict)
        or isinstance(given, dict) != isinstance(x, dict)
        or (isinstance(given, dict) and set(given) != set(x))
        or (not isinstance(given, dict) and len(given) != len(x))
    ):
        raise InputError(
            f"the model is fed several inputs ({', '.join(map(repr, names(x)))}); give "
            "background= in the same structure: a "
            + ("dict with the same keys" if isinstance(x, dict) else f"tuple of {len(x)}")
            + ", one batch of reference rows per input."
        )
    if isinstance(x, tuple) and isinstance(given, list):
        given = tuple(given)
    shape_of = (lambda a: str(tuple(a.shape)))  # noqa: E731
    try:
        bg = explainer.model.canonical(given)
    except InputError as exc:  # the backend names what it checks "inputs"
        message = re.sub(r"^inputs\b", "background rows", str(exc))
        raise InputError(
            f"{message} (background= is checked like the inputs, whose canonical channels-last "
            f"shape is {describe(x, shape_of)})"
        ) from exc
    if several(bg) and isinstance(x, dict):
        bg = {k: bg[k] for k in x}  # the inputs' order
    if shapes(bg) != shapes(x):
        raise InputError(
            f"background= samples have shape {describe(bg, lambda a: str(tuple(a.shape[1:])))} but "
            f"the inputs' have shape {describe(x, lambda a: str(tuple(a.shape[1:])))} (canonical "
            f"channels-last layout; background {describe(bg, shape_of)}, inputs "
            f"{describe(x, shape_of)}): give a background of the same size and channels as the "
            "inputs, fed the same way."
        )
    return bg


class _ShapExplainer(Explainer):
    """Shared parts: the background, batching, base values, the Explanation.

    Work is cut in batches of ``explain(..., batch_size=)`` samples (default
    :data:`BATCH_SIZE`), so peak memory does not grow with ``nsamples`` or the background.
    Attributions accumulate in float64 on the model's device.
    """

    multi_target = True
    several_inputs = True

    def attributed(self, x: Array) -> list[Any]:
        """The keys of the inputs to attribute (see :mod:`limelight.core.inputs`): the one
        named by ``explain_input``, else all (``[0]`` for one array)."""
        which = self.params.get("explain_input")
        return names(x) if which is None else [select(x, which)]

    def size(self) -> int:
        """Samples per framework call: ``explain(..., batch_size=)``, else :data:`BATCH_SIZE`."""
        return self.batch_size or BATCH_SIZE

    def background(self, x: Array) -> Array:
        """The ``background`` parameter in canonical layout, on the model's device, checked
        against the canonical inputs ``x`` (see :func:`_checked_background`)."""
        return _checked_background(self, x)

    def base_values(self, bg: Array, target: Target, n: int, x: Array = None) -> Array:
        """The explained scores' mean over the background (the mean output of each explained
        class, ...): ``(n, T)`` on the device. With ``explain_input`` on several inputs ``x``:
        per sample, the mean over the background rows of that input, the other inputs at the
        sample's values."""
        xp, model = self.xp, self.model
        one_input = x is None or not several(x) or self.params.get("explain_input") is None
        if one_input:
            return self.expected_scores(target, model.predict(bg, batch_size=self.size()), n)
        (key,) = self.attributed(x)
        m = rows(bg)
        base = []
        for row in range(rows(x)):
            batch = held(xp, x, key, get(bg, key), model.asarray(np.full(m, row)))
            out = model.predict(batch, batch_size=self.size())
            base.append(self.expected_scores(target[row : row + 1], out, 1)[0])
        return xp.stack(base)

    def values_of(self, x: Array, phis: dict[Any, Array]) -> Array:
        """Per-input attributions ``phis`` as ``values``: one array (one input, or the one
        named by ``explain_input``), else the inputs' structure."""
        if len(phis) == 1 and (not several(x) or self.params.get("explain_input") is not None):
            return next(iter(phis.values()))
        return rebuild(x, [phis[k] for k in names(x)])

    def finish(
        self, x: Array, values: Array, classes: np.ndarray, outputs: Array, base: Array, target: Target,
        **extra: Any,
    ) -> Explanation:
        """Package ``values (N, T, ...)`` as an Explanation: ``T`` moved last, dropped for
        single targets."""
        xp = self.xp
        values = map_inputs(lambda v: xp.moveaxis(v, 1, -1), values)
        targets: Any = classes
        if target.single:
            values, targets, base = map_inputs(lambda v: v[..., 0], values), classes[:, 0], base[:, 0]
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
        {"background": None, "nsamples": 200, "seed": None, "local_smoothing": 0.0, "explain_input": None}
    )

    def _draws(self, n: int, n_bg: int, shapes: list[tuple[int, ...]]) -> Iterator[tuple[Any, ...]]:
        """Batches of ``(rows, background rows, t, noise or None)`` in shap's draw order
        (noise: one array per attributed input, drawn in the inputs' order, as shap does)."""
        rng = np.random.RandomState(self.params["seed"])
        smoothing = float(self.params["local_smoothing"])
        batch: list[tuple[int, int, float, Any]] = []
        for row in range(n):
            for _ in range(int(self.params["nsamples"])):
                ref = rng.choice(n_bg)
                t = rng.uniform()
                noise = [rng.randn(*shape) * smoothing for shape in shapes] if smoothing > 0 else None
                batch.append((row, ref, t, noise))
                if len(batch) == self.size():
                    yield self._stack(batch)
                    batch = []
        if batch:
            yield self._stack(batch)

    @staticmethod
    def _stack(batch: list[tuple[int, int, float, Any]]) -> tuple[np.ndarray, ...]:
        rows, refs, ts, noise = zip(*batch, strict=True)
        stacked = None if noise[0] is None else [np.stack(each) for each in zip(*noise, strict=True)]
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
        keys = self.attributed(x)
        n = rows(x)
        phis = {
            k: xp.zeros((n, classes.shape[1], *get(x, k).shape[1:]), dtype=xp.float64, device=get(x, k).device)
            for k in keys
        }
        shapes_ = [tuple(get(x, k).shape[1:]) for k in keys]
        x64 = [xp.astype(a, xp.float64) for a in leaves(x)]
        bg64 = [xp.astype(b, xp.float64) if k in keys else b for k, b in zip(names(bg), leaves(bg), strict=True)]
        for rows_h, refs, ts, noise in self._draws(n, rows(bg), shapes_):
            rows_d, refs_d = model.asarray(rows_h), model.asarray(refs)
            samples, deltas = [], {}
            for key, a, a64, b in zip(names(x), leaves(x), x64, bg64, strict=True):
                points = xp.take(a64, rows_d, axis=0)
                if key in keys:  # interpolated from a background row; the others stay at x
                    if noise is not None:
                        points = points + model.asarray(noise[keys.index(key)], like=points)
                    references = xp.take(b, refs_d, axis=0)
                    t = xp.reshape(model.asarray(ts, like=points), (-1, *([1] * (a.ndim - 1))))
                    deltas[key] = points - references
                    points = t * points + (1 - t) * references
                samples.append(xp.astype(points, a.dtype))
            grads = model.gradients(rebuild(x, samples), target[rows_h], batch_size=None).gradients
            for key in keys:
                grad = get(grads, key)
                if target.single:
                    grad = xp.expand_dims(grad, axis=1)
                update = xp.astype(grad, xp.float64) * xp.expand_dims(deltas[key], axis=1)
                phis[key] = model.index_add(phis[key], rows_d, update)
        phis = {k: v / nsamples for k, v in phis.items()}
        return self.finish(x, self.values_of(x, phis), classes, outputs, self.base_values(bg, target, len(classes), x), target)


class ShapPartition(_ShapExplainer):
    """Owen values with shap's own ``PartitionExplainer`` and ``shap.maskers.Image``.

    Model-agnostic: calls only :meth:`Model.predict`, so it works for any backend. shap's
    maskers work on the host: each masked batch goes to the device, and only the explained
    columns come back. ``mask`` is shap's mask spec (``"blur(32,32)"``, ``"inpaint_telea"``,
    ...) or a constant value. Completeness is exact: values sum to ``f(x) - f(fully masked
    x)`` (``base_values``). Deterministic for a given input; ``seed`` is passed on for
    maskers that sample. A model fed several inputs: the image named by ``explain_input`` is
    masked, the other inputs held at each sample's values (``values`` are the image's).
    """

    name = "shap-partition"
    requires = ()
    defaults = MappingProxyType({"mask": "blur(32,32)", "max_evals": 500, "seed": 0, "explain_input": None})

    def explain(self, x: Array, target: Target) -> Explanation:
        shap = _shap()
        model, xp = self.model, self.xp
        key, image = None, x
        if several(x):  # the image named by explain_input is masked, the others held per sample
            if self.params.get("explain_input") is None:
                raise InputError(
                    f"{self.name} masks one image input; these inputs are {describe(x, lambda a: str(tuple(a.shape)))}. Name the image "
                    "with explain_input= (the other inputs stay at each sample's values), or use "
                    "shap-gradient / shap-deep, which attribute every input."
                )
            key = select(x, self.params["explain_input"])
            image = get(x, key)
        if image.ndim != 4:
            raise InputError(f"{self.name} explains images (N, H, W, C); got shape {tuple(image.shape)}.")
        outputs = model.predict(x, batch_size=self.size())
        target, classes = self.fix_target(target, outputs)
        host = model.to_numpy(image)
        feed = host.dtype  # masked batches reach the model in its own dtype
        if host.dtype == np.float16:  # shap's maskers blur with OpenCV, which takes no float16
            host = host.astype(np.float32)
        mask = self.params["mask"]
        values = np.zeros((len(host), classes.shape[1], *host.shape[1:]), np.float64)
        base = np.zeros(classes.shape, np.float64)
        for row in range(len(host)):
            one = target[np.array([row])]  # this row's target, scored on each masked batch

            def f(batch: np.ndarray, one: Target = one, row: int = row) -> np.ndarray:
                masked = model.asarray(np.asarray(batch, feed), like=image)
                if key is not None:  # the other inputs: this sample's, once per masked image
                    masked = held(xp, x, key, masked, model.asarray(np.full(len(batch), row)))
                out = model.predict(masked)
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
    defaults = MappingProxyType({"background": None, "explain_input": None})
    full_precision = True

    def explain(self, x: Array, target: Target) -> Explanation:
        model, xp = self.model, self.xp
        assert isinstance(model, SupportsDeepLift)
        bg = self.background(x)
        outputs = model.predict(x, batch_size=self.size())
        target, classes = self.fix_target(target, outputs)
        deeplift_target(target)  # DeepLIFT's rules stop at the outputs: linear scores only
        keys = self.attributed(x)
        phis = {
            k: xp.zeros((rows(x), classes.shape[1], *get(x, k).shape[1:]), dtype=xp.float64, device=get(x, k).device)
            for k in keys
        }
        for rows_h, refs in self.pairs(rows(x), rows(bg)):
            rows_d, refs_d = model.asarray(rows_h), model.asarray(refs)
            points = map_inputs(lambda a, rows_d=rows_d: xp.take(a, rows_d, axis=0), x)
            # the inputs not attributed are their own reference: held at the sample's values
            references = rebuild(x, [
                xp.take(b, refs_d, axis=0) if k in keys else p
                for k, p, b in zip(names(x), leaves(points), leaves(bg), strict=True)
            ])
            multipliers = model.deeplift_gradients(points, references, target[rows_h], batch_size=None)
            for key in keys:
                deltas = xp.astype(get(points, key), xp.float64) - xp.astype(get(references, key), xp.float64)
                update = xp.astype(get(multipliers, key), xp.float64) * xp.expand_dims(deltas, axis=1)
                phis[key] = model.index_add(phis[key], rows_d, update)
        phis = {k: v / rows(bg) for k, v in phis.items()}
        return self.finish(x, self.values_of(x, phis), classes, outputs, self.base_values(bg, target, len(classes), x), target)


class ShapAuto(Explainer):
    """What the classic notebook does by hand: ``shap-deep`` when the backend supports
    DeepLIFT, the model has only supported operations (no TorchScript graph, which DeepLIFT's
    rules cannot enter) and the target is linear in the outputs, else ``shap-gradient``. The
    choice is recorded in ``params["algorithm"]``."""

    name = "shap"
    multi_target = True
    defaults = MappingProxyType({**ShapGradient.defaults, **ShapDeep.defaults})
    several_inputs = True

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


