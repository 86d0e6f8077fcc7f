"""The Keras/TensorFlow backend: model kinds, nesting, compiled caching, untouched models."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

import limelight  # noqa: E402
from limelight.backends import tensorflow_xp  # noqa: E402
from limelight.core.cache import model_cache  # noqa: E402
from limelight.core.errors import InputError, LayerError, NotDifferentiableError, TargetError  # noqa: E402
from limelight.core.ops import resize_bilinear  # noqa: E402
from limelight.core.targets import Classes, Predicted, resolve_target  # noqa: E402
from tests.conftest import quick_params  # noqa: E402


def snapshot(model):
    layers = [model, *model._flatten_layers(include_self=False, recursive=True)]
    return {
        "weights": [w.numpy().copy() for w in model.weights],
        "trainable": [layer.trainable for layer in layers],
        "patched": [layer for layer in layers if "call" in layer.__dict__],
    }


def assert_unchanged(model, before):
    after = snapshot(model)
    assert len(after["weights"]) == len(before["weights"])
    for a, b in zip(before["weights"], after["weights"], strict=True):
        np.testing.assert_array_equal(a, b)
    assert after["trainable"] == before["trainable"]
    assert after["patched"] == before["patched"] == []


def small_head(name="head"):
    return [keras.layers.GlobalAveragePooling2D(name=f"{name}_gap"), keras.layers.Dense(4, name=f"{name}_fc")]


@pytest.fixture(scope="module")
def images():
    return np.random.RandomState(0).rand(3, 32, 32, 3).astype(np.float32)


#: Tolerance of a float32 map against the float64 reference, relative to the map's peak:
#: the channel sums cancel (random weights), so float32 rounding shows at ~1e-6 of the peak.
FLOAT32_CAM = 5e-5


def reference_gradcam(model_to_layer, layer_to_output, x, targets):
    """Grad-CAM by hand from two sub-models; raw (no ReLU/upsampling/normalization), the
    weighting in float64."""
    acts = tf.constant(model_to_layer(x))
    with tf.GradientTape() as tape:
        tape.watch(acts)
        out = layer_to_output(acts)
        score = tf.reduce_sum(tf.gather(out, targets, axis=1, batch_dims=1))
    grads = tape.gradient(score, acts).numpy().astype(np.float64)
    return np.einsum("nhwc,nc->nhw", acts.numpy().astype(np.float64), grads.mean(axis=(1, 2)))


def test_sequential_matches_hand_computed(images):
    keras.utils.set_random_seed(0)  # seeded weights: the test is deterministic
    convs = [keras.layers.Conv2D(6, 3, activation="relu", name="c1"), keras.layers.Conv2D(8, 3, activation="relu", name="c2")]
    head = small_head()
    model = keras.Sequential([keras.Input((32, 32, 3)), *convs, *head])
    exp = limelight.explain(model, images, targets=[0, 1, 3], upsample=False, normalize=False, relu=False)
    assert exp.params["layer"] == "c2"
    ref = reference_gradcam(keras.Sequential(convs), keras.Sequential(head), images, np.array([0, 1, 3]))
    np.testing.assert_allclose(exp.values, ref, rtol=1e-5, atol=FLOAT32_CAM * np.abs(ref).max())


def test_subclassed_model(images):
    keras.utils.set_random_seed(1)
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(5, 3, activation="relu", name="conv")
            self.fc = keras.layers.Dense(3, name="fc")

        def call(self, x):
            return self.fc(keras.ops.mean(self.conv(x), axis=(1, 2)))

    model = Net()
    model(images)
    wrapped = limelight.wrap(model)
    assert wrapped.layers() == ["conv", "fc"]
    exp = limelight.explain(model, images, targets=2, upsample=False, normalize=False, relu=False)
    assert exp.params["layer"] == "conv"
    ref = reference_gradcam(model.conv, lambda a: model.fc(keras.ops.mean(a, axis=(1, 2))), images, np.array([2, 2, 2]))
    np.testing.assert_allclose(exp.values, ref, rtol=1e-5, atol=FLOAT32_CAM * np.abs(ref).max())


@pytest.mark.slow
@pytest.mark.parametrize("head_kind", ["sequential", "functional"])
def test_nested_mobilenet_v2(head_kind):
    """A keras.applications base inside a classifier: the tf-keras-vis #71 'graph
    disconnected' case. Layer paths include the nesting; bare unique names resolve."""
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(64, 64, 3))
    if head_kind == "sequential":
        model = keras.Sequential([keras.Input((64, 64, 3)), base, *small_head()])
    else:
        inputs = keras.Input((64, 64, 3))
        model = keras.Model(inputs, keras.Sequential(small_head())(base(inputs)))
    x = np.random.RandomState(1).rand(2, 64, 64, 3).astype(np.float32)
    before = snapshot(model)
    exp = limelight.explain(model, x, method="gradcam")
    assert exp.params["layer"] == f"{base.name}/out_relu"
    assert exp.values.shape == (2, 64, 64) and np.isfinite(exp.values).all()
    assert 0 <= exp.values.min() and exp.values.max() <= 1
    # random weights give tiny activations (~1e-12); the map must still normalize faithfully
    signed = limelight.explain(model, x, method="gradcam", relu=False)
    np.testing.assert_allclose(signed.values.reshape(2, -1).max(axis=1), 1.0)
    inner = limelight.explain(model, x, layer="block_13_expand_relu", targets=[1, 2])
    assert inner.params["layer"] == f"{base.name}/block_13_expand_relu"
    np.testing.assert_array_equal(inner.targets, [1, 2])
    # the same activations a sub-model of the base gives (the classic approach, unnested)
    sub = keras.Model(base.input, base.get_layer("block_13_expand_relu").output)
    acts = limelight.wrap(model).activations(x, f"{base.name}/block_13_expand_relu")
    assert isinstance(acts, tf.Tensor)
    np.testing.assert_allclose(acts.numpy(), sub(x, training=False).numpy(), rtol=1e-5, atol=1e-5)
    assert_unchanged(model, before)


