"""The Keras/TensorFlow backend: model kinds, nesting, compiled caching, untouched models."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

import limelight  # noqa: E402
from tests.conftest import quick_params  # noqa: E402
from limelight.core.cache import model_cache  # noqa: E402
from limelight.core.errors import InputError, LayerError, NotDifferentiableError, TargetError  # noqa: E402


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


def reference_gradcam(model_to_layer, layer_to_output, x, targets):
    """Grad-CAM by hand from two sub-models; raw (no ReLU/upsampling/normalization)."""
    acts = tf.constant(model_to_layer(x))
    with tf.GradientTape() as tape:
        tape.watch(acts)
        out = layer_to_output(acts)
        score = tf.reduce_sum(tf.gather(out, targets, axis=1, batch_dims=1))
    grads = tape.gradient(score, acts).numpy()
    return np.einsum("nhwc,nc->nhw", acts.numpy(), grads.mean(axis=(1, 2)))


def test_sequential_matches_hand_computed(images):
    convs = [keras.layers.Conv2D(6, 3, activation="relu", name="c1"), keras.layers.Conv2D(8, 3, activation="relu", name="c2")]
    head = small_head()
    model = keras.Sequential([keras.Input((32, 32, 3)), *convs, *head])
    exp = limelight.explain(model, images, targets=[0, 1, 3], upsample=False, normalize=False, relu=False)
    assert exp.params["layer"] == "c2"
    ref = reference_gradcam(keras.Sequential(convs), keras.Sequential(head), images, np.array([0, 1, 3]))
    np.testing.assert_allclose(exp.values, ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())


def test_subclassed_model(images):
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
    np.testing.assert_allclose(exp.values, ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())


@pytest.mark.parametrize("head_kind", ["sequential", "functional"])
def test_nested_mobilenet_v2(head_kind):
    """A keras.applications base inside a classifier: the tf-keras-vis #71 'graph
    disconnected' case. Layer paths include the nesting; bare unique names resolve."""
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
    np.testing.assert_allclose(acts, sub(x, training=False).numpy(), rtol=1e-5, atol=1e-5)
    assert_unchanged(model, before)


@pytest.mark.parametrize(
    "factory, shape, layer",
    [("ResNet50", (64, 64, 3), "conv5_block3_out"), ("MobileNetV2", (64, 64, 3), "out_relu")],
)
def test_keras_applications_default_layer(factory, shape, layer):
    model = getattr(keras.applications, factory)(weights=None, input_shape=shape, classes=10)
    x = np.random.RandomState(2).rand(2, *shape).astype(np.float32)
    exp = limelight.explain(model, x)
    assert exp.params["layer"] == layer
    assert limelight.wrap(model).default_layer() == layer  # from the declared input shape
    assert exp.values.shape == (2, 64, 64) and np.isfinite(exp.values).all()
    assert 0 <= exp.values.min() and exp.values.max() <= 1
    np.testing.assert_array_equal(exp.targets, model(x, training=False).numpy().argmax(1))


def test_compiled_once_per_layer_and_signature(twin_cnn):
    _, km, _, layer, _, x = twin_cnn
    model = limelight.wrap(km)
    model.gradients(x, None, layer)
    fn = model_cache(km)[("gradient", layer, tf.TensorSpec((None, 16, 16, 3), tf.float32), 1)]
    traces = fn.experimental_get_tracing_count()
    for n in (1, 3, 4):  # other batch sizes reuse the same trace
        model.gradients(x[:n], np.zeros(n, np.int64), layer)
    limelight.explain(km, x, layer=layer)  # a fresh wrapper shares the cache
    assert fn.experimental_get_tracing_count() == traces == 1


def test_batched_equals_unbatched_and_predict(twin_cnn):
    _, km, _, layer, _, x = twin_cnn
    model = limelight.wrap(km)
    whole = model.gradients(x, np.array([0, 1, 2, 3]), layer)
    with model.batching(3):
        parts = model.gradients(x, np.array([0, 1, 2, 3]), layer)
        np.testing.assert_allclose(model.predict(x), km(x).numpy(), rtol=1e-5, atol=1e-6)
    for a, b in zip(whole.__dict__.values(), parts.__dict__.values(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_model_unchanged_after_success_and_errors(twin_cnn):
    _, km, _, layer, _, x = twin_cnn
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
