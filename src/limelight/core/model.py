"""The backend interface: :class:`Model`, its array helpers, and the capability protocols.

Every array between a :class:`Model` and an explainer is the backend's own array type on
the model's device (a torch tensor, a TensorFlow tensor, a NumPy array for host-only
backends), channels-last: inputs ``(N, H, W, C)`` (or ``(N, D)``), activations
``(N, h, w, C)``, outputs ``(N, K)``, maps ``(N, H, W)``; 1-D signals ``(N, L, C)`` and
volumes ``(N, D, H, W, C)`` likewise, with ``(N, l, C)`` / ``(N, d, h, w, C)`` activations
and ``(N, L)`` / ``(N, D, H, W)`` maps; token layers of transformers ``(N, T, C)``,
``(N, H, W)`` grayscale batches without a channel axis kept as they are. Explainers compute on them with
:attr:`Model.xp`, an Array API namespace, plus the helpers the standard lacks
(:meth:`Model.asarray`, :meth:`Model.to_numpy`, :meth:`Model.index_add`,
:meth:`Model.resize`). Only final results cross to NumPy.

Optional capabilities are :class:`typing.Protocol` classes; an explainer lists the ones
it needs in ``requires`` and they are checked with ``isinstance`` before any work.
"""

from __future__ import annotations

import abc
import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from .errors import LayerError, ParameterError, close_matches
from .explanation import owned
from .ops import bilinear_matrix

if TYPE_CHECKING:
    from .outputs import OutputSelector
    from .targets import Target

__all__ = [
    "Array",
    "Gradients",
    "Model",
    "NumpyModel",
    "SupportsGradients",
    "SupportsLayers",
    "SupportsDeepLift",
    "SupportsRandomize",
    "SupportsActivationEdit",
    "PRECISIONS",
    "reinitialize",
    "batches",
    "check_batch_size",
    "unknown_layer",
    "layer_list_error",
    "batch_shape",
    "SHAPE_WORDS",
]

#: The backend's array type (torch.Tensor, tf.Tensor, numpy.ndarray, ...).
Array = Any

#: ``precision=`` values: ``"auto"`` (full precision where the method's correctness needs
#: it, else the user's global setting), ``"highest"`` (TF32 and reduced-precision reductions
#: off), ``"default"`` (the user's global setting, untouched).
PRECISIONS = ("auto", "highest", "default")


@dataclass(frozen=True)
class Gradients:
    """What :meth:`SupportsGradients.gradients` returns: backend arrays on the model's device.

    ``outputs`` is ``(N, K)``; ``activations`` has the layer's (or the input's) shape,
    e.g. ``(N, h, w, C)``; ``gradients`` is d score / d activations, the same shape, with a
    ``T`` axis after ``N`` unless the target is ``single``.
    """

    outputs: Array
    activations: Array
    gradients: Array


def check_batch_size(batch_size: int | None) -> int | None:
    """``batch_size`` checked: None (everything at once) or a positive integral number
    (``int``, ``np.int64``, anything with ``__index__`` but a bool), returned as an ``int``."""
    if batch_size is None:
        return None
    import operator

    try:
        size = None if isinstance(batch_size, bool | np.bool_) else operator.index(batch_size)
    except TypeError:
        size = None
    if size is None or size < 1:
        raise ParameterError(f"batch_size must be a positive int, got {batch_size!r}.")
    return size


def batches(n: int, batch_size: int | None) -> Iterator[slice]:
    """Slices that cut ``n`` samples into chunks of at most ``batch_size`` (None: one)."""
    size = check_batch_size(batch_size) or max(n, 1)
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def unknown_layer(layer: object, names: list[str], framework: str) -> LayerError:
    """The error for a layer name that is not one of ``names``, listing the closest ones."""
    return LayerError(
        f"unknown layer {layer!r} for this {framework} model."
        + close_matches(str(layer), names)
        + " Model.layers() lists every name."
    )


