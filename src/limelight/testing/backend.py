"""``check_backend``: the contract every :class:`limelight.Model` backend must keep."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any, ContextManager

import numpy as np

from ..core.errors import LayerError, LimelightError, TargetError
from ..core.model import (
    Model,
    SupportsActivationEdit,
    SupportsDeepLift,
    SupportsGradients,
    SupportsLayers,
    SupportsRandomize,
)
from ..core.targets import Classes, Predicted
from ._common import Checks, NotApplicable, Report, host

__all__ = ["check_backend", "BatchProbe", "XP_FUNCTIONS"]

#: ``probe(native)`` is a context manager yielding a list that collects the batch size of
#: every framework call made on ``native`` inside it.
BatchProbe = Callable[[Any], ContextManager[list[int]]]

#: Array API names the built-in explainers use; ``model.xp`` must provide them.
XP_FUNCTIONS = (
    "abs", "all", "argmax", "asarray", "astype", "clip", "concat", "expand_dims", "float32",
    "float64", "isfinite", "matmul", "max", "mean", "min", "moveaxis", "reshape", "sqrt", "stack",
    "sum", "take", "take_along_axis", "where", "zeros", "zeros_like",
)


def _default_probe(native: object) -> BatchProbe | None:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(native, torch.nn.Module):
        from .models import torch_batch_probe

        return torch_batch_probe
    return None


def _snapshot(native: object) -> dict[str, Any]:
    """What can be compared of a native model without running it: torch parameters,
    buffers, ``training`` and ``requires_grad`` flags and hooks; Keras weights and
    ``trainable`` flags. Empty for other natives."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(native, torch.nn.Module):
        modules = list(native.modules())
        return {
            "state": {k: v.detach().clone() for k, v in native.state_dict(keep_vars=True).items()},
            "training flags": [m.training for m in modules],
            "requires_grad flags": [p.requires_grad for p in native.parameters()],
            "hooks": [
                len(getattr(m, attr, {}))
                for m in modules
                for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks")
            ],
            "parameter .grad": [p.grad is not None for p in native.parameters()],
        }
    if hasattr(native, "get_weights") and hasattr(native, "trainable"):
        return {
            "weights": [np.array(w, copy=True) for w in native.get_weights()],
            "trainable flags": [getattr(layer, "trainable", None) for layer in getattr(native, "layers", [])],
        }
    return {}


def _changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    changed = []
    for key, old in before.items():
        new: Any = after.get(key)
        if key == "state":
            if old.keys() != new.keys():
                changed.append("parameters/buffers (names)")
            else:
                bad = [k for k in old if old[k].shape != new[k].shape or not bool((old[k] == new[k]).all())]
                if bad:
                    changed.append(f"parameters/buffers {', '.join(bad[:5])}")
        elif key == "weights":
            if len(old) != len(new) or any(a.shape != b.shape or not np.array_equal(a, b) for a, b in zip(old, new)):
                changed.append("weights")
        elif old != new:
            changed.append(key)
    return changed


def _layout(native: np.ndarray, canonical: np.ndarray) -> str | None:
    """``"channels-last"`` if ``canonical`` is the inputs as given, ``"channels-first"`` if it
    is NCHW inputs permuted to NHWC, else None."""
    if canonical.shape == native.shape and np.allclose(canonical, native, rtol=1e-3, atol=1e-3):
        return "channels-last"
    if native.ndim == 4:
        permuted = native.transpose(0, 2, 3, 1)
        if canonical.shape == permuted.shape and np.allclose(canonical, permuted, rtol=1e-3, atol=1e-3):
            return "channels-first"
    return None


def _plausibly_channels_last(act_shape: tuple[int, ...], x_shape: tuple[int, ...]) -> bool:
    """Activations ``(N, h, w, c)`` of inputs ``(N, H, W, C)``: h/w keeps the aspect H/W up
    to rounding (channels-first ``(N, c, h, w)`` activations usually do not)."""
    h, w = act_shape[1], act_shape[2]
    height, width = x_shape[1], x_shape[2]
    return abs(h * width - w * height) <= max(height, width)


