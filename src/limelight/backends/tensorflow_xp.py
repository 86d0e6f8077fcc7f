"""A small Array API namespace for TensorFlow tensors, owned by limelight.

``array-api-compat`` does not cover TensorFlow, so this module gives explainers and metrics
the standard functions they use, with the standard's names and semantics, on ``tf.Tensor``
(eager tensors and symbolic ones inside ``tf.function`` alike): no value ever leaves the
device here. Data types are TensorFlow's dtype objects (``float32 is tf.float32``).

What differs from the standard, because ``tf.Tensor`` itself is not an Array API array
(operators are TensorFlow's, not this module's):

* operators do not promote: ``float32_tensor * float64_tensor`` raises; use :func:`astype`
  (the functions here, e.g. :func:`multiply`, promote);
* tensors have no ``.T``/``.mT``/``.size`` and no in-place or fancy-index assignment; use
  :func:`permute_dims`, :func:`matrix_transpose`, ``math.prod(x.shape)``.

Defaults: Python floats become ``float32`` and Python ints ``int64`` (the default floating
and integer dtypes); indices returned (:func:`argmax`, :func:`argsort`, ...) are ``int64``.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

__array_api_version__ = "2023.12"

Array = Any
DType = Any
Axis = int | tuple[int, ...] | None

# -- data types -------------------------------------------------------------------------------
bool = tf.bool
int8, int16, int32, int64 = tf.int8, tf.int16, tf.int32, tf.int64
uint8, uint16, uint32, uint64 = tf.uint8, tf.uint16, tf.uint32, tf.uint64
float16, float32, float64 = tf.float16, tf.float32, tf.float64
complex64, complex128 = tf.complex64, tf.complex128

e, pi, inf, nan = math.e, math.pi, math.inf, math.nan
newaxis = None

DEFAULT_FLOAT = tf.float32
DEFAULT_INT = tf.int64


def _is_array(x: Any) -> builtins.bool:
    return builtins.bool(tf.is_tensor(x)) or isinstance(x, tf.Variable)


def _scalar_dtype(value: Any, like: DType | None = None) -> DType:
    """The dtype a Python scalar takes next to an array of dtype ``like`` (weak scalars)."""
    if isinstance(value, builtins.bool):
        return like if like is not None and like == tf.bool else tf.bool
    if isinstance(value, int | np.integer):
        return like if like is not None and like != tf.bool else DEFAULT_INT
    if isinstance(value, float | np.floating):
        return like if like is not None and (like.is_floating or like.is_complex) else DEFAULT_FLOAT
    if isinstance(value, complex):
        return like if like is not None and like.is_complex else tf.complex64
    raise TypeError(f"expected a tensor or a Python scalar, got {type(value).__name__}")


def _kind(dtype: DType) -> int:
    if dtype == tf.bool:
        return 0
    if dtype.is_integer:
        return 1
    if dtype.is_floating:
        return 2
    return 3


def result_type(*arrays_and_dtypes: Any) -> DType:
    """The promoted dtype (NumPy's table within a kind; mixed integer and floating gives the
    floating dtype, as torch does). Python scalars are weak: they never widen an array."""
    dtypes = []
    scalars = []
    for item in arrays_and_dtypes:
        if isinstance(item, tf.DType):
            dtypes.append(item)
        elif _is_array(item):
            dtypes.append(item.dtype)
        elif isinstance(item, np.ndarray):
            dtypes.append(tf.as_dtype(item.dtype))
        else:
            scalars.append(item)
    if not dtypes:
        if not scalars:
            raise ValueError("result_type needs at least one array or dtype")
        dtypes = [_scalar_dtype(s) for s in scalars]
        scalars = []
    top = builtins.max(_kind(d) for d in dtypes)
    chosen = [d for d in dtypes if _kind(d) == top]
    out = tf.as_dtype(np.result_type(*[d.as_numpy_dtype for d in chosen]))
    for s in scalars:  # a float scalar next to integer arrays: the default float
        out = _scalar_dtype(s, out) if _kind(_scalar_dtype(s)) > _kind(out) else out
    return out


def _promote(*args: Any) -> list[Array]:
    """Arguments of a binary function as tensors of one (promoted) dtype."""
    dtype = result_type(*args)
    return [tf.cast(a, dtype) if _is_array(a) else tf.constant(a, dtype) for a in args]


def _axes(axis: Axis, ndim: int | None) -> list[int] | None:
    if axis is None:
        return None
    if isinstance(axis, int):
        return [axis]
    return list(axis)


def _ndim(x: Array) -> int:
    return int(x.shape.rank)


# -- creation ---------------------------------------------------------------------------------
def asarray(obj: Any, /, *, dtype: DType | None = None, device: Any = None, copy: builtins.bool | None = None) -> Array:
    """A tensor from a tensor, NumPy array, scalar or nested sequence."""
    if _is_array(obj):
        out = obj if dtype is None else tf.cast(obj, dtype)
        return tf.identity(out) if copy and out is obj else out
    if dtype is None and not isinstance(obj, np.ndarray | np.generic):
        arr = np.asarray(obj)
        if arr.dtype.kind == "f":
            dtype = DEFAULT_FLOAT
        elif arr.dtype.kind in "iu":
            dtype = DEFAULT_INT
        obj = arr
    if device is not None:
        with tf.device(device):
            return tf.identity(tf.convert_to_tensor(obj, dtype=dtype))
    return tf.convert_to_tensor(obj, dtype=dtype)


def _shape(shape: int | Sequence[int]) -> list[int]:
    return [shape] if isinstance(shape, int) else list(shape)


def zeros(shape: int | Sequence[int], *, dtype: DType | None = None, device: Any = None) -> Array:
    return tf.zeros(_shape(shape), dtype or DEFAULT_FLOAT)


def ones(shape: int | Sequence[int], *, dtype: DType | None = None, device: Any = None) -> Array:
    return tf.ones(_shape(shape), dtype or DEFAULT_FLOAT)


def empty(shape: int | Sequence[int], *, dtype: DType | None = None, device: Any = None) -> Array:
    return zeros(shape, dtype=dtype)


def full(shape: int | Sequence[int], fill_value: Any, *, dtype: DType | None = None, device: Any = None) -> Array:
    dtype = dtype or (fill_value.dtype if _is_array(fill_value) else _scalar_dtype(fill_value))
    return tf.fill(_shape(shape), tf.cast(fill_value, dtype))


def zeros_like(x: Array, /, *, dtype: DType | None = None, device: Any = None) -> Array:
    return tf.zeros_like(x, dtype=dtype or x.dtype)


def ones_like(x: Array, /, *, dtype: DType | None = None, device: Any = None) -> Array:
    return tf.ones_like(x, dtype=dtype or x.dtype)


def empty_like(x: Array, /, *, dtype: DType | None = None, device: Any = None) -> Array:
    return zeros_like(x, dtype=dtype)


def full_like(x: Array, /, fill_value: Any, *, dtype: DType | None = None, device: Any = None) -> Array:
    dtype = dtype or x.dtype
    return tf.fill(tf.shape(x), tf.cast(fill_value, dtype))


def arange(
    start: float, /, stop: float | None = None, step: float = 1, *, dtype: DType | None = None, device: Any = None
) -> Array:
    if stop is None:
        start, stop = 0, start
    if dtype is None:
        ints = builtins.all(isinstance(v, int | np.integer) for v in (start, stop, step))
        dtype = DEFAULT_INT if ints else DEFAULT_FLOAT
    return tf.range(tf.cast(start, dtype), tf.cast(stop, dtype), tf.cast(step, dtype), dtype=dtype)


def linspace(
    start: float,
    stop: float,
    /,
    num: int,
    *,
    dtype: DType | None = None,
    device: Any = None,
    endpoint: builtins.bool = True,
) -> Array:
    dtype = dtype or DEFAULT_FLOAT
    if not endpoint:
        return tf.cast(tf.linspace(tf.cast(start, tf.float64), tf.cast(stop, tf.float64), num + 1)[:num], dtype)
    return tf.cast(tf.linspace(tf.cast(start, tf.float64), tf.cast(stop, tf.float64), num), dtype)


def _band(rows: Any, cols: Any) -> tuple[Array, Array]:
    return tf.range(rows, dtype=tf.int64)[:, None], tf.range(cols, dtype=tf.int64)[None, :]


def eye(
    n_rows: int, n_cols: int | None = None, /, *, k: int = 0, dtype: DType | None = None, device: Any = None
) -> Array:
    r, c = _band(n_rows, n_rows if n_cols is None else n_cols)
    return tf.cast(tf.equal(c - r, k), dtype or DEFAULT_FLOAT)


def tril(x: Array, /, *, k: int = 0) -> Array:
    shape = tf.shape(x)
    r, c = _band(shape[-2], shape[-1])
    return tf.where(c - r <= k, x, tf.zeros_like(x))


def triu(x: Array, /, *, k: int = 0) -> Array:
    shape = tf.shape(x)
    r, c = _band(shape[-2], shape[-1])
    return tf.where(c - r >= k, x, tf.zeros_like(x))


def meshgrid(*arrays: Array, indexing: str = "xy") -> list[Array]:
    return list(tf.meshgrid(*arrays, indexing=indexing))


# -- data type functions ----------------------------------------------------------------------
def astype(x: Array, dtype: DType, /, *, copy: builtins.bool = True, device: Any = None) -> Array:
    """``x`` as ``dtype`` (``copy=False``: ``x`` itself when it already has that dtype)."""
    if x.dtype == dtype:
        return tf.identity(x) if copy else x
    return tf.cast(x, dtype)


def can_cast(from_: Any, to: DType, /) -> builtins.bool:
    source = from_.dtype if _is_array(from_) else from_
    return builtins.bool(np.can_cast(source.as_numpy_dtype, to.as_numpy_dtype, casting="safe"))


class finfo_object(NamedTuple):
    bits: int
    eps: float
    max: float
    min: float
    smallest_normal: float
    dtype: DType


class iinfo_object(NamedTuple):
    bits: int
    max: int
    min: int
    dtype: DType


def finfo(type: Any, /) -> finfo_object:
    dtype = type.dtype if _is_array(type) else tf.as_dtype(type)
    info = np.finfo(dtype.as_numpy_dtype)
    return finfo_object(
        int(info.bits), float(info.eps), float(info.max), float(info.min), float(info.smallest_normal), dtype
    )


def iinfo(type: Any, /) -> iinfo_object:
    dtype = type.dtype if _is_array(type) else tf.as_dtype(type)
    info = np.iinfo(dtype.as_numpy_dtype)
    return iinfo_object(int(info.bits), int(info.max), int(info.min), dtype)


def isdtype(dtype: DType, kind: Any) -> builtins.bool:
    if isinstance(kind, tuple):
        return builtins.any(isdtype(dtype, k) for k in kind)
    if isinstance(kind, tf.DType):
        return builtins.bool(dtype == kind)
    checks = {
        "bool": dtype == tf.bool,
        "signed integer": dtype.is_integer and not dtype.is_unsigned,
        "unsigned integer": dtype.is_integer and dtype.is_unsigned,
        "integral": dtype.is_integer,
        "real floating": dtype.is_floating,
        "complex floating": dtype.is_complex,
        "numeric": dtype.is_integer or dtype.is_floating or dtype.is_complex,
    }
    if kind not in checks:
        raise ValueError(f"unknown dtype kind {kind!r}")
    return builtins.bool(checks[kind])


# -- element-wise -----------------------------------------------------------------------------
def _float(x: Array) -> Array:
    return x if x.dtype.is_floating or x.dtype.is_complex else tf.cast(x, DEFAULT_FLOAT)


def abs(x: Array, /) -> Array:
    return tf.abs(x)


def negative(x: Array, /) -> Array:
    return tf.negative(x)


def positive(x: Array, /) -> Array:
    return x


def sign(x: Array, /) -> Array:
    return tf.sign(x)


def sqrt(x: Array, /) -> Array:
    return tf.sqrt(_float(x))


def square(x: Array, /) -> Array:
    return tf.square(x)


def exp(x: Array, /) -> Array:
    return tf.exp(_float(x))


def expm1(x: Array, /) -> Array:
    return tf.math.expm1(_float(x))


def log(x: Array, /) -> Array:
    return tf.math.log(_float(x))


def log1p(x: Array, /) -> Array:
    return tf.math.log1p(_float(x))


def log2(x: Array, /) -> Array:
    x = _float(x)
    return tf.math.log(x) / tf.math.log(tf.constant(2.0, x.dtype))


def log10(x: Array, /) -> Array:
    x = _float(x)
    return tf.math.log(x) / tf.math.log(tf.constant(10.0, x.dtype))


def sin(x: Array, /) -> Array:
    return tf.sin(_float(x))


def cos(x: Array, /) -> Array:
    return tf.cos(_float(x))


def tanh(x: Array, /) -> Array:
    return tf.tanh(_float(x))


def floor(x: Array, /) -> Array:
    return x if x.dtype.is_integer else tf.floor(x)


def ceil(x: Array, /) -> Array:
    return x if x.dtype.is_integer else tf.math.ceil(x)


def trunc(x: Array, /) -> Array:
    return x if x.dtype.is_integer else tf.where(x < 0, tf.math.ceil(x), tf.floor(x))


def round(x: Array, /) -> Array:
    return x if x.dtype.is_integer else tf.round(x)


def isfinite(x: Array, /) -> Array:
    return tf.math.is_finite(x) if x.dtype.is_floating else tf.ones_like(x, dtype=tf.bool)


def isnan(x: Array, /) -> Array:
    return tf.math.is_nan(x) if x.dtype.is_floating else tf.zeros_like(x, dtype=tf.bool)


def isinf(x: Array, /) -> Array:
    return tf.math.is_inf(x) if x.dtype.is_floating else tf.zeros_like(x, dtype=tf.bool)


def logical_not(x: Array, /) -> Array:
    return tf.logical_not(tf.cast(x, tf.bool))


def _promoted(op: Callable[[Array, Array], Array], name: str) -> Callable[[Any, Any], Array]:
    """The Array API binary function ``name``: ``op`` on both arguments promoted to one dtype."""

    def function(x1: Any, x2: Any, /) -> Array:
        a, b = _promote(x1, x2)
        return op(a, b)

    function.__name__ = function.__qualname__ = name
    return function


add = _promoted(tf.add, "add")
subtract = _promoted(tf.subtract, "subtract")
multiply = _promoted(tf.multiply, "multiply")
floor_divide = _promoted(tf.math.floordiv, "floor_divide")
remainder = _promoted(tf.math.floormod, "remainder")
pow = _promoted(tf.pow, "pow")
maximum = _promoted(tf.maximum, "maximum")
minimum = _promoted(tf.minimum, "minimum")
equal = _promoted(tf.equal, "equal")
not_equal = _promoted(tf.not_equal, "not_equal")
less = _promoted(tf.less, "less")
less_equal = _promoted(tf.less_equal, "less_equal")
greater = _promoted(tf.greater, "greater")
greater_equal = _promoted(tf.greater_equal, "greater_equal")


def divide(x1: Any, x2: Any, /) -> Array:
    a, b = _promote(x1, x2)
    if not (a.dtype.is_floating or a.dtype.is_complex):
        a, b = tf.cast(a, DEFAULT_FLOAT), tf.cast(b, DEFAULT_FLOAT)
    return a / b


def logaddexp(x1: Any, x2: Any, /) -> Array:
    a, b = (_float(v) for v in _promote(x1, x2))
    top = tf.maximum(a, b)
    return top + tf.math.log1p(tf.exp(-tf.abs(a - b)))


def atan2(x1: Any, x2: Any, /) -> Array:
    a, b = (_float(v) for v in _promote(x1, x2))
    return tf.math.atan2(a, b)


def logical_and(x1: Any, x2: Any, /) -> Array:
    return tf.logical_and(tf.cast(x1, tf.bool), tf.cast(x2, tf.bool))


def logical_or(x1: Any, x2: Any, /) -> Array:
    return tf.logical_or(tf.cast(x1, tf.bool), tf.cast(x2, tf.bool))


def logical_xor(x1: Any, x2: Any, /) -> Array:
    return tf.math.logical_xor(tf.cast(x1, tf.bool), tf.cast(x2, tf.bool))


def clip(x: Array, /, min: Any = None, max: Any = None) -> Array:
    """``x`` limited to ``[min, max]`` (either may be None, a scalar or an array); x's dtype."""
    if min is not None:
        x = tf.maximum(x, tf.cast(min, x.dtype))
    if max is not None:
        x = tf.minimum(x, tf.cast(max, x.dtype))
    return x


