"""``Explainer``: the base class of every explanation method (built-in or plugin)."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from .errors import ParameterError, UnsupportedError
from .explanation import Explanation, owned
from .inputs import map_inputs, rows, select, several
from .model import PRECISIONS, Array, Model, check_batch_size
from .targets import Target, TargetsLike, resolve_target

__all__ = ["Explainer"]


def several_inputs_error(method: str, kind: str, able: str) -> UnsupportedError:
    """The error for a method of one input given several (``kind``: tuple or dict)."""
    return UnsupportedError(
        f"explainer {method!r} explains models fed one input; these inputs are a {kind} of "
        f"several. Methods that take several inputs: {able}."
    )


class Explainer(abc.ABC):
    """One explanation method, written once against :class:`~limelight.Model` and its
    Array API namespace ``model.xp``.

    Subclasses set :attr:`name`, list the parameters they accept with their defaults in
    :attr:`defaults`, the capability protocols they need in :attr:`requires`, and implement
    :meth:`explain`. The constructor rejects unknown parameters and a backend that lacks a
    required capability before any work is done. Every explainer also accepts
    ``precision`` (see :data:`~limelight.core.model.PRECISIONS`); methods whose
    correctness needs full precision set :attr:`full_precision`. ``explain_input`` (the
    input to explain of a model fed several: a dict key or a tuple position) is accepted by
    every explainer and used by those that take several inputs (:attr:`several_inputs`).
    """

    #: The registered name, e.g. ``"gradcam"``.
    name: ClassVar[str]
    #: Accepted keyword parameters and their defaults.
    defaults: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    #: Capability protocols (``SupportsGradients``, ...) the backend must implement.
    requires: ClassVar[tuple[type, ...]] = ()
    #: Whether :meth:`explain` accepts targets with several columns per sample.
    multi_target: ClassVar[bool] = False
    #: Whether ``precision="auto"`` means ``"highest"`` (TF32 off) for this method.
    full_precision: ClassVar[bool] = False

    #: Whether :meth:`explain` takes several inputs (a tuple or dict of canonical arrays).
    several_inputs: ClassVar[bool] = False

    #: During :meth:`__call__`: the inputs and their prefetched host copy.
    _inputs: tuple[Array, Any] | None = None

    def __init__(self, model: Model, *, batch_size: int | None = None, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults) - {"precision", "explain_input"})
        if unknown:
            accepted = ", ".join(sorted({*self.defaults, "precision"}))
            raise ParameterError(
                f"explainer {self.name!r} does not accept {', '.join(unknown)}; it accepts: {accepted}."
            )
        missing = [c.__name__ for c in self.requires if not isinstance(model, c)]
        if missing:
            raise UnsupportedError(
                f"explainer {self.name!r} needs the backend capability {', '.join(missing)}, which "
                f"the {model.framework} backend ({type(model).__name__}) does not provide."
            )
        precision = params.pop("precision", "auto")
        if precision not in PRECISIONS:
            raise ParameterError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}.")
        if precision == "auto":
            precision = "highest" if self.full_precision else "default"
        self.model = model
        self.batch_size = check_batch_size(batch_size)
        if params.get("explain_input", 0) is None and "explain_input" not in self.defaults:
            del params["explain_input"]  # recorded only where given or where a method declares it
        self.params: dict[str, Any] = {**self.defaults, **params, "precision": precision}

    @abc.abstractmethod
    def explain(self, x: Array, target: Target) -> Explanation:
        """Explain canonical inputs ``x`` (backend arrays on the model's device) for a
        resolved ``target``."""

    def target(self, targets: TargetsLike, n: int) -> Target:
        """``targets=`` as a user gives it, resolved for ``n`` samples and this method."""
        return resolve_target(targets, n, multi=self.multi_target, method=repr(self.name))

    def __call__(self, x: Array, targets: TargetsLike = None) -> Explanation:
        """Explain canonical ``x`` (one array, or a tuple / dict of them for a model fed
        several inputs) under this explainer's precision policy."""
        if several(x) and not self.several_inputs:
            # (limelight.explain lists them by name; core.explainer does not know the registry)
            raise several_inputs_error(self.name, type(x).__name__, "those whose class sets several_inputs")
        if self.params.get("explain_input") is not None:
            select(x, self.params["explain_input"])  # a wrong name fails before any work
        target = self.target(targets, rows(x))
        # the inputs' trip to the host starts now and overlaps the work (where the backend
        # copies asynchronously); result() collects it
        self._inputs = (x, map_inputs(self.model.prefetch, x))  # one copy per input
        try:
            with self.model.precision(self.params["precision"]):
                return self.explain(x, target)
        finally:
            self._inputs = None

    @property
    def xp(self) -> Any:
        """The model's Array API namespace."""
        return self.model.xp

    def classes(self, target: Target, outputs: Array) -> Any:
        """The class explained per sample: ``(N,)`` for a single target, else ``(N, T)``
        (host ints for explicit classes, a Region's class, -1 for scores that are no class's
        (Function, Similarity); on the device for predicted ones). ``outputs`` are
        channels-last, ``(N, K)`` or dense ``(N, ..., K)``."""
        target = target.check(int(outputs.shape[-1]))
        index: Any = target.host_classes(int(outputs.shape[0]))
        if index is None:
            data = [self.model.asarray(d) for d in target.data()]
            index = target.classes(self.xp, outputs, *data)
        return index[:, 0] if target.single else index

    def fix_target(self, target: Target, outputs: Array) -> tuple[Target, np.ndarray]:
        """``target`` checked against ``outputs`` ``(N, ..., K)`` and with its choice fixed
        (the predicted class becomes explicit classes), for methods that run further passes
        on other inputs; also the host class indices ``(N, T)`` (see :meth:`classes`)."""
        target = target.check(int(outputs.shape[-1]))
        known = target.host_classes(int(outputs.shape[0]))
        if known is not None:
            return target, known
        data = [self.model.asarray(d) for d in target.data()]
        classes = np.asarray(self.model.to_numpy(target.classes(self.xp, outputs, *data)), np.int64)
        return target.fixed(classes), classes

    def expected_scores(self, target: Target, outputs: Array, n: int) -> Array:
        """The mean of ``target``'s scores over the rows of ``outputs`` ``(M, ...)`` (e.g. a
        background's) for each of ``n`` samples: ``(n, T)`` float64 on the device (SHAP's
        base values). A target linear in the outputs (classes, regions) is scored once on the
        mean output; others are averaged, per sample when they hold per-sample data."""
        xp, model = self.xp, self.model
        out64 = xp.astype(outputs, xp.float64)
        data = target.data()
        if target.linear:
            mean = xp.mean(out64, axis=0, keepdims=True)
            rows = xp.broadcast_to(mean, (n, *mean.shape[1:]))
            return target.scores(xp, rows, *[model.asarray(d, like=out64) for d in data])
        if not data:
            mean = xp.mean(target.scores(xp, out64), axis=0, keepdims=True)
            return xp.broadcast_to(mean, (n, int(mean.shape[1])))
        m = int(outputs.shape[0])
        per_sample = []
        for i in range(n):
            repeated = [model.asarray(np.repeat(d[i : i + 1], m, axis=0), like=out64) for d in data]
            per_sample.append(xp.mean(target.scores(xp, out64, *repeated), axis=0))
        return xp.stack(per_sample, axis=0)

    def result(
        self,
        x: Array,
        values: Array,
        classes: Any,
        outputs: Array,
        *,
        base_values: Any = None,
        **params: Any,
    ) -> Explanation:
        """Package backend arrays as an :class:`Explanation` (the only host copies): values
        as float32, ``classes`` ``(N,)``/``(N, T)``, this explainer's params updated with
        ``params``; ``outputs`` are kept as the backend gives them (``(N, K)``, or dense
        channels-last ``(N, ..., K)``)."""
        def host(a: Any, dtype: Any) -> np.ndarray:
            return owned(self.model.to_numpy(a), dtype)

        xp = self.xp
        # cast on the device: only float32 crosses
        values = map_inputs(lambda v: v if v.dtype == xp.float32 else xp.astype(v, xp.float32), values)
        return Explanation(
            method=self.name,
            values=map_inputs(lambda v: host(v, np.float32), values),
            targets=host(classes, np.int64),
            outputs=host(outputs, np.float32),
            inputs=self._host_inputs(x),
            base_values=None if base_values is None else host(base_values, None),
            params={**self.params, **self._output_param(), **params},
            framework=self.model.framework,
        )

    def _output_param(self) -> dict[str, Any]:
        """``{"output": selector}`` when the model was given ``output=`` (a callable is
        recorded by its name)."""
        output = self.model.output
        if output is None:
            return {}
        if callable(output):
            output = getattr(output, "__qualname__", repr(output))
        return {"output": output}

    def _host_inputs(self, x: Array) -> np.ndarray:
        prefetched = self._inputs
        if prefetched is not None and prefetched[0] is x:
            return map_inputs(lambda fetch: fetch(), prefetched[1])
        return map_inputs(lambda a: owned(self.model.to_numpy(a)), x)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} on {self.model!r}>"