def check_backend(
    model_factory: Callable[[], object],
    inputs: Any,
    *,
    reference: Callable[[], object] | None = None,
    layer: str | tuple[str, str] | None = None,
    batch_size: int = 2,
    atol: float = 1e-5,
    batch_probe: BatchProbe | None = None,
) -> Report:
    """Check a backend against limelight's :class:`~limelight.Model` contract.

    ``model_factory()`` returns a fresh native model (or a :class:`~limelight.Model`);
    ``inputs`` is a small batch (more than ``batch_size`` samples) in the model's own
    layout. ``reference`` builds a twin in another backend with the same weights: its
    outputs, activations (at ``layer``, a pair ``(this model's, the twin's)``, or both
    defaults) and gradients must agree within ``atol`` (relative to the largest value).
    ``batch_probe`` records the batch sizes the native model sees (built in for torch
    modules); without one, ``batch_size`` is checked through equal results only.

    Each failed check raises an :class:`AssertionError` naming it, e.g.
    ``check_backend [batch_size]: ...``. Returns a :class:`~limelight.testing.Report`.
    """
    from ..core.api import wrap

    report = Report("check_backend")
    c = Checks("check_backend", report)
    rng = np.random.RandomState(0)

    with c.check("wrap"):
        created = model_factory()
        native = created.native if isinstance(created, Model) else created
        before = _snapshot(native)
        model = wrap(created)
        c.expect(isinstance(model, Model), f"limelight.wrap returned a {type(model).__name__}, not a limelight.Model")
        c.expect(model.native is native, "Model.native is not the model the factory built")
        c.expect(isinstance(getattr(model, "framework", None), str) and model.framework, "Model.framework must be a non-empty str")
        c.expect(isinstance(model.xp, ModuleType), f"Model.xp must be a module (an Array API namespace), got {type(model.xp).__name__}")
        repr(model)

    native_host = host(inputs)
    n = int(native_host.shape[0])
    if n <= batch_size:
        raise ValueError(f"check_backend needs more than batch_size={batch_size} samples; got {n}")

    with c.check("canonical"):
        x = model.canonical(inputs)
        xh = model.to_numpy(x)
        c.expect(isinstance(xh, np.ndarray), f"to_numpy returned a {type(xh).__name__}, not a numpy.ndarray")
        c.expect(np.issubdtype(xh.dtype, np.floating), f"canonical inputs have dtype {xh.dtype}; expected floating")
        c.expect(xh.shape[0] == n, f"canonical inputs have {xh.shape[0]} samples; the batch has {n}")
        layout = _layout(native_host, xh)
        if layout is None:
            expected = [native_host.shape]
            if native_host.ndim == 4:
                expected.append(native_host.transpose(0, 2, 3, 1).shape)
            c.fail(
                f"canonical(inputs) has shape {xh.shape} and is not the inputs themselves (channels-last) "
                f"nor NCHW inputs permuted to NHWC: expected one of {expected} with the inputs' values"
            )
        if xh.ndim == 4:
            c.expect(
                not (xh.shape[1] in (1, 3, 4) and xh.shape[3] > 4),
                f"canonical(inputs) has shape {xh.shape}, which looks channels-first; canonical arrays "
                "are channels-last (N, H, W, C)",
            )
    channels_axis = (1 if layout == "channels-first" else -1) if native_host.ndim == 4 else -1

    with c.check("xp"):
        xp = model.xp
        missing = [name for name in XP_FUNCTIONS if not hasattr(xp, name)]
        c.expect(not missing, f"model.xp lacks {', '.join(missing)}")
        from array_api_compat import is_array_api_obj

        if not is_array_api_obj(x):
            report.notes.append(
                f"{type(x).__name__} arrays are not array_api_compat arrays; checked that model.xp computes on them"
            )
        flat = xp.reshape(xp.astype(x, xp.float32), (n, -1))
        c.close(model.to_numpy(xp.sum(flat, axis=1)), xh.reshape(n, -1).astype(np.float32).sum(1), "xp.sum", atol=1e-5)
        c.close(model.to_numpy(xp.mean(x, axis=0)), xh.mean(0), "xp.mean", atol=1e-5)
        idx = model.asarray(np.array([n - 1, 0], np.int64))
        c.close(model.to_numpy(xp.take(x, idx, axis=0)), xh[[n - 1, 0]], "xp.take", atol=0)
        c.expect(
            np.array_equal(model.to_numpy(xp.argmax(flat, axis=1)), xh.reshape(n, -1).argmax(1)), "xp.argmax differs from NumPy"
        )

    with c.check("round-trip"):
        a = rng.standard_normal((2, 3)).astype(np.float32)
        b = model.asarray(a, like=x)
        bh = model.to_numpy(b)
        c.expect(isinstance(bh, np.ndarray), f"to_numpy returned a {type(bh).__name__}")
        c.expect(bh.dtype == xh.dtype, f"asarray(float array, like=x) has dtype {bh.dtype}; expected like's {xh.dtype}")
        c.close(bh, a, "to_numpy(asarray(a, like=x))", atol=1e-6)
        ints = model.to_numpy(model.asarray(np.array([3, 1, 2], np.int64)))
        c.expect(
            np.issubdtype(ints.dtype, np.integer) and ints.tolist() == [3, 1, 2],
            f"asarray of int64 [3, 1, 2] came back as {ints!r}",
        )
        c.close(model.to_numpy(model.asarray(xh, like=x)), xh, "to_numpy(asarray(to_numpy(x)))", atol=0)

    with c.check("helpers"):
        target = model.asarray(np.zeros((3, 2), np.float32), like=x)
        index = model.asarray(np.array([0, 2, 0], np.int64))
        values = model.asarray(np.arange(6, dtype=np.float32).reshape(3, 2), like=x)
        summed = np.zeros((3, 2))
        np.add.at(summed, np.array([0, 2, 0]), np.arange(6).reshape(3, 2))
        c.close(model.to_numpy(model.index_add(target, index, values)), summed, "index_add (repeats accumulate)", atol=1e-6)
        maps = model.asarray(np.full((2, 4, 4), 0.5, np.float32), like=x)
        resized = model.to_numpy(model.resize(maps, (8, 6)))
        c.close(resized, np.full((2, 8, 6), 0.5), "resize of constant maps to (8, 6)", atol=1e-5)

    with c.check("predict"):
        out = model.predict(x)
        outh = model.to_numpy(out)
        c.expect(
            outh.ndim >= 2 and outh.shape[0] == n,
            f"predict returned shape {outh.shape}; expected (N={n}, K) (dense outputs channels-last, (N, ..., K))",
        )
        c.expect(np.isfinite(outh).all(), "predict returned NaN or inf")
        one_by_one = np.concatenate([model.to_numpy(model.predict(x[i : i + 1])) for i in range(n)])
        c.close(outh, one_by_one, "predict on the batch vs one sample at a time", atol=atol)
    k = int(outh.shape[1])
    classes = outh.argmax(1).astype(np.int64)

    caps = {
        p.__name__: isinstance(model, p)
        for p in (SupportsLayers, SupportsGradients, SupportsActivationEdit, SupportsDeepLift, SupportsRandomize)
    }
    report.notes.append("capabilities: " + (", ".join(name for name, has in caps.items() if has) or "none"))
    own_layer = layer[0] if isinstance(layer, tuple) else layer

    with c.check("layers"):
        if not caps["SupportsLayers"]:
            raise NotApplicable("no SupportsLayers")
        assert isinstance(model, SupportsLayers)
        names = model.layers()
        c.expect(isinstance(names, list) and names, f"layers() returned {names!r}; expected a non-empty list of names")
        bad = [name for name in names if not isinstance(name, str) or not name]
        c.expect(not bad, f"layers() has names that are not non-empty strings: {bad[:5]!r}")
        c.expect(len(set(names)) == len(names), "layers() lists a name twice")
        wrong = [(name, model.resolve_layer(name)) for name in names if model.resolve_layer(name) != name]
        c.expect(not wrong, f"resolve_layer(name) != name for {wrong[:3]!r}")
        c.raises(LayerError, lambda: model.resolve_layer("no such layer, surely"), "resolve_layer of an unknown name")
        default = model.default_layer(x)
        c.expect(default in names, f"default_layer(x) = {default!r} is not one of layers()")
        own_layer = default if own_layer is None else model.resolve_layer(own_layer)

    with c.check("activations"):
        if not caps["SupportsLayers"]:
            raise NotApplicable("no SupportsLayers")
        assert isinstance(model, SupportsLayers) and own_layer is not None
        acts = model.to_numpy(model.activations(x, own_layer))
        c.expect(acts.shape[0] == n, f"activations({own_layer!r}) has {acts.shape[0]} samples; expected {n}")
        c.expect(np.isfinite(acts).all(), f"activations({own_layer!r}) contain NaN or inf")
        if xh.ndim == 4 and own_layer == default and acts.ndim != 3:  # 3-D: tokens (N, T, C) of a transformer
            c.expect(acts.ndim == 4, f"the default layer {default!r} has activations of shape {acts.shape}; expected (N, h, w, C) or tokens (N, T, C)")
            c.expect(
                _plausibly_channels_last(acts.shape, xh.shape),
                f"activations of {own_layer!r} have shape {acts.shape} for inputs {xh.shape}: not channels-last "
                "(N, h, w, C) (their spatial axes do not keep the inputs' aspect ratio)",
            )
        c.close(model.to_numpy(model.activations(x, own_layer, batch_size=1)), acts, "activations with batch_size=1", atol=atol)

    with c.check("gradients"):
        if not caps["SupportsGradients"]:
            raise NotApplicable("no SupportsGradients")
        assert isinstance(model, SupportsGradients)
        single = Classes(classes[:, None], single=True)
        gin = model.gradients(x, single)
        c.close(model.to_numpy(gin.outputs), outh, "gradients(x, target).outputs vs predict(x)", atol=atol)
        c.close(model.to_numpy(gin.activations), xh, "input gradients: activations vs the inputs", atol=atol)
        g_in = model.to_numpy(gin.gradients)
        c.expect(g_in.shape == xh.shape, f"input gradients have shape {g_in.shape}; expected the inputs' {xh.shape}")
        c.expect(np.isfinite(g_in).all(), "input gradients contain NaN or inf")
        c.close(model.to_numpy(model.gradients(x, Predicted()).gradients), g_in, "gradients for Predicted() vs its classes", atol=atol)
        c.close(model.to_numpy(model.gradients(x, single, batch_size=1).gradients), g_in, "input gradients with batch_size=1", atol=atol)
        second = (classes + 1) % k
        multi = Classes(np.stack([classes, second], axis=1), single=False)
        gm = model.to_numpy(model.gradients(x, multi).gradients)
        c.expect(gm.shape == (n, 2, *xh.shape[1:]), f"gradients for (N, 2) targets have shape {gm.shape}; expected {(n, 2, *xh.shape[1:])} (a T axis after N)")
        c.close(gm[:, 0], g_in, "column 0 of (N, 2)-target gradients vs single-target gradients", atol=atol)
        g_second = model.to_numpy(model.gradients(x, Classes(second[:, None], single=True)).gradients)
        c.close(gm[:, 1], g_second, "column 1 of (N, 2)-target gradients vs single-target gradients", atol=atol)
        c.raises(TargetError, lambda: model.gradients(x, Classes(np.full((n, 1), k), single=True)), f"a target class {k} (out of range)")
        if caps["SupportsLayers"]:
            assert isinstance(model, SupportsLayers) and own_layer is not None
            gl = model.gradients(x, single, own_layer)
            la, lg = model.to_numpy(gl.activations), model.to_numpy(gl.gradients)
            c.close(la, acts, f"gradients(x, target, {own_layer!r}).activations vs activations()", atol=atol)
            c.expect(lg.shape == la.shape, f"layer gradients have shape {lg.shape}; activations {la.shape}")
            glm = model.to_numpy(model.gradients(x, multi, own_layer).gradients)
            c.expect(glm.shape == (n, 2, *la.shape[1:]), f"layer gradients for (N, 2) targets have shape {glm.shape}")
            c.close(glm[:, 0], lg, "column 0 of (N, 2)-target layer gradients", atol=atol)

    with c.check("finite-difference"):
        if not caps["SupportsGradients"]:
            raise NotApplicable("no SupportsGradients")
        direction = rng.uniform(-1.0, 1.0, xh.shape[1:])
        eps = 1e-3 * max(1.0, float(np.abs(xh[0]).max()))
        plus = model.to_numpy(model.predict(model.asarray((xh[:1] + eps * direction).astype(xh.dtype), like=x)))
        minus = model.to_numpy(model.predict(model.asarray((xh[:1] - eps * direction).astype(xh.dtype), like=x)))
        numeric = float(plus[0, classes[0]] - minus[0, classes[0]]) / (2 * eps)
        analytic = float((g_in[0].astype(np.float64) * direction).sum())
        tol = 0.05 * max(abs(numeric), abs(analytic)) + 1e-3 * max(1.0, abs(float(outh[0, classes[0]])))
        c.expect(
            abs(numeric - analytic) <= tol,
            f"input gradient of sample 0 along a random direction is {analytic:.6g}, but central finite "
            f"differences give {numeric:.6g} (eps {eps:g})",
        )

    with c.check("activation-edit"):
        if not (caps["SupportsActivationEdit"] and caps["SupportsLayers"]):
            raise NotApplicable("no SupportsActivationEdit")
        assert isinstance(model, SupportsActivationEdit) and own_layer is not None
        acts_d = model.activations(x, own_layer)
        same = model.to_numpy(model.outputs_with(x, own_layer, acts_d))
        c.close(same, outh, f"outputs_with(x, {own_layer!r}, its own activations) vs predict(x)", atol=atol)
        rows = model.asarray(np.repeat(np.arange(n), 2))
        edited = model.xp.take(acts_d, rows, axis=0)
        twice = model.to_numpy(model.outputs_with(x, own_layer, edited))
        c.close(twice, np.repeat(outh, 2, axis=0), "outputs_with with R=2 copies per sample (sample-major)", atol=atol)
        c.close(model.to_numpy(model.outputs_with(x, own_layer, edited, batch_size=1)), twice, "outputs_with with batch_size=1", atol=atol)

    with c.check("deeplift"):
        if not caps["SupportsDeepLift"]:
            raise NotApplicable("no SupportsDeepLift")
        assert isinstance(model, SupportsDeepLift)
        unsupported = model.deeplift_unsupported(x)
        c.expect(isinstance(unsupported, list) and all(isinstance(u, str) for u in unsupported), f"deeplift_unsupported returned {unsupported!r}")
        refs_h = np.zeros_like(xh)
        refs = model.asarray(refs_h, like=x)
        multi = Classes(np.stack([classes, (classes + 1) % k], axis=1), single=False)
        if unsupported:
            c.raises(LimelightError, lambda: model.deeplift_gradients(x, refs, multi), "deeplift_gradients on unsupported operations")
            report.notes.append(f"deeplift: the model has operations without a rule ({', '.join(unsupported)}); completeness not checked")
        else:
            m = model.to_numpy(model.deeplift_gradients(x, refs, multi))
            c.expect(m.shape == (n, 2, *xh.shape[1:]), f"deeplift_gradients returned shape {m.shape}; expected {(n, 2, *xh.shape[1:])}")
            total = (m.astype(np.float64) * (xh - refs_h)[:, None].astype(np.float64)).reshape(n, 2, -1).sum(-1)
            ref_out = model.to_numpy(model.predict(refs))
            cols = multi.index
            delta = np.take_along_axis(outh, cols, 1) - np.take_along_axis(ref_out, cols, 1)
            c.close(total, delta, "completeness: Σ m·(x - r) vs score(x) - score(r)", atol=max(atol, 1e-4), rtol=1e-3)
            c.close(model.to_numpy(model.deeplift_gradients(x, refs, multi, batch_size=1)), m, "deeplift_gradients with batch_size=1", atol=atol)

    with c.check("randomize"):
        if not caps["SupportsRandomize"]:
            raise NotApplicable("no SupportsRandomize")
        assert isinstance(model, SupportsRandomize)
        owners = model.parameter_layers()
        c.expect(isinstance(owners, list) and owners and all(isinstance(o, str) for o in owners),
                 f"parameter_layers() returned {owners!r}; expected a non-empty list of names")
        if caps["SupportsLayers"]:
            unknown = sorted(set(owners) - set(names))
            c.expect(not unknown, f"parameter_layers() names layers that layers() does not list: {unknown[:5]}")
        first = model.randomized(owners[-1:], seed=0)
        c.expect(isinstance(first, Model), f"randomized() returned a {type(first).__name__}, not a Model")
        c.expect(first.native is not native, "randomized() returned the user's own model, not a copy")
        r1 = first.to_numpy(first.predict(x))
        c.expect(r1.shape == outh.shape and not np.allclose(r1, outh), f"randomizing {owners[-1]!r} did not change the outputs")
        again = model.randomized(owners[-1:], seed=0)
        c.close(again.to_numpy(again.predict(x)), r1, "two randomized() copies with seed=0", atol=atol)
        c.close(model.to_numpy(model.predict(x)), outh, "the original model's outputs after randomized()", atol=atol)

    with c.check("batch_size"):
        c.close(model.to_numpy(model.predict(x, batch_size=batch_size)), outh, f"predict with batch_size={batch_size}", atol=atol)
        c.close(model.to_numpy(model.predict(x, batch_size=1)), outh, "predict with batch_size=1", atol=atol)
        probe = batch_probe or _default_probe(native)
        if probe is None:
            report.notes.append(
                "batch_size: no batch probe for this model; checked equal results only (pass batch_probe=)"
            )
        else:
            calls: list[tuple[str, Callable[[], object]]] = [("predict", lambda: model.predict(x, batch_size=batch_size))]
            if caps["SupportsLayers"]:
                calls.append(("activations", lambda: model.activations(x, own_layer, batch_size=batch_size)))
            if caps["SupportsGradients"]:
                calls.append(("gradients", lambda: model.gradients(x, Predicted(), batch_size=batch_size)))
            for what, call in calls:
                with probe(native) as seen:
                    call()
                c.expect(seen, f"the batch probe saw no call of the native model during {what}()")
                c.expect(
                    max(seen) <= batch_size,
                    f"{what}(x, batch_size={batch_size}) ran the native model on batches of {seen}; at most "
                    f"{batch_size} samples per call expected",
                )

    with c.check("bad-input"):
        def run(bad: np.ndarray) -> object:
            return model.predict(model.canonical(bad))

        c.raises(LimelightError, lambda: run(native_host[0]), f"inputs of shape {native_host[0].shape} (no batch axis)")
        if native_host.shape[channels_axis] > 1:
            cut = native_host[:, :-1] if channels_axis == 1 else native_host[..., :-1]
            c.raises(LimelightError, lambda: run(np.ascontiguousarray(cut)), f"inputs of shape {cut.shape} (one channel/feature short)")
        nan = native_host.astype(np.float32, copy=True)
        nan.flat[0] = np.nan
        c.raises(LimelightError, lambda: run(nan), "inputs with a NaN")

    with c.check("unmodified"):
        c.close(model.to_numpy(model.predict(x)), outh, "outputs after all checks vs the first predict", atol=atol)
        if not isinstance(created, Model):
            fresh = wrap(native)
            c.close(fresh.to_numpy(fresh.predict(fresh.canonical(inputs))), outh, "outputs of a fresh wrap of the native model", atol=atol)
        changed = _changed(before, _snapshot(native))
        c.expect(not changed, f"the native model was modified: {', '.join(changed)} changed")
        if not before:
            report.notes.append("unmodified: compared outputs only (no parameter snapshot for this native type)")

    if reference is not None:
        with c.check("reference"):
            _check_reference(c, model, x, xh, outh, classes, reference, layer, own_layer, atol, report)
    return report