def where(condition: Array, x1: Any, x2: Any, /) -> Array:
    a, b = _promote(x1, x2)
    return tf.where(tf.cast(condition, tf.bool), a, b)


# -- reductions -------------------------------------------------------------------------------
def _sum_dtype(x: Array, dtype: DType | None) -> Array:
    if dtype is not None:
        return tf.cast(x, dtype)
    if x.dtype == tf.bool or (x.dtype.is_integer and x.dtype.size < 8):
        return tf.cast(x, DEFAULT_INT)  # the default integer (values as NumPy's, dtype int64)
    return x


def sum(x: Array, /, *, axis: Axis = None, dtype: DType | None = None, keepdims: builtins.bool = False) -> Array:
    return tf.reduce_sum(_sum_dtype(x, dtype), axis=_axes(axis, None), keepdims=keepdims)


def prod(x: Array, /, *, axis: Axis = None, dtype: DType | None = None, keepdims: builtins.bool = False) -> Array:
    return tf.reduce_prod(_sum_dtype(x, dtype), axis=_axes(axis, None), keepdims=keepdims)


def mean(x: Array, /, *, axis: Axis = None, keepdims: builtins.bool = False) -> Array:
    return tf.reduce_mean(_float(x), axis=_axes(axis, None), keepdims=keepdims)