@pytest.mark.parametrize(
    "factory, shape, layer",
    [pytest.param("ResNet50", (64, 64, 3), "conv5_block3_out", marks=pytest.mark.slow), ("MobileNetV2", (64, 64, 3), "out_relu")],
)
def test_keras_applications_default_layer(factory, shape, layer):
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, factory)(weights=None, input_shape=shape, classes=10)
    x = np.random.RandomState(2).rand(2, *shape).astype(np.float32)
    exp = limelight.explain(model, x)
    assert exp.params["layer"] == layer
    assert limelight.wrap(model).default_layer() == layer  # from the declared input shape
    assert exp.values.shape == (2, 64, 64) and np.isfinite(exp.values).all()
    assert 0 <= exp.values.min() and exp.values.max() <= 1
    np.testing.assert_array_equal(exp.targets, model(x, training=False).numpy().argmax(1))


def gradient_functions(km, kind="gradient"):
    return {key: fn for key, fn in model_cache(km).items() if isinstance(key, tuple) and key[0] == kind}


def test_compiled_once_per_layer_signature_and_target_kind(twin_cnn):
    _, km, _, layer, _, x = twin_cnn
    model = limelight.wrap(km)
    model.gradients(x, Classes(np.zeros((4, 1)), single=True), layer)
    spec = tf.TensorSpec((None, 16, 16, 3), tf.float32)
    key = ("gradient", layer, spec, Classes(np.zeros((1, 1)), True).key(), (tf.TensorSpec((None, 1), tf.int64),))
    fn = model_cache(km)[key]
    for n in (1, 3, 4):  # other batch sizes and other classes reuse the same trace
        model.gradients(x[:n], resolve_target(np.arange(n) % 5, n), layer)
    model.gradients(x, Predicted(), layer)  # predicted classes: one more function
    limelight.explain(km, x, layer=layer)  # a fresh wrapper shares the cache
    assert fn.experimental_get_tracing_count() == 1
    traced = {k[3]: f.experimental_get_tracing_count() for k, f in gradient_functions(km).items() if k[1] == layer}
    # (the fixture is shared by the session: other tests may have compiled other target kinds
    # for this layer; each kind is traced once all the same)
    assert traced[Classes(np.zeros((1, 1)), True).key()] == 1 and traced[Predicted().key()] == 1
    assert set(traced.values()) == {1}


