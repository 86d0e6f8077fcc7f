"""``OnnxModel``: an ONNX model run by ONNX Runtime, behind :class:`limelight.Model`.

* A host-only backend: arrays are NumPy (:class:`~limelight.core.model.NumpyModel`), the
  model runs in an ``onnxruntime.InferenceSession`` (CPU by default; pass ``providers=`` for
  others).
* Inputs are given in the graph's own layout (NCHW for a model exported from PyTorch, NHWC
  for one from Keras); :meth:`OnnxModel.canonical` makes them channels-last. The layout is
  read from the graph input's shape (see :func:`detect_layout`), or given with ``layout=``.
  Activations of an NCHW graph are handed out channels-last too.
* Capabilities: :class:`~limelight.core.model.SupportsLayers` (layers are the graph's
  value names, the outputs of its nodes) and
  :class:`~limelight.core.model.SupportsActivationEdit`; no gradients. Each is served by a
  cut of the graph: a smaller ``ModelProto`` whose inputs or outputs are intermediate
  values, with its own cached session. The user's model and session are never modified.
* Importing this module imports neither onnx nor onnxruntime: they are imported when a
  model is wrapped.
"""

from __future__ import annotations

import os
import pathlib
import re
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from limelight.core.errors import InputError, LayerError, LimelightError, UnsupportedError
from limelight.core.model import Array, NumpyModel, batches, unknown_layer

from . import graph as g

__all__ = ["OnnxModel", "OnnxModelError", "detect_layout", "is_onnx_path"]

#: ONNX Runtime's tensor type names -> NumPy dtypes of the inputs it takes.
_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
}
#: Channel counts of images: the axis that has one of these is the channel axis.
_IMAGE_CHANNELS = (1, 3, 4)
#: Words in ONNX Runtime's error messages that say the inputs do not fit the graph.
_SHAPE_WORDS = re.compile(r"\b(shapes?|dimensions?|dims?|rank|invalid_argument|index)\b", re.IGNORECASE)


class OnnxModelError(LimelightError, ValueError):
    """An ONNX model that cannot be read or explained: a missing or corrupt file, a graph
    with several inputs, an unknown output name."""


def is_onnx_path(obj: object) -> bool:
    """Whether ``obj`` is a ``str`` or path naming an ``.onnx`` file (the file need not exist)."""
    return isinstance(obj, str | os.PathLike) and os.fspath(obj).lower().endswith(".onnx")


def detect_layout(shape: Sequence[int | str | None]) -> str:
    """``"NCHW"``, ``"NHWC"`` or ``"flat"`` (no layout change) for a graph input's shape.

    A 4-D input is NCHW when dimension 1 is an image channel count (1, 3 or 4) and
    dimension 3 is not, NHWC the other way round; when both or neither are, the smaller
    fixed dimension is the channel axis (a square image decides a tie), and with no fixed
    channel dimension at all NCHW (what PyTorch exports). Pass ``layout=`` to override.
    """
    if len(shape) != 4:
        return "flat"
    c1, h, c3 = (d if isinstance(d, int) else None for d in (shape[1], shape[2], shape[3]))
    first, last = c1 in _IMAGE_CHANNELS, c3 in _IMAGE_CHANNELS
    if first != last:
        return "NCHW" if first else "NHWC"
    if c1 is not None and c3 is not None and c1 != c3:
        return "NCHW" if c1 < c3 else "NHWC"
    if c1 is not None and c3 is not None:  # (N, c, c, c)-like: a square image decides
        return "NHWC" if h is not None and h == c1 and h != c3 else "NCHW"
    if c3 is not None and c1 is None:
        return "NHWC"
    return "NCHW"


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise OnnxModelError("limelight-onnx needs 'onnx', which is not installed: pip install onnx") from exc
    return onnx


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise OnnxModelError(
            "limelight-onnx needs 'onnxruntime', which is not installed: pip install onnxruntime"
        ) from exc
    return onnxruntime


def _shape_text(shape: Sequence[int | str | None]) -> str:
    dims = ["N" if i == 0 else (str(d) if isinstance(d, int) else (d or "?")) for i, d in enumerate(shape)]
    return "(" + ", ".join(dims) + ")"