def layer_list_error(layer: object) -> LayerError | None:
    """The short error for ``layer=[layer]`` (pytorch-grad-cam's ``target_layers`` habit),
    or None when ``layer`` is not a list or tuple."""
    if not isinstance(layer, list | tuple):
        return None
    return LayerError(
        f"layer takes one layer (a name or a layer object), not a {type(layer).__name__} of "
        f"{len(layer)}; limelight explains one layer per call: pass layer=layers[0]."
    )


def batch_shape(shape: Any) -> str:
    """``(N, 3, 16, 16)`` for a batch of shape ``(n, 3, 16, 16)``: the per-sample shape, for
    error messages (the batch may be a slice of the user's; ``n`` may be unknown)."""
    return "(" + ", ".join(["N", *(str(d) for d in tuple(shape)[1:])]) + ")"


#: Words in a framework's error message that say the inputs do not fit the model.
SHAPE_WORDS = re.compile(r"\b(shapes?|sizes?|channels?|dimensions?|dims?|ndim|rank|mat1|mat2)\b", re.IGNORECASE)


class Model(abc.ABC):
    """A framework's model behind limelight's array API.

    Subclasses set :attr:`framework` and :attr:`xp`, implement :meth:`canonical`,
    :meth:`predict`, :meth:`asarray` and :meth:`to_numpy`, and the capability protocols
    they provide. They never leave the native model modified, and process at most
    ``batch_size`` samples per framework call.
    """

    framework: ClassVar[str]
    #: Which of the model's outputs is explained (``output=``: a key, attribute, index or
    #: callable; see :mod:`limelight.core.outputs`); None: the default choice.
    output: OutputSelector = None

    def __init__(self, native: object) -> None:
        self.native = native

    def __repr__(self) -> str:
        return f"<limelight {type(self).__name__} ({self.framework}) of {type(self.native).__name__}>"

    @property
    @abc.abstractmethod
    def xp(self) -> ModuleType:
        """The Array API namespace of this backend's arrays."""

    # -- in and out ---------------------------------------------------------------------------
    @abc.abstractmethod
    def canonical(self, inputs: Any) -> Array:
        """Inputs as the user feeds the native model -> a checked channels-last array on the
        model's device (for torch, a permuted view of the user's tensor, not a copy)."""

    @abc.abstractmethod
    def predict(self, x: Array, *, batch_size: int | None = None) -> Array:
        """Model outputs ``(N, K)`` for canonical inputs ``x``; no gradients."""

    @abc.abstractmethod
    def asarray(self, a: Any, like: Array | None = None) -> Array:
        """A host array (small constants, random draws) on the device of ``like`` (default:
        the model's), with ``like``'s dtype when ``a`` is floating and ``like`` given."""

    @abc.abstractmethod
    def to_numpy(self, a: Array) -> np.ndarray:
        """The one way out: a backend array as a NumPy array on the host."""

    def prefetch(self, a: Array) -> Callable[[], np.ndarray]:
        """Start bringing ``a`` to the host; calling the result returns it (an owned,
        read-only NumPy array). This version copies when called; backends with asynchronous
        copies start them here, so the copy overlaps the work that follows."""
        return lambda: owned(self.to_numpy(a))

    # -- what the standard lacks ------------------------------------------------------------
    def index_add(self, target: Array, index: Array, values: Array) -> Array:
        """``target`` with ``values[i]`` added to ``target[index[i]]`` (repeats accumulate);
        a new array. This version is a one-hot matrix product, exact and standard."""
        xp = self.xp
        n = target.shape[0]
        rows = self.asarray(np.arange(n, dtype=np.int64).reshape(-1, 1), like=target)
        onehot = xp.astype(xp.reshape(index, (1, -1)) == rows, target.dtype)
        flat = xp.reshape(values, (values.shape[0], -1))
        return target + xp.reshape(onehot @ xp.astype(flat, target.dtype), target.shape)

    def resize(self, maps: Array, size: tuple[int, ...], *, align_corners: bool = False) -> Array:
        """Bilinear resize of ``(N, h, w)`` maps to ``size = (H, W)``, as two matrix products
        in the maps' dtype. Half-pixel centres by default (cv2 ``INTER_LINEAR`` ≡ torch
        ``align_corners=False`` ≡ ``tf.image.resize``); ``align_corners=True`` maps corner to
        corner (torch ``UpsamplingBilinear2d``). Maps of other ranks, ``(N, l)`` to ``(L,)``
        or ``(N, d, h, w)`` to ``(D, H, W)``, are resized the same way along each axis in turn
        (linear, trilinear: torch ``interpolate(mode="trilinear", align_corners=False)``)."""
        if tuple(maps.shape[1:]) == tuple(size):
            return maps
        xp = self.xp
        if len(size) != 2:
            if len(size) != maps.ndim - 1:
                raise ValueError(f"cannot resize maps of shape {tuple(maps.shape)} to {tuple(size)}")
            for out in size:  # each step resizes axis 1 and moves it last
                matrix = bilinear_matrix(maps.shape[1], out, align_corners=align_corners).T
                maps = xp.tensordot(maps, self.asarray(matrix, like=maps), axes=([1], [0]))
            return maps
        rows, cols = self._resize_matrices(tuple(maps.shape[1:3]), tuple(size), align_corners, maps)
        return xp.matmul(xp.matmul(rows, maps), cols)

    def _resize_matrices(
        self, low: tuple[int, ...], high: tuple[int, ...], align_corners: bool, like: Array
    ) -> tuple[Array, Array]:
        """:meth:`resize`'s two interpolation matrices on ``like``'s device and dtype, made once
        per sizes, dtype and device (callers resizing batch after batch, such as Score-CAM,
        send them to the device once)."""
        from .cache import model_cache

        key = ("resize matrices", low, high, align_corners, str(like.dtype), str(getattr(like, "device", "")))
        cache = model_cache(self.native)
        if key not in cache:
            cache[key] = (
                self.asarray(bilinear_matrix(low[0], high[0], align_corners=align_corners), like=like),
                self.asarray(bilinear_matrix(low[1], high[1], align_corners=align_corners).T, like=like),
            )
        return cache[key]

    def weights_digest(self) -> str | None:
        """A digest of the model's weights (what a resumed dataset run checks is unchanged);
        None when the backend cannot read them (this version)."""
        return None

    def place(self, device: str) -> None:
        """Move the model to ``device`` (``"auto"``: the framework's accelerator if it sees
        one). This version does nothing: frameworks that place themselves (TensorFlow uses
        the GPU it sees) need no move."""
        return None

    @contextlib.contextmanager
    def precision(self, mode: str) -> Iterator[None]:
        """Run the body under ``precision=`` ``mode`` (``"highest"`` or ``"default"``);
        backends with TF32-like modes override this."""
        yield


