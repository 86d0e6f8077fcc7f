"""PyTorch backend: any ``torch.nn.Module`` behind :class:`limelight.Model`.

* Arrays stay on the model's device. Canonical inputs are channels-last *views*
  (``x.permute(0, 2, 3, 1)``) of the NCHW tensors the model is fed, not copies; activations
  and gradients are handed out the same way. ``xp`` is ``array_api_compat.torch``.
* Layouts: the first convolution the model runs (a trial forward on one sample, cached per
  model and input shape, stopped there) says what it takes, when no convolution of the
  input's dimensionality takes its channels (to refuse with the right advice) and for 3-D
  inputs: ``(N, C, H, W)``,
  ``(N, C, L)`` (``Conv1d``; canonical ``(N, L, C)``), ``(N, C, D, H, W)`` (canonical
  ``(N, D, H, W, C)``); ``(N, H, W)`` grayscale batches and ``(N, T, D)`` sequences are kept
  as they are. Layer outputs are handed out channels-last: 4-D ones are NCHW unless they are
  ``(N, h, w, C)`` already (Swin stages, :func:`~limelight.core.tokens.is_channels_last`);
  token outputs ``(N, T, C)`` as they are.
* The model runs in its own dtype and memory format: NCHW contiguous, or channels-last when
  its weights are (``model.to(memory_format=torch.channels_last)``, the way channels-last
  models are made); ``TorchModel(model, memory_format=...)`` forces one. The model always
  runs on a copy of the inputs, so in-place operations in ``forward`` never reach them.
* Layer names are ``named_modules()`` names (a module object is accepted too).
* The model runs in eval mode; every module's previous ``training`` flag is restored
  afterwards, also when the call raises.
* Layer gradients come from ``torch.autograd.grad`` on the captured activation only: the
  forward runs without autograd up to the layer and records a graph only from there on, so
  no parameter ``.grad`` is written and no ``requires_grad`` flag changes. The activation
  handed downstream is a copy, so in-place ops after the layer (``ReLU(inplace=True)``)
  cannot corrupt it. Hooks are removed in ``finally`` blocks.
* ``precision="highest"`` turns TF32 and reduced-precision reductions off for the call.
* Threads: the public methods that run or hook the model (``predict``, ``activations``,
  ``gradients``, ``default_layer``, ``deeplift_*``, ``randomized``) hold the model's lock
  (:func:`~limelight.core.cache.model_lock`), so concurrent explanations of one model take
  turns and see no one else's hooks or training flags (``outputs_with`` too). Calls of the
  model outside limelight are not covered.
* ``outputs_with`` (Ablation-CAM) replaces a layer's output through a forward hook; the
  network before the layer runs at batch 1 once per sample (later chunks of the sample's
  edited rows replay it), the rows broadcast against earlier tensors (residual additions),
  or, for models where that is wrong (detected once per model and layer), on the input
  repeated for each row. Edited rows are channels-last, laid back out as the layer's own
  output (NCHW, or as is for channels-last stages and tokens).
* Errors of the model's forward about shapes (a ``RuntimeError``, ``ValueError`` or
  ``TypeError`` whose message mentions a shape, size, dimension or channels: inputs of the
  wrong rank or size) become an :class:`~limelight.core.errors.InputError` naming the shape
  fed and the layout the model takes, chained to the original; other exceptions from the
  user's ``forward`` propagate unchanged.
* Results leave the device only through :meth:`TorchModel.to_numpy` (pinned memory on CUDA).

Importing this module does not import torch; torch is imported on first use.
"""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.arrays import check_batch, digest_arrays, to_numpy_float32
from ..core.cache import ProcessSetting, holding_model_lock, model_cache
from ..core.errors import (
    InputError,
    LayerError,
    LimelightError,
    NotDifferentiableError,
    UnsupportedError,
    no_deeplift_rule,
)
from ..core.explanation import owned
from ..core.hookspecs import hookimpl
from ..core.inputs import (
    concat,
    describe,
    from_user,
    leaves,
    map_inputs,
    rebuild,
    several,
    shape_reference,
    shapes,
    take,
)
from ..core.inputs import rows as input_rows
from ..core.layers import Traced, pick_default_layer
from ..core.lazy import LazyModule
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
    unknown_layer,
)
from ..core.outputs import OutputSelector, select_output
from ..core.targets import Target
from ..core.tokens import is_channels_last

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


def _nchw(t: Any, signal: bool = False) -> Any:
    """Channels-last view ``(N, H, W, C)`` -> the NCHW view (and back with :func:`_nhwc`);
    volumes ``(N, D, H, W, C)`` -> ``(N, C, D, H, W)``; with ``signal``, 1-D signals
    ``(N, L, C)`` -> ``(N, C, L)``. Other ranks pass through."""
    if t.ndim in (4, 5) or (signal and t.ndim == 3):
        return t.permute(0, t.ndim - 1, *range(1, t.ndim - 1))
    return t


def _nhwc(t: Any, signal: bool = False) -> Any:
    if t.ndim in (4, 5) or (signal and t.ndim == 3):
        return t.permute(0, *range(2, t.ndim), 1)
    return t


class _StemFound(Exception):
    """Stops the trial forward of :meth:`TorchModel._stem` at the first convolution."""


_LAYOUTS = {1: ("(N, C, L)", "(N, L, C)"), 2: ("NCHW", "(N, H, W, C)"), 3: ("(N, C, D, H, W)", "(N, D, H, W, C)")}


def _check_stem(shape: tuple[int, ...], dims: int, channels: int, received: tuple[int, ...], name: str) -> None:
    """InputError when the model's first convolution (``name``, ``dims``-D, ``channels``
    input channels) received inputs of ``shape`` in a layout it cannot take: no batch axis,
    or the channels on the wrong axis."""
    first, last = _LAYOUTS.get(dims, (f"(N, C, {dims} spatial dims)", "channels-last"))
    if len(received) == dims + 1 and len(shape) == dims + 1:
        raise InputError(
            f"inputs have shape {shape}, but this model takes a batch {first}: for one sample use "
            "x[None] (x.unsqueeze(0))."
        )
    if len(received) != dims + 2 or received[1] == channels:
        return
    hint = ""
    if len(shape) == dims + 2 and shape[-1] == channels:
        order = ", ".join(str(a) for a in (0, len(shape) - 1, *range(1, len(shape) - 1)))
        hint = f" They look channels-last {last}; torch models take {first}: pass x.permute({order})."
    raise InputError(
        f"inputs have shape {shape}, but the model's first convolution ({name!r}) takes {channels} "
        f"channels in {first} layout.{hint}"
    )


