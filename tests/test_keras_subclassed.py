"""Keras subclassed models (issue 10, part 8): a model never called is built on the first
input (one call on one sample, as Keras builds on any first call); CAMs and SHAP then work
as for a called one, and equal those of a functional twin with the same weights."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")  # torch before TensorFlow
keras = pytest.importorskip("keras")

import limelight  # noqa: E402


class Subclassed(keras.Model):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(4, 3, padding="same", name="conv")
        self.act = keras.layers.ReLU(name="act")
        self.pool = keras.layers.GlobalAveragePooling2D(name="pool")
        self.fc = keras.layers.Dense(3, name="fc")

    def call(self, x: object) -> object:
        return self.fc(self.pool(self.act(self.conv(x))))


class TwoInputSubclassed(keras.Model):
    """``call`` takes a dict of named inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")
        self.pool = keras.layers.GlobalAveragePooling2D(name="pool")
        self.meta = keras.layers.Dense(4, name="meta_fc")
        self.fc = keras.layers.Dense(3, name="fc")

    def call(self, inputs: dict[str, object]) -> object:
        return self.fc(self.pool(self.conv(inputs["image"])) + self.meta(inputs["meta"]))


def functional_twin(model: object) -> object:
    """A functional model with ``model``'s layers' weights."""
    x = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", name="conv")(x)
    h = keras.layers.ReLU(name="act")(h)
    h = keras.layers.GlobalAveragePooling2D(name="pool")(h)
    twin = keras.Model(x, keras.layers.Dense(3, name="fc")(h))
    for name in ("conv", "fc"):
        twin.get_layer(name).set_weights(getattr(model, name).get_weights())
    return twin


@pytest.fixture
def x() -> np.ndarray:
    return np.random.RandomState(0).rand(2, 8, 8, 3).astype(np.float32)


def test_never_called_model_gets_gradcam_on_its_last_spatial_layer(x) -> None:
    keras.utils.set_random_seed(0)
    model = Subclassed()
    assert not model.built
    wrapped = limelight.wrap(model)
    assert wrapped.layers() == ["conv", "act", "pool", "fc"]  # tracked before any call
    exp = limelight.explain(model, x, "gradcam")  # was "no spatial layer"
    assert model.built and exp.params["layer"] == "act" and exp.values.shape == (2, 8, 8)
    assert wrapped.default_layer(x) == "act"
    assert limelight.wrap(Subclassed()).default_layer(x) == "act"  # builds it too
    twin = limelight.explain(functional_twin(model), x, "gradcam")
    np.testing.assert_allclose(exp.values, twin.values, atol=1e-6)
    assert np.ptp(exp.values) > 0


def test_called_model_is_explained_the_same_and_its_weights_untouched(x) -> None:
    keras.utils.set_random_seed(1)
    model = Subclassed()
    model(x[:1])  # the user called it
    before = [w.copy() for w in model.get_weights()]
    cam = limelight.explain(model, x, "gradcam", layer="conv")
    sg = limelight.explain(model, x, "shap-gradient", background=x[::-1], nsamples=16, seed=0)
    for old, new in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
    twin = functional_twin(model)
    np.testing.assert_allclose(cam.values, limelight.explain(twin, x, "gradcam", layer="conv").values, atol=1e-6)
    np.testing.assert_allclose(
        sg.values,
        limelight.explain(twin, x, "shap-gradient", background=x[::-1], nsamples=16, seed=0).values,
        atol=1e-6,
    )


def test_never_called_model_gets_shap_gradient_and_shap_deep(x) -> None:
    keras.utils.set_random_seed(2)
    model = Subclassed()
    sg = limelight.explain(model, x, "shap-gradient", background=x[::-1], nsamples=16, seed=0)
    twin = functional_twin(model)
    want = limelight.explain(twin, x, "shap-gradient", background=x[::-1], nsamples=16, seed=0)
    np.testing.assert_allclose(sg.values, want.values, atol=1e-6)
    keras.utils.set_random_seed(3)
    fresh = Subclassed()
    deep = limelight.explain(fresh, x, "shap-deep", background=x[::-1])
    gap = deep.outputs[np.arange(2), deep.targets] - deep.base_values
    np.testing.assert_allclose(deep.values.reshape(2, -1).sum(1), gap, atol=1e-5)


def test_never_called_two_input_subclassed_model(x) -> None:
    keras.utils.set_random_seed(4)
    model = TwoInputSubclassed()
    meta = np.random.RandomState(1).rand(2, 5).astype(np.float32)
    inputs = {"image": x, "meta": meta}
    cam = limelight.explain(model, inputs, "gradcam")
    assert cam.params["layer"] == "conv" and cam.values.shape == (2, 8, 8)
    deep = limelight.explain(model, inputs, "shap-deep", background={"image": x[::-1], "meta": meta[::-1]})
    gap = deep.outputs[np.arange(2), deep.targets] - deep.base_values
    total = deep.values["image"].reshape(2, -1).sum(1) + deep.values["meta"].sum(1)
    np.testing.assert_allclose(total, gap, atol=1e-5)


def test_default_layer_without_a_sample_on_a_never_called_model_says_what_to_do() -> None:
    wrapped = limelight.wrap(Subclassed())
    with pytest.raises(limelight.core.errors.LayerError, match="sample input"):
        wrapped.default_layer()