def max(x: Array, /, *, axis: Axis = None, keepdims: builtins.bool = False) -> Array:
    return tf.reduce_max(x, axis=_axes(axis, None), keepdims=keepdims)


def min(x: Array, /, *, axis: Axis = None, keepdims: builtins.bool = False) -> Array:
    return tf.reduce_min(x, axis=_axes(axis, None), keepdims=keepdims)


def _count(x: Array, axis: Axis) -> Array:
    ndim = _ndim(x)
    axes = range(ndim) if axis is None else [a % ndim for a in _axes(axis, None) or []]
    return tf.reduce_prod(tf.gather(tf.shape(x), list(axes)))


def var(x: Array, /, *, axis: Axis = None, correction: float = 0.0, keepdims: builtins.bool = False) -> Array:
    x = _float(x)
    centred = x - tf.reduce_mean(x, axis=_axes(axis, None), keepdims=True)
    total = tf.reduce_sum(tf.square(tf.abs(centred)), axis=_axes(axis, None), keepdims=keepdims)
    return total / (tf.cast(_count(x, axis), total.dtype) - correction)


def std(x: Array, /, *, axis: Axis = None, correction: float = 0.0, keepdims: builtins.bool = False) -> Array:
    return tf.sqrt(var(x, axis=axis, correction=correction, keepdims=keepdims))