def test_batched_equals_unbatched_and_predict(twin_cnn):
    _, km, _, layer, _, x = twin_cnn
    model = limelight.wrap(km)
    target = resolve_target([0, 1, 2, 3], 4)
    whole = model.gradients(x, target, layer)
    parts = model.gradients(x, target, layer, batch_size=3)
    assert all(isinstance(a, tf.Tensor) for a in (*whole.__dict__.values(), *parts.__dict__.values()))
    np.testing.assert_allclose(model.predict(x, batch_size=3).numpy(), km(x).numpy(), rtol=1e-5, atol=1e-6)
    for a, b in zip(whole.__dict__.values(), parts.__dict__.values(), strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    acts = model.activations(x, layer, batch_size=3)
    np.testing.assert_allclose(acts.numpy(), whole.activations.numpy(), rtol=1e-6)
    multi = model.gradients(x, resolve_target([[0, 4], [1, 3], [2, 2], [3, 1]], 4), layer, batch_size=3)
    assert multi.gradients.shape == (4, 2, 8, 8, 16)
    np.testing.assert_allclose(multi.gradients[:, 0].numpy(), whole.gradients.numpy(), rtol=1e-5, atol=1e-7)


def split_twin(km):
    """The twin CNN cut after relu2: (lower, upper) Keras models sharing km's layers."""
    index = [layer.name for layer in km.layers].index("relu2") + 1
    return keras.Sequential(km.layers[:index]), keras.Sequential(km.layers[index:])


def hand_gradients(km, x, classes, at_layer):
    """d Σ_i out[i, classes[i]] / d (relu2 activations or the input), by hand."""
    lower, upper = split_twin(km)
    inputs = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        acts = lower(inputs, training=False)
        if at_layer:
            tape.watch(acts)
        out = upper(acts, training=False)
        score = tf.reduce_sum(tf.gather(out, tf.constant(classes), axis=1, batch_dims=1))
    return tape.gradient(score, acts if at_layer else inputs).numpy()


@pytest.mark.parametrize("layer", ["relu2", None])
def test_target_data_are_arguments_not_baked_constants(twin_cnn, layer):
    """Two targets with different classes run the same compiled function (traced once) and
    each gets its own, correct gradients."""
    _, km, _, _, _, x = twin_cnn
    model = limelight.wrap(km)
    first, second = np.array([0, 1, 2, 3]), np.array([4, 3, 0, 1])
    a = model.gradients(x, resolve_target(first, 4), layer).gradients.numpy()
    b = model.gradients(x, resolve_target(second, 4), layer).gradients.numpy()
    (fn,) = [f for k, f in gradient_functions(km).items() if k[1] == layer and k[3] == Classes(first, True).key()]
    assert fn.experimental_get_tracing_count() == 1
    for got, classes in ((a, first), (b, second)):
        want = hand_gradients(km, x, classes, layer is not None)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    assert not np.allclose(a, b)


def test_deeplift_target_data_are_arguments(twin_cnn):
    """DeepLIFT multipliers of different classes from one compiled function: each set is
    complete for its own classes (Σ m ⊙ (x - r) = f(x)[c] - f(r)[c])."""
    _, km, _, _, _, x = twin_cnn
    model = limelight.wrap(km)
    refs = np.random.RandomState(3).rand(*x.shape).astype(np.float32) * 0.5
    out_x, out_r = km(x, training=False).numpy(), km(refs, training=False).numpy()
    results = []
    for classes in (np.array([[0], [1], [2], [3]]), np.array([[4], [4], [1], [0]]), np.array([[1, 2]] * 4)):
        target = Classes(classes, single=False)
        with model.precision("highest"):
            m = model.deeplift_gradients(x, refs, target, batch_size=3)
        assert isinstance(m, tf.Tensor) and m.shape == (4, classes.shape[1], 16, 16, 3)
        m = m.numpy()
        total = np.einsum("ntxyc,nxyc->nt", m, x - refs)
        want = np.take_along_axis(out_x, classes, 1) - np.take_along_axis(out_r, classes, 1)
        np.testing.assert_allclose(total, want, rtol=1e-4, atol=1e-5)
        results.append(m)
    assert not np.allclose(results[0], results[1])
    single_column = [f for k, f in gradient_functions(km, "deeplift").items() if k[2] == Classes(np.zeros((1, 1)), False).key()]
    assert [f.experimental_get_tracing_count() for f in single_column] == [1]


def test_precision_restores_tf32_flag(twin_cnn):
    model = limelight.wrap(twin_cnn[1])
    config = tf.config.experimental
    original = config.tensor_float_32_execution_enabled()
    try:
        for initial in (True, False):
            config.enable_tensor_float_32_execution(initial)
            with model.precision("highest"):
                assert config.tensor_float_32_execution_enabled() is False
            assert config.tensor_float_32_execution_enabled() is initial
            with model.precision("default"):
                assert config.tensor_float_32_execution_enabled() is initial
            with pytest.raises(RuntimeError, match="boom"), model.precision("highest"):
                raise RuntimeError("boom")
            assert config.tensor_float_32_execution_enabled() is initial
    finally:
        config.enable_tensor_float_32_execution(original)


def test_arrays_in_and_out(twin_cnn):
    _, km, _, _, _, x = twin_cnn
    model = limelight.wrap(km)
    assert model.xp is tensorflow_xp
    from_tensor = model.canonical(tf.constant(x, tf.float64))
    assert isinstance(from_tensor, tf.Tensor) and from_tensor.dtype == tf.float32
    np.testing.assert_array_equal(model.to_numpy(from_tensor), x)
    assert model.to_numpy(x) is x
    like = tf.zeros((2,), tf.float16)
    assert model.asarray(np.ones(3), like=like).dtype == tf.float16
    assert model.asarray(np.arange(3)).dtype == tf.int64
    assert model.asarray(np.arange(3), like=like).dtype == tf.int64
    summed = model.index_add(tf.zeros((3, 2)), tf.constant([0, 2, 0]), tf.ones((3, 2)))
    np.testing.assert_array_equal(summed.numpy(), [[2, 2], [0, 0], [1, 1]])
    maps = tf.random.stateless_uniform((2, 4, 4), seed=(1, 2))
    np.testing.assert_allclose(
        model.resize(maps, (8, 8)).numpy(), resize_bilinear(maps.numpy(), (8, 8)), rtol=1e-5, atol=1e-6
    )


def test_model_unchanged_after_success_and_errors(twin_cnn):
    _, km, _, _, _, x = twin_cnn
    from tensorflow.python.eager import execute
    from tensorflow.python.framework import ops

    record_gradient = execute.record_gradient
    km.get_layer("conv1").trainable = False
    try:
        before = snapshot(km)
        for method in limelight.explainers():
            limelight.explain(km, x, method=method, **quick_params(method, x[:1]))
        assert_unchanged(km, before)
        # shap-deep's temporary gradient rules are gone again
        assert execute.record_gradient is record_gradient
        assert not [name for name in ops._gradient_registry._registry if name.startswith("limelight")]
        with pytest.raises(TargetError):
            limelight.explain(km, x, targets=5)
        with pytest.raises(LayerError):
            limelight.explain(km, x, layer="nope")
        assert_unchanged(km, before)
    finally:
        km.get_layer("conv1").trainable = True


def test_shared_layer_is_rejected_and_unpatched():
    shared = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="shared")
    inputs = keras.Input((8, 8, 3))
    out = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(shared(shared(keras.layers.Conv2D(4, 1)(inputs)))))
    model = keras.Model(inputs, out)
    with pytest.raises(LayerError, match="runs 2 times per forward"):
        limelight.explain(model, np.ones((1, 8, 8, 3), np.float32), layer="shared")
    assert "call" not in shared.__dict__