class OnnxModel(NumpyModel):
    """An ONNX model (a ``.onnx`` path, its ``bytes``, an ``onnx.ModelProto`` or an
    ``onnxruntime.InferenceSession``) taking one input and returning ``(N, K)``.

    Args:
        native: the model.
        providers: ONNX Runtime execution providers for the sessions limelight creates
            (default ``["CPUExecutionProvider"]``; a session you pass keeps its own, and
            the cuts of its graph use the same).
        sess_options: ``onnxruntime.SessionOptions`` for the sessions limelight creates.
        layout: ``"NCHW"``, ``"NHWC"`` or ``"flat"``; None reads it from the graph input's
            shape (:func:`detect_layout`). It also says how 4-D activations are laid out.
        output: the name (or index) of the graph output to explain; default the first.
    """

    framework = "onnx"

    def __init__(
        self,
        native: object,
        *,
        providers: Sequence[Any] | None = None,
        sess_options: Any = None,
        layout: str | None = None,
        output: str | int | None = None,
    ) -> None:
        super().__init__(native)
        ort = _ort()
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, ...], Any] = {}
        self._proto: Any = None
        self._types: dict[str, Any] | None = None
        self._traced: dict[tuple[int, ...], dict[str, tuple[int, ...] | None]] = {}
        self._tails: dict[str, tuple[list[int], list[str]]] = {}
        self._layers: list[str] | None = None
        self._known: frozenset[str] = frozenset()
        if isinstance(native, ort.InferenceSession):
            self._session = native
            self._providers = native.get_providers()
            self._provider_options = native.get_provider_options()
            self._options = sess_options if sess_options is not None else native.get_session_options()
        else:
            self._proto = _load_proto(native)
            self._providers = list(providers) if providers is not None else ["CPUExecutionProvider"]
            self._provider_options = None
            self._options = sess_options
            self._session = self._new_session(self._proto, native)
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            names = ", ".join(repr(i.name) for i in inputs)
            raise OnnxModelError(
                f"this ONNX model has {len(inputs)} inputs ({names}); limelight explains models "
                "with one input. Cut the graph to one input (onnx.utils.extract_model) or fix "
                "the others as initializers."
            )
        self.input_name: str = inputs[0].name
        self.input_shape: tuple[int | str | None, ...] = tuple(inputs[0].shape)
        self.input_dtype = np.dtype(_DTYPES.get(inputs[0].type, np.float32))
        outputs = [o.name for o in self._session.get_outputs()]
        if output is None:
            output = 0
        if isinstance(output, int) and not isinstance(output, bool) and -len(outputs) <= output < len(outputs):
            self.output_name: str = outputs[output]
        elif isinstance(output, str) and output in outputs:
            self.output_name = output
        else:
            raise OnnxModelError(f"output={output!r} is not an output of this ONNX model; its outputs: {outputs}.")
        if layout is None:
            layout = detect_layout(self.input_shape)
        if layout not in ("NCHW", "NHWC", "flat") or (layout != "flat" and len(self.input_shape) != 4):
            raise OnnxModelError(
                f"layout={layout!r} does not fit the input {self.input_name!r} of shape "
                f"{_shape_text(self.input_shape)}: use 'NCHW' or 'NHWC' for 4-D image inputs, else 'flat'."
            )
        self.layout: str = layout

    # -- sessions ----------------------------------------------------------------------------
    def _new_session(self, proto: Any, source: object = None) -> Any:
        """An InferenceSession of ``proto`` (from ``source``'s path when that is the file, so
        external weights next to it load), with this model's providers and options."""
        ort = _ort()
        what: Any = os.fspath(source) if isinstance(source, str | os.PathLike) else proto.SerializeToString()
        try:
            return ort.InferenceSession(
                what,
                sess_options=self._options,
                providers=self._providers,
                provider_options=self._provider_options,
            )
        except Exception as exc:
            raise OnnxModelError(
                f"ONNX Runtime cannot run this model: {type(exc).__name__}: {str(exc).strip()[:400]}"
            ) from exc

    def _cached_session(self, key: tuple[str, ...], build: Callable[[], Any]) -> Any:
        with self._lock:
            session = self._sessions.get(key)
        if session is None:
            session = self._new_session(build())
            with self._lock:
                session = self._sessions.setdefault(key, session)
        return session

    def _graph(self) -> Any:
        """The ``ModelProto`` (for a wrapped session: read back from its file or bytes)."""
        if self._proto is None:
            self._proto = _session_proto(self._session)
        return self._proto

    def _value_types(self) -> dict[str, Any]:
        if self._types is None:
            self._types = g.value_types(self._graph())
        return self._types

    def _run(self, session: Any, feed: dict[str, np.ndarray], outputs: list[str]) -> list[Any]:
        """``session.run``; ONNX Runtime's complaints about the inputs' shapes become an
        :class:`~limelight.core.errors.InputError` naming what was fed and what it takes."""
        try:
            return list(session.run(outputs, feed))
        except Exception as exc:
            text = str(exc).strip()
            if type(exc).__name__ not in ("InvalidArgument", "Fail", "RuntimeException") or not _SHAPE_WORDS.search(text):
                raise
            fed = ", ".join(f"{name} {_shape_text(value.shape)}" for name, value in feed.items())
            raise InputError(
                f"ONNX Runtime refused the inputs ({fed}); the model's input {self.input_name!r} takes "
                f"{self._describe_input()}. {type(exc).__name__}: {text[:400]}"
            ) from exc

    # -- in and out --------------------------------------------------------------------------
    def _describe_input(self) -> str:
        layout = "" if self.layout == "flat" else f" ({self.layout})"
        return f"{_shape_text(self.input_shape)}{layout}"

    def canonical(self, inputs: Any) -> np.ndarray:
        """A batch in the graph's layout (NCHW for an NCHW graph) -> a checked float32
        channels-last NumPy array. The batch's shape is checked against the graph input's
        fixed dimensions."""
        if type(inputs).__module__.startswith("torch") and hasattr(inputs, "detach"):
            inputs = inputs.detach().cpu()
        arr = np.asarray(super().canonical(inputs))
        expected = self.input_shape
        if arr.ndim != len(expected):
            hint = " For one sample use x[None]." if arr.ndim == len(expected) - 1 else ""
            raise InputError(
                f"inputs have shape {arr.shape}, but this ONNX model's input {self.input_name!r} "
                f"takes {self._describe_input()}.{hint}"
            )
        wrong = [i for i, d in enumerate(expected) if i > 0 and isinstance(d, int) and d != arr.shape[i]]
        if wrong:
            hint = ""
            if self.layout in ("NCHW", "NHWC"):
                swapped = (0, 3, 1, 2) if self.layout == "NCHW" else (0, 2, 3, 1)
                other = "channels-last (N, H, W, C)" if self.layout == "NCHW" else "channels-first (N, C, H, W)"
                fixed = [(i, d) for i, d in enumerate(expected) if i > 0 and isinstance(d, int)]
                if all(arr.shape[swapped[i]] == d for i, d in fixed):
                    hint = f" They look {other}: pass x.transpose{swapped}."
            raise InputError(
                f"inputs have shape {arr.shape}, but this ONNX model's input {self.input_name!r} "
                f"takes {self._describe_input()}.{hint}"
            )
        if self.layout == "NCHW":
            arr = arr.transpose(0, 2, 3, 1)
        return np.ascontiguousarray(arr)

    def _to_graph(self, x: Array, dtype: Any = None) -> np.ndarray:
        """Canonical (channels-last) -> the graph's layout and dtype, C-contiguous."""
        arr = np.asarray(x)
        if self.layout == "NCHW" and arr.ndim == 4:
            arr = arr.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(arr, dtype=self.input_dtype if dtype is None else dtype)

    def _from_graph(self, a: Any) -> np.ndarray:
        """A 4-D value of the graph -> channels-last (NCHW graphs); other ranks as they are."""
        arr = np.asarray(a)
        if self.layout == "NCHW" and arr.ndim == 4:
            arr = arr.transpose(0, 2, 3, 1)
        return np.ascontiguousarray(arr)

    def _outputs(self, out: Any) -> np.ndarray:
        arr = np.asarray(out)
        if arr.ndim != 2:
            raise InputError(
                f"the ONNX model's output {self.output_name!r} has shape {arr.shape}; limelight "
                "explains outputs of shape (N, K) (one score per class): pick another with output=."
            )
        return arr if arr.dtype in (np.float32, np.float64) else arr.astype(np.float32)

    def predict(self, x: Array, *, batch_size: int | None = None) -> np.ndarray:
        """Outputs ``(N, K)``; at most ``batch_size`` rows per ``session.run``."""
        x = np.asarray(x)
        parts = [
            self._run(self._session, {self.input_name: self._to_graph(x[rows])}, [self.output_name])[0]
            for rows in (batches(len(x), batch_size) if len(x) else [slice(None)])
        ]
        return self._outputs(parts[0] if len(parts) == 1 else np.concatenate(parts))

    # -- layers ------------------------------------------------------------------------------
    def layers(self) -> list[str]:
        """The graph's values: every output of a (top-level) node, in graph order."""
        if self._layers is None:
            self._layers = g.node_outputs(self._graph())
        return list(self._layers)

    def resolve_layer(self, layer: object) -> str:
        """A value name, a node name (a node with one output stands for it), or an
        ``onnx.NodeProto`` / ``onnx.ValueInfoProto`` of this graph -> the value's name."""
        if isinstance(layer, list | tuple):
            raise LayerError(
                f"layer takes one layer (a value name), not a {type(layer).__name__} of {len(layer)}; "
                "limelight explains one layer per call."
            )
        if isinstance(layer, str) and self._layers is not None and layer in self._known:
            return layer
        names = self.layers()
        self._known = frozenset(names)
        onnx = sys.modules.get("onnx")
        if onnx is not None and isinstance(layer, onnx.ValueInfoProto):
            layer = layer.name
        if onnx is not None and isinstance(layer, onnx.NodeProto):
            layer = layer.name or (layer.output[0] if len(layer.output) == 1 else "")
        if isinstance(layer, str):
            if layer in self._known:
                return layer
            for node in self._graph().graph.node:
                if node.name == layer:
                    outputs = [o for o in node.output if o]
                    if len(outputs) == 1:
                        return outputs[0]
                    raise LayerError(
                        f"node {layer!r} has {len(outputs)} outputs ({', '.join(map(repr, outputs))}); "
                        "pass the name of the one to explain."
                    )
        raise unknown_layer(layer, names, self.framework)

    def _shapes(self, x: np.ndarray) -> dict[str, tuple[int, ...] | None]:
        """Graph-layout shape of every node output that depends on the input's data (graph
        order; None: unknown), for a batch of one sample shaped like ``x``'s: from ONNX shape
        inference with the input's dimensions fixed, or, where inference leaves a shape open,
        from a run on ``x[:1]`` with all of them as outputs. Cached per input shape."""
        key = tuple(x.shape[1:])
        with self._lock:
            found = self._traced.get(key)
        if found is not None:
            return found
        proto = self._graph()
        on_path = g.downstream(proto, self.input_name, through_shape=False)
        values = [o for i, node in enumerate(proto.graph.node) if i in on_path for o in node.output if o]
        fed = self._to_graph(x[:1])
        inferred = g.inferred_shapes(proto, self.input_name, fed.shape)
        shapes: dict[str, tuple[int, ...] | None] = {v: inferred.get(v) for v in values}
        if values and any(shape is None for shape in shapes.values()):
            cut = g.cut(proto, [self.input_name], values, self._value_types())
            results = self._run(self._new_session(cut), {self.input_name: fed}, values)
            shapes = {v: r.shape if isinstance(r, np.ndarray) else None for v, r in zip(values, results, strict=True)}
        with self._lock:
            self._traced[key] = shapes
        return shapes

    def default_layer(self, x: Array) -> str:
        """The last value in graph order with a spatial 4-D shape (more than one position)
        that depends on the input, traced on ``x``'s sample shape (cached): for a ResNet
        the final ``Relu`` of its last stage, not the pooled output."""
        hw = (2, 3) if self.layout == "NCHW" else (1, 2)
        chosen = None
        for name, shape in self._shapes(np.asarray(x)).items():
            if shape is not None and len(shape) == 4 and shape[hw[0]] * shape[hw[1]] > 1:
                chosen = name
        if chosen is None:
            raise LayerError(
                "this ONNX model has no value with a spatial (h, w, channels) output; pass layer= "
                "explicitly (Model.layers() lists the names)."
            )
        return chosen

    def activations(self, x: Array, layer: str, *, batch_size: int | None = None) -> np.ndarray:
        """Activations of value ``layer`` (channels-last for an NCHW graph), at most
        ``batch_size`` samples per run."""
        name = self.resolve_layer(layer)
        session = self._cached_session(
            ("activations", name), lambda: g.cut(self._graph(), [self.input_name], [name], self._value_types())
        )
        x = np.asarray(x)
        parts = [
            self._run(session, {self.input_name: self._to_graph(x[rows])}, [name])[0]
            for rows in batches(len(x), batch_size)
        ]
        return self._from_graph(parts[0] if len(parts) == 1 else np.concatenate(parts))

    # -- activation edits ---------------------------------------------------------------------
    def _tail(self, layer: str) -> tuple[Any, Any, list[str]]:
        """For ``layer``: the session of the graph after it (fed the layer and the values it
        reads from before the layer), the session computing those values (None when there
        are none but the graph input), and their names."""
        proto = self._graph()
        with self._lock:
            cut = self._tails.get(layer)
        if cut is None:
            cut = g.frontier(proto, layer, self.output_name, self.input_name)
            with self._lock:
                self._tails[layer] = cut
        nodes, outside = cut
        if not nodes:
            raise LayerError(
                f"the output {self.output_name!r} does not depend on layer {layer!r} (or is that "
                "layer); pick a layer on the way to the output."
            )
        types = self._value_types()
        tail = self._cached_session(("tail", layer), lambda: g.cut(proto, [layer, *outside], [self.output_name], types, nodes))
        computed = [n for n in outside if n != self.input_name]
        head = (
            self._cached_session(("head", layer), lambda: g.cut(proto, [self.input_name], computed, types))
            if computed
            else None
        )
        return tail, head, outside

    def _value_dtype(self, name: str) -> Any:
        known = self._value_types().get(name)
        if known is None:
            return np.float32
        onnx = _onnx()
        return onnx.helper.tensor_dtype_to_np_dtype(known.tensor_type.elem_type)

    def outputs_with(self, x: Array, layer: str, activations: Array, *, batch_size: int | None = None) -> np.ndarray:
        """Outputs ``(n·R, K)`` with ``layer``'s value replaced by ``activations``
        (``(n·R, h, w, C)`` channels-last, sample-major; see
        :class:`~limelight.core.model.SupportsActivationEdit`).

        The graph after ``layer`` runs on the edited activations. What it also reads from
        before the layer (the block input of a skip connection, the graph input) is computed
        once per sample, at most ``batch_size`` samples per run, and repeated for that
        sample's rows; at most ``batch_size`` rows per run of the rest.
        """
        name = self.resolve_layer(layer)
        x, acts = np.asarray(x), np.asarray(activations)
        n, rows = len(x), len(acts)
        if n == 0 or rows == 0 or rows % n:
            raise InputError(
                f"activations has {rows} rows for {n} samples; give R > 0 edited copies per sample "
                "(n·R rows, sample-major)."
            )
        repeats = rows // n
        shape = self._shapes(x).get(name)
        if shape is not None and len(shape) == acts.ndim:
            expected = tuple(shape[1:]) if self.layout != "NCHW" or len(shape) != 4 else (shape[2], shape[3], shape[1])
            if tuple(acts.shape[1:]) != expected:
                raise InputError(
                    f"activations for layer {name!r} have shape {acts.shape}, but the layer outputs "
                    f"{expected} per row (channels-last, as activations() returns it): pass "
                    f"(n·R, {', '.join(map(str, expected))})."
                )
        elif shape is not None:
            raise InputError(
                f"activations for layer {name!r} have shape {acts.shape}, but the layer's output has "
                f"{len(shape)} dimensions, (N, ...) per row."
            )
        tail, head, outside = self._tail(name)
        before: dict[str, np.ndarray] = {}
        if self.input_name in outside:
            before[self.input_name] = self._to_graph(x)
        if head is not None:
            computed = [v for v in outside if v != self.input_name]
            parts = [
                self._run(head, {self.input_name: self._to_graph(x[b])}, computed) for b in batches(n, batch_size)
            ]
            for i, value in enumerate(computed):
                before[value] = np.concatenate([p[i] for p in parts]) if len(parts) > 1 else parts[0][i]
        dtype = self._value_dtype(name)
        outs = []
        for b in batches(rows, batch_size):
            samples = np.arange(b.start, b.stop) // repeats
            feed = {name: self._to_graph(acts[b], dtype)}
            feed.update({value: np.ascontiguousarray(array[samples]) for value, array in before.items()})
            outs.append(self._run(tail, feed, [self.output_name])[0])
        return self._outputs(outs[0] if len(outs) == 1 else np.concatenate(outs))

    # -- loading ----------------------------------------------------------------------------
    def metadata(self) -> dict[str, str]:
        """The model's custom metadata (``metadata_props``)."""
        return dict(self._session.get_modelmeta().custom_metadata_map)

    def preprocess(self, images: Any) -> np.ndarray:
        """``(N, H, W, 3)`` RGB in [0, 1] -> what the graph is fed: its layout and dtype, no
        normalisation (bake mean/std into the exported graph). A 1-channel graph gets the
        luma (ITU-R 601), a 4-channel one an opaque alpha channel."""
        arr = np.asarray(images, dtype=np.float32)
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise InputError(f"preprocess takes RGB images (N, H, W, 3); got shape {arr.shape}.")
        if self.layout == "flat":
            raise InputError(f"this ONNX model's input {self.input_name!r} takes {self._describe_input()}, not images.")
        channel = self.input_shape[1 if self.layout == "NCHW" else 3]
        if channel == 1:
            arr = arr @ np.asarray([[0.299], [0.587], [0.114]], np.float32)
        elif channel == 4:
            arr = np.concatenate([arr, np.ones_like(arr[..., :1])], axis=-1)
        elif isinstance(channel, int) and channel != 3:
            raise InputError(f"this ONNX model takes {channel}-channel images; limelight's preprocessing makes 1, 3 or 4.")
        return self._to_graph(arr)

    def input_size(self) -> tuple[int, int] | None:
        """``(H, W)`` when the graph fixes them, else None."""
        if self.layout == "flat":
            return None
        h, w = self.input_shape[2:4] if self.layout == "NCHW" else self.input_shape[1:3]
        return (h, w) if isinstance(h, int) and isinstance(w, int) else None


