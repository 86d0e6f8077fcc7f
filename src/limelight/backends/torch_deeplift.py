"""DeepLIFT's rescale rule for PyTorch models, as a backward pass with swapped rules.

The model runs once on the batch ``[x; references]``. A ``TorchFunctionMode`` sees every
torch function called in ``forward`` — module or functional (``F.relu`` in ``forward``,
one ``nn.ReLU`` reused twice, ``inplace=True``), and:

* elementwise nonlinearities (relu, sigmoid, tanh, softplus, elu, gelu, silu, ...) get
  the rescale rule: multiplier ``Δy / Δx`` (the ordinary derivative where ``|Δx| < 1e-6``);
* max pooling (any kernel, stride, padding — overlapping windows included) splits each
  window's ``Δy`` between the argmax of x and the argmax of the reference and scatter-adds
  it with pooling's own backward, so overlapping windows sum instead of overwriting;
* softmax gets the vector rescale rule ``m_ij = Δy_i J̄_ij / (J̄ Δz)_i`` with ``J̄`` the
  softmax Jacobian averaged over x and the reference, which sums exactly to ``Δy``;
* linear operations (conv, linear, eval-mode batch norm, pooling by averaging, additions,
  reshapes, products with a constant, ...) keep their gradients, which are exact;
* anything else applied to an input-dependent tensor is reported by name, never passed
  through silently.

Each rule satisfies summation-to-delta, so the attributions satisfy completeness:
``Σ m ⊙ (x - r) = f(x) - f(r)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["DeepLiftMode", "EPS"]

EPS = 1e-6

ELEMENTWISE = {
    "relu", "relu_", "relu6", "sigmoid", "sigmoid_", "tanh", "tanh_", "softplus", "elu", "elu_",
    "selu", "selu_", "celu", "celu_", "leaky_relu", "leaky_relu_", "gelu", "silu", "mish",
    "hardtanh", "hardtanh_", "hardswish", "hardsigmoid", "softsign", "logsigmoid", "exp", "exp_",
}
SOFTMAX = {"softmax"}
MAX_POOLS = {"max_pool1d", "max_pool2d", "max_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d"}
LINEAR = {
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "linear", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "adaptive_avg_pool3d", "flatten", "unflatten", "reshape", "view",
    "view_as", "permute", "movedim", "moveaxis", "transpose", "t", "squeeze", "unsqueeze", "cat",
    "concat", "concatenate",
    "stack", "add", "add_", "__add__", "__radd__", "__iadd__", "sub", "sub_", "__sub__",
    "__rsub__", "__isub__", "neg", "__neg__", "mean", "sum", "dropout", "dropout1d", "dropout2d",
    "dropout3d", "alpha_dropout", "feature_alpha_dropout", "pad", "__getitem__", "contiguous",
    "clone", "to", "float", "double", "half", "type_as", "expand", "expand_as", "repeat", "narrow",
    "chunk", "split", "unbind", "select", "index_select", "interpolate", "upsample",
    "pixel_shuffle", "pixel_unshuffle", "identity", "detach", "cpu", "cuda", "roll", "flip",
    "zero_pad2d", "__format__", "__len__", "dim", "size", "numel", "__bool__",
}
PRODUCTS = {"mul", "mul_", "__mul__", "__rmul__", "__imul__", "matmul", "__matmul__", "mm", "bmm"}
QUOTIENTS = {"div", "div_", "__truediv__", "__itruediv__"}


def _name(func: Any) -> str:
    if func is F.max_pool1d or func is F.max_pool2d or func is F.max_pool3d:
        return {F.max_pool1d: "max_pool1d", F.max_pool2d: "max_pool2d", F.max_pool3d: "max_pool3d"}[func]
    if func is F.adaptive_max_pool1d or func is F.adaptive_max_pool2d:
        return "adaptive_max_pool1d" if func is F.adaptive_max_pool1d else "adaptive_max_pool2d"
    name = getattr(func, "__name__", None) or str(func)
    return name


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, list | tuple):
        return [t for item in value for t in _tensors(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors(item)]
    return []


def _tracked(value: Any) -> list[torch.Tensor]:
    return [t for t in _tensors(value) if t.requires_grad]


class DeepLiftMode(TorchFunctionMode):
    """Inside this mode, a forward pass on ``[x; references]`` backpropagates DeepLIFT
    multipliers. Operations with no rule are collected in :attr:`unsupported`."""

    def __init__(self) -> None:
        super().__init__()
        self.unsupported: dict[str, int] = {}

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = dict(kwargs or {})
        name = _name(func)
        tracked_in = _tracked((args, kwargs))
        if tracked_in:
            if name in ELEMENTWISE:
                return _Rescale.apply(args[0], _out_of_place(func, name, args, kwargs))
            if name in MAX_POOLS:
                if kwargs.get("return_indices") or (len(args) > 6 and args[6]):
                    self._unsupported(f"{name}(return_indices=True)")
                else:
                    return _MaxPool.apply(args[0], lambda t: func(t, *args[1:], **kwargs))
            if name in SOFTMAX:
                dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
                return _Softmax.apply(args[0], dim)
        out = func(*args, **kwargs)
        if tracked_in and _tracked(out):
            self._check_linear(name, args, kwargs, tracked_in)
        return out

    def _check_linear(self, name: str, args: Any, kwargs: Any, tracked_in: list[torch.Tensor]) -> None:
        if name in LINEAR:
            return
        if name == "batch_norm":
            training = kwargs.get("training", args[5] if len(args) > 5 else False)
            if training:
                self._unsupported("batch_norm(training=True)")
            return
        if name in PRODUCTS and len(tracked_in) == 1:
            return  # a product with a constant is linear
        if name in QUOTIENTS and len(tracked_in) == 1 and args and args[0] is tracked_in[0]:
            return  # division by a constant
        self._unsupported(name if name not in PRODUCTS | QUOTIENTS else f"{name} of two input-dependent tensors")

    def _unsupported(self, name: str) -> None:
        self.unsupported[name] = self.unsupported.get(name, 0) + 1


def _out_of_place(func: Any, name: str, args: Any, kwargs: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """The elementwise function as an out-of-place callable of its first argument."""
    kwargs = {k: v for k, v in kwargs.items() if k != "inplace"}
    if name.endswith("_"):  # Tensor.relu_ / torch.relu_ and friends
        base = getattr(torch, name[:-1], None) or getattr(F, name[:-1])
        return lambda t: base(t, *args[1:], **kwargs)
    return lambda t: func(t, *args[1:], **kwargs)


def _halves(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x, r = t.chunk(2)
    return x, r


def _ratio(numerator: torch.Tensor, delta: torch.Tensor, fallback: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """``numerator / delta``, and ``fallback`` where ``|delta| < eps``."""
    tiny = delta.abs() < eps
    return torch.where(tiny, fallback, numerator / torch.where(tiny, torch.ones_like(delta), delta))


class _Rescale(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, inp: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        out = fn(inp)
        ctx.save_for_backward(inp, out)
        ctx.fn = fn
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        inp, out = ctx.saved_tensors
        (x, r), (yx, yr) = _halves(inp), _halves(out)
        with torch.enable_grad():
            leaf = inp.detach().requires_grad_(True)
            (plain,) = torch.autograd.grad(ctx.fn(leaf), leaf, torch.ones_like(out))
        both = (2, *[1] * (x.ndim - 1))
        return grad * _ratio((yx - yr).repeat(both), (x - r).repeat(both), plain), None


class _MaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, inp: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        ctx.save_for_backward(inp)
        ctx.fn = fn
        return fn(inp)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        (inp,) = ctx.saved_tensors
        x, r = _halves(inp)
        gx, _ = _halves(grad)
        with torch.enable_grad():
            lx, lr = x.detach().requires_grad_(True), r.detach().requires_grad_(True)
            yx, yr = ctx.fn(lx), ctx.fn(lr)
            cross = torch.maximum(yx, yr).detach()
            # Δy = (cross - yr) + (yx - cross): the first part goes to x's argmax, the second
            # to the reference's argmax; pooling's backward scatter-adds (overlaps sum).
            (to_x,) = torch.autograd.grad(yx, lx, gx * (cross - yr.detach()), retain_graph=True)
            (to_r,) = torch.autograd.grad(yr, lr, gx * (yx.detach() - cross))
            (plain,) = torch.autograd.grad(yx, lx, gx)
        multiplier = _ratio(to_x + to_r, x - r, plain)
        return torch.cat([multiplier, torch.zeros_like(multiplier)]), None


class _Softmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, inp: torch.Tensor, dim: int) -> torch.Tensor:
        out = torch.softmax(inp, dim)
        ctx.save_for_backward(inp, out)
        ctx.dim = dim
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        inp, out = ctx.saved_tensors
        dim = ctx.dim
        (x, r), (sx, sr), (gx, _) = _halves(inp), _halves(out), _halves(grad)

        def mean_jacobian_times(v: torch.Tensor) -> torch.Tensor:  # J̄ v, J = diag(s) - s sᵀ
            jx = sx * v - sx * (sx * v).sum(dim, keepdim=True)
            jr = sr * v - sr * (sr * v).sum(dim, keepdim=True)
            return 0.5 * (jx + jr)

        denominator = mean_jacobian_times(x - r)
        ratio = _ratio(sx - sr, denominator, torch.ones_like(denominator), eps=EPS * 1e-3)
        result = mean_jacobian_times(gx * ratio)
        return torch.cat([result, torch.zeros_like(result)]), None


def scripted_modules(root: torch.nn.Module) -> dict[str, int]:
    """TorchScript modules (``torch.jit.script`` / ``trace``) in ``root``, the model itself
    included, as "unsupported operations": their graphs run in C++, out of reach of
    :class:`DeepLiftMode`, so the rescale rules would silently not be applied inside them."""
    found = [name for name, module in root.named_modules() if isinstance(module, torch.jit.ScriptModule)]
    if not found:
        return {}
    outermost = [n for n in found if not any(n.startswith(o + ".") for o in found if o)]
    label = "the model" if "" in found else ", ".join(repr(n) for n in outermost)
    return {f"TorchScript ({label}: DeepLIFT's rules cannot enter a scripted or traced graph)": 1}
