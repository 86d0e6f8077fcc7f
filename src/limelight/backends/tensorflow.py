"""TensorFlow backend: Keras 3 models (Sequential, functional, subclassed, nested) on the
TensorFlow backend, behind :class:`limelight.Model`.

* Layer names are paths through nested models, ``"outer_layer/inner_layer"``; a bare layer
  name is accepted when it is unique, and so is a layer object.
* A layer's output is captured by wrapping that layer's ``call`` for the duration of the
  forward pass (restored in ``finally``), so it works inside nested models and subclassed
  models alike: no sub-model is rebuilt, so there is no "graph disconnected" failure.
* Forward and gradient passes are compiled with ``tf.function`` and cached per model, layer
  and input signature (batch axis free), so repeated calls do not retrace.
* Models run with ``training=False``; weights and trainable flags are never touched.
* Inputs are channels-last already.

Importing this module does not import TensorFlow or Keras.
"""

from __future__ import annotations

import contextlib
import sys
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..core.cache import model_cache
from ..core.arrays import check_canonical, to_numpy_float32
from ..core.errors import (
    FrameworkNotInstalledError,
    InputError,
    LayerError,
    NotDifferentiableError,
    UnsupportedModelError,
    close_matches,
    no_deeplift_rule,
)
from ..core.hookspecs import hookimpl
from ..core.layers import pick_default_layer
from ..core.lazy import LazyModule
from ..core.model import DEEPLIFT, GRADIENTS, LAYERS, RANDOMIZE, Gradients, Model, reinitialize
from ..core.targets import normalize_targets, resolve_targets

tf: Any = LazyModule("tensorflow", extra="tensorflow")
keras: Any = LazyModule("keras", extra="tensorflow")

__all__ = ["KerasModel", "limelight_wrap_model"]

SEPARATOR = "/"


@hookimpl(trylast=True)
def limelight_wrap_model(model: object) -> Model | None:
    """Wrap a Keras 3 model (only when Keras is already imported)."""
    loaded = sys.modules.get("keras")
    if loaded is None or not isinstance(model, loaded.Model):
        return None
    backend = loaded.backend.backend()
    if backend != "tensorflow":
        raise UnsupportedModelError(
            f"this Keras model runs on the {backend!r} backend; limelight's Keras support needs "
            "the TensorFlow backend (set KERAS_BACKEND=tensorflow before importing keras)."
        )
    return KerasModel(model)


@hookimpl(trylast=True)
def limelight_load_model(spec: str, weights: str | None) -> Any:
    """``keras:NAME`` (a keras.applications factory; ``weights="none"``: random) and
    ``.keras`` files (loaded with ``safe_mode=True``)."""
    from ..core.loading import LoadedModel, UnknownModelError

    if spec.startswith("keras:"):
        import importlib

        names = _imagenet_names()  # before Keras: torchvision after TensorFlow crashes (README)
        import keras as keras_module

        name = spec.split(":", 1)[1]
        factory = getattr(keras_module.applications, name, None)
        if factory is None or not callable(factory):
            raise UnknownModelError(f"keras.applications has no model {name!r}; e.g. ResNet50, MobileNetV2.")
        model = factory(weights=None if (weights or "").lower() == "none" else "imagenet")
        family = importlib.import_module(factory.__module__)
        size = tuple(model.input_shape[1:3]) if None not in model.input_shape[1:3] else (224, 224)
        return LoadedModel(
            model, "tensorflow", names, lambda images: family.preprocess_input(images * 255.0), size
        )
    if spec.endswith(".keras"):
        import os

        import keras as keras_module

        if not os.path.exists(spec):
            raise UnknownModelError(f"no such model file: {spec}")
        return LoadedModel(keras_module.saving.load_model(spec, safe_mode=True), "tensorflow")
    return None


def keras_preprocess(mode: str) -> Callable[[np.ndarray], np.ndarray]:
    """``keras.applications.imagenet_utils.preprocess_input`` with ``mode`` ("caffe", "tf",
    "torch") from ``(N, H, W, 3)`` RGB in [0, 1] (it takes 0-255 pixels); NHWC out."""
    try:
        from keras.applications import imagenet_utils
    except ImportError as exc:
        raise FrameworkNotInstalledError("keras", extra="tensorflow") from exc
    return lambda images: imagenet_utils.preprocess_input(images * 255.0, mode=mode)


