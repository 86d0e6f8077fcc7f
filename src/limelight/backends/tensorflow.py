"""TensorFlow backend: Keras 3 models (Sequential, functional, subclassed, nested) on the
TensorFlow backend, behind :class:`limelight.Model`.

* Arrays are TensorFlow tensors on the model's device (where its weights live); ``xp`` is
  :mod:`limelight.backends.tensorflow_xp`, limelight's Array API namespace for TensorFlow.
  Inputs are channels-last already. Results leave TensorFlow only through
  :meth:`KerasModel.to_numpy`.
* Layer names are paths through nested models, ``"outer_layer/inner_layer"``; a bare layer
  name is accepted when it is unique, and so is a layer object.
* A layer's output is captured by wrapping that layer's ``call`` while the forward pass is
  traced (restored in ``finally``), so it works inside nested models and subclassed models
  alike: no sub-model is rebuilt, so there is no "graph disconnected" failure.
* Forward, activation, gradient and DeepLIFT passes are compiled with ``tf.function`` and
  cached per model, layer, input signature (batch axis free) and target kind; a target's
  per-sample data (class indices, ...) are arguments of the compiled function, never
  constants baked into it, so repeated calls do not retrace.
* Models run with ``training=False``; weights and trainable flags are never touched.
* ``precision="highest"`` turns TensorFloat-32 off for the call (restored after).
* Threads: the public methods that run or patch the model (``predict``, ``activations``,
  ``gradients``, ``default_layer``, ``deeplift_*``, ``randomized``) hold the model's lock
  (:func:`~limelight.core.cache.model_lock`), so concurrent explanations of one model take
  turns: no thread sees another's patched ``call`` or a half-built compiled function
  (``outputs_with`` too). Calls of the model outside limelight are not covered.
* ``outputs_with`` (Ablation-CAM) runs a compiled function in which the layer's ``call``
  returns the edited activations; the layers before it run on one sample per call, its rows
  broadcast against earlier tensors (``Add``), or, where that is wrong (detected once per
  model and layer), on the input repeated for each row.
* Errors of the model's call about shapes (a ``ValueError``, ``TypeError`` or
  ``InvalidArgumentError`` whose message mentions a shape, size, rank, dimension or
  channels: inputs of the wrong rank or size) become an
  :class:`~limelight.core.errors.InputError` naming the shape fed and the layout the model
  takes, chained to the original; other exceptions propagate unchanged.

Importing this module does not import TensorFlow or Keras.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sys
import weakref
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, ParamSpec, TypeVar

import numpy as np

from ..core.arrays import check_batch, digest_arrays, to_numpy_float32
from ..core.cache import ProcessSetting, holding_model_lock, model_cache, model_lock
from ..core.errors import (
    InputError,
    LayerError,
    LimelightError,
    NotDifferentiableError,
    TargetError,
    UnsupportedModelError,
    close_matches,
    no_deeplift_rule,
)
from ..core.hookspecs import hookimpl
from ..core.inputs import concat, describe, from_user, leaves, map_inputs, rows, several, shape_reference, shapes, take
from ..core.layers import Traced, pick_default_layer
from ..core.lazy import LazyModule, import_triton_first
from ..core.model import (
    SHAPE_WORDS,
    Array,
    Gradients,
    Model,
    batch_shape,
    batches,
    check_batch_size,
    layer_list_error,
    reinitialize,
)
from ..core.outputs import OutputSelector, select_output, selector_key
from ..core.targets import Target

# import_triton_first: see limelight.core.lazy (triton after TensorFlow segfaults)
tf: Any = LazyModule("tensorflow", extra="tensorflow", before=import_triton_first)
keras: Any = LazyModule("keras", extra="tensorflow", before=import_triton_first)

__all__ = ["KerasModel", "limelight_wrap_model"]

SEPARATOR = "/"

P = ParamSpec("P")
R = TypeVar("R")


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


_ANSI = re.compile(r"\x1b\[[0-9;]*m")




def _call(model: Any, inputs: Any) -> Any:
    """``model(inputs, training=False)``, shape errors turned into an InputError (see the
    module docstring)."""
    try:
        # several inputs: a dict reaches the model's named inputs, a tuple its inputs in order
        return model(list(inputs) if isinstance(inputs, tuple) else inputs, training=False)
    except LimelightError:
        raise
    except (ValueError, TypeError, tf.errors.InvalidArgumentError) as exc:
        # Keras appends the call's arguments (tensor shapes included) to every error: only
        # the error's own text counts, and its first line that talks about shapes is quoted
        text = _ANSI.sub("", str(exc)).split("Arguments received", 1)[0]
        lines = [
            line.strip()
            for line in text.splitlines()
            if SHAPE_WORDS.search(line) and not line.startswith("Exception encountered when calling")
        ]
        if not lines:
            raise
        message = lines[0]
        error = InputError(
            f"the model's call failed on inputs of shape {describe(inputs, lambda a: batch_shape(a.shape))}; this model "
            f"takes {_layout(model)}. {type(exc).__name__}: {message[:300]}"
        )
        error.framework_error = exc  # type: ignore[attr-defined]  # see _keeps_cause
        raise error from exc


def _keeps_cause(method: Callable[P, R]) -> Callable[P, R]:
    """Decorate a public method: a LimelightError raised while tracing (an InputError from
    :func:`_call`, a TargetError from a user's target function) keeps its original as
    ``__cause__`` (TensorFlow re-raises errors from a traced function ``from None``)."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except LimelightError as exc:
            original = getattr(exc, "framework_error", None)
            if original is None or exc.__cause__ is not None:
                raise
            raise exc from original

    return wrapper


def _layout(model: Any) -> str:
    try:
        shape = model.input_shape
    except (AttributeError, ValueError):  # subclassed or unbuilt models
        shape = None
    if isinstance(shape, tuple | list) and shape and not isinstance(shape[0], tuple | list):
        return "batches " + batch_shape(shape)
    return "channels-last batches (N, H, W, C) for images, (N, D) for vectors"




#: ``precision="highest"`` while any thread needs it (see ProcessSetting).
_HIGHEST = ProcessSetting()


def _tf32_off() -> Callable[[], None]:
    """TensorFloat-32 execution off; returns the function that restores the setting."""
    previous = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    return lambda: tf.config.experimental.enable_tensor_float_32_execution(previous)


def _sublayers(layer: Any) -> list[Any]:
    """The layers a layer holds, then, for functional models, the operations of their graph
    that are not layers (``inputs + x`` is a ``keras.ops`` ``Add`` named ``add_17``: ConvNeXt's
    block outputs exist only as such operations)."""
    flatten = getattr(layer, "_flatten_layers", None)
    if flatten is None:
        return []
    subs = [
        sub
        for sub in flatten(include_self=False, recursive=False)
        if not isinstance(sub, keras.layers.InputLayer)
    ]
    operations = getattr(layer, "operations", None) if isinstance(layer, keras.Model) else None
    if isinstance(operations, list):
        known = {id(sub) for sub in subs}
        subs += [
            op
            for op in operations
            if id(op) not in known and not isinstance(op, keras.layers.Layer) and isinstance(getattr(op, "name", None), str)
        ]
    return subs


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


def _spec(x: Any) -> Any:
    """The input signature of a batch like ``x``: its shape with the batch axis free (several
    inputs: the same structure of signatures)."""
    if several(x):
        return map_inputs(_spec, x)
    return tf.TensorSpec((None, *x.shape[1:]), x.dtype)


def _hashable(key: Any) -> Any:
    """A cache key with dicts (several inputs' signatures) as tuples of items."""
    if isinstance(key, dict):
        return ("dict", tuple((k, _hashable(v)) for k, v in key.items()))
    if isinstance(key, tuple):
        return tuple(_hashable(k) for k in key)
    return key


def _column_sums(scores: Any, columns: int) -> list[Any]:
    """``[Σ_i scores[i, t] for t < columns]``: one scalar to differentiate per column (taken
    inside the tape, so the slices are recorded)."""
    if scores.shape.rank != 2 or (scores.shape[1] is not None and scores.shape[1] != columns):
        raise TargetError(
            f"the target's scores have shape {tuple(scores.shape)}; a target with {columns} "
            f"column(s) must give (n, {columns})."
        )
    return [tf.reduce_sum(scores[:, t]) for t in range(columns)]


def _alive(ref: weakref.ref[Any]) -> Any:
    """The model behind a compiled function's weak reference."""
    model = ref()
    if model is None:  # pragma: no cover - a cache entry outlives its model only while it is collected
        raise ReferenceError("the Keras model of this compiled function was garbage-collected.")
    return model


def _whole(n: int, batch: slice) -> bool:
    return batch.start == 0 and batch.stop == n


def _cat(parts: list[Any]) -> Any:
    return concat(parts, lambda p: tf.concat(p, axis=0))


class KerasModel(Model):
    """A Keras 3 model (TensorFlow backend) taking NHWC (or ``(N, D)``), returning ``(N, K)``."""

    framework = "tensorflow"

    native: Any  # a keras.Model

    def __init__(self, native: object, output: OutputSelector = None) -> None:
        super().__init__(native)
        self._device_name: str | None = None
        #: ``output=``: which tensor of structured outputs is explained (see core.outputs).
        self.output = output

    def _select(self) -> Callable[[Any], Any]:
        """The output check of this wrapper's compiled functions: ``output=`` applied (by
        name: the model's ``output_names``), then the shape checked."""
        output = self.output
        names = list(getattr(self.native, "output_names", None) or []) or None
        return lambda outputs: _check_outputs(outputs, output, names)

    @property
    def xp(self) -> ModuleType:
        import_triton_first()  # before tensorflow_xp imports TensorFlow
        from . import tensorflow_xp

        return tensorflow_xp

    # -- in and out --------------------------------------------------------------------------
    def canonical(self, inputs: Any) -> Any:
        """NHWC array or tensor (as the model is fed) -> a checked float32 tensor on the
        model's device. Several inputs: a dict (keyed by the model's input names) or a tuple
        (a list too, for a model with several inputs) gives the same structure (a list: a
        tuple), each input made canonical on its own. A subclassed model never called is
        built here, by one call on the first sample (as Keras builds on a first call)."""
        x = from_user(inputs, self._canonical_one, lists=self._takes_several())
        self._build(x)
        return x

    def _takes_several(self) -> bool:
        """Whether the model declares several inputs."""
        try:
            declared = self.native.inputs
        except (AttributeError, ValueError):  # subclassed or unbuilt models
            return False
        return isinstance(declared, list | tuple) and len(declared) > 1

    def _build(self, x: Any) -> None:
        """Build a model that was never called (a subclassed ``keras.Model``) by calling it
        once on the first sample of ``x``: its weights are created as on any first call;
        a built model is left as it is."""
        if getattr(self.native, "built", True):
            return
        with model_lock(self.native):
            if not self.native.built:
                _call(self.native, take(x, slice(0, 1)))
                self._device_name = None

    def _canonical_one(self, inputs: Any) -> Any:
        """One input of :meth:`canonical`."""
        if tf.is_tensor(inputs) or isinstance(inputs, tf.Variable):
            x = tf.convert_to_tensor(inputs)
            if not (x.dtype.is_floating or x.dtype.is_integer or x.dtype == tf.bool):
                raise InputError(f"inputs must be numeric, got dtype {x.dtype.name}.")
            x = x if x.dtype == tf.float32 else tf.cast(x, tf.float32)
        else:
            x = tf.convert_to_tensor(to_numpy_float32(inputs))
        x = self._place(x)
        check_batch(self.xp, x, self.to_numpy)
        shape = tuple(x.shape)
        expected = self._input_shape()
        if expected is not None:
            if len(shape) != len(expected):
                hint = " For one sample use x[None]." if len(shape) == len(expected) - 1 else ""
                raise InputError(
                    f"inputs have shape {shape}, but the model takes {len(expected)}-D "
                    f"batches shaped {tuple(expected)}.{hint}"
                )
            channels = expected[-1]
            if len(shape) in (3, 4, 5) and channels is not None and shape[-1] != channels:
                first, last = {3: ("(N, C, L)", "(N, L, C)"), 4: ("(N, C, H, W)", "NHWC"), 5: ("(N, C, D, H, W)", "(N, D, H, W, C)")}[len(shape)]
                order = ", ".join(str(a) for a in (0, *range(2, len(shape)), 1))
                hint = (
                    f" They look channels-first {first}; Keras models take {last}: pass "
                    f"x.transpose({order})."
                    if shape[1] == channels
                    else ""
                )
                raise InputError(
                    f"inputs have shape {shape}, but the model takes {channels} channels "
                    f"in {last} layout.{hint}"
                )
        return x

    def asarray(self, a: Any, like: Array | None = None) -> Any:
        """A host array as a tensor on ``like``'s device (default: the model's); floating
        arrays take ``like``'s dtype."""
        t = a if tf.is_tensor(a) else tf.convert_to_tensor(np.asarray(a))
        if like is not None and t.dtype.is_floating and t.dtype != like.dtype:
            t = tf.cast(t, like.dtype)
        device = getattr(like, "device", None) if like is not None else None
        return self._place(t, device or None)

    def weights_digest(self) -> str | None:
        """:func:`~limelight.core.arrays.digest_arrays` of ``get_weights()``."""
        return digest_arrays((str(i), w) for i, w in enumerate(self.native.get_weights()))

    def to_numpy(self, a: Array) -> np.ndarray:
        """The one way out of TensorFlow; NumPy arrays pass through."""
        if isinstance(a, np.ndarray):
            return a
        if tf.is_tensor(a) or isinstance(a, tf.Variable):
            return np.asarray(a.numpy())
        return np.asarray(a)

    def index_add(self, target: Array, index: Array, values: Array) -> Any:
        index = tf.reshape(tf.cast(index, tf.int64), (-1, 1))
        return tf.tensor_scatter_nd_add(target, index, tf.cast(values, target.dtype))

    @contextlib.contextmanager
    def precision(self, mode: str) -> Iterator[None]:
        """``"highest"``: TensorFloat-32 execution off for the duration (the previous setting
        restored after, also when the body raises; overlapping calls in several threads
        switch it once, and the last one out restores it); ``"default"``: untouched."""
        if mode != "highest":
            yield
            return
        with _HIGHEST.held(_tf32_off):  # overlapping calls restore the setting once, last
            yield

    def _device(self) -> str:
        """The device of the model's first weight ('' for a model without weights)."""
        if self._device_name is None:
            weights = list(getattr(self.native, "weights", []) or [])
            first = getattr(weights[0], "value", weights[0]) if weights else None
            self._device_name = str(getattr(first, "device", "") or "")
        return self._device_name

    def _place(self, t: Any, device: str | None = None) -> Any:
        """``t`` on ``device`` (default: the model's), copied only when it is elsewhere."""
        device = device or self._device()
        if not device or not tf.executing_eagerly() or t.device == device:
            return t
        with tf.device(device):
            return tf.identity(t)

    @staticmethod
    def _tensor(x: Any) -> Any:
        """A batch as a float32 tensor (explainers pass tensors; NumPy is converted); several
        inputs keep their structure."""
        if several(x):
            return map_inputs(KerasModel._tensor, x)
        if not tf.is_tensor(x):
            return tf.convert_to_tensor(np.asarray(x, np.float32))
        return x if x.dtype == tf.float32 else tf.cast(x, tf.float32)

    def _input_shape(self) -> tuple[int | None, ...] | None:
        try:
            shape = self.native.input_shape
        except (AttributeError, ValueError):  # subclassed or unbuilt models
            return None
        if isinstance(shape, tuple | list) and shape and not isinstance(shape[0], tuple | list):
            return tuple(shape)
        return None

    # -- randomised copies -------------------------------------------------------------------
    def parameter_layers(self) -> list[str]:
        """Layers that own weights directly (not containers), input side first."""
        return [
            p for p, layer in self._named_layers().items() if getattr(layer, "weights", None) and not _sublayers(layer)
        ]

    @holding_model_lock
    @_keeps_cause
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
        return KerasModel(clone, self.output)

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
        as_list = layer_list_error(layer)
        if as_list is not None:
            raise as_list
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

    @holding_model_lock
    @_keeps_cause
    def default_layer(self, x: Array | None = None) -> str:
        """The last layer (in execution order) with a spatial or token output that runs once per
        forward (see :func:`~limelight.core.layers.pick_default_layer`), traced on a sample
        ``x``; without one, on zeros shaped like the model's declared input."""
        if x is None:
            shape = self._input_shape()
            if shape is None or None in shape[1:]:
                raise LayerError(
                    "this Keras model declares no fixed input shape; pass a sample input to "
                    "default_layer(x) or layer= explicitly."
                )
            x = tf.zeros((1, *shape[1:]), tf.float32)
        x = self._tensor(x)
        self._build(x)
        cache = model_cache(self.native)
        key = ("default layer", shapes(x))
        if key not in cache:
            cache[key] = self._default_from_trace(take(x, slice(0, 1)))
        return cache[key]

    def _default_from_trace(self, x: Any) -> str:
        finished: list[Traced] = []
        alive: list[Any] = []  # outputs kept alive while tracing, so their id()s stay unique

        def record(name: str, output: Any) -> Any:
            shape = getattr(output, "shape", None) if tf.is_tensor(output) else None
            alive.append(output)
            finished.append(Traced(name, None if shape is None else tuple(shape), id(output)))
            return output

        with _tapped(self._named_layers(), record):
            _call(self.native, x)
        alive.clear()
        return pick_default_layer(finished, separator=SEPARATOR, input_shape=tuple(shape_reference(x).shape))

    def _layer(self, layer: object) -> tuple[str, Any]:
        path = self.resolve_layer(layer)
        return path, self._named_layers()[path]

    # -- compiled functions -----------------------------------------------------------------
    def _compiled(self, key: Any, build: Callable[[weakref.ref[Any]], Any]) -> Any:
        """The tf.function for ``key``, built once per model; it reaches the model only
        through a weak reference, so the cache never keeps the model alive."""
        cache = model_cache(self.native)
        key = _hashable(key)
        if self.output is not None:  # wrappers with another output= compile their own
            key = (*key, selector_key(self.output))
        if key not in cache:
            cache[key] = build(weakref.ref(self.native))
        return cache[key]

    def _forward_fn(self, spec: Any) -> Any:
        check = self._select()

        def build(ref: weakref.ref[Any]) -> Any:
            @tf.function(input_signature=[spec], autograph=False)
            def forward(inputs: Any) -> Any:
                return check(_call(_alive(ref), inputs))

            return forward

        return self._compiled(("forward", spec), build)

    def _activation_fn(self, spec: Any, path: str, layer: Any) -> Any:
        def build(ref: weakref.ref[Any]) -> Any:
            @tf.function(input_signature=[spec], autograph=False)
            def activation(inputs: Any) -> Any:
                captured: list[Any] = []

                def capture(name: str, output: Any) -> Any:
                    captured.append(output)
                    return output

                with _tapped({path: layer}, capture):
                    _call(_alive(ref), inputs)
                _check_captured(path, captured)
                return captured[0]

            return activation

        return self._compiled(("activation", path, spec), build)

    def _gradient_fn(self, spec: Any, path: str | None, layer: Any, target: Target, data_specs: tuple[Any, ...]) -> Any:
        """Compiled: outputs, activations and gradients ``(n, T, ...)`` of ``target``'s
        scores, the target's data as arguments; one forward, one tape."""
        xp, columns, check = self.xp, target.columns, self._select()

        def build(ref: weakref.ref[Any]) -> Any:
            @tf.function(input_signature=[spec, data_specs], autograph=False)
            def gradient(inputs: Any, data: Any) -> Any:
                captured: list[Any] = []
                with tf.GradientTape(watch_accessed_variables=False, persistent=columns > 1) as tape:
                    if path is None:
                        tape.watch(leaves(inputs))
                        captured.append(inputs)
                        outputs = _call(_alive(ref), inputs)
                    else:

                        def capture(name: str, output: Any) -> Any:
                            # Errors are raised after the forward, outside Keras's frames,
                            # which would otherwise rewrite their message.
                            if tf.is_tensor(output) and not captured:
                                tape.watch(output)
                            captured.append(output)
                            return output

                        with _tapped({path: layer}, capture):
                            outputs = _call(_alive(ref), inputs)
                        _check_captured(path, captured)
                    outputs = check(outputs)
                    sums = _column_sums(target.scores(xp, outputs, *data), columns)
                grads = [tape.gradient(total, captured[0]) for total in sums]
                if any(g is None for grad in grads for g in leaves(grad)):
                    where = "the input" if path is None else f"layer {path!r}"
                    raise NotDifferentiableError(
                        f"the model's output does not depend differentiably on {where}; pick a "
                        "layer on the path to the output."
                    )
                return outputs, captured[0], map_inputs(lambda *g: tf.stack(g, axis=1), *grads)

            return gradient

        return self._compiled(("gradient", path, spec, target.key(), data_specs), build)

    def _deeplift_fn(self, spec: Any, target: Target, data_specs: tuple[Any, ...]) -> Any:
        import_triton_first()
        from .tensorflow_deeplift import deeplift_rules

        xp, columns, check = self.xp, target.columns, self._select()

        def build(ref: weakref.ref[Any]) -> Any:
            @tf.function(input_signature=[spec, spec, data_specs], autograph=False)
            def deeplift(inputs: Any, references: Any, data: Any) -> Any:
                both = map_inputs(lambda a, r: tf.concat([a, r], 0), inputs, references)
                n = tf.shape(leaves(inputs)[0])[0]
                with deeplift_rules():
                    with tf.GradientTape(watch_accessed_variables=False, persistent=columns > 1) as tape:
                        tape.watch(leaves(both))
                        outputs = check(_call(_alive(ref), both))[:n]
                        sums = _column_sums(target.scores(xp, outputs, *data), columns)
                    grads = [
                        map_inputs(
                            lambda g, a: (tf.zeros_like(a) if g is None else g)[:n],
                            tape.gradient(total, both),
                            both,
                        )
                        for total in sums
                    ]
                return map_inputs(lambda *g: tf.stack(g, axis=1), *grads)

            return deeplift

        return self._compiled(("deeplift", spec, target.key(), data_specs), build)

    def _num_outputs(self, x: Any) -> int:
        """K (the last axis: classes, also of dense outputs), from the compiled forward's
        static output shape (one sample run otherwise)."""
        fn = self._forward_fn(_spec(x))
        shape = fn.get_concrete_function().structured_outputs.shape
        if shape[-1] is None:
            return int(fn(take(x, slice(0, 1))).shape[-1])
        return int(shape[-1])

    def _target_data(self, target: Target, like: Any) -> tuple[list[Any], tuple[Any, ...]]:
        """The target's per-sample data as tensors on ``like``'s device, and their specs."""
        like = leaves(like)[0]
        data = [self.asarray(d, like=like) for d in target.data()]
        return data, tuple(_spec(d) for d in data)

    # -- the array API -----------------------------------------------------------------------
    @holding_model_lock
    @_keeps_cause
    def predict(self, x: Array, *, batch_size: int | None = None) -> Any:
        x = self._tensor(x)
        forward = self._forward_fn(_spec(x))
        n = rows(x)
        return _cat([forward(x if _whole(n, b) else take(x, b)) for b in batches(n, batch_size)])

    @holding_model_lock
    @_keeps_cause
    def activations(self, x: Array, layer: str, *, batch_size: int | None = None) -> Any:
        x = self._tensor(x)
        path, obj = self._layer(layer)
        fn = self._activation_fn(_spec(x), path, obj)
        n = rows(x)
        return _cat([fn(x if _whole(n, b) else take(x, b)) for b in batches(n, batch_size)])

    @holding_model_lock
    @_keeps_cause
    def gradients(
        self, x: Array, target: Target, layer: str | None = None, *, batch_size: int | None = None
    ) -> Gradients:
        x = self._tensor(x)
        target = target.check(self._num_outputs(x))  # range checks before any work
        path, obj = self._layer(layer) if layer is not None else (None, None)
        data, data_specs = self._target_data(target, x)
        fn = self._gradient_fn(_spec(x), path, obj, target, data_specs)
        n = rows(x)
        outs, acts, grads = [], [], []
        for b in batches(n, batch_size):
            whole = _whole(n, b)
            out, act, grad = fn(x if whole else take(x, b), tuple(d if whole else d[b] for d in data))
            outs.append(out)
            acts.append(act)
            grads.append(grad)
        gradients = _cat(grads)
        return Gradients(
            _cat(outs), _cat(acts), map_inputs(lambda g: g[:, 0], gradients) if target.single else gradients
        )

    # -- edited activations (Ablation-CAM) ---------------------------------------------------
    def _edit_fn(self, spec: Any, rows_spec: Any, path: str, layer: Any) -> Any:
        """Compiled: the model's outputs when ``layer``'s output is replaced by ``rows``
        (the layer's ``call`` returns them instead of its own output); both batch axes free,
        so one function serves a batch of one sample (the prefix path) and a repeated one."""
        check = self._select()

        def build(ref: weakref.ref[Any]) -> Any:
            @tf.function(input_signature=[spec, rows_spec], autograph=False)
            def edited(inputs: Any, rows: Any) -> Any:
                captured: list[Any] = []

                def replace(name: str, output: Any) -> Any:
                    # Errors are raised after the forward, outside Keras's frames.
                    captured.append(output)
                    if len(captured) == 1 and tf.is_tensor(output) and _fits(output, rows):
                        return tf.cast(rows, output.dtype)
                    return output

                with _tapped({path: layer}, replace):
                    outputs = _call(_alive(ref), inputs)
                _check_captured(path, captured)
                if not _fits(captured[0], rows):
                    expected = tuple(captured[0].shape[1:])
                    raise InputError(
                        f"activations for layer {path!r} have shape {batch_shape(rows.shape)}, "
                        f"but the layer outputs {batch_shape((0, *expected))} per row (as "
                        f"activations() returns it): pass (n·R, {', '.join(map(str, expected))})."
                    )
                return check(outputs)

            return edited

        return self._compiled(("outputs with", path, spec, rows_spec), build)

    @holding_model_lock
    @_keeps_cause
    def outputs_with(self, x: Array, layer: str, activations: Array, *, batch_size: int | None = None) -> Any:
        """Outputs ``(n·R, K)`` with ``layer``'s output replaced by ``activations``
        (``(n·R, h, w, C)``, ``R`` rows per sample, sample-major).

        One compiled function runs the model with the layer's ``call`` returning the edited
        rows. The "prefix" path feeds one sample per call with up to ``batch_size`` of its
        rows: the layers before ``layer`` run once per call, and layers after it that combine
        its output with earlier tensors (``Add`` in residual networks) broadcast batch 1
        against the rows. Where that is wrong (``Concatenate`` with earlier tensors, reshapes
        with a fixed batch), as found on the first call by an error, the wrong number of rows
        or outputs that differ from the repeat path on two rows, the "repeat" path feeds each
        row its sample (the input repeated); the choice is cached per model, layer and input
        signature. One row per sample (or ``batch_size=1``) takes the repeat path.
        """
        x = self._tensor(x)
        path, obj = self._layer(layer)
        size = check_batch_size(batch_size)
        n = rows(x)
        rows_ = activations if tf.is_tensor(activations) else tf.convert_to_tensor(np.asarray(activations))
        if not rows_.dtype.is_floating:
            rows_ = tf.cast(rows_, tf.float32)
        if rows_.shape.rank is None or rows_.shape.rank < 2 or n == 0 or len(rows_) == 0 or len(rows_) % n:
            raise InputError(
                f"activations for layer {path!r} have shape {tuple(rows_.shape)}; outputs_with takes "
                f"(n·R, ...) rows in the layer's own channels-last shape, R edited copies for each "
                f"of the n = {n} inputs (a multiple of {n} rows)."
            )
        edited = self._place(rows_)
        repeats = len(edited) // n
        fn = self._edit_fn(_spec(x), _spec(edited), path, obj)
        cache = model_cache(self.native)
        key = ("activation edit", path, _hashable(_spec(x)))
        if repeats == 1 or size == 1 or cache.get(key) == "repeat":
            return self._repeat_outputs(fn, x, edited, repeats, size)
        first = None
        if key not in cache:
            first = self._prefix_probe(fn, x, edited, repeats, size)
            if first is None:  # remembered once the repeat path worked
                outputs = self._repeat_outputs(fn, x, edited, repeats, size)
                cache[key] = "repeat"
                return outputs
            cache[key] = "prefix"
        parts = []
        for i in range(n):
            for chunk in batches(repeats, size):
                if first is not None and i == 0 and chunk.start == 0:
                    parts.append(first)
                    continue
                parts.append(fn(take(x, slice(i, i + 1)), edited[i * repeats + chunk.start : i * repeats + chunk.stop]))
        return _cat(parts)

    @staticmethod
    def _repeat_outputs(fn: Any, x: Any, rows: Any, repeats: int, size: int | None) -> Any:
        """The plain way: each chunk of rows runs the whole model on its samples repeated."""
        parts = []
        for b in batches(len(rows), size):
            index = tf.range(b.start, b.stop) // repeats
            parts.append(fn(map_inputs(lambda a, index=index: tf.gather(a, index), x), rows if _whole(len(rows), b) else rows[b]))
        return _cat(parts)

    @staticmethod
    def _prefix_probe(fn: Any, x: Any, rows: Any, repeats: int, size: int | None) -> Any:
        """The outputs of the first chunk on the prefix path, or None when that path is wrong
        for this model (see :meth:`outputs_with`)."""
        count = min(repeats, size or repeats)
        try:
            out = fn(take(x, slice(0, 1)), rows[:count])
        except LimelightError:
            raise
        except Exception:  # noqa: BLE001 - any failure: the model does not broadcast batch 1 against the rows
            return None
        if int(out.shape[0]) != count:
            return None
        check = fn(map_inputs(lambda a: tf.repeat(a[:1], 2, axis=0), x), rows[:2])
        scale = max(float(tf.reduce_max(tf.abs(check))), 1e-6)
        tol = 1e-3 if rows.dtype in (tf.float32, tf.float64) else 5e-2
        if float(tf.reduce_max(tf.abs(out[:2] - check))) > tol * scale:
            return None
        return out

    # -- DeepLIFT ----------------------------------------------------------------------------
    def _unsupported(self, x: Any) -> dict[str, int]:
        """Operations without a DeepLIFT rule in the traced forward graph (walked once per
        model and input signature, cached)."""
        import_triton_first()
        from .tensorflow_deeplift import unsupported_ops

        spec = _spec(x)
        cache = model_cache(self.native)
        key = _hashable(("deeplift unsupported", spec))
        if key not in cache:
            graph = self._forward_fn(spec).get_concrete_function().graph
            cache[key] = dict(unsupported_ops(graph, graph.inputs[: len(leaves(x))]))
        return dict(cache[key])

    @holding_model_lock
    @_keeps_cause
    def deeplift_unsupported(self, x: Array) -> list[str]:
        """Operations on the input's path that DeepLIFT has no rule for (empty: all fine)."""
        return sorted(self._unsupported(self._tensor(x)))

    @holding_model_lock
    @_keeps_cause
    def deeplift_gradients(
        self, x: Array, references: Array, target: Target, *, batch_size: int | None = None
    ) -> Any:
        """DeepLIFT rescale multipliers ``(n, T, ...)`` of ``target``'s scores for each pair
        ``(x[i], references[i])``: ``Σ m ⊙ (x - r) = score(x) - score(r)`` per column."""
        x, references = self._tensor(x), self._tensor(references)
        unsupported = self._unsupported(x)
        if unsupported:
            raise no_deeplift_rule(unsupported)
        target = target.check(self._num_outputs(x))
        data, data_specs = self._target_data(target, x)
        fn = self._deeplift_fn(_spec(x), target, data_specs)
        n = rows(x)
        parts = []
        for b in batches(n, batch_size):
            whole = _whole(n, b)
            pair = (x, references) if whole else (take(x, b), take(references, b))
            parts.append(fn(*pair, tuple(d if whole else d[b] for d in data)))
        return _cat(parts)


def _fits(output: Any, rows: Any) -> bool:
    """Whether edited ``rows`` have the per-row shape of the layer's ``output``."""
    return bool(output.shape[1:].is_compatible_with(rows.shape[1:]))


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
        "(one score per class) or dense (N, H, W, K) / (N, L, K) / (N, D, H, W, K) (one score "
        "per position and class, classes last); pick another with output=."
    )


def _check_outputs(outputs: Any, output: OutputSelector = None, names: list[str] | None = None) -> Any:
    """The explained tensor of what the model returned, picked by ``output=`` (a name of
    ``names``, the model's ``output_names``, for multi-output lists), as float32; ``(N, K)``
    or dense channels-last ``(N, ..., K)``."""
    outputs = select_output(outputs, output, is_array=tf.is_tensor, names=names)
    if outputs.shape.rank is None or not 2 <= outputs.shape.rank <= 5:
        raise _bad_outputs(outputs.shape)
    return tf.cast(outputs, tf.float32)