class TestBadInput:
    @pytest.fixture
    def km(self, twin_cnn):
        return twin_cnn[1]

    def test_unknown_layer_lists_close_names(self, km):
        with pytest.raises(LayerError, match=r"unknown layer 'relu3'.*Did you mean: 'relu2', 'relu1'\?"):
            limelight.explain(km, np.ones((1, 16, 16, 3)), layer="relu3")

    def test_non_spatial_layer(self, km):
        with pytest.raises(LayerError, match=r"layer 'fc'.*not spatial.*default 'relu2'"):
            limelight.explain(km, np.ones((1, 16, 16, 3)), layer="fc")

    def test_channels_first_input(self, km):
        with pytest.raises(InputError, match=r"look channels-first.*transpose\(0, 2, 3, 1\)"):
            limelight.explain(km, np.ones((1, 3, 16, 16)))

    def test_missing_batch_axis(self, km):
        with pytest.raises(InputError, match=r"x\[None\]"):
            limelight.explain(km, np.ones((16, 16, 3)))

    def test_nan(self, km):
        x = np.ones((2, 16, 16, 3))
        x[0, 1, 1, 1] = np.nan
        with pytest.raises(InputError, match="NaN"):
            limelight.explain(km, x)

    def test_empty_batch(self, km):
        with pytest.raises(InputError, match="empty batch"):
            limelight.explain(km, np.ones((0, 16, 16, 3)))

    def test_class_out_of_range(self, km):
        with pytest.raises(TargetError, match=r"target class 7 .*has 5 outputs"):
            limelight.explain(km, np.ones((2, 16, 16, 3)), targets=[7, 0])

    def test_layer_that_never_runs(self):
        class Net(keras.Model):
            def __init__(self):
                super().__init__()
                self.conv = keras.layers.Conv2D(4, 3, name="conv")
                self.unused = keras.layers.Conv2D(4, 3, name="unused")
                self.fc = keras.layers.Dense(2, name="fc")

            def call(self, x):
                return self.fc(keras.ops.mean(self.conv(x), axis=(1, 2)))

        with pytest.raises(LayerError, match="layer 'unused' did not run"):
            limelight.explain(Net(), np.ones((1, 8, 8, 3)), layer="unused")

    def test_stop_gradient_is_not_differentiable(self):
        inputs = keras.Input((8, 8, 3))
        conv = keras.layers.Conv2D(4, 3, name="conv")(inputs)
        stopped = keras.layers.Lambda(lambda t: keras.ops.stop_gradient(t))(conv)
        model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(stopped)))
        with pytest.raises(NotDifferentiableError, match="layer 'conv'"):
            limelight.explain(model, np.ones((1, 8, 8, 3)), layer="conv")


