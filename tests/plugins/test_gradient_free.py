"""Score-CAM, Ablation-CAM and RISE: references, analytic cases, twins, batching and errors.

Most tests use a host-only NumPy CNN (``HostCNN``) that provides activations and edited
outputs, so the gradient-free methods run without a framework and every call is counted.
"""

from __future__ import annotations

import numpy as np
import pytest

import limelight
from limelight.core.errors import InputError, LayerError, ParameterError, UnsupportedError
from limelight.core.model import NumpyModel, batches
from limelight.plugins.gradient_free import ABLATION_OFFSET, rise_grids

METHODS = ["scorecam", "ablationcam", "rise"]


# -- host-only models -----------------------------------------------------------------------
class PredictOnly(NumpyModel):
    """``outputs = head(features(x))``: a 1×1 convolution (+ ReLU unless ``relu=False``),
    2×2 average pooling to ``(N, H/2, W/2, C)`` (the layer ``"conv"``), then global average
    pooling and a dense head. Records the rows of every call."""

    def __init__(self, c_in=3, channels=6, classes=4, seed=0, relu=True, offset=0.0):
        super().__init__(None)
        rng = np.random.RandomState(seed)
        self.kernel = rng.randn(c_in, channels)
        self.bias = rng.randn(channels) * 0.3
        self.dense = rng.randn(channels, classes)
        self.dense_bias = rng.randn(classes) * 0.1
        self.relu, self.offset = relu, offset
        self.calls: list[tuple[str, int]] = []

    def features(self, x):
        z = x.astype(np.float64) @ self.kernel + self.bias
        if self.relu:
            z = np.maximum(z, 0)
        n, h, w, c = z.shape
        return z.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4)) + self.offset

    def head(self, acts):
        return acts.astype(np.float64).mean(axis=(1, 2)) @ self.dense + self.dense_bias

    def predict(self, x, *, batch_size=None):
        parts = []
        for part in batches(len(x), batch_size):
            self.calls.append(("predict", len(x[part])))
            parts.append(self.head(self.features(x[part])).astype(np.float32))
        return np.concatenate(parts)

    def max_rows(self):
        return max(rows for _, rows in self.calls)


class Layers(PredictOnly):
    """+ SupportsLayers (one layer, ``"conv"``)."""

    def layers(self):
        return ["conv"]

    def resolve_layer(self, layer):
        if layer != "conv":
            raise LayerError(f"unknown layer {layer!r}")
        return "conv"

    def default_layer(self, x):
        return "conv"

    def activations(self, x, layer, *, batch_size=None):
        parts = []
        for part in batches(len(x), batch_size):
            self.calls.append(("activations", len(x[part])))
            parts.append(self.features(x[part]).astype(np.float32))
        return np.concatenate(parts)


class HostCNN(Layers):
    """+ SupportsActivationEdit."""

    def outputs_with(self, x, layer, activations, *, batch_size=None):
        assert len(activations) % len(x) == 0
        parts = []
        for part in batches(len(activations), batch_size):
            self.calls.append(("outputs_with", len(activations[part])))
            parts.append(self.head(activations[part]).astype(np.float32))
        return np.concatenate(parts)


def host_inputs(n=3, size=8, seed=1):
    return np.random.RandomState(seed).rand(n, size, size, 3).astype(np.float32)


def softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


RAW = dict(relu=False, upsample=False, normalize=False)


# -- registry, parameters, capabilities ------------------------------------------------------
def test_registered_with_their_defaults():
    assert set(METHODS) <= set(limelight.explainers())
    model, x = HostCNN(), host_inputs()
    for method in METHODS:
        exp = limelight.explain(model, x, method, **({"n_masks": 8, "seed": 0} if method == "rise" else {}))
        assert exp.method == method and exp.values.shape == (3, 8, 8) and exp.values.dtype == np.float32
        assert np.isfinite(exp.values).all() and exp.values.min() >= 0 and exp.values.max() == pytest.approx(1)
        np.testing.assert_array_equal(exp.targets, exp.outputs.argmax(1))
        assert exp.params["progress"] is None and exp.params["normalize"] is True
    exp = limelight.explain(model, x, "scorecam")
    assert dict(exp.params) == {"layer": "conv", "relu": True, "upsample": True, "normalize": True,
                                "reshape": None, "progress": None, "precision": "default"}