def _load_proto(native: object) -> Any:
    """A path, ``bytes`` or ``ModelProto`` -> a checked ``ModelProto``."""
    onnx = _onnx()
    if isinstance(native, onnx.ModelProto):
        proto = native
    elif isinstance(native, str | os.PathLike):
        path = pathlib.Path(os.fspath(native))
        if not path.is_file():
            raise OnnxModelError(f"no such ONNX file: {path}")
        try:
            proto = onnx.load(path)
        except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
            raise OnnxModelError(f"{path} is not a valid ONNX model: {type(exc).__name__}: {exc}") from None
    elif isinstance(native, bytes | bytearray):
        try:
            proto = onnx.load_model_from_string(bytes(native))
        except Exception as exc:  # noqa: BLE001
            raise OnnxModelError(f"the bytes given are not an ONNX model: {type(exc).__name__}: {exc}") from None
    else:
        raise OnnxModelError(
            f"cannot read an ONNX model from a {type(native).__name__}; give a .onnx path, its bytes, "
            "an onnx.ModelProto or an onnxruntime.InferenceSession."
        )
    if not proto.graph.node:
        raise OnnxModelError("this ONNX model has an empty graph (no nodes): is it an ONNX model file?")
    return proto


def _session_proto(session: Any) -> Any:
    """The model of an ``InferenceSession`` created from a file or bytes. ONNX Runtime keeps
    no public handle on it; its private ``_model_path`` / ``_model_bytes`` are read, and
    without them layers are unavailable."""
    path = getattr(session, "_model_path", None)
    data = getattr(session, "_model_bytes", None)
    if path:
        return _load_proto(pathlib.Path(path))
    if data:
        return _load_proto(bytes(data))
    raise UnsupportedError(
        "this onnxruntime.InferenceSession does not expose its model, which layers and "
        "activation edits need; wrap the .onnx path or the onnx.ModelProto instead."
    )