# -- the Array API namespace (limelight.backends.tensorflow_xp) -------------------------------
RNG = np.random.RandomState(0)
A = RNG.randn(3, 4, 5)
B = RNG.randn(3, 4, 5)
POS = RNG.rand(3, 4, 5) + 0.1
TIES = RNG.randint(0, 3, (3, 4, 5)).astype(np.float64)
IDX = RNG.randint(-4, 4, (3, 2, 5)).astype(np.int64)
IDX_LAST = RNG.randint(-5, 5, (3, 4, 3)).astype(np.int64)
VEC = RNG.randn(5)
MAT = RNG.randn(3, 5, 4)
SQUARE = RNG.randn(3, 4, 4) + 4 * np.eye(4)
SPD = SQUARE @ np.swapaxes(SQUARE, -1, -2)
MASK = RNG.rand(3, 4, 5) > 0.5
INTS = RNG.randint(-5, 6, (4, 6)).astype(np.int64)
SORTED = np.sort(RNG.randn(7))

#: name -> (fn(xp, *arrays), arrays): each runs on tensorflow_xp and on array_api_compat.numpy.
CASES = {
    "sum axis tuple": (lambda xp, a: xp.sum(a, axis=(0, 2)), (A,)),
    "sum keepdims": (lambda xp, a: xp.sum(a, axis=1, keepdims=True), (A,)),
    "sum all": (lambda xp, a: xp.sum(a), (A,)),
    "sum of ints": (lambda xp, a: xp.sum(a, axis=0), (INTS,)),
    "sum of bools": (lambda xp, a: xp.sum(a, axis=(1, 2)), (MASK,)),
    "mean": (lambda xp, a: xp.mean(a, axis=(1, 2), keepdims=True), (A,)),
    "max": (lambda xp, a: xp.max(a, axis=-1), (A,)),
    "min keepdims": (lambda xp, a: xp.min(a, axis=(0, 1), keepdims=True), (A,)),
    "prod": (lambda xp, a: xp.prod(a, axis=2), (POS,)),
    "var": (lambda xp, a: xp.var(a, axis=(0, 2), correction=1), (A,)),
    "std": (lambda xp, a: xp.std(a, axis=1), (A,)),
    "argmax ties": (lambda xp, a: xp.argmax(a, axis=2), (TIES,)),
    "argmax keepdims": (lambda xp, a: xp.argmax(a, axis=1, keepdims=True), (A,)),
    "argmax flat": (lambda xp, a: xp.argmax(a), (A,)),
    "argmin": (lambda xp, a: xp.argmin(a, axis=0, keepdims=True), (TIES,)),
    "argsort": (lambda xp, a: xp.argsort(a, axis=-1), (TIES,)),
    "argsort descending": (lambda xp, a: xp.argsort(a, axis=1, descending=True), (TIES,)),
    "sort": (lambda xp, a: xp.sort(a, axis=0), (A,)),
    "sort descending": (lambda xp, a: xp.sort(a, axis=-1, descending=True), (A,)),
    "cumulative_sum": (lambda xp, a: xp.cumulative_sum(a, axis=1), (A,)),
    "cumulative_sum initial": (lambda xp, a: xp.cumulative_sum(a, axis=-1, include_initial=True), (A,)),
    "cumulative_prod": (lambda xp, a: xp.cumulative_prod(a, axis=0), (POS,)),
    "diff": (lambda xp, a: xp.diff(a, axis=1, n=2), (A,)),
    "where": (lambda xp, c, a, b: xp.where(c, a, b), (MASK, A, B)),
    "where scalar": (lambda xp, c, a: xp.where(c, a, 0.0), (MASK, A)),
    "clip": (lambda xp, a: xp.clip(a, min=-0.5, max=0.5), (A,)),
    "clip min": (lambda xp, a: xp.clip(a, min=0.0), (A,)),
    "clip array": (lambda xp, a, b: xp.clip(a, max=b), (A, B)),
    "maximum": (lambda xp, a, b: xp.maximum(a, b), (A, B)),
    "minimum scalar": (lambda xp, a: xp.minimum(a, 0.25), (A,)),
    "abs": (lambda xp, a: xp.abs(a), (A,)),
    "sqrt": (lambda xp, a: xp.sqrt(a), (POS,)),
    "exp": (lambda xp, a: xp.exp(a), (A,)),
    "log": (lambda xp, a: xp.log(a), (POS,)),
    "log1p": (lambda xp, a: xp.log1p(a), (POS,)),
    "square": (lambda xp, a: xp.square(a), (A,)),
    "sign": (lambda xp, a: xp.sign(a), (A,)),
    "tanh": (lambda xp, a: xp.tanh(a), (A,)),
    "floor ceil round trunc": (lambda xp, a: xp.stack([xp.floor(a), xp.ceil(a), xp.round(a), xp.trunc(a)]), (3 * A,)),
    "isfinite": (lambda xp, a: xp.isfinite(xp.log(a)), (A,)),
    "isnan": (lambda xp, a: xp.isnan(xp.sqrt(a)), (A,)),
    "all": (lambda xp, c: xp.all(c, axis=1), (MASK,)),
    "any keepdims": (lambda xp, c: xp.any(c, axis=(0, 2), keepdims=True), (MASK,)),
    "count_nonzero": (lambda xp, c: xp.count_nonzero(c, axis=0), (MASK,)),
    "divide": (lambda xp, a, b: xp.divide(a, b), (A, POS)),
    "floor_divide remainder": (lambda xp, a: xp.stack([xp.floor_divide(a, 3), xp.remainder(a, 3)]), (INTS,)),
    "pow": (lambda xp, a, b: xp.pow(a, b), (POS, B)),
    "logaddexp": (lambda xp, a, b: xp.logaddexp(a, b), (A, B)),
    "comparisons": (lambda xp, a, b: xp.stack([xp.less(a, b), xp.greater_equal(a, b), xp.equal(a, a)]), (A, B)),
    "logical": (lambda xp, c, d: xp.stack([xp.logical_and(c, d), xp.logical_or(c, d), xp.logical_not(c)]), (MASK, MASK.T.T[::-1])),
    "reshape": (lambda xp, a: xp.reshape(a, (5, -1)), (A,)),
    "permute_dims": (lambda xp, a: xp.permute_dims(a, (2, 0, 1)), (A,)),
    "matrix_transpose": (lambda xp, a: xp.matrix_transpose(a), (A,)),
    "moveaxis": (lambda xp, a: xp.moveaxis(a, 0, -1), (A,)),
    "expand_dims": (lambda xp, a: xp.expand_dims(a, axis=1), (A,)),
    "expand_dims negative": (lambda xp, a: xp.expand_dims(a, axis=-1), (A,)),
    "squeeze": (lambda xp, a: xp.squeeze(a[:, :1, :], axis=1), (A,)),
    "concat": (lambda xp, a, b: xp.concat([a, b], axis=1), (A, B)),
    "concat flat": (lambda xp, a, b: xp.concat([a, b], axis=None), (A, B)),
    "stack": (lambda xp, a, b: xp.stack([a, b], axis=-1), (A, B)),
    "flip": (lambda xp, a: xp.flip(a, axis=(0, 2)), (A,)),
    "roll": (lambda xp, a: xp.roll(a, 2, axis=1), (A,)),
    "roll flat": (lambda xp, a: xp.roll(a, -3), (A,)),
    "broadcast_to": (lambda xp, a: xp.broadcast_to(a[:, :1, :], (3, 4, 5)), (A,)),
    "tile": (lambda xp, a: xp.tile(a, (2, 1, 3)), (A,)),
    "tile more axes": (lambda xp, a: xp.tile(a, (2, 1, 1, 2)), (A,)),
    "repeat": (lambda xp, a: xp.repeat(a, 2, axis=1), (A,)),
    "repeat flat": (lambda xp, a: xp.repeat(a, 3), (VEC,)),
    "take": (lambda xp, a, i: xp.take(a, i[0, 0, :], axis=1), (A, IDX)),
    "take 1-D": (lambda xp, a, i: xp.take(a, i[0, 0, :]), (VEC, IDX)),
    "take_along_axis": (lambda xp, a, i: xp.take_along_axis(a, i, axis=1), (A, IDX)),
    "take_along_axis last": (lambda xp, a, i: xp.take_along_axis(a, i, axis=-1), (A, IDX_LAST)),
    "take_along_axis scores": (lambda xp, a, i: xp.take_along_axis(a[:, 0, :], i[:, 0, :2], axis=1), (A, IDX_LAST)),
    "take_along_axis broadcast": (lambda xp, a, i: xp.take_along_axis(a, i[:1], axis=1), (A, IDX)),
    "take_along_axis first": (lambda xp, a, i: xp.take_along_axis(a, i[:2, :, :1] % 3, axis=0), (A, IDX_LAST)),
    "matmul": (lambda xp, a, m: xp.matmul(a, m), (A, MAT)),
    "matmul broadcast": (lambda xp, a, m: xp.matmul(a[0], m), (A, MAT)),
    "matmul vector": (lambda xp, a, v: xp.matmul(a, v), (A, VEC)),
    "matmul vector left": (lambda xp, v, m: xp.matmul(v, m), (VEC, MAT)),
    "vecdot": (lambda xp, a, b: xp.vecdot(a, b, axis=1), (A, B)),
    "tensordot": (lambda xp, a, m: xp.tensordot(a, m, axes=([0, 2], [0, 1])), (A, MAT)),
    "linalg.svdvals": (lambda xp, m: xp.linalg.svdvals(m), (MAT,)),
    "linalg.vector_norm": (lambda xp, a: xp.linalg.vector_norm(a, axis=(1, 2)), (A,)),
    "linalg.vector_norm ord 1": (lambda xp, a: xp.linalg.vector_norm(a, axis=-1, ord=1, keepdims=True), (A,)),
    "linalg.vector_norm inf": (lambda xp, a: xp.linalg.vector_norm(a, ord=np.inf), (A,)),
    "linalg.inv": (lambda xp, s: xp.linalg.inv(s), (SQUARE,)),
    "linalg.det": (lambda xp, s: xp.linalg.det(s), (SQUARE,)),
    "linalg.solve": (lambda xp, s, m: xp.linalg.solve(s, m[:, :4, :]), (SQUARE, MAT)),
    "linalg.eigh values": (lambda xp, s: xp.linalg.eigh(s).eigenvalues, (SPD,)),
    "linalg.cholesky": (lambda xp, s: xp.linalg.cholesky(s), (SPD,)),
    "linalg.diagonal": (lambda xp, s: xp.linalg.diagonal(s, offset=1), (SQUARE,)),
    "linalg.trace": (lambda xp, s: xp.linalg.trace(s), (SQUARE,)),
    "outer": (lambda xp, v: xp.linalg.outer(v, v), (VEC,)),
    "tril triu": (lambda xp, s: xp.stack([xp.tril(s, k=-1), xp.triu(s, k=1)]), (SQUARE,)),
    "searchsorted": (lambda xp, s, v: xp.searchsorted(s, v, side="right"), (SORTED, VEC)),
    "zeros_like ones_like full_like": (lambda xp, a: xp.stack([xp.zeros_like(a), xp.ones_like(a), xp.full_like(a, 2.5)]), (A,)),
    "astype": (lambda xp, a: xp.astype(xp.astype(a, xp.float16), xp.float64), (A,)),
    "astype int": (lambda xp, a: xp.astype(a * 10, xp.int32), (A,)),
    "float32 arithmetic": (lambda xp, a: xp.sum(xp.astype(a, xp.float32) ** 2, axis=0), (A,)),
    "promotion": (lambda xp, a, b: xp.add(xp.astype(a, xp.float32), b), (A, B)),
}