@runtime_checkable
class SupportsGradients(Protocol):
    """Gradients of target scores with respect to the input or a layer."""

    def gradients(
        self, x: Array, target: Target, layer: str | None = None, *, batch_size: int | None = None
    ) -> Gradients:
        """Outputs, activations of ``layer`` (None: the input) and d Σ scores / d activations.

        One forward pass serves every column of a multi-column target.
        """
        ...


@runtime_checkable
class SupportsLayers(Protocol):
    """Named layers and their activations."""

    def layers(self) -> list[str]:
        """Names of the addressable layers, in the framework's own naming."""
        ...

    def resolve_layer(self, layer: object) -> str:
        """A layer name or object of this model -> its name (a LayerError otherwise)."""
        ...

    def default_layer(self, x: Array) -> str:
        """The layer CAMs use by default, traced on ``x``: the output of the last block with a
        spatial output that runs once per forward; the first norm of the last block of a
        vision transformer (see :func:`~limelight.core.layers.pick_default_layer`)."""
        ...

    def activations(self, x: Array, layer: str, *, batch_size: int | None = None) -> Array:
        """Activations of ``layer`` for canonical ``x`` (channels-last: ``(N, h, w, C)``,
        ``(N, l, C)``, ``(N, d, h, w, C)``; token layers ``(N, T, C)`` as they are); no
        gradients."""
        ...


