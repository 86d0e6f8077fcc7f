"""PyTorch backend: any ``torch.nn.Module`` behind :class:`limelight.Model`.

* Layer names are ``named_modules()`` names (a module object is accepted too).
* Inputs are NCHW at the model, NHWC in limelight; converted here, once.
* The model runs on its own device and dtype, in eval mode; every module's previous
  ``training`` flag is restored afterwards, also when the call raises.
* Layer gradients come from ``torch.autograd.grad`` on the captured activation only: the
  forward runs without autograd up to the layer and records a graph only from there on, so
  no parameter ``.grad`` is written and no ``requires_grad`` flag changes. The activation
  handed downstream is a copy, so in-place ops after the layer (``ReLU(inplace=True)``)
  cannot corrupt it. Hooks are removed in ``finally`` blocks.

Importing this module does not import torch; torch is imported on first use.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.cache import model_cache
from ..core.arrays import check_canonical, to_numpy_float32
from ..core.errors import FrameworkNotInstalledError, InputError, LayerError, NotDifferentiableError, no_deeplift_rule
from ..core.hookspecs import hookimpl
from ..core.layers import pick_default_layer
from ..core.lazy import LazyModule
from ..core.model import DEEPLIFT, GRADIENTS, LAYERS, RANDOMIZE, Gradients, Model, reinitialize
from ..core.targets import normalize_targets, resolve_targets

if TYPE_CHECKING:
    import torch as torch_types

torch: Any = LazyModule("torch", extra="torch")

__all__ = ["TorchModel", "limelight_wrap_model"]


@hookimpl(trylast=True)
def limelight_wrap_model(model: object) -> Model | None:
    """Wrap a ``torch.nn.Module`` (only when torch is already imported)."""
    loaded = sys.modules.get("torch")
    if loaded is None or not isinstance(model, loaded.nn.Module):
        return None
    return TorchModel(model)


@hookimpl(trylast=True)
def limelight_load_model(spec: str, weights: str | None) -> Any:
    """``torchvision:NAME`` (``weights="none"``: random) and TorchScript ``.pt`` files.

    Files are never unpickled: TorchScript only (``torch.jit.load``); a plain state dict
    has no architecture, so it is refused with a hint.
    """
    from ..core.loading import LoadedModel, UnknownModelError

    if spec.startswith("torchvision:"):
        import torchvision

        name = spec.split(":", 1)[1]
        try:
            enum = torchvision.models.get_model_weights(name)
        except (ValueError, KeyError):
            raise UnknownModelError(
                f"torchvision has no model {name!r}; e.g. resnet18, resnet50, vgg16, densenet121."
            ) from None
        chosen = None if (weights or "").lower() == "none" else enum.DEFAULT
        model = torchvision.models.get_model(name, weights=chosen).eval()
        preprocess = _on_nhwc(enum.DEFAULT.transforms())  # the weights' own preprocessing
        return LoadedModel(model, "torch", list(enum.DEFAULT.meta["categories"]), preprocess, None)
    if spec.endswith((".pt", ".pth")):
        import os

        if not os.path.exists(spec):
            raise UnknownModelError(f"no such model file: {spec}")
        try:
            model = torch.jit.load(spec, map_location="cpu").eval()
        except RuntimeError:
            raise UnknownModelError(
                f"{spec} is not a TorchScript file. limelight never unpickles arbitrary objects: "
                "save with torch.jit.script(model).save(path), or use package.module:factory."
            ) from None
        return LoadedModel(model, "torch")
    return None


def _on_nhwc(transform: Callable[[Any], Any]) -> Callable[[np.ndarray], Any]:
    """A torchvision transform of NCHW tensors as a function of ``(N, H, W, 3)`` arrays."""
    return lambda images: transform(torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))))


def imagenet_transform(resize: int = 256, crop: int = 224) -> Callable[[np.ndarray], Any]:
    """torchvision's ImageNet classification transform (resize, centre crop, normalize with
    its mean/std) from ``(N, H, W, 3)`` RGB in [0, 1] to an NCHW tensor."""
    try:
        from torchvision.transforms._presets import ImageClassification
    except ImportError as exc:
        raise FrameworkNotInstalledError("torchvision", extra="torch") from exc
    return _on_nhwc(ImageClassification(crop_size=crop, resize_size=resize))


def _column_gradients(out: Any, wrt: Any, columns: np.ndarray) -> Iterator[Any]:
    """Gradients of ``Σ_i out[i, columns[i, t]]`` with respect to ``wrt``, one backward pass
    per column ``t`` of ``columns (n, T)`` through one shared graph (rows of ``out`` past
    ``n`` are not scored); None where ``wrt`` is not on the path."""
    rows = torch.arange(len(columns), device=out.device)
    for t in range(columns.shape[1]):
        score = out[rows, torch.as_tensor(columns[:, t], device=out.device)].sum()
        last = t == columns.shape[1] - 1
        (grad,) = torch.autograd.grad(score, wrt, allow_unused=True, retain_graph=not last)
        yield grad


def _to_keras_order(arr: np.ndarray, back: bool = False) -> np.ndarray:
    """Conv kernels (out, in, h, w) <-> (h, w, in, out), dense (out, in) <-> (in, out)."""
    if arr.ndim == 4:
        return arr.transpose(3, 2, 0, 1) if back else arr.transpose(2, 3, 1, 0)
    return arr.T if arr.ndim == 2 else arr


class TorchModel(Model):
    """A ``torch.nn.Module`` taking NCHW (or ``(N, D)``) tensors and returning ``(N, K)``."""

    framework = "torch"
    capabilities = frozenset({GRADIENTS, LAYERS, DEEPLIFT, RANDOMIZE})

    native: torch_types.nn.Module

    # -- layout ------------------------------------------------------------------------------
    def canonical(self, inputs: Any) -> np.ndarray:
        """NCHW tensor or array (as the model is fed) -> checked NHWC float32 NumPy."""
        if isinstance(inputs, torch.Tensor):
            arr = inputs.detach().to("cpu", torch.float32).numpy()
        else:
            arr = to_numpy_float32(inputs)
        check_canonical(arr)
        expected = self._input_channels()
        if expected is not None:
            if arr.ndim == 3:
                raise InputError(
                    f"inputs have shape {arr.shape}, but this model takes a batch (N, C, H, W): "
                    "for one image use x[None] (x.unsqueeze(0))."
                )
            if arr.ndim == 4 and arr.shape[1] != expected:
                hint = (
                    " They look channels-last (N, H, W, C); torch models take NCHW: pass "
                    "x.permute(0, 3, 1, 2)."
                    if arr.shape[3] == expected
                    else ""
                )
                raise InputError(
                    f"inputs have shape {arr.shape}, but the model's first convolution takes "
                    f"{expected} channels in NCHW layout.{hint}"
                )
        return np.ascontiguousarray(arr.transpose(0, 2, 3, 1)) if arr.ndim == 4 else arr

    def _input_channels(self) -> int | None:
        for module in self.native.modules():
            if isinstance(module, torch.nn.Conv2d):
                return int(module.in_channels)
        return None

    def _device_dtype(self) -> tuple[Any, Any]:
        device, dtype = torch.device("cpu"), torch.float32
        for tensor in [*self.native.parameters(), *self.native.buffers()]:
            device = tensor.device
            if tensor.is_floating_point():
                return device, tensor.dtype
        return device, dtype

    def _to_native(self, x: np.ndarray) -> torch_types.Tensor:
        """Canonical NHWC -> an NCHW tensor in ``channels_last`` memory format: the same
        bytes, no copy, and oneDNN's faster convolution kernels on CPU."""
        device, dtype = self._device_dtype()
        tensor = torch.from_numpy(np.ascontiguousarray(x))
        if x.ndim == 4:
            tensor = tensor.permute(0, 3, 1, 2)
        return tensor.to(device=device, dtype=dtype)

    @staticmethod
    def _to_canonical(t: torch_types.Tensor) -> np.ndarray:
        arr = t.detach().to("cpu", torch.float32).numpy()
        return np.ascontiguousarray(arr.transpose(0, 2, 3, 1)) if arr.ndim == 4 else arr

    # -- layers ------------------------------------------------------------------------------
    def layers(self) -> list[str]:
        return [name for name, _ in self.native.named_modules() if name]

    def resolve_layer(self, layer: object) -> str:
        """A ``named_modules()`` name or a module object of this model -> its name."""
        if isinstance(layer, torch.nn.Module):
            for name, module in self.native.named_modules():
                if module is layer and name:
                    return name
            raise LayerError(
                f"the module {type(layer).__name__} passed as layer is not a submodule of this "
                "model; pass one of model.named_modules() (or its name)."
            )
        return super().resolve_layer(layer)

    def _module(self, layer: object) -> tuple[str, torch_types.nn.Module]:
        name = self.resolve_layer(layer)
        return name, self.native.get_submodule(name)

    def default_layer(self, x: np.ndarray | None = None) -> str:
        """The last module (in execution order) with a spatial 4-D output that runs once
        per forward (see :func:`~limelight.core.layers.pick_default_layer`); traced on a
        sample ``x``."""
        if x is None:
            raise LayerError("the torch backend needs a sample input to find a default layer.")
        cache = model_cache(self.native)
        modules = tuple(id(m) for m in self.native.modules())
        if cache.get("modules") != modules:  # the architecture changed: forget what was traced
            cache.clear()
            cache["modules"] = modules
        key = ("default layer", tuple(x.shape[1:]))
        if key not in cache:
            cache[key] = self._trace_default_layer(x[:1])
        return cache[key]

    def _trace_default_layer(self, x: np.ndarray) -> str:
        finished: list[tuple[str, tuple[int, ...] | None]] = []

        def make_hook(name: str) -> Any:
            def hook(module: Any, args: Any, output: Any) -> None:
                shape = tuple(output.shape) if isinstance(output, torch.Tensor) else None
                finished.append((name, shape))

            return hook

        with contextlib.ExitStack() as stack:
            for name, module in self.native.named_modules():
                if name:
                    stack.callback(module.register_forward_hook(make_hook(name)).remove)
            self._forward(x, grad=False)
        # NCHW shapes -> NHWC for the shared rule
        return pick_default_layer(
            [(n, None if s is None or len(s) != 4 else (s[0], s[2], s[3], s[1])) for n, s in finished],
            separator=".",
        )

    # -- running ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        modes = [(module, module.training) for module in self.native.modules()]
        self.native.eval()
        try:
            yield
        finally:
            for module, training in modes:
                module.training = training

    def _forward(self, x: np.ndarray, *, grad: bool) -> torch_types.Tensor:
        with self._eval_mode(), torch.set_grad_enabled(grad):
            out = self.native(self._to_native(x))
        return self._check_outputs(out)

    @staticmethod
    def _check_outputs(out: Any) -> torch_types.Tensor:
        if not isinstance(out, torch.Tensor):
            raise InputError(
                f"the model returned a {type(out).__name__}, not a tensor of shape (N, K): wrap "
                "it in a module whose forward returns the logits tensor."
            )
        if out.ndim != 2:
            raise InputError(
                f"the model returned shape {tuple(out.shape)}; limelight explains outputs of "
                "shape (N, K) (one score per class)."
            )
        return out

    def predict(self, x: np.ndarray) -> np.ndarray:
        outs = [self._forward(x[batch], grad=False) for batch in self.batches(len(x))]
        return np.concatenate([o.to("cpu", torch.float32).numpy() for o in outs])

    @contextlib.contextmanager
    def _capture(self, module: Any, name: str, *, grad: bool) -> Iterator[dict[str, Any]]:
        """Forward hook storing ``module``'s output; with ``grad``, autograd starts there."""
        store: dict[str, Any] = {}

        def hook(mod: Any, args: Any, output: Any) -> Any:
            if "activation" in store:
                raise LayerError(
                    f"layer {name!r} runs more than once per forward (a reused module); pick a "
                    "layer that runs once."
                )
            if not isinstance(output, torch.Tensor):
                raise LayerError(
                    f"layer {name!r} outputs a {type(output).__name__}, not a tensor; pick a "
                    "layer with a single tensor output."
                )
            if not grad:
                store["activation"] = output.detach().clone()
                return None
            leaf = output.detach().requires_grad_(True)
            store["activation"] = leaf
            torch.set_grad_enabled(True)  # record the graph from here on; reset by the caller
            return leaf.clone()  # in-place ops downstream change the copy, not the leaf

        handle = module.register_forward_hook(hook)
        try:
            yield store
        finally:
            handle.remove()

    def activations(self, x: np.ndarray, layer: str) -> np.ndarray:
        name, module = self._module(layer)
        parts = []
        for batch in self.batches(len(x)):
            with self._capture(module, name, grad=False) as store:
                self._forward(x[batch], grad=False)
            parts.append(self._to_canonical(self._captured(store, name)))
        return np.concatenate(parts)

    @staticmethod
    def _captured(store: dict[str, Any], name: str) -> torch_types.Tensor:
        if "activation" not in store:
            raise LayerError(f"layer {name!r} did not run in the forward pass; pick another layer.")
        return store["activation"]

    def gradients(
        self, x: np.ndarray, targets: np.ndarray | None, layer: str | None = None
    ) -> Gradients:
        targets = normalize_targets(targets, len(x))
        named = self._module(layer) if layer is not None else None
        outs, acts, grads = [], [], []
        for batch in self.batches(len(x)):
            out, act, grad = self._gradients_batch(
                x[batch], None if targets is None else targets[batch], named
            )
            outs.append(out)
            acts.append(act)
            grads.append(grad)
        return Gradients(*(parts[0] if len(parts) == 1 else np.concatenate(parts) for parts in (outs, acts, grads)))

    def multi_gradients(
        self, x: np.ndarray, targets: np.ndarray, layer: str | None = None
    ) -> Gradients:
        """One forward pass per batch, one backward pass per target column."""
        return self.gradients(x, targets, layer)

    @staticmethod
    def _input_conv_mode(leaf: torch_types.Tensor) -> Any:
        """On CPU, the faster input gradient of a strided first convolution
        (:mod:`.torch_subpixel`); elsewhere nothing."""
        if leaf.device.type != "cpu":
            return contextlib.nullcontext()
        from .torch_subpixel import InputConvMode

        return InputConvMode(leaf)

    def _gradients_batch(
        self, x: np.ndarray, targets: np.ndarray | None, named: tuple[str, Any] | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        where = "the input" if named is None else f"layer {named[0]!r}"
        with self._eval_mode():
            if named is None:
                with torch.enable_grad():
                    activation = self._to_native(x).requires_grad_(True)
                    with self._input_conv_mode(activation):
                        out = self._check_outputs(self.native(activation))
            else:
                with torch.no_grad(), self._capture(named[1], named[0], grad=True) as store:
                    out = self._check_outputs(self.native(self._to_native(x)))
                activation = self._captured(store, named[0])
        outputs = out.detach().to("cpu", torch.float32).numpy()
        resolved = resolve_targets(targets, outputs)
        columns = resolved[:, None] if resolved.ndim == 1 else resolved
        if not out.requires_grad:
            raise NotDifferentiableError(
                f"the model's output does not depend differentiably on {where}: does "
                "forward() detach tensors, run under torch.no_grad(), or go through NumPy?"
            )
        grads = []
        for grad in _column_gradients(out, activation, columns):
            if grad is None:
                raise NotDifferentiableError(
                    f"the model's output does not depend on {where}; pick a layer on the path "
                    "to the output."
                )
            grads.append(self._to_canonical(grad))
        grad = grads[0] if resolved.ndim == 1 else np.stack(grads, axis=1)
        return outputs, self._to_canonical(activation), grad

    # -- randomised copies (capability "randomize") ------------------------------------------
    def parameter_layers(self) -> list[str]:
        """Modules that own weights directly, in registration order (input side first)."""
        return [n for n, m in self.native.named_modules() if n and any(True for _ in m.parameters(recurse=False))]

    def randomized(self, layers: list[str], seed: int = 0) -> TorchModel:
        """A deep copy with the weights of ``layers`` re-initialised (see ``reinitialize``);
        conv kernels are handed over in Keras's (h, w, in, out) order so a Keras twin draws
        the same numbers."""
        import copy

        clone = copy.deepcopy(self.native)
        rng = np.random.RandomState(seed)
        with torch.no_grad():
            for name in layers:
                params = list(clone.get_submodule(self.resolve_layer(name)).parameters(recurse=False))
                arrays = [_to_keras_order(p.detach().cpu().numpy()) for p in params]
                for param, new in zip(params, reinitialize(arrays, rng), strict=True):
                    param.copy_(torch.from_numpy(np.ascontiguousarray(_to_keras_order(new, back=True))))
        return TorchModel(clone)
    # -- DeepLIFT (capability "deeplift") ----------------------------------------------------
    def _deeplift_forward(self, x: np.ndarray, references: np.ndarray) -> tuple[Any, Any, dict[str, int]]:
        from .torch_deeplift import DeepLiftMode

        leaf = self._to_native(np.concatenate([x, references])).requires_grad_(True)
        mode = DeepLiftMode()
        with torch.enable_grad(), mode:
            out = self._check_outputs(self.native(leaf))
        return leaf, out, mode.unsupported

    def deeplift_unsupported(self, x: np.ndarray) -> list[str]:
        """Operations on the input's path that DeepLIFT has no rule for (empty: all fine)."""
        with self._eval_mode():
            _, _, unsupported = self._deeplift_forward(x[:1], x[:1])
        return sorted(unsupported)

    def deeplift_gradients(self, x: np.ndarray, references: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """DeepLIFT rescale multipliers ``(n, T, ...)`` of outputs ``targets (n, T)`` for each
        pair ``(x[i], references[i])``: ``Σ m ⊙ (x - r) = f(x) - f(r)`` per target."""
        parts = []
        for batch in self.batches(len(x)):
            parts.append(self._deeplift_batch(x[batch], references[batch], targets[batch]))
        return np.concatenate(parts)

    def _deeplift_batch(self, x: np.ndarray, references: np.ndarray, targets: np.ndarray) -> np.ndarray:
        with self._eval_mode():
            leaf, out, unsupported = self._deeplift_forward(x, references)
            if unsupported:
                raise no_deeplift_rule(unsupported)
            n = len(x)
            resolved = resolve_targets(targets, out[:n].detach().to("cpu", torch.float32).numpy())
            grads = [self._to_canonical(grad[:n]) for grad in _column_gradients(out, leaf, resolved)]
        return np.stack(grads, axis=1)