def tf_xp_run(fn, arrays, compiled):
    """``fn`` on tensorflow_xp, eagerly or inside a tf.function with every axis unknown."""
    tensors = [tf.constant(a) for a in arrays]
    if not compiled:
        return fn(tensorflow_xp, *tensors)
    signature = [tf.TensorSpec([None] * a.ndim, tf.as_dtype(a.dtype)) for a in arrays]
    return tf.function(lambda *t: fn(tensorflow_xp, *t), input_signature=signature, autograph=False)(*tensors)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "tf.function"])
@pytest.mark.parametrize("name", list(CASES))
def test_namespace_matches_numpy(name, compiled):
    import array_api_compat.numpy as np_xp

    fn, arrays = CASES[name]
    with np.errstate(all="ignore"):
        want = np.asarray(fn(np_xp, *arrays))
    got = tf_xp_run(fn, arrays, compiled)
    assert isinstance(got, tf.Tensor)
    got = got.numpy()
    assert got.shape == want.shape
    assert got.dtype.kind == want.dtype.kind or {got.dtype.kind, want.dtype.kind} <= {"i", "u"}, (got.dtype, want.dtype)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 if want.dtype != np.float16 else 1e-3)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "tf.function"])
@pytest.mark.parametrize("full_matrices", [False, True])
def test_namespace_svd(compiled, full_matrices):
    """U, S, Vh as the standard orders them: U diag(S) Vh rebuilds x; S is NumPy's."""
    _, s_np, _ = np.linalg.svd(MAT, full_matrices=False)
    u, s, vh = tf_xp_run(lambda xp, m: tuple(xp.linalg.svd(m, full_matrices=full_matrices)), (MAT,), compiled)
    assert u.shape == ((3, 5, 5) if full_matrices else (3, 5, 4)) and vh.shape == (3, 4, 4)
    np.testing.assert_allclose(s.numpy(), s_np, rtol=1e-6, atol=1e-6)
    k = s.shape[-1]
    rebuilt = (u.numpy()[..., :k] * s.numpy()[:, None, :]) @ vh.numpy()
    np.testing.assert_allclose(rebuilt, MAT, rtol=1e-6, atol=1e-6)
    result = tensorflow_xp.linalg.svd(tf.constant(MAT[0]))
    assert result.Vh.shape == (4, 4) and result.S.shape == (4,)