def all(x: Array, /, *, axis: Axis = None, keepdims: builtins.bool = False) -> Array:
    return tf.reduce_all(tf.cast(x, tf.bool), axis=_axes(axis, None), keepdims=keepdims)


def any(x: Array, /, *, axis: Axis = None, keepdims: builtins.bool = False) -> Array:
    return tf.reduce_any(tf.cast(x, tf.bool), axis=_axes(axis, None), keepdims=keepdims)


def count_nonzero(x: Array, /, *, axis: Axis = None, keepdims: builtins.bool = False) -> Array:
    return tf.math.count_nonzero(x, axis=_axes(axis, None), keepdims=keepdims, dtype=DEFAULT_INT)


def _cumulative(op: Any, x: Array, axis: int | None, dtype: DType | None, include_initial: builtins.bool, init: int) -> Array:
    if axis is None:
        if _ndim(x) != 1:
            raise ValueError("axis is required for arrays of more than one dimension")
        axis = 0
    x = _sum_dtype(x, dtype)
    out = op(x, axis=axis)
    if include_initial:
        axis = axis % _ndim(x)
        first = tf.gather(tf.ones_like(x) * init, [0], axis=axis)
        out = tf.concat([first, out], axis=axis)
    return out


def cumulative_sum(
    x: Array, /, *, axis: int | None = None, dtype: DType | None = None, include_initial: builtins.bool = False
) -> Array:
    return _cumulative(tf.cumsum, x, axis, dtype, include_initial, 0)


