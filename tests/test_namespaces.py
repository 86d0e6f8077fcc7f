"""The explainers' math is written once in the Array API: the same code gives the same
numbers on NumPy, torch, TensorFlow and array-api-strict.

One small analytic backend (:class:`FakeModel`) is written against ``model.xp`` only and
parametrised by the namespace its arrays live in. Its network, on ``(N, 8, 8, 3)`` inputs::

    z = avgpool2x2(x) @ M + c        (N, 4, 4, 6)
    A = relu(z)                      the layer "features"
    f = mean_hw(A) @ V + b           (N, 5)

has gradients and DeepLIFT multipliers in closed form, so every CAM method, shap-gradient
(seeded) and shap-deep run through the real explainers on every namespace and must agree
with the NumPy run to 1e-5, and with the closed forms. The helpers the standard lacks
(``Model.resize``, the generic ``Model.index_add``) are checked against their references.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import limelight
from limelight.core.arrays import check_batch, check_canonical
from limelight.core.model import (
    Gradients,
    Model,
    NumpyModel,
    SupportsDeepLift,
    SupportsGradients,
    SupportsLayers,
    batches,
    unknown_layer,
)
from limelight.core.ops import minmax_normalize, resize_bilinear
from limelight.core.targets import Classes

CAMS = ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam", "eigengradcam"]
RAW = {"relu": False, "upsample": False, "normalize": False}
#: "array_api_strict@device1" puts every array on a second device: an explainer that makes an
#: array without ``device=`` (which would land on a CPU beside a CUDA model) fails there.
NAMESPACES = ["numpy", "array_api_strict", "array_api_strict@device1", "torch", "tensorflow"]

RNG = np.random.RandomState(0)
M = RNG.randn(3, 6).astype(np.float32)
C = (0.3 * RNG.randn(6)).astype(np.float32)
V = RNG.randn(6, 5).astype(np.float32)
B = RNG.randn(5).astype(np.float32)
X = RNG.randn(3, 8, 8, 3).astype(np.float32)
BG = RNG.randn(4, 8, 8, 3).astype(np.float32)
TARGETS = np.array([1, 4, 0])


@dataclass(frozen=True)
class Namespace:
    """An Array API namespace with the way in from NumPy and the way out to it."""

    name: str
    xp: Any
    from_numpy: Any
    to_numpy: Any


def namespace(name: str) -> Namespace:
    """The namespace ``name`` (skipping the test when its library is not installed)."""
    if name == "numpy":
        import array_api_compat.numpy as xp

        return Namespace(name, xp, np.asarray, np.asarray)
    if name == "array_api_strict":
        xp = pytest.importorskip("array_api_strict")
        return Namespace(name, xp, xp.asarray, np.from_dlpack)
    if name == "array_api_strict@device1":
        xp = pytest.importorskip("array_api_strict")
        device, host = xp.Device("device1"), xp.Device("CPU_DEVICE")
        return Namespace(
            name, xp, lambda a: xp.asarray(a, device=device), lambda a: np.from_dlpack(a.to_device(host))
        )
    if name == "torch":
        torch = pytest.importorskip("torch")
        import array_api_compat.torch as xp

        return Namespace(
            name, xp, lambda a: torch.as_tensor(np.ascontiguousarray(a)), lambda t: t.detach().cpu().numpy()
        )
    xp = pytest.importorskip("limelight.backends.tensorflow_xp")
    import tensorflow as tf

    return Namespace(name, xp, tf.convert_to_tensor, lambda t: t.numpy())


@pytest.fixture(params=NAMESPACES)
def space(request) -> Namespace:
    return namespace(request.param)


class FakeModel(Model):
    """The analytic network of the module doc on the arrays of one namespace.

    Implements SupportsGradients, SupportsLayers and SupportsDeepLift with closed forms;
    ``resize`` and ``index_add`` are the base class's generic versions.
    """

    framework = "fake"

    def __init__(self, space: Namespace, c: np.ndarray = C) -> None:
        super().__init__(None)
        self.space = space
        self.m, self.c, self.v, self.b = (self.asarray(a) for a in (M, c, V, B))
        self.vt = self.asarray(np.ascontiguousarray(V.T))
        self.mt = self.asarray(np.ascontiguousarray(M.T))

    @property
    def xp(self) -> Any:
        return self.space.xp

    def canonical(self, inputs: Any) -> Any:
        host = inputs if isinstance(inputs, np.ndarray) else self.to_numpy(inputs)
        return check_batch(self.xp, self.asarray(check_canonical(np.asarray(host, np.float32))), self.to_numpy)

    def asarray(self, a: Any, like: Any = None) -> Any:
        host = np.asarray(a)
        if host.dtype.kind == "f":
            host = host.astype(np.float32)
        out = self.space.from_numpy(host)
        if like is not None and host.dtype.kind == "f":
            out = self.xp.astype(out, like.dtype)
        return out

    def to_numpy(self, a: Any) -> np.ndarray:
        return a if isinstance(a, np.ndarray) else np.asarray(self.space.to_numpy(a))

    # -- the network ---------------------------------------------------------------------------
    def _pre(self, x: Any) -> Any:
        xp = self.xp
        n, h, w, ch = (int(s) for s in x.shape)
        pooled = xp.mean(xp.reshape(x, (n, h // 2, 2, w // 2, 2, ch)), axis=(2, 4))
        return xp.matmul(pooled, self.m) + self.c

    def _head(self, a: Any) -> Any:
        return self.xp.matmul(self.xp.mean(a, axis=(1, 2)), self.v) + self.b

    def _relu(self, z: Any) -> Any:
        return self.xp.clip(z, min=0.0)

    def predict(self, x: Any, *, batch_size: int | None = None) -> Any:
        outs = [self._head(self._relu(self._pre(x[rows, ...]))) for rows in batches(int(x.shape[0]), batch_size)]
        return outs[0] if len(outs) == 1 else self.xp.concat(outs)

    def _column_weights(self, target: Any, outputs: Any, rows: slice) -> Any:
        """d score[n, t] / d A[n, i, j, c] = V[c, class[n, t]] / (h w): ``(n, T, C)`` (the
        ``1 / (h w)`` is applied by the callers)."""
        xp = self.xp
        target = target.check(int(outputs.shape[1]))
        data = [self.asarray(d[rows]) for d in target.data()]
        classes = xp.astype(target.classes(xp, outputs, *data), xp.int64)
        n, k = int(outputs.shape[0]), int(outputs.shape[1])
        onehot = xp.reshape(classes, (n, -1, 1)) == xp.reshape(xp.arange(k, dtype=xp.int64, device=outputs.device), (1, 1, k))
        return xp.matmul(xp.astype(onehot, outputs.dtype), self.vt)

    def _to_input(self, dz: Any) -> Any:
        """Gradients ``(n, T, h, w, C)`` at ``z`` -> at the input ``(n, T, 2h, 2w, 3)``."""
        xp = self.xp
        n, t, h, w, _ = (int(s) for s in dz.shape)
        dpooled = xp.matmul(dz, self.mt) / 4.0
        cin = int(dpooled.shape[-1])
        spread = xp.broadcast_to(xp.reshape(dpooled, (n, t, h, 1, w, 1, cin)), (n, t, h, 2, w, 2, cin))
        return xp.reshape(spread, (n, t, 2 * h, 2 * w, cin))

    def gradients(self, x: Any, target: Any, layer: str | None = None, *, batch_size: int | None = None) -> Gradients:
        xp = self.xp
        outs, acts, grads = [], [], []
        for rows in batches(int(x.shape[0]), batch_size):
            z = self._pre(x[rows, ...])
            a = self._relu(z)
            out = self._head(a)
            n, h, w, ch = (int(s) for s in a.shape)
            weights = self._column_weights(target, out, rows) / float(h * w)  # (n, T, C)
            da = xp.broadcast_to(xp.reshape(weights, (n, -1, 1, 1, ch)), (n, int(weights.shape[1]), h, w, ch))
            if layer is None:
                acts.append(x[rows, ...])
                grads.append(self._to_input(da * xp.reshape(xp.astype(z > 0, z.dtype), (n, 1, h, w, ch))))
            else:
                acts.append(a)
                grads.append(da)
            outs.append(out)
        out, act, grad = (p[0] if len(p) == 1 else xp.concat(p) for p in (outs, acts, grads))
        return Gradients(out, act, grad[:, 0, ...] if target.single else grad)

    def layers(self) -> list[str]:
        return ["features"]

    def resolve_layer(self, layer: object) -> str:
        if layer == "features":
            return "features"
        raise unknown_layer(layer, self.layers(), self.framework)

    def default_layer(self, x: Any) -> str:
        return "features"

    def activations(self, x: Any, layer: str, *, batch_size: int | None = None) -> Any:
        self.resolve_layer(layer)
        parts = [self._relu(self._pre(x[rows, ...])) for rows in batches(int(x.shape[0]), batch_size)]
        return parts[0] if len(parts) == 1 else self.xp.concat(parts)

    def deeplift_gradients(self, x: Any, references: Any, target: Any, *, batch_size: int | None = None) -> Any:
        """Rescale rule: the ReLU's multiplier is (relu(z_x) - relu(z_r)) / (z_x - z_r)."""
        xp = self.xp
        parts = []
        for rows in batches(int(x.shape[0]), batch_size):
            zx, zr = self._pre(x[rows, ...]), self._pre(references[rows, ...])
            delta = zx - zr
            moved = delta != 0
            ratio = xp.where(
                moved,
                (self._relu(zx) - self._relu(zr)) / xp.where(moved, delta, xp.ones_like(delta)),
                xp.astype(zx > 0, zx.dtype),
            )
            n, h, w, ch = (int(s) for s in zx.shape)
            weights = self._column_weights(target, self._head(self._relu(zx)), rows) / float(h * w)
            parts.append(self._to_input(xp.reshape(weights, (n, -1, 1, 1, ch)) * xp.reshape(ratio, (n, 1, h, w, ch))))
        return parts[0] if len(parts) == 1 else xp.concat(parts)

    def deeplift_unsupported(self, x: Any) -> list[str]:
        return []