def test_namespace_creation_and_dtypes():
    xp = tensorflow_xp
    assert xp.asarray([1.0, 2.0]).dtype == xp.float32 and xp.asarray([1, 2]).dtype == xp.int64
    assert xp.asarray(np.ones(2)).dtype == xp.float64 and xp.asarray([True]).dtype == xp.bool
    assert xp.asarray(np.ones(2), dtype=xp.float16).dtype == xp.float16
    x = tf.constant(A)
    assert xp.astype(x, xp.float64, copy=False) is x
    assert xp.astype(x, xp.float32).dtype == tf.float32
    np.testing.assert_array_equal(xp.zeros((2, 3)).numpy(), np.zeros((2, 3)))
    np.testing.assert_array_equal(xp.ones(4, dtype=xp.int32).numpy(), np.ones(4))
    assert xp.full((2,), 3).dtype == xp.int64 and xp.full((2,), 3.0).dtype == xp.float32
    assert xp.full((2,), True).dtype == xp.bool
    np.testing.assert_array_equal(xp.arange(5).numpy(), np.arange(5))
    assert xp.arange(5).dtype == xp.int64
    np.testing.assert_allclose(xp.arange(1.0, 2.0, 0.25).numpy(), np.arange(1.0, 2.0, 0.25))
    np.testing.assert_allclose(xp.linspace(0, 1, 5).numpy(), np.linspace(0, 1, 5), atol=1e-7)
    np.testing.assert_allclose(xp.linspace(0, 1, 4, endpoint=False).numpy(), np.linspace(0, 1, 4, endpoint=False))
    np.testing.assert_array_equal(xp.eye(3, 4, k=1).numpy(), np.eye(3, 4, k=1))
    assert xp.result_type(xp.float32, xp.float64) == xp.float64
    assert xp.result_type(tf.constant(1, tf.int32), xp.int64) == xp.int64
    assert xp.result_type(xp.int64, xp.float32) == xp.float32
    assert xp.result_type(tf.zeros(1, tf.float16), 1.0) == xp.float16
    assert xp.finfo(xp.float32).eps == np.finfo(np.float32).eps and xp.finfo(x).dtype == xp.float64
    assert xp.iinfo(xp.int32).max == 2**31 - 1
    assert xp.isdtype(xp.float32, "real floating") and xp.isdtype(xp.int64, ("bool", "integral"))
    assert not xp.isdtype(xp.bool, "numeric")
    rows, cols = xp.nonzero(tf.constant([[0, 1], [2, 0]]))
    np.testing.assert_array_equal(rows.numpy(), [0, 1])
    np.testing.assert_array_equal(cols.numpy(), [1, 0])
    grid = xp.meshgrid(tf.range(3), tf.range(2), indexing="ij")
    np.testing.assert_array_equal(grid[0].numpy(), np.meshgrid(np.arange(3), np.arange(2), indexing="ij")[0])
    assert len(xp.unstack(x, axis=1)) == 4
    assert xp.broadcast_arrays(x, tf.constant(1.0, tf.float64))[1].shape == x.shape