def cumulative_prod(
    x: Array, /, *, axis: int | None = None, dtype: DType | None = None, include_initial: builtins.bool = False
) -> Array:
    return _cumulative(tf.math.cumprod, x, axis, dtype, include_initial, 1)


def diff(x: Array, /, *, axis: int = -1, n: int = 1) -> Array:
    for _ in range(n):
        size = tf.shape(x)[axis]
        x = tf.gather(x, tf.range(1, size), axis=axis) - tf.gather(x, tf.range(0, size - 1), axis=axis)
    return x


# -- searching and sorting --------------------------------------------------------------------
def _arg(op: Any, x: Array, axis: int | None, keepdims: builtins.bool) -> Array:
    if x.dtype == tf.bool:
        x = tf.cast(x, tf.int8)
    if axis is None:
        out = op(tf.reshape(x, [-1]), axis=0, output_type=tf.int64)
        return tf.reshape(out, [1] * _ndim(x)) if keepdims else out
    out = op(x, axis=axis, output_type=tf.int64)
    return tf.expand_dims(out, axis) if keepdims else out


def argmax(x: Array, /, *, axis: int | None = None, keepdims: builtins.bool = False) -> Array:
    """Index of the maximum (the first one on ties), int64."""
    return _arg(tf.argmax, x, axis, keepdims)


