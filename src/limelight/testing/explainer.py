"""``check_explainer``: the contract every :class:`limelight.Explainer` must keep, on every
installed backend whose capabilities it requires."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..core.errors import ParameterError, TargetError
from ..core.explainer import Explainer
from ..core.explanation import Explanation
from ..core.model import Model
from ._common import Checks, Report
from .models import ModelCase, builtin_cases

__all__ = ["check_explainer", "quick_params", "QUICK_PARAMS"]

#: Small settings for parameters that set how much work a method does: applied by
#: :func:`quick_params` (and ``check_explainer(quick=True)``) when the explainer accepts them.
QUICK_PARAMS: Mapping[str, Any] = {
    "nsamples": 4,
    "n_samples": 4,
    "max_evals": 20,
    "n_masks": 8,
    "num_masks": 8,
    "n_steps": 4,
    "steps": 4,
}


def quick_params(explainer: type[Explainer]) -> dict[str, Any]:
    """The entries of :data:`QUICK_PARAMS` that ``explainer`` accepts (its ``defaults``)."""
    return {key: value for key, value in QUICK_PARAMS.items() if key in explainer.defaults}


def _resolve(explainer: str | type[Explainer]) -> tuple[type[Explainer], str]:
    from ..core.registry import registry

    if isinstance(explainer, str):
        return registry.explainer(explainer), f"check_explainer({explainer!r})"
    if not (isinstance(explainer, type) and issubclass(explainer, Explainer)):
        raise TypeError(f"check_explainer takes a registered name or an Explainer subclass, got {explainer!r}")
    return explainer, f"check_explainer({explainer.__qualname__})"


def _check_class(c: Checks, cls: type[Explainer], report: Report) -> None:
    from ..core.registry import registry

    with c.check("class"):
        name = getattr(cls, "name", None)
        c.expect(isinstance(name, str) and name, f"name must be a non-empty str, got {name!r}")
        c.expect(isinstance(cls.defaults, Mapping), f"defaults must be a Mapping, got {type(cls.defaults).__name__}")
        c.expect("precision" not in cls.defaults, "defaults must not list 'precision' (every explainer accepts it)")
        c.expect(
            isinstance(cls.requires, tuple) and all(isinstance(r, type) for r in cls.requires),
            f"requires must be a tuple of capability protocols, got {cls.requires!r}",
        )
        c.expect(isinstance(cls.multi_target, bool), "multi_target must be a bool")
        c.expect(isinstance(cls.full_precision, bool), "full_precision must be a bool")
        registered = registry.explainers().get(name)  # type: ignore[arg-type]
        if registered is None:
            report.notes.append(f"{name!r} is not registered: checked by instantiating the class")
        elif registered is not cls:
            report.notes.append(f"the name {name!r} is registered to {registered.__qualname__}, another class")


def _expected_shapes(cls: type[Explainer], x_shape: tuple[int, ...], params: Mapping[str, Any]) -> str:
    """``"map"`` for CAMs, else ``"map or attribution"``."""
    from ..plugins.cam import CAMExplainer

    if issubclass(cls, CAMExplainer):
        return "map"
    return "map or attribution" if len(x_shape) == 4 else "attribution"


def _check_values(c: Checks, exp: Explanation, x_shape: tuple[int, ...], kind: str, raw_size: bool) -> None:
    shape = tuple(exp.values.shape)
    n = x_shape[0]
    maps = (n, *x_shape[1:3])
    if kind == "map":
        ok = shape == maps or (raw_size and len(shape) == 3 and shape[0] == n)
        want = f"{maps} (one map per sample at input resolution)"
    elif kind == "attribution":
        ok, want = shape == x_shape, f"{x_shape} (input-shaped)"
    else:
        ok = shape in (maps, x_shape)
        want = f"{maps} (maps) or {x_shape} (input-shaped attributions)"
    c.expect(ok, f"values have shape {shape}; expected {want}")


def _run(cls: type[Explainer], model: Model, x: Any, targets: Any = None, batch_size: int | None = None,
         **params: Any) -> Explanation:
    return cls(model, batch_size=batch_size, **params)(x, targets)


def _check_case(
    cls: type[Explainer], case: ModelCase, prefix: str, report: Report, params: Mapping[str, Any], quick: bool,
    atol: float,
) -> Explanation | None:
    """All checks on one model; None when the model lacks a capability the explainer needs."""
    from ..core.api import wrap

    model = wrap(case.factory())
    missing = [p.__name__ for p in cls.requires if not isinstance(model, p)]
    if missing:
        report.skipped[case.name] = f"{model.framework} backend lacks {', '.join(missing)}"
        return None
    c = Checks(f"{prefix} on {case.name}", report)
    p: dict[str, Any] = {**(quick_params(cls) if quick else {}), **case.params, **params}
    if "background" in cls.defaults and p.get("background") is None:
        p["background"] = case.inputs if case.background is None else case.background
    if "seed" in cls.defaults and p.get("seed") is None:
        p["seed"] = 0
    x = model.canonical(case.inputs)
    xh = model.to_numpy(x)
    n = int(xh.shape[0])
    before = model.to_numpy(model.predict(x))
    k = int(before.shape[1])
    kind = _expected_shapes(cls, tuple(xh.shape), p)

    with c.check("unknown-params"):
        c.raises(ParameterError, lambda: cls(model, **p, no_such_parameter_surely=1), "an unknown parameter")
        c.raises(ParameterError, lambda: cls(model, **p, precision="fastest"), "precision='fastest'")

    with c.check("values"):
        exp = _run(cls, model, x, **p)
        c.expect(isinstance(exp, Explanation), f"explain returned a {type(exp).__name__}, not an Explanation")
        c.expect(exp.method == cls.name, f"Explanation.method is {exp.method!r}; expected {cls.name!r}")
        c.expect(exp.framework == model.framework, f"Explanation.framework is {exp.framework!r}; expected {model.framework!r}")
        _check_values(c, exp, tuple(xh.shape), kind, raw_size=p.get("upsample", True) is False)
        c.expect(exp.values.dtype == np.float32, f"values have dtype {exp.values.dtype}; expected float32")
        c.expect(np.isfinite(exp.values).all(), "values contain NaN or inf")
        c.close(exp.outputs, before, "Explanation.outputs vs model.predict(x)", atol=atol)
        c.expect(tuple(exp.targets.shape) == (n,), f"targets have shape {exp.targets.shape}; expected ({n},)")
        c.expect(
            np.array_equal(exp.targets, before.argmax(1)),
            f"with targets=None the explained classes are {exp.targets.tolist()}; the predicted ones are "
            f"{before.argmax(1).tolist()}",
        )
        if exp.inputs is not None:
            c.close(exp.inputs, xh, "Explanation.inputs vs the canonical inputs", atol=1e-6)
        c.expect("precision" in exp.params, "Explanation.params lacks 'precision' (use self.result)")

    with c.check("determinism"):
        again = _run(cls, model, x, **p)
        seeded = " with seed=0" if "seed" in p else ""
        c.close(again.values, exp.values, f"two runs{seeded}", atol=1e-6)

    with c.check("targets"):
        given = _run(cls, model, x, [int(t) for t in exp.targets], **p)
        c.expect(np.array_equal(given.targets, exp.targets), f"targets=list gave targets {given.targets.tolist()}")
        c.close(given.values, exp.values, "targets= the predicted classes vs targets=None", atol=atol)
        last = _run(cls, model, x, k - 1, **p)
        c.expect(np.array_equal(last.targets, np.full(n, k - 1)), f"targets={k - 1} gave targets {last.targets.tolist()}")
        c.raises(TargetError, lambda: _run(cls, model, x, k, **p), f"targets={k} (out of range for {k} outputs)")
        pairs = np.stack([exp.targets, (exp.targets + 1) % k], axis=1)
        if cls.multi_target:
            multi = _run(cls, model, x, pairs, **p)
            want = (*exp.values.shape, 2)
            c.expect(multi.values.shape == want, f"values for ({n}, 2) targets have shape {multi.values.shape}; expected {want} (T last)")
            c.expect(np.array_equal(multi.targets, pairs), "targets of an (N, 2) run differ from those given")
            c.close(multi.values[..., 0], exp.values, "column 0 of an (N, 2)-target run vs the single-target run", atol=atol)
        else:
            c.raises(TargetError, lambda: _run(cls, model, x, pairs, **p), "(N, 2) targets for a single-target method")

    with c.check("batch_size"):
        small = _run(cls, model, x, batch_size=1, **p)
        c.close(small.values, exp.values, "batch_size=1 vs None", atol=atol)

    with c.check("unmodified"):
        c.close(model.to_numpy(model.predict(x)), before, "the model's outputs after explaining", atol=1e-6)
    return exp


def check_explainer(
    explainer: str | type[Explainer],
    model_factory: Callable[[], object] | None = None,
    inputs: Any = None,
    *,
    models: Sequence[ModelCase] = (),
    builtin_models: bool = True,
    quick: bool = True,
    atol: float = 1e-5,
    twin_atol: float = 1e-4,
    require_any: bool = True,
    **params: Any,
) -> Report:
    """Check an explainer (a registered name or an :class:`~limelight.Explainer` subclass,
    which need not be registered) against the explainer contract, on models of every
    installed backend whose capabilities it requires.

    The models are the built-in twin CNNs of the installed frameworks (``builtin_models``),
    ``model_factory`` with ``inputs`` (a batch as that model is fed), and ``models``
    (:class:`~limelight.testing.ModelCase`); a model whose backend lacks a required
    capability is skipped. ``params`` go to the explainer; ``quick`` adds
    :func:`quick_params`; a ``background`` parameter defaults to the model's inputs and
    ``seed`` to 0. Built-in torch and Keras twins must give the same values (``twin_atol``).

    Each failed check raises an :class:`AssertionError` naming the model and the check, e.g.
    ``check_explainer('gradcam') on torch [determinism]: ...``; with ``require_any`` also when
    no model could run the explainer. Returns a :class:`~limelight.testing.Report`.
    """
    cls, prefix = _resolve(explainer)
    report = Report(prefix)
    _check_class(Checks(prefix, report), cls, report)
    cases = list(builtin_cases()) if builtin_models else []
    if model_factory is not None:
        if inputs is None:
            raise ValueError("check_explainer: pass inputs= with model_factory=")
        cases.append(ModelCase(getattr(model_factory, "__name__", "model_factory"), model_factory, inputs))
    cases += list(models)
    results: dict[str, Explanation] = {}
    for case in cases:
        exp = _check_case(cls, case, prefix, report, params, quick, atol)
        if exp is not None:
            results[case.name] = exp
            report.checked.append(case.name)
    if require_any and not results:
        why = "; ".join(f"{k}: {v}" for k, v in report.skipped.items()) or "no models given and no framework installed"
        raise AssertionError(f"{prefix} [models]: no model could run it ({why}); pass model_factory= and inputs=")
    if builtin_models and {"torch", "keras"} <= results.keys() and "layer" not in params:
        c = Checks(prefix, report)
        with c.check("twins"):
            t, k = results["torch"], results["keras"]
            c.close(k.values, t.values, "values on the Keras twin vs the torch twin (same weights)", atol=twin_atol, rtol=1e-4)
    return report