def _imagenet_names() -> list[str] | None:
    """ImageNet class names (the standard order shared by keras.applications and torchvision),
    from torchvision's metadata when it is installed (Keras's own list is a download)."""
    if "tensorflow" in sys.modules and "torchvision" not in sys.modules:
        return None  # importing torchvision now would crash the process (README, known issues)
    try:
        import torchvision
    except ImportError:
        return None
    return list(torchvision.models.ResNet50_Weights.DEFAULT.meta["categories"])


def _sublayers(layer: Any) -> list[Any]:
    flatten = getattr(layer, "_flatten_layers", None)
    if flatten is None:
        return []
    return [
        sub
        for sub in flatten(include_self=False, recursive=False)
        if not isinstance(sub, keras.layers.InputLayer)
    ]


@contextlib.contextmanager
def _tapped(layers: dict[str, Any], on_output: Callable[[str, Any], Any]) -> Iterator[None]:
    """Route every call of each layer's ``call`` through ``on_output(name, output)``.

    The instance attribute shadows the class's method for the duration only.
    """
    patched = []
    try:
        for name, layer in layers.items():
            original = layer.call

            def call(*args: Any, __name: str = name, __orig: Any = original, **kwargs: Any) -> Any:
                return on_output(__name, __orig(*args, **kwargs))

            had_own = "call" in layer.__dict__
            previous = layer.__dict__.get("call")
            object.__setattr__(layer, "call", call)
            patched.append((layer, had_own, previous))
        yield
    finally:
        for layer, had_own, previous in reversed(patched):
            if had_own:
                object.__setattr__(layer, "call", previous)
            else:
                object.__delattr__(layer, "call")