def argmin(x: Array, /, *, axis: int | None = None, keepdims: builtins.bool = False) -> Array:
    """Index of the minimum (the first one on ties), int64."""
    return _arg(tf.argmin, x, axis, keepdims)


def argsort(x: Array, /, *, axis: int = -1, descending: builtins.bool = False, stable: builtins.bool = True) -> Array:
    direction = "DESCENDING" if descending else "ASCENDING"
    return tf.cast(tf.argsort(x, axis=axis, direction=direction, stable=True), tf.int64)


def sort(x: Array, /, *, axis: int = -1, descending: builtins.bool = False, stable: builtins.bool = True) -> Array:
    return tf.sort(x, axis=axis, direction="DESCENDING" if descending else "ASCENDING")


def nonzero(x: Array, /) -> tuple[Array, ...]:
    index = tf.where(tf.cast(x, tf.bool))
    return tuple(index[:, i] for i in range(_ndim(x)))


def searchsorted(x1: Array, x2: Array, /, *, side: str = "left", sorter: Array | None = None) -> Array:
    if sorter is not None:
        x1 = tf.gather(x1, sorter)
    a, b = _promote(x1, x2)
    found = tf.searchsorted(tf.reshape(a, [1, -1]), tf.reshape(b, [1, -1]), side=side, out_type=tf.int64)
    return tf.reshape(found, tf.shape(b))


# -- manipulation -----------------------------------------------------------------------------
def reshape(x: Array, /, shape: Sequence[int], *, copy: builtins.bool | None = None) -> Array:
    return tf.reshape(x, list(shape))


def permute_dims(x: Array, /, axes: Sequence[int]) -> Array:
    return tf.transpose(x, perm=list(axes))


def matrix_transpose(x: Array, /) -> Array:
    return tf.linalg.matrix_transpose(x)


def moveaxis(x: Array, source: int | Sequence[int], destination: int | Sequence[int], /) -> Array:
    ndim = _ndim(x)
    src = [s % ndim for s in ([source] if isinstance(source, int) else source)]
    dst = [d % ndim for d in ([destination] if isinstance(destination, int) else destination)]
    order = [a for a in range(ndim) if a not in src]
    for d, s in sorted(zip(dst, src, strict=True)):
        order.insert(d, s)
    return tf.transpose(x, perm=order)


def expand_dims(x: Array, /, *, axis: int | Sequence[int] = 0) -> Array:
    if isinstance(axis, int):
        return tf.expand_dims(x, axis)
    out_ndim = _ndim(x) + len(axis)
    for a in sorted(a % out_ndim for a in axis):
        x = tf.expand_dims(x, a)
    return x


def squeeze(x: Array, /, axis: int | tuple[int, ...]) -> Array:
    return tf.squeeze(x, axis=_axes(axis, None))


def concat(arrays: Sequence[Array], /, *, axis: int | None = 0) -> Array:
    parts = _promote(*arrays) if len(arrays) > 1 else [tf.convert_to_tensor(arrays[0])]
    if axis is None:
        parts = [tf.reshape(p, [-1]) for p in parts]
        axis = 0
    return tf.concat(parts, axis=axis)