def _no_inference_mode() -> None:
    """A clear error for gradients asked for inside ``torch.inference_mode()`` (no graph can
    be recorded there, not even under ``torch.enable_grad()``)."""
    if torch.is_inference_mode_enabled():
        raise UnsupportedError(
            "limelight was called inside torch.inference_mode(), where PyTorch records no "
            "gradients at all (torch.enable_grad() cannot turn them back on), so this method "
            "cannot run. Call limelight outside torch.inference_mode(); torch.no_grad() is "
            "fine (limelight enables gradients where it needs them)."
        )


def _column_gradients(scores: Any, wrt: Any) -> Iterator[Any]:
    """Gradients of ``Σ_i scores[i, t]`` with respect to ``wrt`` (a tensor, or a tuple / dict
    of them: gradients in that structure), one backward pass per column ``t`` through one
    shared graph; None where ``wrt`` is not on the path."""
    columns = scores.shape[1]
    for t in range(columns):
        last = t == columns - 1
        with torch.enable_grad():  # the column's sum is recorded also under the caller's no_grad()
            total = scores[:, t].sum()
        grads = torch.autograd.grad(total, leaves(wrt), allow_unused=True, retain_graph=not last)
        yield rebuild(wrt, list(grads))


def _feed(native: Any, fed: Any) -> Any:
    """Call the model on ``fed``: a tensor, a tuple (positional arguments) or a dict
    (keyword arguments)."""
    if isinstance(fed, dict):
        return native(**fed)
    if isinstance(fed, tuple):
        return native(*fed)
    return native(fed)








def _to_keras_order(arr: np.ndarray, back: bool = False) -> np.ndarray:
    """Conv kernels (out, in, h, w) <-> (h, w, in, out), dense (out, in) <-> (in, out)."""
    if arr.ndim == 4:
        return arr.transpose(3, 2, 0, 1) if back else arr.transpose(2, 3, 1, 0)
    return arr.T if arr.ndim == 2 else arr


#: Reduced-precision reductions of ``torch.backends.cuda.matmul`` that ``precision="highest"``
#: turns off besides TF32.
_REDUCED_PRECISION = ("allow_fp16_reduced_precision_reduction", "allow_bf16_reduced_precision_reduction")


#: ``precision="highest"`` while any thread needs it (see ProcessSetting).
_HIGHEST = ProcessSetting()


def _full_precision() -> Callable[[], None]:
    """TF32 and reduced-precision reductions off; returns the function that restores them."""
    flags: list[tuple[Any, str, Any]] = []
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        for owner in (matmul, torch.backends.cudnn.conv, torch.backends.cudnn.rnn):
            flags.append((owner, "fp32_precision", "ieee"))
    else:  # older torch: the legacy flags
        flags += [(matmul, "allow_tf32", False), (torch.backends.cudnn, "allow_tf32", False)]
    flags += [(matmul, name, False) for name in _REDUCED_PRECISION if hasattr(matmul, name)]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in flags]

    def restore() -> None:
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)

    try:
        for owner, name, value in flags:
            setattr(owner, name, value)
    except BaseException:
        restore()
        raise
    return restore


_COPIER: list[Any] = []


def _copier() -> Any:
    """The one worker thread that brings prefetched tensors to the host."""
    if not _COPIER:
        from concurrent.futures import ThreadPoolExecutor

        _COPIER.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="limelight-copy"))
    return _COPIER[0]


def _copy_to_host(a: Any, ready: Any) -> np.ndarray:
    """Device -> pinned host memory on a side stream once ``ready`` fired, then an owned,
    read-only NumPy copy (the pinned block goes back to torch's cache)."""
    stream = torch.cuda.Stream(a.device)
    a.record_stream(stream)  # the allocator keeps a's memory until this stream is done with it
    with torch.cuda.stream(stream):
        stream.wait_event(ready)
        source = a.contiguous()
        pinned = torch.empty(source.shape, dtype=source.dtype, pin_memory=True)
        pinned.copy_(source, non_blocking=True)
    stream.synchronize()
    return owned(pinned.numpy())


def _version(t: Any) -> int | None:
    """The in-place version counter of a tensor (None: not a tensor, or an inference tensor
    without one)."""
    if not isinstance(t, torch.Tensor):
        return None
    try:
        return int(t._version)
    except RuntimeError:
        return None


