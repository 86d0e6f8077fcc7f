"""limelight.testing: the built-in backends and explainers pass the contract kit, and the kit
catches deliberately broken backends and explainers."""

from __future__ import annotations

import contextlib
import copy
import subprocess
import sys
from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import numpy as np
import pytest

import limelight
from limelight.core.errors import InputError, LayerError
from limelight.core.model import Gradients, NumpyModel, batches, reinitialize, unknown_layer
from limelight.testing import ModelCase, check_backend, check_explainer, registered, small_images

pytest_plugins = ["limelight.testing.fixtures"]


# -- a third-party host-only backend: a tiny NumPy network ------------------------------------
class TinyNet:
    """The native model: ``relu(x @ w1)`` per pixel (a 1x1 convolution), global average
    pooling, ``@ w2 + b``."""

    def __init__(self, seed: int = 0, channels: int = 3, features: int = 6, classes: int = 4) -> None:
        rng = np.random.RandomState(seed)
        self.w1 = rng.uniform(-1, 1, (channels, features)).astype(np.float32)
        self.w2 = rng.uniform(-1, 1, (features, classes)).astype(np.float32)
        self.b = rng.uniform(-0.1, 0.1, classes).astype(np.float32)

    def features(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x @ self.w1, 0)

    def head(self, features: np.ndarray) -> np.ndarray:
        return features.mean(axis=(1, 2)) @ self.w2 + self.b


class TinyNumpyModel(NumpyModel):
    """TinyNet behind limelight's API, with layers, gradients, activation edits and
    randomised copies."""

    framework = "numpy"
    native: TinyNet

    def canonical(self, inputs: Any) -> np.ndarray:
        x = super().canonical(inputs)
        if x.ndim != 4 or x.shape[-1] != self.native.w1.shape[0]:
            raise InputError(f"inputs have shape {x.shape}; TinyNet takes (N, H, W, {self.native.w1.shape[0]}).")
        return x

    def predict(self, x: Any, *, batch_size: int | None = None) -> np.ndarray:
        return np.concatenate([self.native.head(self.native.features(x[b])) for b in batches(len(x), batch_size)])

    def layers(self) -> list[str]:
        return ["features", "head"]

    def resolve_layer(self, layer: object) -> str:
        if layer in self.layers():
            return str(layer)
        raise unknown_layer(layer, self.layers(), self.framework)

    def default_layer(self, x: Any) -> str:
        return "features"

    def activations(self, x: Any, layer: str, *, batch_size: int | None = None) -> np.ndarray:
        layer = self.resolve_layer(layer)
        feats = np.concatenate([self.native.features(x[b]) for b in batches(len(x), batch_size)])
        return feats if layer == "features" else self.native.head(feats)

    def gradients(self, x: Any, target: Any, layer: str | None = None, *, batch_size: int | None = None) -> Gradients:
        parts = [self._gradients(x[b], target[b], layer) for b in batches(len(x), batch_size)]
        return Gradients(*(np.concatenate(p) for p in zip(*parts)))

    def _gradients(self, x: Any, target: Any, layer: str | None) -> tuple[np.ndarray, ...]:
        net = self.native
        feats = net.features(x)
        out = net.head(feats)
        target = target.check(out.shape[1])
        classes = np.asarray(target.classes(self.xp, out, *target.data()))  # (n, T)
        d_out = np.zeros((len(x), classes.shape[1], out.shape[1]), np.float32)
        np.put_along_axis(d_out, classes[:, :, None], 1.0, axis=2)
        d_feats = np.broadcast_to((d_out @ net.w2.T)[:, :, None, None, :] / (x.shape[1] * x.shape[2]),
                                  (len(x), classes.shape[1], *feats.shape[1:]))
        if layer is None:
            acts, grads = x, ((feats > 0)[:, None] * d_feats) @ net.w1.T
        elif self.resolve_layer(layer) == "features":
            acts, grads = feats, np.array(d_feats)
        else:
            acts, grads = out, d_out
        return out, acts, grads[:, 0] if target.single else grads

    def outputs_with(self, x: Any, layer: str, activations: Any, *, batch_size: int | None = None) -> np.ndarray:
        if self.resolve_layer(layer) == "head":
            return np.asarray(activations)
        return np.concatenate([self.native.head(activations[b]) for b in batches(len(activations), batch_size)])

    def parameter_layers(self) -> list[str]:
        return ["features", "head"]

    def randomized(self, layers: list[str], seed: int = 0) -> TinyNumpyModel:
        clone, rng = copy.deepcopy(self.native), np.random.RandomState(seed)
        for name in layers:
            if self.resolve_layer(name) == "features":
                (clone.w1,) = reinitialize([clone.w1], rng)
            else:
                clone.w2, clone.b = reinitialize([clone.w2, clone.b], rng)
        return TinyNumpyModel(clone)


