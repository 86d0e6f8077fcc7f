"""SHAP on real frameworks: parity with shap, torch ≡ Keras twins, DeepSHAP completeness in
the cases shap gets wrong, unsupported operations, memory, determinism, shap's plots."""

import tracemalloc

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
shap = pytest.importorskip("shap")

import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import limelight  # noqa: E402
from limelight.core.errors import UnsupportedError  # noqa: E402
from tests.conftest import copy_weights  # noqa: E402

K = 5


def torch_cnn(pool):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), pool,
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(8 * 4 * 4, K),
    ).eval()


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    return rng.rand(2, 3, 16, 16).astype(np.float32), rng.rand(6, 3, 16, 16).astype(np.float32)


def completeness_error(exp):
    """max |Σφ − (f(x) − E f(bg))| relative to max |f(x) − E f(bg)|, per target."""
    n = len(exp)
    targets = exp.targets.reshape(n, -1)
    values = exp.values.reshape(n, -1, targets.shape[1]) if exp.targets.ndim == 2 else exp.values.reshape(n, -1, 1)
    gap = exp.outputs[np.arange(n)[:, None], targets] - exp.base_values.reshape(n, -1)
    return np.abs(values.sum(1) - gap).max() / np.abs(gap).max()


# -- parity with shap --------------------------------------------------------------------

def strided_stem_cnn():
    """A ResNet-like stem (7×7, stride 2, padding 3) reads the input: its input gradient takes
    the sub-pixel path on CPU."""
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 6, 7, stride=2, padding=3), nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(8 * 4 * 4, K),
    ).eval()


@pytest.mark.parametrize("build", [lambda: torch_cnn(nn.MaxPool2d(2)), strided_stem_cnn], ids=["cnn", "strided-stem"])
def test_shap_gradient_equals_shap_gradient_explainer(data, build):
    x, bg = data
    model = build()
    targets = [[0, 1, 2, 3, 4]] * 2
    exp = limelight.explain(model, torch.from_numpy(x), "shap-gradient", background=torch.from_numpy(bg),
                            nsamples=40, batch_size=16, seed=7, targets=targets)
    ref = shap.GradientExplainer(model, torch.from_numpy(bg), batch_size=16).shap_values(torch.from_numpy(x), nsamples=40, rseed=7)
    ours = exp.values.transpose(0, 3, 1, 2, 4)  # NHWC -> NCHW like shap's torch path
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())
    with torch.no_grad():
        np.testing.assert_allclose(exp.base_values, np.tile(model(torch.from_numpy(bg)).mean(0).numpy(), (2, 1)), rtol=1e-5)


def test_shap_gradient_with_smoothing_equals_shaps_keras_path():
    """shap's TF path draws the smoothing noise from the seeded NumPy generator too."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    rng = np.random.RandomState(1)
    x, bg = rng.rand(2, 8, 8, 3).astype(np.float32), rng.rand(5, 8, 8, 3).astype(np.float32)
    exp = limelight.explain(model, x, "shap-gradient", background=bg, nsamples=30, seed=3, local_smoothing=0.1, targets=[[0, 1, 2]] * 2)
    ref = shap.GradientExplainer(model, bg, local_smoothing=0.1).shap_values(x, nsamples=30, rseed=3)
    np.testing.assert_allclose(exp.values, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())


@pytest.mark.parametrize("pool", [nn.MaxPool2d(2), nn.AvgPool2d(2)], ids=["maxpool2", "avgpool2"])
def test_shap_deep_equals_shap_deep_explainer_where_shap_is_right(data, pool):
    x, bg = data
    model = torch_cnn(pool)
    exp = limelight.explain(model, torch.from_numpy(x), "shap-deep", background=torch.from_numpy(bg), targets=[list(range(K))] * 2)
    ref = shap.DeepExplainer(model, torch.from_numpy(bg)).shap_values(torch.from_numpy(x))
    np.testing.assert_allclose(exp.values.transpose(0, 3, 1, 2, 4), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    assert completeness_error(exp) < 1e-4


# -- DeepSHAP completeness where shap's DeepExplainer is wrong ---------------------------------

class Functional(nn.Module):
    """F.relu and torch.sigmoid called in forward (invisible to module hooks)."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 6, 3), nn.Linear(6, K)

    def forward(self, x):
        h = torch.sigmoid(F.relu(self.conv(x)) - 0.2)
        return self.fc(h.mean(dim=(2, 3)))