class NoInputShape(keras.Model):
    """No declared input shape: wrong-rank inputs reach the model's call."""

    def __init__(self, fail=None):
        super().__init__()
        self.conv = keras.layers.Conv2D(4, 3, name="conv")
        self.gap = keras.layers.GlobalAveragePooling2D()
        self.fc = keras.layers.Dense(3)
        self.fail = fail

    def call(self, x, training=False):
        if self.fail is not None:
            raise self.fail
        return self.fc(self.gap(self.conv(x)))


def test_inputs_of_the_wrong_rank_give_an_input_error_naming_shape_and_layout():
    model = NoInputShape()
    model(np.zeros((1, 8, 8, 3), np.float32))
    flat = np.random.RandomState(0).rand(2, 16).astype(np.float32)
    for kwargs in ({}, {"layer": "conv"}, {"method": "shap-gradient", "background": flat}):
        with pytest.raises(InputError, match=r"shape \(N, 16\).*\(N, H, W, C\).*ndim") as info:
            limelight.explain(model, flat, **kwargs)
        assert isinstance(info.value.__cause__, ValueError)  # chained, also out of tf.function
        assert "Arguments received" not in str(info.value)


def test_other_errors_of_the_models_call_are_not_wrapped():
    model = NoInputShape()
    model(np.zeros((1, 8, 8, 3), np.float32))
    x = np.random.RandomState(0).rand(2, 8, 8, 3).astype(np.float32)
    model.fail = ValueError("boom")  # Keras appends the arguments (with their shapes) to it
    with pytest.raises(ValueError, match="boom") as info:
        limelight.explain(model, x, layer="conv")
    assert not isinstance(info.value, InputError)
    assert [layer.name for layer in model._flatten_layers() if "call" in layer.__dict__] == []


def test_layer_as_a_list_is_a_short_error(twin_cnn):
    _, km, _, _, _, x = twin_cnn
    for layers in ([km.get_layer("relu2")], ("relu1", "relu2")):
        with pytest.raises(LayerError, match="one layer") as info:
            limelight.explain(km, x, layer=layers)
        assert len(str(info.value)) < 200


def test_batch_size_accepts_any_integral_number(twin_cnn):
    _, km, _, layer, _, x = twin_cnn
    expected = limelight.explain(km, x, layer=layer).values
    for size in (np.int64(1), np.int32(3)):
        got = limelight.explain(km, x, layer=layer, batch_size=size)
        np.testing.assert_allclose(got.values, expected, rtol=1e-5, atol=1e-6)