def tiny_numpy_model() -> TinyNumpyModel:
    return TinyNumpyModel(TinyNet())


@contextlib.contextmanager
def tinynet_probe(native: TinyNet) -> Iterator[list[int]]:
    """Batch sizes TinyNet's ``features`` sees (patched on the instance, then restored)."""
    seen: list[int] = []
    original = native.features

    def features(x: np.ndarray) -> np.ndarray:
        seen.append(len(x))
        return original(x)

    native.features = features  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        del native.features


NUMPY_CASE = ModelCase("tiny-numpy", tiny_numpy_model, small_images(4, size=8))


# -- built-in backends ------------------------------------------------------------------------
def test_numpy_backend_passes():
    report = check_backend(tiny_numpy_model, small_images(4, size=8), batch_probe=tinynet_probe)
    for name in ("gradients", "finite-difference", "activation-edit", "randomize", "batch_size", "bad-input"):
        assert name in report.passed
    assert any("deeplift: not checked" in note for note in report.notes)


def test_torch_backend_passes_with_keras_twin(torch_model_factory, torch_images, keras_model_factory):
    report = check_backend(torch_model_factory, torch_images, reference=keras_model_factory, layer=("5", "relu2"))
    assert {"gradients", "deeplift", "randomize", "batch_size", "reference", "unmodified"} <= set(report.passed)


def test_keras_backend_passes_with_torch_twin(keras_model_factory, keras_images, torch_model_factory):
    report = check_backend(keras_model_factory, keras_images, reference=torch_model_factory)
    assert {"gradients", "deeplift", "randomize", "reference", "unmodified"} <= set(report.passed)


# -- broken backends are caught ---------------------------------------------------------------
def _torch_broken(kind: str) -> Any:
    from limelight.backends.torch import TorchModel
    from limelight.testing import torch_cnn

    class IgnoresBatchSize(TorchModel):
        def predict(self, x, *, batch_size=None):
            return super().predict(x)

    class ChannelsFirstActivations(TorchModel):
        def activations(self, x, layer, *, batch_size=None):
            return super().activations(x, layer, batch_size=batch_size).permute(0, 3, 1, 2)

    class LeavesTrainMode(TorchModel):
        def predict(self, x, *, batch_size=None):
            out = super().predict(x, batch_size=batch_size)
            self.native.train()
            return out

    cls = {"batch": IgnoresBatchSize, "channels": ChannelsFirstActivations, "mutates": LeavesTrainMode}[kind]
    return lambda: cls(torch_cnn())


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("batch", r"check_backend \[batch_size\]: predict\(x, batch_size=2\) ran the native model on batches of \[4\]"),
        ("channels", r"check_backend \[activations\]: activations of '5' have shape \(4, 16, 8, 8\).*not channels-last"),
        ("mutates", r"check_backend \[unmodified\]: the native model was modified: training flags changed"),
    ],
    ids=["ignores-batch-size", "channels-first-activations", "leaves-train-mode"],
)
def test_broken_torch_backend_fails(kind, message, torch_images):
    pytest.importorskip("torch")
    with pytest.raises(AssertionError, match=message):
        check_backend(_torch_broken(kind), torch_images)


def test_broken_numpy_backend_fails_without_a_probe():
    class WrongOutputs(TinyNumpyModel):
        def predict(self, x, *, batch_size=None):
            return super().predict(x, batch_size=batch_size)[:, 0]  # (N,): no class axis

    with pytest.raises(AssertionError, match=r"\[predict\]: predict returned shape \(4,\)"):
        check_backend(lambda: WrongOutputs(TinyNet()), small_images(4, size=8))


def test_bad_input_must_be_a_limelight_error():
    class RawErrors(TinyNumpyModel):
        def canonical(self, inputs):
            return NumpyModel.canonical(self, inputs)  # no shape check: NumPy's own ValueError

    with pytest.raises(AssertionError, match=r"\[bad-input\]: inputs of shape \(8, 8, 3\) \(no batch axis\) raised ValueError"):
        check_backend(lambda: RawErrors(TinyNet()), small_images(4, size=8))