def stack(arrays: Sequence[Array], /, *, axis: int = 0) -> Array:
    parts = _promote(*arrays) if len(arrays) > 1 else [tf.convert_to_tensor(arrays[0])]
    return tf.stack(parts, axis=axis)


def unstack(x: Array, /, *, axis: int = 0) -> tuple[Array, ...]:
    return tuple(tf.unstack(x, axis=axis))


def flip(x: Array, /, *, axis: Axis = None) -> Array:
    axes = list(range(_ndim(x))) if axis is None else _axes(axis, None)
    return tf.reverse(x, axis=axes)


def roll(x: Array, /, shift: int | tuple[int, ...], *, axis: Axis = None) -> Array:
    if axis is None:
        return tf.reshape(tf.roll(tf.reshape(x, [-1]), shift, axis=0), tf.shape(x))
    return tf.roll(x, shift, axis=axis)


def broadcast_to(x: Array, /, shape: Sequence[int]) -> Array:
    return tf.broadcast_to(x, list(shape))


def broadcast_arrays(*arrays: Array) -> list[Array]:
    shape = tf.shape(arrays[0])
    for a in arrays[1:]:
        shape = tf.broadcast_dynamic_shape(shape, tf.shape(a))
    return [tf.broadcast_to(a, shape) for a in arrays]


def tile(x: Array, repetitions: Sequence[int], /) -> Array:
    reps = list(repetitions)
    ndim = _ndim(x)
    if len(reps) < ndim:
        reps = [1] * (ndim - len(reps)) + reps
    elif len(reps) > ndim:
        x = tf.reshape(x, tf.concat([tf.ones([len(reps) - ndim], tf.int32), tf.shape(x)], 0))
    return tf.tile(x, reps)


def repeat(x: Array, repeats: int | Array, /, *, axis: int | None = None) -> Array:
    return tf.repeat(x, repeats, axis=axis)


def _wrap(indices: Array, size: Array) -> Array:
    indices = tf.convert_to_tensor(indices)
    if not indices.dtype.is_integer:
        raise TypeError(f"indices must have an integer dtype, got {indices.dtype.name}")
    size = tf.cast(size, indices.dtype)
    return tf.where(indices < 0, indices + size, indices)


def take(x: Array, indices: Array, /, *, axis: int | None = None) -> Array:
    """Elements of ``x`` at ``indices`` (1-D) along ``axis``; negative indices count from
    the end."""
    if axis is None:
        if _ndim(x) != 1:
            raise ValueError("take needs axis= for arrays of more than one dimension")
        axis = 0
    return tf.gather(x, _wrap(indices, tf.shape(x)[axis]), axis=axis)


def take_along_axis(x: Array, indices: Array, /, *, axis: int = -1) -> Array:
    """``out[..., j, ...] = x[..., indices[..., j, ...], ...]`` along ``axis``; the other
    axes broadcast."""
    ndim = _ndim(x)
    axis = axis % ndim
    indices = _wrap(indices, tf.shape(x)[axis])
    last = axis == ndim - 1
    perm = [a for a in range(ndim) if a != axis] + [axis]
    moved = x if last else tf.transpose(x, perm)
    idx = indices if last else tf.transpose(indices, perm)
    lead_x, lead_i = moved.shape[:-1], idx.shape[:-1]
    if not (lead_x.is_fully_defined() and lead_x == lead_i):  # broadcast the other axes
        lead = tf.broadcast_dynamic_shape(tf.shape(moved)[:-1], tf.shape(idx)[:-1])
        moved = tf.broadcast_to(moved, tf.concat([lead, tf.shape(moved)[-1:]], 0))
        idx = tf.broadcast_to(idx, tf.concat([lead, tf.shape(idx)[-1:]], 0))
    out = tf.gather(moved, idx, axis=ndim - 1, batch_dims=ndim - 1)
    return out if last else tf.transpose(out, [int(i) for i in np.argsort(perm)])


# -- linear algebra ---------------------------------------------------------------------------
def matmul(x1: Array, x2: Array, /) -> Array:
    """Matrix product with broadcast batch axes; a 1-D operand is a vector."""
    a, b = _promote(x1, x2)
    vec_a, vec_b = _ndim(a) == 1, _ndim(b) == 1
    if vec_a:
        a = a[None, :]
    if vec_b:
        b = b[:, None]
    out = tf.linalg.matmul(a, b)
    if vec_b:
        out = out[..., 0]
    if vec_a:
        out = out[..., 0, :] if not vec_b else out[..., 0]
    return out