@pytest.mark.parametrize(
    "method, params",
    [
        ("scorecam", {"n_masks": 10}),
        ("ablationcam", {"grid": 3}),
        ("rise", {"layer": "conv"}),
        ("rise", {"upsample": False}),
        ("rise", {"n_masks": 0}),
        ("rise", {"n_masks": 2.5}),
        ("rise", {"p": 0.0}),
        ("rise", {"p": 1.5}),
        ("rise", {"grid": True}),
        ("rise", {"seed": -1}),
        ("rise", {"scores": "softmax"}),
        ("scorecam", {"progress": 3}),
    ],
)
def test_bad_params_rejected(method, params):
    with pytest.raises(ParameterError):
        limelight.explain(HostCNN(), host_inputs(), method, **params)


def test_missing_capability_is_an_unsupported_error():
    x = host_inputs()
    for method in ("scorecam", "ablationcam"):
        with pytest.raises(UnsupportedError, match="SupportsLayers"):
            limelight.explain(PredictOnly(), x, method)
    with pytest.raises(UnsupportedError, match="SupportsActivationEdit"):
        limelight.explain(Layers(), x, "ablationcam")
    limelight.explain(Layers(), x, "scorecam")
    limelight.explain(PredictOnly(), x, "rise", n_masks=4, seed=0)  # predict is all it needs


def test_flat_inputs_and_multi_targets_are_refused():
    class Flat(NumpyModel):
        def predict(self, x, *, batch_size=None):
            return x[:, :2]

    with pytest.raises(InputError, match="images"):
        limelight.explain(Flat(None), np.ones((2, 5), np.float32), "rise", n_masks=4, seed=0)
    with pytest.raises(limelight.core.errors.TargetError):
        limelight.explain(HostCNN(), host_inputs(2), "scorecam", targets=[[0, 1], [1, 2]])


# -- memory: never more than batch_size rows per call ------------------------------------------
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("batch_size", [1, 4])
def test_calls_never_exceed_batch_size(method, batch_size):
    model, x = HostCNN(channels=9), host_inputs(3)
    seen = []
    params = {"n_masks": 10, "seed": 0} if method == "rise" else {}
    exp = limelight.explain(model, x, method, batch_size=batch_size, progress=lambda d, t: seen.append((d, t)), **params)
    assert model.max_rows() <= batch_size
    total = seen[-1][1]  # rows fed: dead channels are skipped by the CAMs
    assert seen[-1][0] == total and all(t == total for _, t in seen)
    assert total == 3 * 10 if method == "rise" else 0 < total <= 3 * 9
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert exp.params["progress"] is None  # a callback is not a setting of the result
    default = HostCNN(channels=9)
    limelight.explain(default, x, method, **params)
    assert default.max_rows() <= 32  # the default batch size


# -- Score-CAM --------------------------------------------------------------------------------
def reference_scorecam(model, x, classes):
    """pytorch-grad-cam's ScoreCAM, step by step on the host (torch's align_corners=True)."""
    torch = pytest.importorskip("torch")
    acts = model.features(x)  # (n, h, w, C)
    up = torch.nn.functional.interpolate(
        torch.from_numpy(acts.transpose(0, 3, 1, 2)), size=x.shape[1:3], mode="bilinear", align_corners=True
    ).numpy()
    low = up.min(axis=(2, 3), keepdims=True)
    high = up.max(axis=(2, 3), keepdims=True)
    masks = (up - low) / (high - low + 1e-8)  # (n, C, H, W)
    scores = np.stack(
        [model.head(model.features(x[i][None] * masks[i][..., None]))[:, classes[i]] for i in range(len(x))]
    )
    weights = softmax(scores)
    return (acts * weights[:, None, None, :]).sum(-1)