# -- closed forms (NumPy, float64) ------------------------------------------------------------
def _z(x: np.ndarray) -> np.ndarray:
    n, h, w, ch = x.shape
    pooled = x.astype(np.float64).reshape(n, h // 2, 2, w // 2, 2, ch).mean(axis=(2, 4))
    return pooled @ M.astype(np.float64) + C


def _f(x: np.ndarray) -> np.ndarray:
    return np.maximum(_z(x), 0).mean(axis=(1, 2)) @ V.astype(np.float64) + B


def _input_gradient(x: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """d f(x)[class] / dx, ``(N, H, W, 3)`` for one class per sample."""
    z = _z(x)
    dz = (z > 0) * V[:, classes].T[:, None, None, :] / (z.shape[1] * z.shape[2])
    return np.repeat(np.repeat(dz @ M.T.astype(np.float64) / 4.0, 2, axis=1), 2, axis=2)


# -- the model ------------------------------------------------------------------------------
def test_fake_model_implements_the_protocols(space):
    model = FakeModel(space)
    for protocol in (SupportsGradients, SupportsLayers, SupportsDeepLift):
        assert isinstance(model, protocol)
    x = model.canonical(X)
    np.testing.assert_allclose(model.to_numpy(model.predict(x, batch_size=2)), _f(X), rtol=1e-5, atol=1e-5)
    grads = model.gradients(x, Classes(TARGETS, single=True), batch_size=2)
    np.testing.assert_allclose(model.to_numpy(grads.gradients), _input_gradient(X, TARGETS), rtol=1e-5, atol=1e-6)


# -- the same numbers on every namespace --------------------------------------------------------
_REFERENCE: dict[tuple, limelight.Explanation] = {}


def _run(space: Namespace, method: str, **params: Any) -> limelight.Explanation:
    return limelight.explain(FakeModel(space), X, method, **params)


def _against_numpy(space: Namespace, method: str, **params: Any) -> limelight.Explanation:
    exp = _run(space, method, **params)
    key = (method, tuple(sorted((k, repr(v)) for k, v in params.items())))
    if key not in _REFERENCE:
        _REFERENCE[key] = _run(namespace("numpy"), method, **params)
    ref = _REFERENCE[key]
    assert isinstance(exp.values, np.ndarray) and exp.values.dtype == np.float32
    assert exp.values.shape == ref.values.shape
    np.testing.assert_allclose(exp.values, ref.values, rtol=0, atol=1e-5, err_msg=f"{method} on {space.name}")
    np.testing.assert_array_equal(exp.targets, ref.targets)
    np.testing.assert_allclose(exp.outputs, ref.outputs, rtol=0, atol=1e-5)
    if ref.base_values is not None:
        np.testing.assert_allclose(exp.base_values, ref.base_values, rtol=0, atol=1e-5)
    return exp


@pytest.mark.parametrize("raw", [False, True], ids=["postprocessed", "raw"])
@pytest.mark.parametrize("method", CAMS)
def test_cams_agree_with_numpy(space, method, raw):
    params = RAW if raw else {}
    exp = _against_numpy(space, method, targets=TARGETS, **params)
    assert exp.values.shape == ((3, 4, 4) if raw else (3, 8, 8))
    assert exp.params["layer"] == "features"
    if not raw:
        assert exp.values.min() >= 0 and exp.values.max() <= 1 + 1e-6


@pytest.mark.parametrize("method", ["gradcam", "eigencam"])
def test_predicted_targets_and_batches_agree_with_numpy(space, method):
    exp = _against_numpy(space, method, batch_size=2)
    np.testing.assert_array_equal(exp.targets, _f(X).argmax(1))


def test_shap_gradient_agrees_with_numpy(space):
    _against_numpy(space, "shap-gradient", background=BG, nsamples=6, seed=3, batch_size=4, targets=TARGETS)
    _against_numpy(space, "shap-gradient", background=BG, nsamples=3, seed=1, targets=[[0, 2]] * 3, local_smoothing=0.1)


def test_shap_deep_agrees_with_numpy(space):
    _against_numpy(space, "shap-deep", background=BG, batch_size=5, targets=TARGETS)
    _against_numpy(space, "shap-deep", background=BG[:2], targets=[[3, 1]] * 3)


# -- closed forms ---------------------------------------------------------------------------------
def _gradcam_raw(classes: np.ndarray) -> np.ndarray:
    """Σ_c mean_hw(∂f/∂A_c) A_c = Σ_c V[c, k] / (h w) · A_c, with A = relu(z)."""
    a = np.maximum(_z(X), 0)
    weights = V[:, classes].T / (a.shape[1] * a.shape[2])  # (N, C)
    return np.einsum("nhwc,nc->nhw", a, weights)


def test_gradcam_is_the_closed_form(space):
    raw = _run(space, "gradcam", targets=TARGETS, **RAW)
    np.testing.assert_allclose(raw.values, _gradcam_raw(TARGETS), rtol=1e-5, atol=1e-6)
    full = _run(space, "gradcam", targets=TARGETS)
    expected = minmax_normalize(resize_bilinear(np.maximum(_gradcam_raw(TARGETS), 0), (8, 8)))
    np.testing.assert_allclose(full.values, expected, rtol=0, atol=1e-5)
    # the network is linear after the layer: gradients are constant over (h, w), so
    # HiResCAM equals Grad-CAM, and XGrad-CAM too (its weights are Σ G A / Σ A = G)
    hires = _run(space, "hirescam", targets=TARGETS, **RAW)
    np.testing.assert_allclose(hires.values, raw.values, rtol=1e-5, atol=1e-6)
    xgrad = _run(space, "xgradcam", targets=TARGETS, **RAW)
    np.testing.assert_allclose(xgrad.values, raw.values, rtol=1e-4, atol=1e-5)


def test_shap_deep_is_complete_and_the_closed_form(space):
    exp = _run(space, "shap-deep", background=BG, targets=TARGETS)
    # completeness: Σ φ = f(x) - mean f(bg), exactly for the rescale rule
    gap = _f(X)[np.arange(3), TARGETS] - _f(BG)[:, TARGETS].mean(0)
    np.testing.assert_allclose(exp.values.reshape(3, -1).sum(1), gap, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(exp.base_values, _f(BG)[:, TARGETS].mean(0), rtol=1e-5, atol=1e-5)
    # and each pair's share is its own completeness: Σ m(x, r) ⊙ (x - r) = f(x) - f(r)
    for r in range(len(BG)):
        one = _run(space, "shap-deep", background=BG[r : r + 1], targets=TARGETS)
        gap_r = _f(X)[np.arange(3), TARGETS] - _f(BG[r : r + 1])[0, TARGETS]
        np.testing.assert_allclose(one.values.reshape(3, -1).sum(1), gap_r, rtol=1e-4, atol=1e-4)


def test_shap_gradient_is_the_expected_gradients_estimator(space):
    """φ = 1/S Σ_s ∇f(r_s + t_s (x - r_s)) ⊙ (x - r_s) with shap's draws (choice, uniform)
    from RandomState(seed), row by row, with the closed-form gradient."""
    nsamples, seed = 5, 7
    exp = _run(space, "shap-gradient", background=BG, nsamples=nsamples, seed=seed, targets=TARGETS, batch_size=3)
    rng = np.random.RandomState(seed)
    expected = np.zeros(X.shape)
    for row in range(len(X)):
        for _ in range(nsamples):
            ref, t = BG[rng.choice(len(BG))].astype(np.float64), rng.uniform()
            point = (t * X[row] + (1 - t) * ref).astype(np.float32)
            expected[row] += _input_gradient(point[None], TARGETS[row : row + 1])[0] * (X[row] - ref)
    np.testing.assert_allclose(exp.values, expected / nsamples, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(exp.base_values, _f(BG)[:, TARGETS].mean(0), rtol=1e-5, atol=1e-5)


def test_shap_gradient_and_deep_are_exact_where_the_model_is_linear(space):
    """With a large bias every ReLU is on, so f is linear: expected gradients with one
    background row are g ⊙ (x - r) for any draw, complete, and equal to DeepSHAP."""
    model = FakeModel(space, c=np.full(6, 100.0, np.float32))
    grad = limelight.explain(model, X, "shap-gradient", background=BG[:1], nsamples=3, seed=0, targets=TARGETS)
    deep = limelight.explain(model, X, "shap-deep", background=BG[:1], targets=TARGETS)
    g = np.repeat(np.repeat((V[:, TARGETS].T @ M.T)[:, None, None, :] / 16 / 4, 8, axis=1), 8, axis=2)
    np.testing.assert_allclose(grad.values, g * (X - BG[:1]), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(deep.values, grad.values, rtol=1e-4, atol=1e-6)
    outputs = model.to_numpy(model.predict(model.canonical(np.concatenate([X, BG[:1]]))))
    gap = outputs[np.arange(3), TARGETS] - outputs[3, TARGETS]
    for exp in (grad, deep):
        np.testing.assert_allclose(exp.values.reshape(3, -1).sum(1), gap, rtol=1e-4, atol=1e-4)


# -- the helpers the standard lacks -----------------------------------------------------------
def _torch_model():
    torch = pytest.importorskip("torch")
    from limelight.backends.torch import TorchModel

    return TorchModel(torch.nn.Identity())


@pytest.mark.parametrize("size", [(16, 20), (3, 4), (5, 14)], ids=["up", "down", "mixed"])
def test_resize_is_half_pixel_bilinear(space, size):
    """Model.resize (two matrix products in the namespace) = ops.resize_bilinear =
    torch's interpolate(align_corners=False), up, down and mixed."""
    maps = np.random.RandomState(1).rand(2, 5, 7).astype(np.float32)
    model = FakeModel(space)
    out = model.to_numpy(model.resize(model.asarray(maps), size))
    assert out.shape == (2, *size) and out.dtype == np.float32
    np.testing.assert_allclose(out, resize_bilinear(maps, size), rtol=0, atol=1e-5)
    torch = pytest.importorskip("torch")
    reference = torch.nn.functional.interpolate(
        torch.from_numpy(maps)[:, None], size=size, mode="bilinear", align_corners=False
    )[:, 0].numpy()
    np.testing.assert_allclose(out, reference, rtol=0, atol=1e-5)
    torch_model = _torch_model()
    np.testing.assert_allclose(
        torch_model.to_numpy(torch_model.resize(torch.from_numpy(maps), size)), reference, rtol=0, atol=1e-5
    )


def test_resize_to_the_same_size_is_the_identity(space):
    maps = np.random.RandomState(2).rand(2, 5, 7).astype(np.float32)
    model = FakeModel(space)
    np.testing.assert_array_equal(model.to_numpy(model.resize(model.asarray(maps), (5, 7))), maps)


def _index_add_case(dtype=np.float64):
    rng = np.random.RandomState(3)
    target = rng.randn(4, 3, 2).astype(dtype)
    index = np.array([0, 2, 0, 3, 0, 2, 2], np.int64)  # repeats accumulate
    values = rng.randn(7, 3, 2).astype(dtype)
    expected = target.copy()
    np.add.at(expected, index, values)
    return target, index, values, expected


def test_index_add_accumulates_repeated_indices(space):
    """The base class's one-hot index_add (any namespace) = np.add.at, also with repeats,
    and returns a new array."""
    target, index, values, expected = _index_add_case()
    model = FakeModel(space)
    assert type(model).index_add is Model.index_add
    t = space.from_numpy(target)  # float64, as the SHAP explainers accumulate
    out = model.index_add(t, model.asarray(index), space.from_numpy(values))
    np.testing.assert_allclose(model.to_numpy(out), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(model.to_numpy(t), target)  # not modified


def test_backend_index_add_overrides_agree():
    target, index, values, expected = _index_add_case()

    class Host(NumpyModel):
        def predict(self, x, *, batch_size=None):
            return x

    host = Host(None)
    np.testing.assert_allclose(host.index_add(target, index, values), expected, rtol=1e-12)
    torch = pytest.importorskip("torch")
    model = _torch_model()
    out = model.index_add(torch.from_numpy(target), torch.from_numpy(index), torch.from_numpy(values))
    np.testing.assert_allclose(model.to_numpy(out), expected, rtol=1e-12)
