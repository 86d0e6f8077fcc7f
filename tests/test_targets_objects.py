"""limelight.targets: Class, Region, Function, Similarity — analytic answers on linear models,
torch-vs-Keras twins, and their errors."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import limelight  # noqa: E402
from limelight import targets as T  # noqa: E402
from limelight.core.errors import TargetError  # noqa: E402
from limelight.core.targets import Classes, resolve_target  # noqa: E402

D, K = 6, 3


@pytest.fixture(scope="module")
def linear():
    """``y = W x + b`` as torch.nn.Linear(6, 3), seeded, and a batch of 4 inputs."""
    torch.manual_seed(0)
    model = torch.nn.Linear(D, K).eval()
    x = torch.randn(4, D, generator=torch.Generator().manual_seed(1))
    return model, x, model.weight.detach().numpy().astype(np.float64), model.bias.detach().numpy()


def _expected_gradients(model, x, target):
    """shap-gradient with a zero background: on a linear score, exactly x ⊙ ∇score."""
    return limelight.explain(model, x, "shap-gradient", background=torch.zeros(1, D), nsamples=3, seed=0, targets=target)


def test_class_is_the_same_as_an_int(linear):
    model, x, w, _ = linear
    a = _expected_gradients(model, x, T.Class(2))
    b = _expected_gradients(model, x, 2)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.targets, [2, 2, 2, 2])
    per_sample = _expected_gradients(model, x, T.Class([0, 1, 2, 0]))
    np.testing.assert_allclose(per_sample.values, x.numpy() * w[[0, 1, 2, 0]], rtol=1e-5, atol=1e-6)


def test_regression_function_gives_the_first_row_of_w(linear):
    model, x, w, b = linear
    exp = _expected_gradients(model, x, T.Function(lambda xp, out: out[:, 0]))
    np.testing.assert_allclose(exp.values, x.numpy() * w[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(exp.targets, [-1] * 4)  # a score, not a class
    np.testing.assert_allclose(exp.base_values, np.full(4, b[0]), rtol=1e-6)  # f(background = 0)
    # completeness: values sum to f(x) - f(0)
    np.testing.assert_allclose(exp.values.sum(1), (x.numpy() @ w[0]), rtol=1e-5, atol=1e-6)
    pytest.importorskip("shap")
    assert exp.to_shap(output_names=["a", "b", "c"]).output_names.tolist() == [["score"]] * 4  # not "c"


def test_binary_margin_function_gives_the_difference_of_rows(linear):
    model, x, w, b = linear
    exp = _expected_gradients(model, x, T.Function(lambda xp, out: out[:, 0] - out[:, 1]))
    np.testing.assert_allclose(exp.values, x.numpy() * (w[0] - w[1]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(exp.base_values, np.full(4, b[0] - b[1]), rtol=1e-5)


def test_function_with_several_columns(linear):
    model, x, w, _ = linear
    fn = T.Function(lambda xp, out: xp.stack([out[:, 0], out[:, 2] * 2.0], axis=1), columns=2)
    exp = _expected_gradients(model, x, fn)
    assert exp.values.shape == (4, D, 2) and exp.targets.shape == (4, 2)
    np.testing.assert_allclose(exp.values[..., 0], x.numpy() * w[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(exp.values[..., 1], x.numpy() * 2 * w[2], rtol=1e-5, atol=1e-6)
    with pytest.raises(TargetError, match="columns"):
        _expected_gradients(model, x, T.Function(lambda xp, out: out[:, :2]))


def test_similarity_gradient_is_the_closed_form(linear):
    model, x, w, b = linear
    e = np.array([0.5, -1.0, 2.0], np.float32)
    wrapped = limelight.wrap(model)
    xt = wrapped.canonical(x)
    grads = wrapped.to_numpy(wrapped.gradients(xt, resolve_target(T.Similarity(e), 4)).gradients)
    y = x.numpy().astype(np.float64) @ w.T + b
    ny, ne = np.linalg.norm(y, axis=1, keepdims=True), np.linalg.norm(e)
    # d/dy cos(y, e) = e / (|y||e|) - (y·e) y / (|y|^3 |e|); d/dx = that @ W
    dcos = e / (ny * ne) - (y @ e)[:, None] * y / (ny**3 * ne)
    np.testing.assert_allclose(grads, dcos @ w, rtol=1e-4, atol=1e-6)
    # and the score itself, per-sample references included
    refs = np.random.RandomState(0).randn(4, K).astype(np.float32)
    out = wrapped.predict(xt)
    scores = T.Similarity(refs).for_samples(4).scores(wrapped.xp, out, torch.from_numpy(refs))
    cos = (y * refs).sum(1) / (ny[:, 0] * np.linalg.norm(refs, axis=1))
    np.testing.assert_allclose(scores.numpy()[:, 0], cos, rtol=1e-5)


def test_similarity_takes_tensors_and_checks_the_size(linear):
    model, x, _, _ = linear
    e = torch.tensor([1.0, 0.0, 0.0], requires_grad=True)  # any backend's tensor
    exp = _expected_gradients(model, x, T.Similarity(e))
    assert exp.values.shape == (4, D) and np.isfinite(exp.values).all()
    with pytest.raises(TargetError, match="embedding has 2 values"):
        _expected_gradients(model, x, T.Similarity(np.ones(2)))
    with pytest.raises(TargetError, match="sample"):
        _expected_gradients(model, x, T.Similarity(np.ones((3, K))))  # 3 references, 4 samples


def test_nonlinear_targets_are_refused_by_shap_deep_and_auto_picks_gradients(linear):
    model, x, w, _ = linear
    with pytest.raises(TargetError, match="linear"):
        limelight.explain(model, x, "shap-deep", background=torch.zeros(1, D), targets=T.Similarity(np.ones(K)))
    auto = limelight.explain(model, x, "shap", background=torch.zeros(1, D), targets=T.Similarity(np.ones(K)))
    assert auto.params["algorithm"] == "shap-gradient"
    # a Function declared linear runs DeepLIFT, whose answer on a linear model is exact
    deep = limelight.explain(
        model, x, "shap-deep", background=torch.zeros(1, D),
        targets=T.Function(lambda xp, out: out[:, 0] - out[:, 1], linear=True),
    )
    np.testing.assert_allclose(deep.values, x.numpy() * (w[0] - w[1]), rtol=1e-5, atol=1e-6)


def test_region_scores_sum_the_class_over_the_mask():
    out = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)  # (N, H, W, K)
    mask = np.zeros((3, 4), np.float32)
    mask[1:, 2:] = 1
    target = resolve_target(T.Region(4, mask), 2)
    import array_api_compat.torch as xp

    scores = target.scores(xp, out, *[torch.from_numpy(np.ascontiguousarray(d)) for d in target.data()])
    np.testing.assert_allclose(scores.numpy()[:, 0], (out.numpy()[..., 4] * mask).sum((1, 2)))
    per_sample = np.stack([mask, 1 - mask])
    target = resolve_target(T.Region(-1, per_sample), 2).check(5)  # -1: the last class
    assert target.class_ == 4
    scores = target.scores(xp, out, torch.from_numpy(per_sample))
    np.testing.assert_allclose(scores.numpy()[:, 0], (out.numpy()[..., 4] * per_sample).sum((1, 2)))
    with pytest.raises(TargetError, match="out of range"):
        T.Region(5, mask).check(5)
    with pytest.raises(TargetError, match="mask"):
        resolve_target(T.Region(0, np.ones((2, 2))), 2).scores(xp, out, torch.ones(2, 2, 2))
    with pytest.raises(TargetError, match="one score per class"):
        resolve_target(T.Region(0, np.ones((2, 2))), 2).scores(xp, out[:, 0, 0], torch.ones(2, 2, 2))


def test_class_targets_on_dense_outputs_point_to_region():
    import array_api_compat.torch as xp

    out = torch.zeros(2, 3, 4, 5)
    with pytest.raises(TargetError, match=r"targets.Region\(class_, mask\)"):
        resolve_target(None, 2).classes(xp, out)
    with pytest.raises(TargetError, match="Function"):
        resolve_target(3, 2).scores(xp, out, torch.zeros(2, 1, dtype=torch.int64))


def test_target_objects_are_targets_and_slice():
    assert all(issubclass(c, T.Target) for c in (T.Class, T.Region, T.Function, T.Similarity))
    region = resolve_target(T.Region(1, np.ones((5, 2, 2))), 5)
    assert region[1:3].data()[0].shape == (2, 2, 2)
    assert isinstance(resolve_target(T.Class([1, 2]), 2), Classes)
    fn = T.Function(lambda xp, out: out[:, 0])
    assert fn.key() != T.Function(lambda xp, out: out[:, 1]).key()
    assert T.Similarity(np.ones(3)).key() != T.Similarity(np.ones(4)).key()
    with pytest.raises(TargetError):
        T.Function(3)
    with pytest.raises(TargetError):
        T.Region(1.5, np.ones((2, 2)))


# -- torch vs Keras twins -------------------------------------------------------------------


def _twin_targets():
    e = np.random.RandomState(3).randn(5).astype(np.float32)
    return {
        "function": T.Function(lambda xp, out: out[:, 0] - 0.5 * out[:, 3]),
        "similarity": T.Similarity(e),
        "similarity per sample": T.Similarity(np.random.RandomState(4).randn(4, 5).astype(np.float32)),
    }


@pytest.mark.parametrize("name", list(_twin_targets()))
def test_twins_agree_on_function_and_similarity_targets(twin_cnn, name):
    tm, km, t_layer, k_layer, x_nchw, x_nhwc = twin_cnn
    target = _twin_targets()[name]
    et = limelight.explain(tm, x_nchw, "gradcam", targets=target, layer=t_layer, relu=False, normalize=False)
    ek = limelight.explain(km, x_nhwc, "gradcam", targets=target, layer=k_layer, relu=False, normalize=False)
    scale = np.abs(et.values).max()
    assert scale > 0
    np.testing.assert_allclose(et.values, ek.values, atol=1e-5 * scale)
    np.testing.assert_array_equal(et.targets, [-1] * 4)
    bg_t, bg_k = x_nchw.flip(0), x_nhwc[::-1].copy()
    st = limelight.explain(tm, x_nchw, "shap-gradient", background=bg_t, nsamples=8, seed=0, targets=target)
    sk = limelight.explain(km, x_nhwc, "shap-gradient", background=bg_k, nsamples=8, seed=0, targets=target)
    scale = np.abs(st.values).max()
    assert scale > 0
    np.testing.assert_allclose(st.values, sk.values, atol=1e-5 * scale)
    np.testing.assert_allclose(st.base_values, sk.base_values, rtol=1e-5, atol=1e-6)