class KerasModel(Model):
    """A Keras 3 model (TensorFlow backend) taking NHWC (or ``(N, D)``), returning ``(N, K)``."""

    framework = "tensorflow"
    capabilities = frozenset({GRADIENTS, LAYERS, DEEPLIFT, RANDOMIZE})

    # -- randomised copies (capability "randomize") ------------------------------------------
    def parameter_layers(self) -> list[str]:
        """Layers that own weights directly (not containers), input side first."""
        return [p for p, layer in self._named_layers().items() if layer.weights and not _sublayers(layer)]

    def randomized(self, layers: list[str], seed: int = 0) -> KerasModel:
        """A clone (``keras.models.clone_model`` + copied weights) with the trainable weights
        of ``layers`` re-initialised (see ``reinitialize``)."""
        clone = keras.models.clone_model(self.native)
        clone.set_weights(self.native.get_weights())
        named = KerasModel(clone)._named_layers()
        rng = np.random.RandomState(seed)
        for name in layers:
            layer = named[self.resolve_layer(name)]
            weights = layer.get_weights()
            trainable = len(layer.trainable_weights)  # listed first by get_weights
            layer.set_weights(reinitialize(weights[:trainable], rng) + weights[trainable:])
        return KerasModel(clone)

    # -- inputs -----------------------------------------------------------------------------
    def canonical(self, inputs: Any) -> np.ndarray:
        """NHWC array or tensor (as the model is fed) -> checked float32 NumPy."""
        if hasattr(inputs, "numpy") and not isinstance(inputs, np.ndarray):
            inputs = inputs.numpy()
        arr = check_canonical(to_numpy_float32(inputs))
        expected = self._input_shape()
        if expected is not None:
            if arr.ndim != len(expected):
                hint = " For one sample use x[None]." if arr.ndim == len(expected) - 1 else ""
                raise InputError(
                    f"inputs have shape {arr.shape}, but the model takes {len(expected)}-D "
                    f"batches shaped {tuple(expected)}.{hint}"
                )
            channels = expected[-1]
            if arr.ndim == 4 and channels is not None and arr.shape[-1] != channels:
                hint = (
                    " They look channels-first (N, C, H, W); Keras models take NHWC: pass "
                    "x.transpose(0, 2, 3, 1)."
                    if arr.shape[1] == channels
                    else ""
                )
                raise InputError(
                    f"inputs have shape {arr.shape}, but the model takes {channels} channels "
                    f"in NHWC layout.{hint}"
                )
        return arr

    def _input_shape(self) -> tuple[int | None, ...] | None:
        try:
            shape = self.native.input_shape
        except (AttributeError, ValueError):  # subclassed or unbuilt models
            return None
        return tuple(shape) if isinstance(shape, tuple | list) and shape and not isinstance(shape[0], tuple | list) else None

    # -- layers ------------------------------------------------------------------------------
    def _named_layers(self) -> dict[str, Any]:
        named: dict[str, Any] = {}

        def walk(layer: Any, prefix: str) -> None:
            for sub in _sublayers(layer):
                path = prefix + sub.name
                named[path] = sub
                walk(sub, path + SEPARATOR)

        walk(self.native, "")
        return named

    def layers(self) -> list[str]:
        return list(self._named_layers())

    def resolve_layer(self, layer: object) -> str:
        """A layer path, a unique bare layer name, or a layer object -> its path."""
        named = self._named_layers()
        if isinstance(layer, str):
            if layer in named:
                return layer
            matches = [path for path in named if path.rsplit(SEPARATOR, 1)[-1] == layer]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise LayerError(f"layer name {layer!r} is ambiguous: {', '.join(matches)}; pass a full path.")
            raise LayerError(
                f"unknown layer {layer!r} for this Keras model."
                + close_matches(layer, list(named) + [p.rsplit(SEPARATOR, 1)[-1] for p in named])
                + " Model.layers() lists every name."
            )
        for path, obj in named.items():
            if obj is layer:
                return path
        raise LayerError(
            f"the object {layer!r} passed as layer is not a layer of this model; pass a name "
            "from Model.layers() or one of its layers."
        )

    def default_layer(self, x: np.ndarray | None = None) -> str:
        """The last layer (in execution order) with a spatial 4-D output that runs once per
        forward (see :func:`~limelight.core.layers.pick_default_layer`), traced on a sample
        ``x``; without one, on zeros shaped like the model's declared input."""
        if x is None:
            shape = self._input_shape()
            if shape is None or None in shape[1:]:
                raise LayerError(
                    "this Keras model declares no fixed input shape; pass a sample input to "
                    "default_layer(x) or layer= explicitly."
                )
            x = np.zeros((1, *shape[1:]), np.float32)
        cache = model_cache(self.native)
        key = ("default layer", tuple(x.shape[1:]))
        if key not in cache:
            cache[key] = self._default_from_trace(x[:1])
        return cache[key]

    def _default_from_trace(self, x: np.ndarray) -> str:
        finished: list[tuple[str, tuple[int | None, ...] | None]] = []

        def record(name: str, output: Any) -> Any:
            shape = getattr(output, "shape", None)
            finished.append((name, None if shape is None else tuple(shape)))
            return output

        with _tapped(self._named_layers(), record):
            self.native(tf.constant(x), training=False)
        return pick_default_layer(finished, separator=SEPARATOR)

    # -- compiled functions -----------------------------------------------------------------
    def _compiled(self, key: Any, build: Callable[[weakref.ref[Any]], Any]) -> Any:
        """The tf.function for ``key``, built once per model; it reaches the model only
        through a weak reference, so the cache never keeps the model alive."""
        cache = model_cache(self.native)
        if key not in cache:
            cache[key] = build(weakref.ref(self.native))
        return cache[key]

    @staticmethod
    def _spec(x: np.ndarray) -> Any:
        return tf.TensorSpec((None, *x.shape[1:]), tf.float32)

    def _forward_fn(self, x: np.ndarray) -> Any:
        spec = self._spec(x)

        def build(ref: weakref.ref[Any]) -> Any:
            @tf.function(input_signature=[spec], autograph=False)
            def forward(inputs: Any) -> Any:
                return ref()(inputs, training=False)

            return forward

        return self._compiled(("forward", spec), build)

    def _gradient_fn(self, x: np.ndarray, path: str | None, layer: Any, columns: int) -> Any:
        """Compiled: outputs, activations and gradients ``(n, columns, ...)`` for targets
        ``(n, columns)`` (-1: the predicted class); one forward, one tape."""
        spec = self._spec(x)

        def build(ref: weakref.ref[Any]) -> Any:
            @tf.function(input_signature=[spec, tf.TensorSpec((None, columns), tf.int64)], autograph=False)
            def gradient(inputs: Any, targets: Any) -> Any:
                captured: list[Any] = []
                with tf.GradientTape(watch_accessed_variables=False, persistent=columns > 1) as tape:
                    if path is None:
                        tape.watch(inputs)
                        captured.append(inputs)
                        outputs = ref()(inputs, training=False)
                    else:

                        def capture(name: str, output: Any) -> Any:
                            # Errors are raised after the forward, outside Keras's frames,
                            # which would otherwise rewrite their message.
                            if tf.is_tensor(output) and not captured:
                                tape.watch(output)
                            captured.append(output)
                            return output

                        with _tapped({path: layer}, capture):
                            outputs = ref()(inputs, training=False)
                        _check_captured(path, captured)
                    outputs = _check_outputs(outputs)
                    predicted = tf.argmax(outputs, axis=1, output_type=tf.int64)[:, None]
                    chosen = tf.where(targets < 0, predicted, targets)
                    scores = _target_scores(outputs, chosen, columns)
                grads = [tape.gradient(score, captured[0]) for score in scores]
                if any(grad is None for grad in grads):
                    where = "the input" if path is None else f"layer {path!r}"
                    raise NotDifferentiableError(
                        f"the model's output does not depend differentiably on {where}; pick a "
                        "layer on the path to the output."
                    )
                return outputs, captured[0], tf.stack(grads, axis=1)

            return gradient

        return self._compiled(("gradient", path, spec, columns), build)

    # -- the gradient API --------------------------------------------------------------------
    def predict(self, x: np.ndarray) -> np.ndarray:
        forward = self._forward_fn(x)
        outs = [_check_outputs(forward(tf.constant(x[batch]))).numpy() for batch in self.batches(len(x))]
        return np.concatenate(outs).astype(np.float32)

    def activations(self, x: np.ndarray, layer: str) -> np.ndarray:
        return self.gradients(x, None, layer).activations

    def gradients(
        self, x: np.ndarray, targets: np.ndarray | None, layer: str | None = None
    ) -> Gradients:
        targets = normalize_targets(targets, len(x))
        single = targets is None or targets.ndim == 1
        if targets is None:
            columns = np.full((len(x), 1), -1, np.int64)
        else:
            # Range-check (and map negative indices) before any work.
            num_outputs = self._num_outputs(x)
            resolved = resolve_targets(targets, np.zeros((len(x), num_outputs), np.float32))
            columns = resolved.reshape(len(x), -1)
        path = None if layer is None else self.resolve_layer(layer)
        fn = self._gradient_fn(
            x, path, None if path is None else self._named_layers()[path], columns.shape[1]
        )
        outs, acts, grads = [], [], []
        for batch in self.batches(len(x)):
            out, act, grad = fn(tf.constant(x[batch]), tf.constant(columns[batch]))
            outs.append(out.numpy())
            acts.append(act.numpy())
            grads.append(grad.numpy())
        gradients = np.concatenate(grads).astype(np.float32)
        return Gradients(
            np.concatenate(outs).astype(np.float32),
            np.concatenate(acts).astype(np.float32),
            gradients[:, 0] if single else gradients,
        )

    def multi_gradients(
        self, x: np.ndarray, targets: np.ndarray, layer: str | None = None
    ) -> Gradients:
        """One compiled forward pass per batch and one tape for all target columns."""
        return self.gradients(x, targets, layer)

    # -- DeepLIFT (capability "deeplift") ----------------------------------------------------
    def deeplift_unsupported(self, x: np.ndarray) -> list[str]:
        """Operations on the input's path that DeepLIFT has no rule for (empty: all fine)."""
        from .tensorflow_deeplift import unsupported_ops

        graph = self._forward_fn(x).get_concrete_function().graph
        return sorted(unsupported_ops(graph, graph.inputs[0]))

    def deeplift_gradients(self, x: np.ndarray, references: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """DeepLIFT rescale multipliers ``(n, T, ...)`` of outputs ``targets (n, T)`` for each
        pair ``(x[i], references[i])``: ``Σ m ⊙ (x - r) = f(x) - f(r)`` per target."""
        from .tensorflow_deeplift import unsupported_ops

        graph = self._forward_fn(x).get_concrete_function().graph
        unsupported = unsupported_ops(graph, graph.inputs[0])
        if unsupported:
            raise no_deeplift_rule(unsupported)
        targets = resolve_targets(targets, np.zeros((len(x), self._num_outputs(x)), np.float32))
        fn = self._deeplift_fn(x, targets.shape[1])
        parts = [
            fn(tf.constant(x[batch]), tf.constant(references[batch]), tf.constant(targets[batch])).numpy()
            for batch in self.batches(len(x))
        ]
        return np.concatenate(parts).astype(np.float32)

    def _deeplift_fn(self, x: np.ndarray, columns: int) -> Any:
        from .tensorflow_deeplift import deeplift_rules

        spec = self._spec(x)

        def build(ref: weakref.ref[Any]) -> Any:
            @tf.function(input_signature=[spec, spec, tf.TensorSpec((None, columns), tf.int64)], autograph=False)
            def deeplift(inputs: Any, references: Any, targets: Any) -> Any:
                both = tf.concat([inputs, references], 0)
                n = tf.shape(inputs)[0]
                with deeplift_rules():
                    with tf.GradientTape(watch_accessed_variables=False, persistent=columns > 1) as tape:
                        tape.watch(both)
                        outputs = _check_outputs(ref()(both, training=False))[:n]
                        scores = _target_scores(outputs, targets, columns)
                    grads = [tape.gradient(score, both)[:n] for score in scores]
                return tf.stack(grads, axis=1)

            return deeplift

        return self._compiled(("deeplift", spec, columns), build)

    def _num_outputs(self, x: np.ndarray) -> int:
        fn = self._forward_fn(x)
        shape = fn.get_concrete_function().structured_outputs.shape
        if shape.rank != 2:
            raise _bad_outputs(shape)
        if shape[1] is None:
            return int(fn(tf.constant(x[:1])).shape[1])
        return int(shape[1])


def _target_scores(outputs: Any, targets: Any, columns: int) -> list[Any]:
    """``[Σ_i outputs[i, targets[i, t]] for t < columns]``: one scalar to differentiate per
    target column."""
    return [tf.reduce_sum(tf.gather(outputs, targets[:, t], axis=1, batch_dims=1)) for t in range(columns)]


def _check_captured(path: str, captured: list[Any]) -> None:
    if not captured:
        raise LayerError(f"layer {path!r} did not run in the forward pass; pick another layer.")
    if len(captured) > 1:
        raise LayerError(
            f"layer {path!r} runs {len(captured)} times per forward (a shared layer); pick a "
            "layer that runs once."
        )
    if not tf.is_tensor(captured[0]):
        raise LayerError(
            f"layer {path!r} outputs a {type(captured[0]).__name__}, not a tensor; pick a layer "
            "with a single tensor output."
        )


def _bad_outputs(shape: Any) -> InputError:
    return InputError(
        f"the model returned shape {tuple(shape)}; limelight explains outputs of shape (N, K) "
        "(one score per class)."
    )


def _check_outputs(outputs: Any) -> Any:
    if not tf.is_tensor(outputs):
        raise InputError(
            f"the model returned a {type(outputs).__name__}, not a tensor of shape (N, K); wrap "
            "it in a model that returns the class scores."
        )
    if outputs.shape.rank != 2:
        raise _bad_outputs(outputs.shape)
    return tf.cast(outputs, tf.float32)