class _PrefixMemo:
    """Runs the modules that finish before ``layer`` starts only once per sample.

    ``recording()`` wraps the first forward of a sample: hooks note each module's output and
    whether all of its work ended before the layer began. ``replaying()`` wraps the next
    forwards of the same sample: the outermost such modules (called once, not shared) return a
    copy of their recorded output instead of running (their ``forward`` is shadowed by an
    instance attribute for the duration only). The layer itself returns its recorded output
    without running too (the edit hook replaces that output anyway), unless its forward
    changed its inputs in place. The outputs are the same numbers; only the repeated work of
    the network before the layer, and of the layer, goes.

    :meth:`kept` keeps one memo per model across calls, for a one-sample input passed again
    as the same tensor object (Ablation-CAM's batches of one sample).
    """

    #: The ``model_cache`` key of the memo kept across calls.
    KEPT = ("kept prefix memo",)

    def __init__(self, root: Any, layer: Any) -> None:
        self.root, self.layer = root, layer
        self.saved: dict[str, tuple[Any, Any]] = {}
        self.layer_output: Any = None  # the layer's own output, when replaying may skip the layer
        self.recorded = False

    @classmethod
    def kept(cls, cache: dict[Any, Any], x: Any, root: Any, layer: Any) -> _PrefixMemo:
        """The memo for one-sample input ``x``: the one of the previous call when that call
        had the same tensor object, unchanged in place since, at the same ``layer``, with
        the model's parameters and buffers unchanged; else a new one, kept in ``cache``
        (the model's) until ``x`` is freed or another input comes."""
        import weakref

        version, state = _version(x), cls._state(root)
        kept = cache.get(cls.KEPT)
        if kept is not None:
            ref, old_version, old_state, memo = kept
            same = ref() is x and version is not None and state is not None
            if same and old_version == version and old_state == state and memo.layer is layer:
                return memo
        memo = cls(root, layer)
        if version is None or state is None:  # no in-place version to check: not kept
            cache.pop(cls.KEPT, None)
            return memo

        def drop(ref: Any) -> None:  # x freed: its memo goes too
            entry = cache.get(cls.KEPT)
            if entry is not None and entry[0] is ref:
                cache.pop(cls.KEPT, None)

        try:
            cache[cls.KEPT] = (weakref.ref(x, drop), version, state, memo)
        except TypeError:  # cannot be weakly referenced: not kept
            cache.pop(cls.KEPT, None)
        return memo

    @staticmethod
    def walk(root: Any) -> list[Any]:
        """``root`` and every module under it (a shared one once per path): a plain walk
        over ``_modules``, cheaper than ``named_modules()`` for a check made every call."""
        found, stack = [], [root]
        while stack:
            module = stack.pop()
            found.append(module)
            stack.extend(m for m in module._modules.values() if m is not None)
        return found

    @classmethod
    def _state(cls, root: Any) -> tuple[tuple[int, int, int], ...] | None:
        """Which tensor, where and at which in-place version each parameter and buffer of
        ``root`` is (None: one has no version, an inference tensor)."""
        state: list[tuple[int, int, int]] = []
        try:
            for module in cls.walk(root):
                for t in (*module._parameters.values(), *module._buffers.values()):
                    if t is not None:
                        state.append((id(t), t.data_ptr(), t._version))
        except RuntimeError:
            return None
        return tuple(state)

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        started: list[bool] = []
        outputs: dict[str, list[Any]] = {}
        late: set[str] = set()
        paths = Counter(id(m) for _, m in self.root.named_modules(remove_duplicate=False))
        modules = {name: m for name, m in self.root.named_modules() if name and paths[id(m)] == 1}
        layer_runs: list[tuple[Any, list[Any]]] = []

        def pre(name: str) -> Any:
            def hook(mod: Any, args: Any) -> None:
                if mod is self.layer:
                    started.append(True)
                elif started:
                    late.add(name)

            return hook

        def post(name: str) -> Any:
            def hook(mod: Any, args: Any, output: Any) -> None:
                version = _version(output)
                if started or version is None:
                    late.add(name)
                else:
                    outputs.setdefault(name, []).append((output, version))

            return hook

        def layer_pre(mod: Any, args: Any) -> None:
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            layer_runs.append((tensors, [_version(a) for a in tensors]))

        def layer_post(mod: Any, args: Any, output: Any) -> None:
            tensors, versions = layer_runs[-1]
            if isinstance(output, torch.Tensor) and [_version(a) for a in tensors] == versions:
                layer_runs[-1] = (output, versions)
            else:
                layer_runs[-1] = (None, versions)

        with contextlib.ExitStack() as stack:
            stack.callback(self.layer.register_forward_pre_hook(pre("")).remove)
            stack.callback(self.layer.register_forward_pre_hook(layer_pre).remove)
            stack.callback(self.layer.register_forward_hook(layer_post).remove)
            for name, mod in modules.items():
                if mod is not self.layer:
                    stack.callback(mod.register_forward_pre_hook(pre(name)).remove)
                    stack.callback(mod.register_forward_hook(post(name)).remove)
            yield
        # an output changed in place after it was returned (ReLU(inplace=True), ``+=``) is not
        # what the module returned: that module runs every time
        done = {
            name
            for name, outs in outputs.items()
            if name not in late and len(outs) == 1 and _version(outs[0][0]) == outs[0][1]
        }
        self.saved = {
            name: (modules[name], outputs[name][0][0])
            for name in done
            if not any(".".join(name.split(".")[:k]) in done for k in range(1, name.count(".") + 1))
        }
        # the layer ran once and left its inputs alone: replaying may skip it
        self.layer_output = layer_runs[0][0] if len(layer_runs) == 1 else None
        self.recorded = True

    @contextlib.contextmanager
    def replaying(self) -> Iterator[None]:
        patched: list[Any] = []
        replays = [(module, output, True) for module, output in self.saved.values()]
        if self.layer_output is not None:
            replays.append((self.layer, self.layer_output, False))
        try:
            for module, output, copy in replays:
                if "forward" in vars(module):
                    continue  # a forward of its own already: leave it alone

                def forward(*args: Any, __out: Any = output, __copy: bool = copy, **kwargs: Any) -> Any:
                    # a copy: in-place operations downstream never reach the record (the
                    # layer's own output is replaced by the edit hook, never used)
                    return __out.clone() if __copy else __out

                try:
                    object.__setattr__(module, "forward", forward)
                except (AttributeError, TypeError, RuntimeError):  # TorchScript modules
                    continue
                patched.append(module)
            yield
        finally:
            for module in patched:
                object.__delattr__(module, "forward")


def _unwrapped(native: Any) -> Any:
    """The module torch's wrappers hold, nested as they are: ``torch.compile``'s
    ``OptimizedModule`` (its eager ``_orig_mod``), ``DataParallel`` and
    ``DistributedDataParallel`` (``.module``)."""
    while True:
        cls = type(native)
        if cls.__name__ == "OptimizedModule" and cls.__module__.startswith("torch._dynamo"):
            native = native._orig_mod
        elif isinstance(native, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)):
            native = native.module
        else:
            return native


#: The name segments torch's wrappers put before the wrapped model's layer names.
_WRAPPER_SEGMENTS = ("_orig_mod.", "module.")