class Reused(nn.Module):
    """One nn.ReLU module called twice."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.act, self.fc = nn.Conv2d(3, 6, 3), nn.Conv2d(6, 6, 3), nn.ReLU(), nn.Linear(6, K)

    def forward(self, x):
        return self.fc(self.act(self.c2(self.act(self.c1(x)))).mean(dim=(2, 3)))


class Residual(nn.Module):
    """Conv-BN-ReLU(inplace) blocks with an identity addition and an overlapping max pool."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True), nn.Conv2d(8, 8, 3, padding=1))
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(8, K)

    def forward(self, x):
        h = self.stem(x)
        h = self.relu(self.body(h) + h)
        return self.fc(h.mean(dim=(2, 3)))


def randomize_batchnorm(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model.eval()


@pytest.mark.parametrize("factory", [Functional, Reused, Residual], ids=lambda f: f.__name__)
def test_shap_deep_completeness_in_the_hard_cases(data, factory):
    x, bg = data
    torch.manual_seed(1)
    model = randomize_batchnorm(factory())
    exp = limelight.explain(model, torch.from_numpy(x), "shap-deep", background=torch.from_numpy(bg), targets=[list(range(K))] * 2)
    assert completeness_error(exp) < 1e-4


def test_shap_deep_completeness_resnet18():
    import torchvision

    torch.manual_seed(0)
    model = randomize_batchnorm(torchvision.models.resnet18(weights=None, num_classes=10))
    rng = np.random.RandomState(2)
    x, bg = rng.randn(2, 3, 64, 64).astype(np.float32), rng.randn(3, 3, 64, 64).astype(np.float32)
    exp = limelight.explain(model, torch.from_numpy(x), "shap-deep", background=torch.from_numpy(bg), batch_size=2)
    assert exp.values.shape == (2, 64, 64, 3)
    assert completeness_error(exp) < 1e-4


def keras_block_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    a = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(inputs)
    b = keras.layers.Conv2D(6, 3, padding="same", activation="tanh")(inputs)
    h = keras.layers.MaxPooling2D(3, 2, padding="same")(keras.layers.Add()([a, b]))
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Conv2D(4, 1, activation="sigmoid")(h)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inputs, outputs)
    bn = model.layers[5]
    bn.set_weights([np.random.RandomState(i).uniform(0.5, 1.5, 6).astype(np.float32) for i in range(4)])
    return model


def test_shap_deep_completeness_keras_activations_pooling_add():
    model = keras_block_model()
    rng = np.random.RandomState(3)
    x, bg = rng.rand(2, 12, 12, 3).astype(np.float32), rng.rand(8, 12, 12, 3).astype(np.float32)
    exp = limelight.explain(model, x, "shap-deep", background=bg, targets=[[0, 1, 2]] * 2)
    assert completeness_error(exp) < 1e-4
    wrapped = limelight.wrap(model)
    assert wrapped.deeplift_unsupported(wrapped.canonical(x)) == []


# -- unsupported operations: an error naming them, never a silent fallback --------------------