def vecdot(x1: Array, x2: Array, /, *, axis: int = -1) -> Array:
    a, b = _promote(x1, x2)
    if a.dtype.is_complex:
        a = tf.math.conj(a)
    return tf.reduce_sum(a * b, axis=axis)


def tensordot(x1: Array, x2: Array, /, *, axes: int | tuple[Sequence[int], Sequence[int]] = 2) -> Array:
    a, b = _promote(x1, x2)
    return tf.tensordot(a, b, axes=axes if isinstance(axes, int) else [list(axes[0]), list(axes[1])])


def outer(x1: Array, x2: Array, /) -> Array:
    a, b = _promote(x1, x2)
    return a[:, None] * b[None, :]


class SVDResult(NamedTuple):
    U: Array
    S: Array
    Vh: Array


class EighResult(NamedTuple):
    eigenvalues: Array
    eigenvectors: Array


class QRResult(NamedTuple):
    Q: Array
    R: Array


def _svd(x: Array, /, *, full_matrices: builtins.bool = True) -> SVDResult:
    """``x = U @ diag(S) @ Vh`` (``tf.linalg.svd`` gives ``(S, U, V)`` with V not
    transposed)."""
    s, u, v = tf.linalg.svd(x, full_matrices=full_matrices, compute_uv=True)
    return SVDResult(u, s, tf.linalg.adjoint(v))


def _svdvals(x: Array, /) -> Array:
    return tf.linalg.svd(x, compute_uv=False)


def _vector_norm(x: Array, /, *, axis: Axis = None, keepdims: builtins.bool = False, ord: float = 2) -> Array:
    x = tf.abs(_float(x))
    axes = _axes(axis, None)
    if ord == math.inf:
        return tf.reduce_max(x, axis=axes, keepdims=keepdims)
    if ord == -math.inf:
        return tf.reduce_min(x, axis=axes, keepdims=keepdims)
    if ord == 0:
        return tf.reduce_sum(tf.cast(x != 0, x.dtype), axis=axes, keepdims=keepdims)
    if ord == 1:
        return tf.reduce_sum(x, axis=axes, keepdims=keepdims)
    if ord == 2:
        return tf.sqrt(tf.reduce_sum(tf.square(x), axis=axes, keepdims=keepdims))
    return tf.reduce_sum(x**ord, axis=axes, keepdims=keepdims) ** (1.0 / ord)


def _eigh(x: Array, /) -> EighResult:
    values, vectors = tf.linalg.eigh(x)
    return EighResult(values, vectors)


def _qr(x: Array, /, *, mode: str = "reduced") -> QRResult:
    q, r = tf.linalg.qr(x, full_matrices=mode == "complete")
    return QRResult(q, r)


def _cholesky(x: Array, /, *, upper: builtins.bool = False) -> Array:
    lower = tf.linalg.cholesky(x)
    return tf.linalg.adjoint(lower) if upper else lower


def _solve(x1: Array, x2: Array, /) -> Array:
    a, b = _promote(x1, x2)
    if _ndim(b) == 1:
        return tf.linalg.solve(a, b[:, None])[..., 0]
    return tf.linalg.solve(a, b)


def _diagonal(x: Array, /, *, offset: int = 0) -> Array:
    return tf.linalg.diag_part(x, k=offset)


def _trace(x: Array, /, *, offset: int = 0, dtype: DType | None = None) -> Array:
    return tf.reduce_sum(_sum_dtype(_diagonal(x, offset=offset), dtype), axis=-1)


#: The ``linalg`` extension (the functions explainers use).
linalg = SimpleNamespace(
    svd=_svd,
    svdvals=_svdvals,
    vector_norm=_vector_norm,
    eigh=_eigh,
    qr=_qr,
    cholesky=_cholesky,
    inv=tf.linalg.inv,
    det=tf.linalg.det,
    solve=_solve,
    diagonal=_diagonal,
    trace=_trace,
    matmul=matmul,
    matrix_transpose=matrix_transpose,
    vecdot=vecdot,
    tensordot=tensordot,
    outer=outer,
)