class TorchModel(Model):
    """A ``torch.nn.Module`` taking NCHW (or ``(N, D)``) tensors and returning ``(N, K)``.

    ``memory_format``: None runs the model in the memory format of its convolution weights;
    ``torch.channels_last`` (or ``torch.contiguous_format``) forces one.

    A model behind ``torch.compile``, ``DataParallel`` or ``DistributedDataParallel`` is
    explained through the module it wraps (``_orig_mod`` / ``.module``: the same parameters,
    so ``wrap(m).native`` is that module): hooks added after dynamo compiled a graph never
    fire in it (and the explanation's own hooks would make it recompile), DataParallel's
    replicas would hold the activations on other devices, and a DDP forward and backward
    would join its gradient all-reduce. Layer names are the inner module's; the wrapped
    names (``"_orig_mod.layer4"``, ``"module.layer4"``) are taken too.
    """

    framework = "torch"

    native: torch_types.nn.Module

    def __init__(self, native: object, memory_format: Any = None, output: OutputSelector = None) -> None:
        native = _unwrapped(native)
        super().__init__(native)
        self.memory_format = memory_format
        #: ``output=``: which tensor of structured outputs is explained (see core.outputs).
        self.output = output
        #: Whether the model is TorchScript (``torch.jit.script`` / ``trace``): its layers'
        #: outputs are out of reach of hooks, and DeepLIFT's rules cannot enter its graph.
        self.scripted = isinstance(native, torch.jit.ScriptModule)

    def _layers_reachable(self) -> None:
        """An UnsupportedError for TorchScript models, whose layer outputs no hook can see."""
        if self.scripted:
            raise UnsupportedError(
                "this is a TorchScript model (torch.jit.script / torch.jit.trace): its graph "
                "runs without Python hooks, so no layer's activations or gradients can be "
                "captured and layer methods (gradcam, gradcam++, layercam, scorecam, "
                "ablationcam, ...) cannot run on it. Explain the eager nn.Module instead (the "
                "model before torch.jit.script/trace, or its class with the state_dict loaded), "
                "or use a method that needs only inputs and outputs: 'shap-gradient', 'shap' "
                "(picks shap-gradient here), 'shap-partition' or 'rise'."
            )

    @property
    def xp(self) -> ModuleType:
        import array_api_compat.torch

        return array_api_compat.torch

    # -- in and out --------------------------------------------------------------------------
    def canonical(self, inputs: Any) -> Any:
        """NCHW tensor or array (as the model is fed) -> a checked NHWC view on the model's
        device, in the model's floating dtype (converted only when it differs). A tuple
        (positional arguments of ``forward``) or a dict (keyword arguments) of inputs gives
        the same structure of canonical inputs, each made canonical on its own."""
        if several(inputs):  # the first Conv2d's channels say nothing about each input
            return from_user(inputs, lambda one: self._canonical_one(one, check_channels=False))
        return self._canonical_one(inputs)

    def _canonical_one(self, inputs: Any, *, check_channels: bool = True) -> torch_types.Tensor:
        """One input of :meth:`canonical`."""
        device, dtype = self._device_dtype()
        if isinstance(inputs, torch.Tensor):
            tensor = inputs.detach()
            if tensor.is_inference() and not torch.is_inference_mode_enabled():
                tensor = tensor.clone()  # made under torch.inference_mode(): a normal copy takes gradients
        else:
            tensor = torch.from_numpy(to_numpy_float32(inputs))
        if not tensor.is_floating_point():
            tensor = tensor.to(torch.float32)
        check_batch(self.xp, tensor, self.to_numpy)
        signal = False
        if check_channels and tensor.ndim in (3, 4, 5) and not self._takes_channels(tensor):
            stem = self._stem(tensor)
            if stem is not None:
                _check_stem(tuple(tensor.shape), *stem)
                signal = tensor.ndim == 3 and stem[0] == 1
            if tensor.ndim == 3:
                canonical = (tensor.shape[2], tensor.shape[1]) if signal else tuple(tensor.shape[1:])
                model_cache(self.native)[("signal", canonical)] = signal
        return _nhwc(tensor.to(device=device, dtype=dtype), signal)

    def weights_digest(self) -> str | None:
        """:func:`~limelight.core.arrays.digest_arrays` of ``state_dict()`` (buffers included)."""
        return digest_arrays(self.native.state_dict().items())

    def place(self, device: str) -> None:
        """``native.to(device)``; ``"auto"``: to ``cuda`` when torch sees a GPU (else stays)."""
        if device == "auto":
            if not torch.cuda.is_available():
                return
            device = "cuda"
        self.native.to(device)

    def asarray(self, a: Any, like: Array | None = None) -> torch_types.Tensor:
        device = like.device if like is not None else self._device_dtype()[0]
        host = np.asarray(a)
        tensor = torch.as_tensor(host if host.flags.writeable else host.copy())  # torch wants writable memory
        if like is not None and tensor.is_floating_point():
            return tensor.to(device=device, dtype=like.dtype, non_blocking=True)
        return tensor.to(device=device, non_blocking=True)

    def to_numpy(self, a: Array) -> np.ndarray:
        """A tensor on the host as NumPy (via pinned memory from CUDA); NumPy passes through."""
        if not isinstance(a, torch.Tensor):
            return np.asarray(a)
        a = a.detach()
        if a.dtype in (torch.bfloat16,):
            a = a.to(torch.float32)
        if a.device.type == "cuda":
            pinned = torch.empty(a.shape, dtype=a.dtype, pin_memory=True)
            pinned.copy_(a, non_blocking=True)
            torch.cuda.current_stream(a.device).synchronize()
            return pinned.numpy()
        return a.cpu().numpy()

    def prefetch(self, a: Array) -> Callable[[], np.ndarray]:
        """From CUDA, the copy to the host starts now on a side stream (after the work already
        queued for ``a``) and a worker thread makes the owned host array, while the caller
        goes on launching the explanation's work; elsewhere the base version."""
        if not isinstance(a, torch.Tensor) or a.device.type != "cuda":
            return super().prefetch(a)
        ready = torch.cuda.Event()
        ready.record(torch.cuda.current_stream(a.device))
        return _copier().submit(_copy_to_host, a, ready).result

    def index_add(self, target: Array, index: Array, values: Array) -> torch_types.Tensor:
        return target.index_add(0, index, values.to(target.dtype))

    @contextlib.contextmanager
    def precision(self, mode: str) -> Iterator[None]:
        """``"highest"``: TF32 convolutions/matmuls and reduced-precision reductions off for
        the duration (restored after, also on errors); ``"default"``: the user's settings
        untouched. Uses torch's ``fp32_precision`` API where it exists (mixing it with the
        legacy ``allow_tf32`` flags is an error in torch). Overlapping calls in several threads
        switch the flags once; the last one out restores them."""
        if mode != "highest":
            yield
            return
        with _HIGHEST.held(_full_precision):  # overlapping calls restore the flags once, last
            yield

    def _input_channels(self) -> int | None:
        """The channels of the convolution the model ran first on its inputs (its stem, found
        by :meth:`_stem`), else of its first registered ``Conv2d``, else None."""
        stem = model_cache(self.native).get("stem")
        if stem is not None:
            return int(stem[1])
        for module in self.native.modules():
            if isinstance(module, torch.nn.Conv2d):
                return int(module.in_channels)
        return None

    def _takes_channels(self, tensor: torch_types.Tensor) -> bool:
        """Whether ``tensor``'s layout needs no trial forward: the model has no convolution, or
        one of its convolutions of the input's dimensionality takes ``tensor.shape[1]``
        channels (NCHW inputs of an ordinary CNN). 3-D inputs of models with convolutions
        (``(N, C, L)`` signals, ``(N, H, W)`` grayscale, a missing batch axis) need one."""
        convs = [m for m in self.native.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
        if not convs:
            return True
        if tensor.ndim == 3:
            return False
        dims = tensor.ndim - 2
        return any(len(m.kernel_size) == dims and int(m.in_channels) == int(tensor.shape[1]) for m in convs)

    @holding_model_lock
    def _stem(self, tensor: torch_types.Tensor) -> tuple[int, int, tuple[int, ...], str] | None:
        """The first convolution the model runs on a sample of ``tensor`` (as the user feeds
        it): ``(spatial dims, in_channels, shape it received, name)``, or None when the
        forward ran no convolution or failed before one. The trial forward stops at that
        convolution (a pre-hook raises), runs in eval mode without gradients, and is cached
        per model and input shape."""
        cache = self._traced_cache()
        key = ("stem", tuple(tensor.shape[1:]))
        if key in cache:
            if cache[key] is not None:
                cache["stem"] = cache[key]
            return cache[key]
        found: list[tuple[int, int, tuple[int, ...], str]] = []

        def make_hook(name: str) -> Any:
            def hook(module: Any, args: Any) -> None:
                received = tuple(args[0].shape) if args and isinstance(args[0], torch.Tensor) else ()
                found.append((len(module.kernel_size), int(module.in_channels), received, name))
                raise _StemFound

            return hook

        device, dtype = self._device_dtype()
        sample = tensor[:1].to(device=device, dtype=dtype)
        with contextlib.ExitStack() as stack:
            for name, module in self.native.named_modules():
                if isinstance(module, torch.nn.modules.conv._ConvNd):
                    try:
                        stack.callback(module.register_forward_pre_hook(make_hook(name)).remove)
                    except (RuntimeError, AttributeError):  # modules that take no hooks (TorchScript)
                        continue
            try:
                with self._eval_mode(), torch.no_grad():
                    self.native(self._copy(sample))
            except Exception:  # noqa: BLE001 - _StemFound ends the trace; anything else: no conclusion
                pass  # (the real forward reports the error)
        cache[key] = found[0] if found else None
        if found:
            cache["stem"] = found[0]
        return cache[key]

    def _signal(self, x: Array) -> bool:
        """Whether canonical ``x`` (3-D) is a 1-D signal ``(N, L, C)`` the model takes as
        ``(N, C, L)`` (its first convolution is a ``Conv1d``; see :meth:`canonical`). One
        input at a time (callers map over several)."""
        return x.ndim == 3 and bool(model_cache(self.native).get(("signal", tuple(x.shape[1:])), False))

    def _layer_nhwc(self, t: torch_types.Tensor, x: Array) -> torch_types.Tensor:
        """A layer's output (or its gradient) -> channels-last. 4-D outputs are NCHW unless
        they are ``(N, h, w, C)`` already (Swin stages; see
        :func:`~limelight.core.tokens.is_channels_last`, judged against the input's
        ``(H, W)``); 5-D ``(N, C, D, H, W)`` -> ``(N, D, H, W, C)``; 3-D outputs of models of
        1-D signals ``(N, C, L)`` -> ``(N, L, C)``; tokens ``(N, T, C)`` and the rest as
        they are."""
        x = shape_reference(x)
        if t.ndim == 4 and is_channels_last(tuple(t.shape), tuple(x.shape[1:3]) if x.ndim == 4 else None):
            return t
        return _nhwc(t, self._signal(x))

    def _device_dtype(self) -> tuple[Any, Any]:
        device, dtype = torch.device("cpu"), torch.float32
        for tensor in [*self.native.parameters(), *self.native.buffers()]:
            device = tensor.device
            if tensor.is_floating_point():
                return device, tensor.dtype
        return device, dtype

    def _memory_format(self) -> Any:
        """The memory format the model runs in: the one given to the wrapper, else the one
        of the model's first convolution weight (``model.to(memory_format=torch.channels_last)``
        converts the weights too), else NCHW contiguous."""
        if self.memory_format is not None:
            return self.memory_format
        for module in self.native.modules():
            if isinstance(module, torch.nn.Conv2d):
                weight = module.weight
                if weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous():
                    return torch.channels_last
                break
        return torch.contiguous_format

    def _to_native(self, x: Any) -> Any:
        """Canonical NHWC (a view of the user's tensor or an explainer's array) -> a fresh NCHW
        tensor in the model's memory format: a model that edits its input in place
        (``ReLU(inplace=True)`` first, ``x.sub_(mean)``) never touches the user's tensor.
        Several inputs: the same structure of such tensors."""
        return map_inputs(lambda a: self._copy(_nchw(a, self._signal(a))), x)

    def _copy(self, native: torch_types.Tensor) -> torch_types.Tensor:
        """A fresh copy of an NCHW (or flat) tensor in the model's memory format."""
        if native.ndim == 4:
            return native.clone(memory_format=self._memory_format())
        return native.clone()

    # -- layers ------------------------------------------------------------------------------
    def layers(self) -> list[str]:
        return [name for name, _ in self.native.named_modules() if name]

    def resolve_layer(self, layer: object) -> str:
        """A ``named_modules()`` name or a module object of this model -> its name."""
        as_list = layer_list_error(layer)
        if as_list is not None:
            raise as_list
        if isinstance(layer, torch.nn.Module):
            for name, module in self.native.named_modules():
                if module is layer and name:
                    return name
            raise LayerError(
                f"the module {type(layer).__name__} passed as layer is not a submodule of this "
                "model; pass one of model.named_modules() (or its name)."
            )
        names = self.layers()
        if isinstance(layer, str):
            name = layer
            while name not in names and name.startswith(_WRAPPER_SEGMENTS):  # a wrapper's name
                name = name.split(".", 1)[1]  # "module._orig_mod.layer4" -> "layer4" (see class)
            if name in names:
                return name
        raise unknown_layer(layer, names, self.framework)

    def _module(self, layer: object) -> tuple[str, torch_types.nn.Module]:
        self._layers_reachable()
        name = self.resolve_layer(layer)
        module = self.native.get_submodule(name)
        if isinstance(module, torch.jit.ScriptModule):
            raise LayerError(
                f"layer {name!r} is (inside) a TorchScript submodule, whose outputs no Python hook "
                "can see; pick a layer of the model's eager part, or script less of it."
            )
        return name, module

    @holding_model_lock
    def default_layer(self, x: Array) -> str:
        """The last module (in execution order) with a spatial or token output that runs once
        per forward, narrowed to the innermost module returning the same tensor; for vision
        transformers the first norm of the last block (see
        :func:`~limelight.core.layers.pick_default_layer`); traced on a sample ``x``."""
        self._layers_reachable()
        cache = self._traced_cache()
        key = ("default layer", shapes(x))
        if key not in cache:
            cache[key] = self._trace_default_layer(take(x, slice(0, 1)))
        return cache[key]

    def _traced_cache(self) -> dict[Any, Any]:
        """The model's cache, emptied first when its architecture changed since the last
        trace (default layers, stems and input layouts are traced per architecture)."""
        cache = model_cache(self.native)
        modules = tuple(id(m) for m in self.native.modules())
        if cache.get("modules") != modules:  # the architecture changed: forget what was traced
            cache.clear()
            cache["modules"] = modules
        return cache

    def _trace_default_layer(self, x: Array) -> str:
        finished: list[Traced] = []
        alive: list[Any] = []  # outputs kept alive while tracing, so their id()s stay unique

        def make_hook(name: str) -> Any:
            def hook(module: Any, args: Any, output: Any) -> None:
                if not isinstance(output, torch.Tensor):
                    finished.append(Traced(name, None))
                    return
                alive.append(output)
                # what a view shares with the layer before it; an in-place op (returns its input)
                # computes its output, so it has none
                in_place = any(output is a for a in args)
                memory = None if in_place else (output.untyped_storage().data_ptr(), output.numel())
                shape = tuple(self._layer_nhwc(output, x).shape)  # channels-last for the shared rule
                # the version counter tells an output changed in place later (ConvNeXt's
                # ``result += input`` after ``stochastic_depth``) from the block's own output
                finished.append(Traced(name, shape, (id(output), _version(output)), memory))

            return hook

        with contextlib.ExitStack() as stack:
            for name, module in self.native.named_modules():
                if name and not isinstance(module, torch.jit.ScriptModule):  # TorchScript: no hooks
                    stack.callback(module.register_forward_hook(make_hook(name)).remove)
            self._forward(x, grad=False)
        alive.clear()
        return pick_default_layer(finished, separator=".", input_shape=tuple(shape_reference(x).shape))

    # -- running ----------------------------------------------------------------------------
    def _layout(self) -> str:
        channels = self._input_channels()
        stem = model_cache(self.native).get("stem")
        if channels is not None and stem is not None and stem[0] != 2:
            return {1: f"batches (N, {channels}, L)", 3: f"batches (N, {channels}, D, H, W)"}.get(
                stem[0], f"batches (N, {channels}, ...)"
            )
        if channels is not None:
            return f"NCHW batches (N, {channels}, H, W)"
        for module in self.native.modules():
            if isinstance(module, torch.nn.Linear):
                return f"batches (N, {module.in_features}) (its first Linear layer)"
        return "the batches its forward() takes, (N, ...)"

    @contextlib.contextmanager
    def _forward_errors(self, fed: Any) -> Iterator[None]:
        """Shape errors of the model's forward on ``fed`` (a tensor or its shape) ->
        InputError (see the module docstring); LimelightErrors and other exceptions
        propagate unchanged."""
        try:
            yield
        except LimelightError:
            raise
        except (RuntimeError, ValueError, TypeError) as exc:
            text = str(exc).strip()
            message = text.splitlines()[0] if text else ""
            if not SHAPE_WORDS.search(message):
                raise
            shape = describe(fed, lambda a: batch_shape(getattr(a, "shape", a)))
            raise InputError(
                f"the model's forward failed on inputs of shape {shape}; this model takes "
                f"{self._layout()}. {type(exc).__name__}: {message[:300]}"
            ) from exc

    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        """The model in eval mode for the body; every module's flag restored after. A model
        already in eval mode is left alone (nothing to switch or restore)."""
        modes = [(module, module.training) for module in self.native.modules()]
        if not any(training for _, training in modes):
            yield
            return
        self.native.eval()
        try:
            yield
        finally:
            for module, training in modes:
                module.training = training

    def _forward(self, x: Array, *, grad: bool) -> torch_types.Tensor:
        if grad:
            _no_inference_mode()
        fed = self._to_native(x)
        with self._eval_mode(), torch.set_grad_enabled(grad), self._forward_errors(fed):
            out = _feed(self.native, fed)
        return self._check_outputs(out)

    def _check_outputs(self, out: Any) -> torch_types.Tensor:
        """The explained tensor of what the model returned (picked by ``output=``, see
        :mod:`limelight.core.outputs`): ``(N, K)``, or a dense ``(N, K, ...)`` output as its
        channels-last view ``(N, ..., K)`` (class axis last, as targets expect)."""
        out = select_output(out, self.output, is_array=lambda t: isinstance(t, torch.Tensor))
        if not 2 <= out.ndim <= 5:
            raise InputError(
                f"the model returned shape {tuple(out.shape)}; limelight explains outputs of "
                "shape (N, K) (one score per class) or dense (N, K, H, W) / (N, K, L) / "
                "(N, K, D, H, W) (one score per class and position); pick another with output=."
            )
        if out.ndim > 2:
            out = out.movedim(1, -1)  # a view: (N, K, ...) -> (N, ..., K)
        return out

    @holding_model_lock
    def predict(self, x: Array, *, batch_size: int | None = None) -> torch_types.Tensor:
        outs = [self._forward(take(x, batch), grad=False) for batch in batches(input_rows(x), batch_size)]
        return outs[0] if len(outs) == 1 else torch.cat(outs)

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

    @holding_model_lock
    def activations(self, x: Array, layer: str, *, batch_size: int | None = None) -> torch_types.Tensor:
        name, module = self._module(layer)
        parts = []
        for batch in batches(input_rows(x), batch_size):
            with self._capture(module, name, grad=False) as store:
                self._forward(take(x, batch), grad=False)
            parts.append(self._layer_nhwc(self._captured(store, name), x))
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    @staticmethod
    def _captured(store: dict[str, Any], name: str) -> torch_types.Tensor:
        if "activation" not in store:
            raise LayerError(f"layer {name!r} did not run in the forward pass; pick another layer.")
        return store["activation"]

    def _scores(self, target: Target, out: torch_types.Tensor, rows: slice | np.ndarray) -> torch_types.Tensor:
        """``target``'s scores ``(n, T)`` of outputs ``out`` for the samples ``rows``."""
        data = [self.asarray(d[rows], like=out) for d in target.data()]
        return target.scores(self.xp, out, *data)

    @holding_model_lock
    def gradients(
        self, x: Array, target: Target, layer: str | None = None, *, batch_size: int | None = None
    ) -> Gradients:
        named = self._module(layer) if layer is not None else None
        outs, acts, grads = [], [], []
        for batch in batches(input_rows(x), batch_size):
            out, act, grad = self._gradients_batch(take(x, batch), target, batch, named)
            outs.append(out)
            acts.append(act)
            grads.append(grad)
        parts = [concat(p, torch.cat) for p in (outs, acts, grads)]
        gradients = map_inputs(lambda g: g[:, 0], parts[2]) if target.single else parts[2]
        return Gradients(parts[0], parts[1], gradients)

    @staticmethod
    def _input_conv_mode(fed: torch_types.Tensor) -> Any:
        """On CPU, the faster input gradient of a strided first convolution of ``fed``, the
        tensor given to the model (:mod:`.torch_subpixel`); elsewhere nothing."""
        if fed.device.type != "cpu":
            return contextlib.nullcontext()
        from .torch_subpixel import InputConvMode

        return InputConvMode(fed)

    def _gradients_batch(
        self, x: Array, target: Target, rows: slice, named: tuple[str, Any] | None
    ) -> tuple[torch_types.Tensor, torch_types.Tensor, torch_types.Tensor]:
        where = "the input" if named is None else f"layer {named[0]!r}"
        _no_inference_mode()
        with self._eval_mode():
            if named is None:
                with torch.enable_grad():
                    # the leaf is a view of x; the model gets a copy, so in-place ops in
                    # forward() modify neither x nor a leaf autograd must keep intact
                    activation = map_inputs(lambda a: _nchw(a, self._signal(a)).detach().requires_grad_(True), x)
                    fed = map_inputs(self._copy, activation)
                    conv_mode = contextlib.nullcontext() if several(fed) else self._input_conv_mode(fed)
                    with conv_mode, self._forward_errors(fed):
                        out = self._check_outputs(_feed(self.native, fed))
            else:
                fed = self._to_native(x)
                with torch.no_grad(), self._capture(named[1], named[0], grad=True) as store:
                    with self._forward_errors(fed):
                        out = self._check_outputs(_feed(self.native, fed))
                activation = self._captured(store, named[0])
        if named is None:  # the input's gradients, per input for several
            to_last: Callable[[Any], Any] = lambda t: map_inputs(  # noqa: E731
                lambda a, ref: _nhwc(a, self._signal(ref)), t, x
            )
        else:
            to_last = lambda t: self._layer_nhwc(t, x)  # noqa: E731
        if not out.requires_grad:
            raise NotDifferentiableError(
                f"the model's output does not depend differentiably on {where}: does "
                "forward() detach tensors, run under torch.no_grad(), or go through NumPy?"
            )
        target = target.check(out.shape[-1])
        with torch.enable_grad():
            scores = self._scores(target, out, rows)
        grads = []
        for grad in _column_gradients(scores, activation):
            if any(g is None for g in leaves(grad)):
                raise NotDifferentiableError(
                    f"the model's output does not depend on {where}; pick a layer on the path "
                    "to the output."
                )
            grads.append(to_last(grad))
        stacked = map_inputs(lambda *g: torch.stack(g, dim=1), *grads)
        return out.detach(), to_last(map_inputs(lambda a: a.detach(), activation)), stacked

    # -- edited activations (Ablation-CAM) ---------------------------------------------------
    @holding_model_lock
    def outputs_with(
        self, x: Array, layer: str, activations: Array, *, batch_size: int | None = None
    ) -> torch_types.Tensor:
        """Outputs ``(n·R, K)`` with ``layer``'s output replaced by ``activations``
        (``(n·R, h, w, C)`` channels-last, ``R`` rows per sample, sample-major).

        A forward hook on the layer's module replaces its output with the edited rows. The
        "prefix" path feeds one sample (batch 1) per call and the hook returns up to
        ``batch_size`` of its rows: the network before the layer runs once per call, and
        operations after it that mix the layer's output with tensors computed before it
        (residual additions) broadcast batch 1 against the rows, as a repeated input would.
        Models for which that is wrong (concatenations with earlier tensors, reshapes with a
        batch size taken before the layer) are detected on the first call, by an error, an
        output with the wrong number of rows, or outputs that differ from the "repeat" path on
        two rows; they take the repeat path (the input repeated for each row, the hook
        replacing the output), and the choice is remembered per model, layer and input shape.
        One row per sample (or ``batch_size=1``) takes the repeat path too.

        On the prefix path a sample's later chunks replay what its first chunk computed
        before the layer, and skip the layer's own forward (:class:`_PrefixMemo`). A call
        with one sample keeps that record for the next call when it passes the same tensor
        object (unchanged in place, as are the model's parameters and buffers): callers
        that feed one sample's rows over several calls (Ablation-CAM) run the network
        before the layer once per sample, not once per call. The record is dropped when
        that tensor is freed.
        """
        name, module = self._module(layer)
        size = check_batch_size(batch_size)
        n = input_rows(x)
        edited = self._edited_rows(activations, n, name)
        repeats = len(edited) // n
        cache = model_cache(self.native)
        key = ("activation edit", name, id(module), shapes(x))
        with self._eval_mode(), torch.no_grad():
            if repeats == 1 or size == 1 or cache.get(key) == "repeat":
                return self._repeat_outputs(x, edited, repeats, size, name, module)
            first = None
            # one sample: the memo of an earlier call on the same tensor object, if any
            kept = n == 1 and not several(x)  # (several inputs: a fresh structure per call, nothing to keep)
            memo = _PrefixMemo.kept(cache, x, self.native, module) if kept else _PrefixMemo(self.native, module)
            if key not in cache:
                first = self._prefix_probe(x, edited, repeats, size, name, module, memo)
                if first is None:  # remembered once the repeat path worked
                    outputs = self._repeat_outputs(x, edited, repeats, size, name, module)
                    cache[key] = "repeat"
                    return outputs
                cache[key] = "prefix"
            parts = []
            for i in range(n):
                memo = memo if i == 0 else _PrefixMemo(self.native, module)
                for chunk in batches(repeats, size):
                    rows = slice(i * repeats + chunk.start, i * repeats + chunk.stop)
                    if i == 0 and chunk.start == 0 and first is not None:
                        out = first
                    elif memo.recorded:
                        with memo.replaying():
                            out = self._edited_forward(take(x, slice(i, i + 1)), edited[rows], name, module)
                    else:  # the network before the layer runs here, and only here
                        with memo.recording():
                            out = self._edited_forward(take(x, slice(i, i + 1)), edited[rows], name, module)
                    parts.append(out)
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _edited_rows(self, activations: Array, n: int, name: str) -> torch_types.Tensor:
        """``activations`` (channels-last) checked for their row count, detached (the hook of
        :meth:`_edited_forward` lays them out as the layer's own output)."""
        if not isinstance(activations, torch.Tensor):
            activations = torch.as_tensor(np.asarray(activations))
        if activations.ndim < 2 or n == 0 or len(activations) == 0 or len(activations) % n:
            raise InputError(
                f"activations for layer {name!r} have shape {tuple(activations.shape)}; outputs_with "
                f"takes (n·R, ...) rows in the layer's own channels-last shape, R edited copies for "
                f"each of the n = {n} inputs (a multiple of {n} rows)."
            )
        return activations.detach()

    def _repeat_outputs(
        self, x: Array, edited: Any, repeats: int, size: int | None, name: str, module: Any
    ) -> torch_types.Tensor:
        """The plain way: each chunk of rows runs the whole model on its samples repeated."""
        parts = []
        for rows in batches(len(edited), size):
            index = torch.arange(rows.start, rows.stop, device=edited.device) // repeats
            parts.append(self._edited_forward(map_inputs(lambda a, index=index: a.index_select(0, index), x), edited[rows], name, module))
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _prefix_probe(
        self, x: Array, edited: Any, repeats: int, size: int | None, name: str, module: Any, memo: _PrefixMemo
    ) -> torch_types.Tensor | None:
        """The outputs of the first chunk on the prefix path, or None when that path is wrong
        for this model: the forward fails, returns the wrong number of rows, or differs from
        the repeat path on the chunk's first two rows."""
        rows = min(repeats, size or repeats)
        try:
            with memo.recording():
                out = self._edited_forward(take(x, slice(0, 1)), edited[:rows], name, module, probe=True)
        except LimelightError:
            raise
        except Exception:  # noqa: BLE001 - any failure: the model does not broadcast batch 1 against the rows
            return None
        if out is None:
            return None
        two = map_inputs(lambda a: a[:1].expand(2, *a.shape[1:]), x)
        check = self._edited_forward(two, edited[:2], name, module)
        tol = 1e-3 if out.dtype in (torch.float32, torch.float64) else 5e-2
        scale = float(check.abs().max()) if check.numel() else 0.0
        if not torch.allclose(out[:2].to(check.dtype), check, rtol=tol, atol=tol * max(scale, 1e-6)):
            return None
        return out

    def _edited_forward(self, x: Array, rows: Any, name: str, module: Any, *, probe: bool = False) -> Any:
        """One forward of canonical ``x`` with ``module``'s output replaced by ``rows`` (channels-last);
        outputs ``(len(rows), K)``. With ``probe``, errors other than limelight's propagate raw
        and outputs of the wrong shape give None."""
        ran: list[bool] = []

        def hook(mod: Any, args: Any, output: Any) -> Any:
            if ran:
                raise LayerError(
                    f"layer {name!r} runs more than once per forward (a reused module); pick a "
                    "layer that runs once."
                )
            ran.append(True)
            if not isinstance(output, torch.Tensor):
                raise LayerError(
                    f"layer {name!r} outputs a {type(output).__name__}, not a tensor; pick a "
                    "layer with a single tensor output."
                )
            last = self._layer_nhwc(output, x)  # the layout activations() hands out
            if tuple(rows.shape[1:]) != tuple(last.shape[1:]):
                expected = tuple(last.shape[1:])
                raise InputError(
                    f"activations for layer {name!r} have shape {tuple(rows.shape)}, but "
                    f"the layer outputs {batch_shape((0, *expected))} per row (channels-last, as "
                    f"activations() returns it): pass (n·R, {', '.join(map(str, expected))})."
                )
            # back to the layer's own layout: as is where it is channels-last already (tokens,
            # Swin stages), else NCHW / (N, C, D, H, W) / a signal's (N, C, L)
            native = rows if last is output else _nchw(rows, signal=rows.ndim == 3)
            channels_last = output.ndim == 4 and not output.is_contiguous()
            if channels_last and output.is_contiguous(memory_format=torch.channels_last):
                memory_format = torch.channels_last
            else:
                memory_format = torch.contiguous_format
            # a copy: in-place operations after the layer never reach the caller's array
            return native.to(device=output.device, dtype=output.dtype, memory_format=memory_format, copy=True)

        fed = self._to_native(x)
        handle = module.register_forward_hook(hook)
        try:
            if probe:
                out = _feed(self.native, fed)
            else:
                with self._forward_errors(fed):
                    out = _feed(self.native, fed)
        finally:
            handle.remove()
        if not ran:
            raise LayerError(f"layer {name!r} did not run in the forward pass; pick another layer.")
        if probe:
            try:
                out = self._check_outputs(out)
            except InputError:
                return None
            if len(out) != len(rows):
                return None
        else:
            out = self._check_outputs(out)
        if len(out) != len(rows):
            raise InputError(
                f"the model returned {len(out)} rows for {len(rows)} edited activations of layer "
                f"{name!r}; outputs_with needs a model whose outputs follow the layer's batch axis."
            )
        return out

    # -- randomised copies -------------------------------------------------------------------
    def parameter_layers(self) -> list[str]:
        """Modules that own weights directly, in registration order (input side first)."""
        return [n for n, m in self.native.named_modules() if n and any(True for _ in m.parameters(recurse=False))]

    @holding_model_lock
    def randomized(self, layers: list[str], seed: int = 0) -> TorchModel:
        """A deep copy with the weights of ``layers`` re-initialised (see ``reinitialize``);
        conv kernels are handed over in Keras's (h, w, in, out) order so a Keras twin draws
        the same numbers."""
        import copy

        if self.scripted:
            raise UnsupportedError(
                "randomized copies (the sanity checks) re-initialise layers of a copy of the model, "
                "which a TorchScript model does not expose; run the checks on the eager nn.Module."
            )
        clone = copy.deepcopy(self.native)
        rng = np.random.RandomState(seed)
        with torch.no_grad():
            for name in layers:
                params = list(clone.get_submodule(self.resolve_layer(name)).parameters(recurse=False))
                arrays = [_to_keras_order(self.to_numpy(p)) for p in params]  # bfloat16 as float32; copy_ casts back
                for param, new in zip(params, reinitialize(arrays, rng), strict=True):
                    param.copy_(torch.from_numpy(np.ascontiguousarray(_to_keras_order(new, back=True))))
        return TorchModel(clone, self.memory_format, self.output)

    # -- DeepLIFT ----------------------------------------------------------------------------
    def _deeplift_forward(self, x: Array, references: Array) -> tuple[Any, Any, dict[str, int]]:
        from .torch_deeplift import DeepLiftMode, scripted_modules

        _no_inference_mode()

        def pair(a: Any, r: Any) -> Any:
            signal = self._signal(a)
            both = torch.cat([_nchw(a, signal), _nchw(r, signal)])
            if both.ndim == 4:
                both = both.contiguous(memory_format=self._memory_format())
            return both.detach().requires_grad_(True)

        leaf = map_inputs(pair, x, references)
        mode = DeepLiftMode()
        with torch.enable_grad(), mode, self._forward_errors(map_inputs(lambda a: _nchw(a, self._signal(a)), x)):
            # in-place ops stay off the leaf
            out = self._check_outputs(_feed(self.native, map_inputs(lambda a: a.clone(), leaf)))
        return leaf, out, {**mode.unsupported, **scripted_modules(self.native)}

    @holding_model_lock
    def deeplift_unsupported(self, x: Array) -> list[str]:
        """Operations on the input's path that DeepLIFT has no rule for (empty: all fine)."""
        with self._eval_mode():
            first = take(x, slice(0, 1))
            _, _, unsupported = self._deeplift_forward(first, first)
        return sorted(unsupported)

    @holding_model_lock
    def deeplift_gradients(
        self, x: Array, references: Array, target: Target, *, batch_size: int | None = None
    ) -> torch_types.Tensor:
        """DeepLIFT rescale multipliers ``(n, T, ...)`` of ``target``'s scores for each pair
        ``(x[i], references[i])``: ``Σ m ⊙ (x - r) = score(x) - score(r)`` per column."""
        parts = [
            self._deeplift_batch(take(x, b), take(references, b), target, b) for b in batches(input_rows(x), batch_size)
        ]
        return concat(parts, torch.cat)

    def _deeplift_batch(self, x: Array, references: Array, target: Target, rows: slice) -> torch_types.Tensor:
        with self._eval_mode():
            leaf, out, unsupported = self._deeplift_forward(x, references)
            if unsupported:
                raise no_deeplift_rule(unsupported)
            n = len(out) // 2
            target = target.check(out.shape[-1])
            with torch.enable_grad():
                scores = self._scores(target, out[:n], rows)
            grads = [
                map_inputs(
                    lambda g, a, ref: _nhwc((torch.zeros_like(a) if g is None else g)[:n], self._signal(ref)),
                    grad,
                    leaf,
                    x,
                )
                for grad in _column_gradients(scores, leaf)
            ]
        return map_inputs(lambda *g: torch.stack(g, dim=1), *grads)