class Gated(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.gate, self.fc = nn.Conv2d(3, 4, 3), nn.Conv2d(3, 4, 3), nn.Linear(4, K)

    def forward(self, x):
        return self.fc((self.conv(x) * torch.sigmoid(self.gate(x))).mean(dim=(2, 3)))


def test_unsupported_torch_operation_is_named(data):
    x, bg = data
    with pytest.raises(UnsupportedError, match="no rule for these operations of the model: mul of two input-dependent tensors"):
        limelight.explain(Gated(), torch.from_numpy(x), "shap-deep", background=torch.from_numpy(bg))
    auto = limelight.explain(Gated(), torch.from_numpy(x), "shap", background=torch.from_numpy(bg), nsamples=8, seed=0)
    assert auto.params["algorithm"] == "shap-gradient"
    assert "mul of two input-dependent tensors" in auto.params["reason"]


def test_unsupported_keras_operation_is_named():
    inputs = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(4, 3)(inputs)
    b = keras.layers.Conv2D(4, 3, activation="sigmoid")(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(keras.layers.Multiply()([a, b])))
    model = keras.Model(inputs, outputs)
    x = np.random.RandomState(0).rand(2, 8, 8, 3).astype(np.float32)
    with pytest.raises(UnsupportedError, match="Mul of two input-dependent tensors"):
        limelight.explain(model, x, "shap-deep", background=x)
    assert limelight.explain(model, x, "shap", background=x, nsamples=4, seed=0).params["algorithm"] == "shap-gradient"


# -- torch ≡ Keras ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def twins():
    tm = torch_cnn(nn.MaxPool2d(2))
    km = keras.Sequential([
        keras.Input((16, 16, 3)),
        keras.layers.Conv2D(6, 3, padding="same"), keras.layers.ReLU(), keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(8, 3, padding="same"), keras.layers.ReLU(), keras.layers.AveragePooling2D(2),
        keras.layers.Permute((3, 1, 2)), keras.layers.Flatten(), keras.layers.Dense(K),  # NCHW flatten order
    ])
    copy_weights([m for m in tm if isinstance(m, nn.Conv2d | nn.Linear)], [layer for layer in km.layers if layer.weights])
    return tm, km


@pytest.mark.parametrize("method, params", [
    ("shap-gradient", dict(nsamples=30, seed=11, local_smoothing=0.05)),
    ("shap-deep", {}),
])
def test_torch_and_keras_twins_agree(data, twins, method, params):
    x, bg = data
    tm, km = twins
    targets = [[0, 3], [1, 4]]
    et = limelight.explain(tm, torch.from_numpy(x), method, background=torch.from_numpy(bg), targets=targets, **params)
    ek = limelight.explain(km, x.transpose(0, 2, 3, 1), method, background=bg.transpose(0, 2, 3, 1), targets=targets, **params)
    np.testing.assert_allclose(et.outputs, ek.outputs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(et.values, ek.values, atol=1e-5 * np.abs(et.values).max())
    np.testing.assert_allclose(et.base_values, ek.base_values, rtol=1e-5, atol=1e-6)


# -- determinism, shared forward passes, memory -----------------------------------------------------

def test_same_seed_same_values_including_smoothing(data):
    x, bg = data
    model = torch_cnn(nn.MaxPool2d(2))
    run = lambda seed: limelight.explain(model, torch.from_numpy(x), "shap-gradient", background=torch.from_numpy(bg),  # noqa: E731
                                         nsamples=10, seed=seed, local_smoothing=0.2).values
    np.testing.assert_array_equal(run(5), run(5))
    assert not np.allclose(run(5), run(6))


def test_several_targets_share_forward_passes(data):
    x, bg = data
    model = torch_cnn(nn.MaxPool2d(2))
    calls = []
    handle = model[0].register_forward_hook(lambda *args: calls.append(args[1][0].shape[0]))
    limelight.explain(model, torch.from_numpy(x), "shap-gradient", background=torch.from_numpy(bg), nsamples=2, seed=0)
    try:
        for targets in ([[0]] * 2, [list(range(K))] * 2):
            calls.clear()
            limelight.explain(model, torch.from_numpy(x), "shap-gradient", background=torch.from_numpy(bg), nsamples=20, batch_size=10, seed=0, targets=targets)
            counts = len(calls)
            if len(targets[0]) == 1:
                one = counts
    finally:
        handle.remove()
    assert counts == one  # 5 targets: the same forward passes as 1


def peak_numpy_bytes(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_is_bounded_by_the_batch_not_nsamples_or_background():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    rng = np.random.RandomState(0)
    x = torch.from_numpy(rng.rand(1, 3, 96, 96).astype(np.float32))
    big_bg = torch.from_numpy(rng.rand(64, 3, 96, 96).astype(np.float32))
    small_bg = big_bg[:8]
    grad = lambda n: peak_numpy_bytes(lambda: limelight.explain(model, x, "shap-gradient", background=small_bg, nsamples=n, batch_size=8, seed=0))  # noqa: E731
    few, many = grad(16), grad(256)
    assert many < 1.3 * few, (few, many)  # all 256 samples at once would be 16x
    deep = lambda bg: peak_numpy_bytes(lambda: limelight.explain(model, x, "shap-deep", background=bg, batch_size=8))  # noqa: E731
    # the background itself is held once (8x larger); the work on it is batched
    background_bytes = big_bg.numel() * 4
    assert deep(big_bg) - background_bytes < 1.3 * deep(small_bg), (deep(small_bg), deep(big_bg))
    # on the device: the model never sees more than batch_size samples per call
    seen = []
    handle = model[0].register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    try:
        limelight.explain(model, x, "shap-gradient", background=small_bg, nsamples=256, batch_size=8, seed=0)
        assert max(seen) == 8 and len(seen) > 256 // 8
        seen.clear()
        limelight.explain(model, x, "shap-deep", background=big_bg, batch_size=8)
        assert max(seen) == 8 and len(seen) == 1 + 64 // 4 + 64 // 8  # f(x); 4 pairs (8 samples) a pass; f(bg)
    finally:
        handle.remove()


# -- shap interop ----------------------------------------------------------------------------------

@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_to_shap_and_shaps_image_plot(data, twins, framework, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, bg = data
    tm, km = twins
    if framework == "torch":
        exp = limelight.explain(tm, torch.from_numpy(x), "shap-gradient", background=torch.from_numpy(bg), nsamples=8, seed=0, targets=[[1, 2], [3, 4]])
    else:
        exp = limelight.explain(km, x.transpose(0, 2, 3, 1), "shap-gradient", background=bg.transpose(0, 2, 3, 1), nsamples=8, seed=0, targets=[[1, 2], [3, 4]])
    sexp = exp.to_shap()
    assert sexp.values.shape == (2, 16, 16, 3, 2)
    assert sexp.base_values.shape == (2, 2) and sexp.data.shape == (2, 16, 16, 3)
    assert np.asarray(sexp.output_names).tolist() == [["class 1", "class 2"], ["class 3", "class 4"]]
    shap.plots.image(sexp, show=False)
    path = tmp_path / f"{framework}.png"
    plt.savefig(path)
    plt.close("all")
    assert path.stat().st_size > 5000

    single = limelight.explain(tm, torch.from_numpy(x), "shap-deep", background=torch.from_numpy(bg)).to_shap(output_names=[f"c{i}" for i in range(K)])
    assert single.values.shape == (2, 16, 16, 3, 1) and single.base_values.shape == (2, 1)


# -- shap-partition on a real model -------------------------------------------------------------

@pytest.mark.parametrize("mask", ["blur(8,8)", 0.5])
def test_partition_completeness_is_exact_with_shaps_maskers(data, mask):
    x, _ = data
    model = torch_cnn(nn.MaxPool2d(2))
    exp = limelight.explain(model, torch.from_numpy(x), "shap-partition", mask=mask, max_evals=100, targets=[[0, 2]] * 2)
    assert exp.values.shape == (2, 16, 16, 3, 2)
    assert completeness_error(exp) < 1e-4
    # the base value is the model's output on the fully masked image
    # a fresh masker per image: shap's Image masker caches the blur by id(image)
    masked = np.stack([shap.maskers.Image(mask, (16, 16, 3))(np.zeros(16 * 16 * 3, bool), img.copy())[0][0]
                       for img in x.transpose(0, 2, 3, 1)])
    with torch.no_grad():
        ref = model(torch.from_numpy(masked.transpose(0, 3, 1, 2).astype(np.float32).copy())).numpy()[:, [0, 2]]
    np.testing.assert_allclose(exp.base_values, ref, rtol=1e-5, atol=1e-6)


def test_partition_rows_do_not_leak_into_each_other(data):
    """Regression: shap's Image masker caches its blur by id(); one masker across rows could
    blur image 0 in place of image 1. Each row must equal explaining that image alone."""
    x, _ = data
    model = torch_cnn(nn.MaxPool2d(2))
    both = limelight.explain(model, torch.from_numpy(x), "shap-partition", mask="blur(8,8)", max_evals=60, targets=1)
    alone = limelight.explain(model, torch.from_numpy(x[1:]), "shap-partition", mask="blur(8,8)", max_evals=60, targets=1)
    np.testing.assert_allclose(both.base_values[1], alone.base_values[0], rtol=1e-5)
    np.testing.assert_allclose(both.values[1], alone.values[0], rtol=1e-4, atol=1e-7)


# -- the background is checked against the inputs before any work ----------------------

class CountingModule(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


@pytest.mark.parametrize("method", ["shap-gradient", "shap-deep", "shap"])
def test_background_of_another_size_is_one_clear_error_naming_both_shapes(data, method):
    from limelight.core.errors import InputError

    x, _ = data
    model = CountingModule(torch_cnn(nn.MaxPool2d(2)))
    small = np.random.RandomState(1).rand(4, 3, 8, 8).astype(np.float32)
    with pytest.raises(InputError, match=r"background= samples have shape \(8, 8, 3\).*inputs' have shape \(16, 16, 3\)"):
        limelight.explain(model, x, method, background=small)
    assert model.calls == 0  # refused before any work


def test_background_with_other_channels_names_the_background(data):
    from limelight.core.errors import InputError

    x, _ = data
    model = CountingModule(torch_cnn(nn.MaxPool2d(2)))
    gray = np.random.RandomState(1).rand(4, 1, 16, 16).astype(np.float32)
    with pytest.raises(InputError, match=r"^background rows have shape \(4, 1, 16, 16\).*inputs.*\(2, 16, 16, 3\)"):
        limelight.explain(model, x, "shap-gradient", background=gray)
    assert model.calls <= 1  # at most the layout trial, stopped at the first convolution


@pytest.mark.parametrize("method", ["shap-gradient", "shap-deep"])
def test_nan_in_the_background_names_the_background(data, method):
    from limelight.core.errors import InputError

    x, bg = data
    bg = bg.copy()
    bg[3, 0, 2, 2] = np.nan
    with pytest.raises(InputError, match=r"^background rows contain NaN values \(samples \[3\]\)"):
        limelight.explain(torch_cnn(nn.MaxPool2d(2)), x, method, background=bg)


def test_keras_background_of_another_size_is_one_clear_error(twins):
    from limelight.core.errors import InputError

    _, keras_model = twins
    x = np.random.RandomState(0).rand(2, 16, 16, 3).astype(np.float32)
    small = np.random.RandomState(1).rand(3, 8, 8, 3).astype(np.float32)
    with pytest.raises(InputError, match=r"background= samples have shape \(8, 8, 3\)") as info:
        limelight.explain(keras_model, x, "shap-deep", background=small)
    assert len(str(info.value)) < 600  # no arrays printed in full


# -- no stale base values (issue 12, item 3) ---------------------------------------------

@pytest.mark.parametrize("method", ["shap-gradient", "shap-deep"])
def test_base_values_follow_weights_changed_in_place(data, method):
    """``predict(background)`` is not cached across calls: after the weights change in place,
    a second call with the same background gets the new base values (and, for DeepSHAP,
    completeness still holds)."""
    x, bg = data
    model = torch_cnn(nn.MaxPool2d(2))
    before = limelight.explain(model, x, method, background=bg, targets=[1, 3])
    with torch.no_grad():
        model[-1].bias += 10
        expected = model(torch.from_numpy(bg)).mean(0).numpy()[[1, 3]]
    after = limelight.explain(model, x, method, background=bg, targets=[1, 3])
    np.testing.assert_allclose(after.base_values.ravel(), expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(after.base_values, before.base_values + 10, rtol=1e-5, atol=1e-4)
    if method == "shap-deep":
        assert completeness_error(after) < 1e-4