def test_scorecam_equals_the_reference_steps():
    model, x = HostCNN(channels=7, seed=3), host_inputs(3, size=12)
    classes = [0, 3, 1]
    ours = limelight.explain(model, x, "scorecam", targets=classes, batch_size=5, **RAW).values
    ref = reference_scorecam(model, x, classes)
    assert ours.shape == ref.shape == (3, 6, 6)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())


def test_scorecam_scores_the_zero_input_once_for_constant_channels():
    model, x = HostCNN(channels=8, seed=0), host_inputs(3)
    model.bias[[1, 4, 6]] = -50.0  # dead channels: all-zero activations, all-zero masks
    acts = model.features(x)
    assert (acts[..., [1, 4, 6]] == 0).all() and (acts.std(axis=(1, 2)) > 0).sum() == 3 * 5
    exp = limelight.explain(model, x, "scorecam", targets=[2, 0, 3], batch_size=64, **RAW)
    fed = [rows for kind, rows in model.calls if kind == "predict"]
    assert sum(fed) == 3 + 1 + 3 * 5  # the inputs, the zero input once, the live channels
    np.testing.assert_allclose(exp.values, reference_scorecam(model, x, [2, 0, 3]), rtol=1e-5, atol=1e-7)


# -- Ablation-CAM -----------------------------------------------------------------------------
def analytic_ablation(model, x, classes, value):
    """For a GAP + dense head, ablating channel c moves the score by (mean A_c - v) W[c, k]."""
    acts = model.features(x)
    means = acts.mean(axis=(1, 2))  # (n, C)
    w = model.dense[:, classes].T  # (n, C)
    score = model.head(acts)[np.arange(len(x)), classes]
    drop = (means - value[:, None]) * w
    weights = drop / score[:, None]
    return (acts * weights[:, None, None, :]).sum(-1)


def test_ablationcam_equals_the_analytic_drop_relu_layer():
    model, x = HostCNN(channels=6, seed=2), host_inputs(3)
    model.bias[2] = -50.0  # a dead channel: it is not run, its weight is 0
    acts = model.features(x)
    assert (acts.min(axis=(1, 2, 3)) == 0).all()  # the ablation value is 0
    classes = np.array([1, 0, 3])
    exp = limelight.explain(model, x, "ablationcam", targets=classes, batch_size=4, **RAW)
    np.testing.assert_allclose(exp.values, analytic_ablation(model, x, classes, np.zeros(3)), rtol=1e-4, atol=1e-6)
    live = (acts.max(axis=(1, 2)) > 0).sum()  # dead channels (all zero) are not run
    assert live < 3 * 6 and sum(r for kind, r in model.calls if kind == "outputs_with") == live