@runtime_checkable
class SupportsDeepLift(Protocol):
    """DeepLIFT's rescale rule for (input, reference) pairs."""

    def deeplift_gradients(
        self, x: Array, references: Array, target: Target, *, batch_size: int | None = None
    ) -> Array:
        """Multipliers ``(n, T, ...)`` with ``Σ m ⊙ (x - r) = score(x) - score(r)`` per column."""
        ...

    def deeplift_unsupported(self, x: Array) -> list[str]:
        """Operations on the input's path without a DeepLIFT rule (empty: all fine)."""
        ...


@runtime_checkable
class SupportsRandomize(Protocol):
    """Copies of the model with re-initialised weights (sanity checks)."""

    def parameter_layers(self) -> list[str]:
        """Layers that own weights directly, input side first."""
        ...

    def randomized(self, layers: list[str], seed: int = 0) -> Model:
        """A new Model on a copy whose weights in ``layers`` are redrawn; the user's model
        is never touched."""
        ...


@runtime_checkable
class SupportsActivationEdit(Protocol):
    """Outputs of the model with a layer's activations replaced (Ablation-CAM)."""

    def outputs_with(
        self, x: Array, layer: str, activations: Array, *, batch_size: int | None = None
    ) -> Array:
        """Outputs ``(n·R, K)`` when ``layer``'s output is replaced by ``activations``.

        ``x`` is ``(n, ...)`` canonical inputs; ``activations`` is ``(n·R, h, w, C)``
        channels-last (the layer's own shape), ``R`` edited copies per sample, sample-major:
        rows ``i·R ... (i+1)·R - 1`` belong to ``x[i]``. The network before ``layer`` needs to
        run once per sample, not once per row; at most ``batch_size`` rows per framework
        call. No gradients; the native model is left unmodified.
        """
        ...


class NumpyModel(Model):
    """A host-only backend base: arrays are NumPy, ``xp`` is ``array_api_compat.numpy``.

    Subclass it for a model that is a function of NumPy arrays (implement :meth:`predict`).
    """

    framework = "numpy"

    @property
    def xp(self) -> ModuleType:
        import array_api_compat.numpy

        return array_api_compat.numpy

    def canonical(self, inputs: Any) -> np.ndarray:
        from .arrays import check_canonical, to_numpy_float32

        return check_canonical(to_numpy_float32(inputs))

    def asarray(self, a: Any, like: Array | None = None) -> np.ndarray:
        arr = np.asarray(a)
        if like is not None and np.issubdtype(arr.dtype, np.floating):
            return arr.astype(like.dtype)
        return arr

    def to_numpy(self, a: Array) -> np.ndarray:
        return np.asarray(a)

    def index_add(self, target: Array, index: Array, values: Array) -> np.ndarray:
        out = np.array(target, copy=True)
        np.add.at(out, np.asarray(index), values)
        return out


def reinitialize(arrays: list[np.ndarray], rng: np.random.RandomState) -> list[np.ndarray]:
    """Fresh random values for one layer's trainable arrays, given in canonical order
    (kernels ``(h, w, in, out)``, dense ``(in, out)``) and drawn from ``rng`` in that order,
    so twin backends draw the same numbers.

    A layer with a kernel is re-initialised as a new network would be (Adebayo et al. 2018):
    every array, bias included, uniform in ``±1/sqrt(fan_in)`` (PyTorch's default for
    convolutions and linear layers). A layer with only per-channel arrays (normalisation) has
    each array permuted across channels, which keeps its scale and scrambles its meaning.
    """
    kernels = [a for a in arrays if a.ndim >= 2]
    if not kernels:
        return [rng.permutation(a.ravel()).reshape(a.shape).astype(a.dtype) for a in arrays]
    bound = 1.0 / np.sqrt(max(1, int(np.prod(kernels[0].shape[:-1]))))
    return [rng.uniform(-bound, bound, a.shape).astype(a.dtype) for a in arrays]
