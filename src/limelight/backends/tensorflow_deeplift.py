"""DeepLIFT's rescale rule for Keras/TensorFlow models, as swapped gradient functions.

While a DeepLIFT gradient is traced, ops that have a rule are recorded on the tape under a
prefixed op name whose registered gradient function is the rule (everything is restored in
``finally``). The rules split the batch ``[x; references]`` in halves:

* elementwise nonlinearities (Relu, Sigmoid, Tanh, Elu, Softplus, ...): multiplier
  ``Δy / Δx`` (the ordinary derivative where ``|Δx| < 1e-6``);
* MaxPool: each window's ``Δy`` is split between the argmax of x and of the reference and
  scatter-added with pooling's own gradient, so overlapping windows sum;
* Softmax: the vector rescale rule ``m_ij = Δy_i J̄_ij / (J̄ Δz)_i``, ``J̄`` the Jacobian
  averaged over x and the reference, which sums exactly to ``Δy``.

Linear ops keep their gradients. :func:`unsupported_ops` walks the traced forward graph
from the input and names every other op on the input's path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import tensorflow as tf
from tensorflow.python.eager import execute as tf_execute
from tensorflow.python.framework import ops as tf_ops
from tensorflow.python.ops import gen_nn_ops

__all__ = ["EPS", "deeplift_rules", "unsupported_ops"]

EPS = 1e-6
PREFIX = "limelight_deeplift_"

ELEMENTWISE = {"Relu", "Relu6", "Sigmoid", "Tanh", "Elu", "Selu", "Softplus", "Softsign", "LeakyRelu", "Exp"}
LINEAR = {
    "Conv2D", "Conv3D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "BiasAdd", "AddV2", "Add",
    "AddN", "Sub", "Neg", "Mean", "Sum", "Reshape", "Identity", "IdentityN", "AvgPool", "AvgPool3D",
    "ConcatV2", "Pack", "Unpack", "StridedSlice", "Slice", "Transpose", "Squeeze", "ExpandDims",
    "Pad", "PadV2", "MirrorPad", "Cast", "Tile", "Split", "SplitV", "ResizeBilinear",
    "ResizeNearestNeighbor", "NoOp", "StopGradient", "PreventGradient", "BroadcastTo",
}
PRODUCTS = {"Mul", "MatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum"}
QUOTIENTS = {"RealDiv", "Div", "DivNoNan"}


def unsupported_ops(graph: Any, source: Any) -> dict[str, int]:
    """Op types on the path from ``source`` (a graph tensor, or a list of them: a model's
    several inputs) that have no DeepLIFT rule."""
    dependent = {t.name for t in source} if isinstance(source, list | tuple) else {source.name}
    found: dict[str, int] = {}
    for op in graph.get_operations():  # creation order is a topological order
        tracked = [t for t in op.inputs if t.name in dependent]
        if not tracked or not any(out.dtype.is_floating for out in op.outputs):
            continue
        dependent.update(out.name for out in op.outputs)
        kind = op.type
        if kind in ELEMENTWISE or kind in LINEAR or kind in {"MaxPool", "Softmax"}:
            continue
        if kind in PRODUCTS and len(tracked) == 1:
            continue
        if kind in QUOTIENTS and len(tracked) == 1 and op.inputs[0] is tracked[0]:
            continue
        if kind == "FusedBatchNormV3" and not op.get_attr("is_training"):
            continue
        label = kind if kind not in PRODUCTS | QUOTIENTS else f"{kind} of two input-dependent tensors"
        found[label] = found.get(label, 0) + 1
    return found


def _ratio(numerator: Any, delta: Any, fallback: Any, eps: float = EPS) -> Any:
    """``numerator / delta``, and ``fallback`` where ``|delta| < eps``."""
    tiny = tf.abs(delta) < eps
    return tf.where(tiny, fallback, numerator / tf.where(tiny, tf.ones_like(delta), delta))


def _unprefixed(op: Any) -> Any:
    """The recorded op under its real type again, so ``get_attr`` and the ordinary gradient
    function work on it."""
    if op.type.startswith(PREFIX):
        op.type = op.type.removeprefix(PREFIX)
    return op


def _rescale(original: Callable[..., Any]) -> Callable[..., Any]:
    def gradient(op: Any, grad: Any) -> Any:
        op = _unprefixed(op)
        x, r = tf.split(op.inputs[0], 2)
        yx, yr = tf.split(op.outputs[0], 2)
        plain = original(op, tf.ones_like(grad))
        plain = plain[0] if isinstance(plain, list | tuple) else plain
        multiplier = _ratio(yx - yr, x - r, tf.split(plain, 2)[0])
        return grad * tf.concat([multiplier, multiplier], 0)

    return gradient


def _max_pool(op: Any, grad: Any) -> Any:
    op = _unprefixed(op)
    x, r = tf.split(op.inputs[0], 2)
    yx, yr = tf.split(op.outputs[0], 2)
    gx = tf.split(grad, 2)[0]
    attrs = {name: op.get_attr(name) for name in ("ksize", "strides", "padding", "data_format")}

    def pool_grad(inputs: Any, outputs: Any, upstream: Any) -> Any:
        return gen_nn_ops.max_pool_grad(inputs, outputs, upstream, **attrs)

    cross = tf.maximum(yx, yr)
    assigned = pool_grad(x, yx, gx * (cross - yr)) + pool_grad(r, yr, gx * (yx - cross))
    multiplier = _ratio(assigned, x - r, pool_grad(x, yx, gx))
    return tf.concat([multiplier, tf.zeros_like(multiplier)], 0)


def _softmax(op: Any, grad: Any) -> Any:
    op = _unprefixed(op)
    x, r = tf.split(op.inputs[0], 2)
    sx, sr = tf.split(op.outputs[0], 2)
    gx = tf.split(grad, 2)[0]

    def mean_jacobian_times(v: Any) -> Any:  # J̄ v with J = diag(s) - s sᵀ
        jx = sx * v - sx * tf.reduce_sum(sx * v, -1, keepdims=True)
        jr = sr * v - sr * tf.reduce_sum(sr * v, -1, keepdims=True)
        return 0.5 * (jx + jr)

    denominator = mean_jacobian_times(x - r)
    ratio = _ratio(sx - sr, denominator, tf.ones_like(denominator), eps=EPS * 1e-3)
    result = mean_jacobian_times(gx * ratio)
    return tf.concat([result, tf.zeros_like(result)], 0)


@contextlib.contextmanager
def deeplift_rules() -> Iterator[None]:
    """While active, ops with a DeepLIFT rule are recorded on gradient tapes under a prefixed
    name whose gradient function is the rule. (TensorFlow drops the inputs of ops whose
    ordinary gradient does not need them, e.g. Relu; the renamed ops keep everything.) The
    forward pass *and* the gradient must run inside. Everything is restored in ``finally``."""
    table = tf_ops._gradient_registry._registry
    original_record = tf_execute.record_gradient
    ruled = {name for name in ELEMENTWISE | {"MaxPool", "Softmax"} if name in table}

    def record_gradient(op_name: str, inputs: Any, attrs: Any, results: Any) -> Any:
        name = PREFIX + op_name if op_name in ruled else op_name
        return original_record(name, inputs, attrs, results)

    added = []
    try:
        for name in ruled:
            if name == "MaxPool":
                rule = _max_pool
            elif name == "Softmax":
                rule = _softmax
            else:
                rule = _rescale(table[name]["type"])
            table[PREFIX + name] = {"type": rule, "location": table[name].get("location")}
            added.append(PREFIX + name)
        tf_execute.record_gradient = record_gradient
        yield
    finally:
        tf_execute.record_gradient = original_record
        for name in added:
            table.pop(name, None)