# -- built-in explainers ----------------------------------------------------------------------
#: Per-explainer settings on top of the kit's quick ones (n_masks, nsamples, max_evals).
PARAMS: dict[str, dict[str, Any]] = {"shap-partition": {"mask": 0.0}}
FAST = {"gradcam"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in limelight.explainers()]
)
def test_builtin_explainer_passes(name):
    report = check_explainer(name, models=[NUMPY_CASE], **PARAMS.get(name, {}))
    assert report.checked
    if {"torch", "keras"} <= set(report.checked):
        assert "twins" in report.passed


def test_explainer_on_a_third_party_factory_only():
    report = check_explainer("gradcam", tiny_numpy_model, small_images(4, size=8), builtin_models=False, layer="features")
    assert report.checked == ["tiny_numpy_model"]


def test_explainer_without_capable_models():
    with pytest.raises(AssertionError, match=r"\[models\]: no model could run it .*lacks SupportsDeepLift"):
        check_explainer("shap-deep", models=[NUMPY_CASE], builtin_models=False)
    report = check_explainer("shap-deep", models=[NUMPY_CASE], builtin_models=False, require_any=False)
    assert report.checked == [] and "tiny-numpy" in report.skipped


# -- broken explainers are caught -------------------------------------------------------------
class _Base(limelight.Explainer):
    def maps(self, x: Any, rng: np.random.RandomState) -> np.ndarray:
        return rng.rand(*x.shape[:3]).astype(np.float32)

    def explain(self, x, target):
        out = self.model.predict(x)
        rng = np.random.RandomState(self.params.get("seed"))
        values = self.model.asarray(self.maps(x, rng), like=x)
        return self.result(x, values, self.classes(target, out), out)


class Seeded(_Base):
    name = "test-seeded"
    defaults = MappingProxyType({"seed": None})


class IgnoresSeed(_Base):
    name = "test-ignores-seed"
    defaults = MappingProxyType({"seed": None})

    def maps(self, x, rng):
        return np.random.rand(*x.shape[:3]).astype(np.float32)


class WrongShape(_Base):
    name = "test-wrong-shape"

    def maps(self, x, rng):
        return np.zeros(x.shape[:2], np.float32)


class AcceptsAnything(_Base):
    name = "test-accepts-anything"

    def __init__(self, model, *, batch_size=None, **params):
        super().__init__(model, batch_size=batch_size)


def test_a_correct_unregistered_explainer_passes():
    report = check_explainer(Seeded, models=[NUMPY_CASE], builtin_models=False)
    assert "determinism" in report.passed
    assert any("not registered" in note for note in report.notes)


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (IgnoresSeed, r"check_explainer\(IgnoresSeed\) on tiny-numpy \[determinism\]: two runs with seed=0: differs"),
        (WrongShape, r"\[values\]: values have shape \(4, 8\); expected \(4, 8, 8\) \(maps\) or \(4, 8, 8, 3\)"),
        (AcceptsAnything, r"\[unknown-params\]: an unknown parameter raised nothing; expected a ParameterError"),
    ],
    ids=["ignores-seed", "wrong-shape", "accepts-unknown-params"],
)
def test_broken_explainer_fails(cls, message):
    with pytest.raises(AssertionError, match=message):
        check_explainer(cls, models=[NUMPY_CASE], builtin_models=False)


# -- helpers ----------------------------------------------------------------------------------
def test_registered_makes_a_class_callable_by_name(fresh_limelight_registry):
    x = small_images(2, size=8)
    with registered(Seeded):
        assert "test-seeded" in limelight.explainers()
        exp = limelight.explain(tiny_numpy_model(), x, method="test-seeded", seed=1)
        assert exp.values.shape == (2, 8, 8)
        with pytest.raises(ValueError, match="already registered"):
            with registered(type("Other", (Seeded,), {})):
                pass
    assert "test-seeded" not in limelight.explainers()


def test_fixtures(small_images, model_cases):
    assert small_images.shape == (4, 16, 16, 3) and small_images.dtype == np.float32
    assert [case.name for case in model_cases] in (["torch", "keras"], ["torch"], ["keras"])


def test_resolve_layer_unknown_is_layer_error():
    with pytest.raises(LayerError):
        tiny_numpy_model().resolve_layer("nope")


def test_imports_stay_lazy():
    code = (
        "import sys, limelight; assert 'limelight.testing' not in sys.modules; "
        "import limelight.testing; "
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras', 'pytest') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"