def test_ablationcam_ablation_value_without_zeros():
    # no ReLU, all activations positive: the ablation value is min(A) - 1e7, one value per
    # sample for every channel (pytorch-grad-cam's batch-dependent cumulative variant declined)
    model, x = HostCNN(channels=5, seed=4, relu=False, offset=100.0), host_inputs(2)
    acts = model.features(x)
    assert (acts.min(axis=(1, 2, 3)) > 0).all()
    value = acts.astype(np.float32).min(axis=(1, 2, 3)).astype(np.float64) - ABLATION_OFFSET
    classes = np.array([0, 2])
    results = [limelight.explain(model, x, "ablationcam", targets=classes, batch_size=b, **RAW).values for b in (1, 5)]
    expected = analytic_ablation(model, x, classes, value)
    for values in results:  # float32 scores of ~1e7-sized moves: relative accuracy
        np.testing.assert_allclose(values, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_ablationcam_zero_score_does_not_divide_by_zero():
    model, x = HostCNN(channels=4, seed=5), host_inputs(2)
    classes = np.array([1, 1])
    score = model.head(model.features(x))[:, 1]
    model.dense_bias[1] -= score[0]  # sample 0's explained score is (almost exactly) zero
    exp = limelight.explain(model, x, "ablationcam", targets=classes, **RAW)
    assert np.isfinite(exp.values).all()


# -- RISE -------------------------------------------------------------------------------------
class LinearImage(NumpyModel):
    """``outputs[:, 0] = Σ w ⊙ x`` (float64 on the host), ``outputs[:, 1] = 0``; counts rows."""

    def __init__(self, w):
        super().__init__(None)
        self.w = np.asarray(w, np.float64)
        self.rows = 0

    def predict(self, x, *, batch_size=None):
        self.rows = max(self.rows, len(x))
        f = (x.astype(np.float64) * self.w).sum(axis=(1, 2, 3))
        return np.stack([f, np.zeros_like(f)], axis=1).astype(np.float32)


def test_rise_is_seeded_and_independent_of_batch_size():
    model, x = HostCNN(), host_inputs(2, size=10)
    a = limelight.explain(model, x, "rise", n_masks=60, seed=3, batch_size=7, normalize=False)
    b = limelight.explain(model, x, "rise", n_masks=60, seed=3, batch_size=60, normalize=False)
    c = limelight.explain(model, x, "rise", n_masks=60, seed=4, batch_size=7, normalize=False)
    np.testing.assert_allclose(a.values, b.values, rtol=1e-6)
    assert np.abs(a.values - c.values).max() > 1e-3
    np.testing.assert_array_equal(a.values, limelight.explain(model, x, "rise", n_masks=60, seed=3, batch_size=7,
                                                              normalize=False).values)
    drawn = limelight.explain(model, x, "rise", n_masks=60, batch_size=7, normalize=False)
    assert isinstance(drawn.params["seed"], int)  # a None seed is drawn and recorded: reproducible
    again = limelight.explain(model, x, "rise", n_masks=60, batch_size=60, normalize=False, seed=drawn.params["seed"])
    np.testing.assert_allclose(again.values, drawn.values, rtol=1e-6)


@pytest.mark.parametrize("scores", ["probability", "logit"])
def test_rise_equals_the_reference_implementation(scores):
    """eclique/RISE's generate_masks and forward, with skimage's resize, on the same draws."""
    resize = pytest.importorskip("skimage.transform").resize
    model, x = HostCNN(), host_inputs(2, size=10)
    n_masks, s, p, seed, classes = 50, 3, 0.4, 11, np.array([2, 1])
    exp = limelight.explain(model, x, "rise", targets=classes, n_masks=n_masks, grid=s, p=p, seed=seed,
                            scores=scores, normalize=False, batch_size=16)
    grids, shifts, cell = rise_grids(n_masks, s, p, (10, 10), seed)
    up = ((s + 1) * cell[0], (s + 1) * cell[1])
    masks = np.stack([
        resize(g.astype(np.float32), up, order=1, mode="reflect", anti_aliasing=False)[dx : dx + 10, dy : dy + 10]
        for g, (dx, dy) in zip(grids, shifts, strict=True)
    ])
    expected = []
    for i, k in enumerate(classes):
        out = model.predict((x[i][None] * masks[..., None]).astype(np.float32)).astype(np.float64)
        score = (softmax(out) if scores == "probability" else out)[:, k]
        expected.append(np.tensordot(score, masks, axes=1) / (n_masks * p))
    np.testing.assert_allclose(exp.values, np.stack(expected), rtol=1e-5)
    assert exp.params["scores"] == scores and exp.params["seed"] == seed


def test_rise_matches_its_expectation_for_a_linear_score():
    """For ``f(x) = Σ w ⊙ x`` the expectation is exact: with ``U = Σ_channels w ⊙ x``,

    ``E[S] = E[f(x ⊙ M) M] / p = p · f(x) + (1 - p) · K_r U K_c``,

    since the grid cells are independent Bernoulli(p) (``E[g g'] = p² + p(1-p) δ``) and each
    mask pixel is an interpolation ``M[a, b] = Σ R[a, u] g[u, v] C[v, b]`` with rows summing
    to 1; ``K_r = E_shift[R Rᵀ]``, ``K_c = E_shift[Cᵀ C]`` over the uniform shifts."""
    resize = pytest.importorskip("skimage.transform").resize
    size, s, p, n_masks = 8, 4, 0.5, 200_000
    w = np.zeros((size, size, 1))
    w[:2, :3] = 1.0  # the score sees a corner only
    x = np.ones((1, size, size, 1), np.float32)
    model = LinearImage(w)
    exp = limelight.explain(model, x, "rise", targets=0, n_masks=n_masks, grid=s, p=p, seed=0, scores="logit",
                            normalize=False, batch_size=20_000)
    assert model.rows <= 20_000
    cell = -(-size // s)
    basis = np.eye(s)
    full = np.stack([resize(basis[u][:, None], ((s + 1) * cell, 1), order=1, mode="reflect",
                            anti_aliasing=False)[:, 0] for u in range(s)], axis=1)  # ((s+1)cell, s)
    kernel = np.mean([full[d : d + size] @ full[d : d + size].T for d in range(cell)], axis=0)
    u = (w * x[0]).sum(-1)
    expected = p * u.sum() + (1 - p) * kernel @ u @ kernel
    # each mask's term X = f(x ⊙ M) M / p has |f| ≤ F = Σ|w ⊙ x| and M² ≤ M, so
    # Var X ≤ E[X²] ≤ F² E[M] / p² = F² / p: the standard error is at most F / √(p N), and 6 of
    # them bound every pixel (the draws are seeded: this cannot flake)
    tolerance = 6 * np.abs(w * x[0]).sum() / np.sqrt(p * n_masks)
    assert expected.max() - expected.min() > 8 * tolerance  # the shape is resolved, not just the level
    np.testing.assert_allclose(exp.values[0], expected, atol=tolerance)


def test_rise_lights_the_region_the_score_depends_on():
    w = np.zeros((16, 16, 3))
    w[10:14, 2:6] = 0.1
    x = np.random.RandomState(0).rand(1, 16, 16, 3).astype(np.float32)
    exp = limelight.explain(LinearImage(w), x, "rise", targets=0, n_masks=1000, seed=0, batch_size=250)
    values = exp.values[0]
    inside = w[..., 0] > 0
    far = np.ones((16, 16), bool)  # more than a grid cell (16 / 7 -> 3 pixels) away
    far[10 - 3 : 14 + 3, max(2 - 3, 0) : 6 + 3] = False
    assert inside[np.unravel_index(values.argmax(), values.shape)]
    assert values[inside].mean() > 0.7 and values[far].mean() < 0.5 * values[inside].mean()


# -- torch and Keras twins --------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("raw", [False, True])
def test_twins_give_identical_maps(twin_cnn, method, raw):
    pytest.importorskip("torch")
    pytest.importorskip("keras")
    tm, km, t_layer, k_layer, x_nchw, x_nhwc = twin_cnn
    if method == "rise":
        options = dict(n_masks=64, seed=0, batch_size=32, **({"normalize": False} if raw else {}))
        t_options = k_options = options
    else:
        options = dict(RAW if raw else {}, batch_size=16)
        t_options, k_options = dict(options, layer=t_layer), dict(options, layer=k_layer)
    et = limelight.explain(tm, x_nchw, method, targets=[0, 1, 2, 3], **t_options)
    ek = limelight.explain(km, x_nhwc, method, targets=[0, 1, 2, 3], **k_options)
    assert et.framework == "torch" and ek.framework == "tensorflow"
    shape = (4, 8, 8) if raw and method != "rise" else (4, 16, 16)
    assert et.values.shape == ek.values.shape == shape
    scale = np.abs(et.values).max()
    assert scale > 0
    np.testing.assert_allclose(et.values, ek.values, atol=1e-5 * scale)


def test_targets_matter(twin_cnn):
    pytest.importorskip("torch")
    tm, _, layer, _, x_nchw, _ = twin_cnn
    for method, params in [("scorecam", {"layer": layer}), ("ablationcam", {"layer": layer}),
                           ("rise", {"n_masks": 32, "seed": 0})]:
        a = limelight.explain(tm, x_nchw, method, targets=0, **params)
        b = limelight.explain(tm, x_nchw, method, targets=4, **params)
        assert not np.allclose(a.values, b.values)
        # batch composition does not matter
        part = limelight.explain(tm, x_nchw[2:], method, targets=0, batch_size=3, **params)
        np.testing.assert_allclose(part.values, a.values[2:], atol=1e-5)