def _check_reference(
    c: Checks, model: Model, x: Any, xh: np.ndarray, outh: np.ndarray, classes: np.ndarray,
    reference: Callable[[], object], layer: str | tuple[str, str] | None, own_layer: str | None,
    atol: float, report: Report,
) -> None:
    from ..core.api import wrap

    twin = wrap(reference())
    c.expect(type(twin) is not type(model) or twin.framework != model.framework,
             "the reference is in the same backend; pass a twin from another backend")
    tx = twin.asarray(xh, like=None)
    c.close(twin.to_numpy(twin.predict(tx)), outh, f"{twin.framework} twin outputs vs {model.framework}", atol=atol)
    both_layers = isinstance(model, SupportsLayers) and isinstance(twin, SupportsLayers)
    twin_layer = None
    if both_layers:
        assert isinstance(twin, SupportsLayers) and isinstance(model, SupportsLayers) and own_layer is not None
        twin_layer = twin.resolve_layer(layer[1]) if isinstance(layer, tuple) else twin.default_layer(tx)
        a = model.to_numpy(model.activations(x, own_layer))
        b = twin.to_numpy(twin.activations(tx, twin_layer))
        c.close(b, a, f"activations of the twin's {twin_layer!r} vs {own_layer!r}", atol=atol)
    if isinstance(model, SupportsGradients) and isinstance(twin, SupportsGradients):
        target = Classes(classes[:, None], single=True)
        a = model.to_numpy(model.gradients(x, target).gradients)
        b = twin.to_numpy(twin.gradients(tx, target).gradients)
        c.close(b, a, "input gradients of the twin", atol=atol)
        if both_layers and twin_layer is not None and own_layer is not None:
            a = model.to_numpy(model.gradients(x, target, own_layer).gradients)
            b = twin.to_numpy(twin.gradients(tx, target, twin_layer).gradients)
            c.close(b, a, f"gradients at the twin's {twin_layer!r} vs {own_layer!r}", atol=atol)
    if isinstance(model, SupportsRandomize) and isinstance(twin, SupportsRandomize):
        mine = model.randomized(model.parameter_layers()[-1:], seed=0)
        theirs = twin.randomized(twin.parameter_layers()[-1:], seed=0)
        c.close(theirs.to_numpy(theirs.predict(tx)), mine.to_numpy(mine.predict(x)),
                "outputs of randomized(last parameter layer, seed=0) copies of the twins", atol=atol)
    report.notes.append(f"reference: {twin.framework} twin agrees (layers {own_layer!r} / {twin_layer!r})")
