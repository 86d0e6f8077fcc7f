"""Explanations on a CUDA GPU: the same numbers as on the CPU, and the user's model and
global settings left as they were. Skipped without a GPU (CI has none; ``benchmarks/gpu.sh``
runs this module on a GPU machine).

* CAMs on the GPU equal the CPU copy's: within TF32 tolerance with TF32 on (the user's
  global setting, which CAMs follow), tightly with ``precision="highest"``.
* shap-deep is complete to 1e-4 (relative) under the default precision policy (TF32 off for
  the call), also when the user has TF32 globally enabled.
* After every call: the model is still on its device, its parameters and buffers are
  unchanged, every module's ``training`` flag is unchanged, no hook is left, the results
  are NumPy, and ``torch.backends`` precision flags are what they were.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import limelight  # noqa: E402
from tests.conftest import small_torch_cnn  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CAMS = ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam", "eigengradcam"]
CUDA = "cuda"


# -- fixtures --------------------------------------------------------------------------------------
def _random_bn(model: Any, seed: int) -> Any:
    """Non-trivial BatchNorm statistics, so eval mode matters and maps are not degenerate."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(0.2 * torch.rand(n, generator=g) - 0.1)
                module.running_var.copy_(0.5 + torch.rand(n, generator=g))
                module.weight.copy_(0.5 + torch.rand(n, generator=g))
                module.bias.copy_(0.2 * torch.rand(n, generator=g) - 0.1)
    return model


@pytest.fixture(scope="module")
def resnet18() -> tuple[Any, Any]:
    """torchvision ResNet-18 (weights=None, random BN statistics, eval): a CPU copy and a
    CUDA copy with the same weights."""
    torch.manual_seed(0)
    cpu = _random_bn(torchvision.models.resnet18(weights=None), 0).eval()
    return cpu, copy.deepcopy(cpu).to(CUDA)


@pytest.fixture(scope="module")
def small_cnn() -> tuple[Any, Any]:
    torch.manual_seed(0)
    cpu = _random_bn(small_torch_cnn(), 1).eval()
    return cpu, copy.deepcopy(cpu).to(CUDA)


def _images(n: int, size: int, seed: int) -> Any:
    return torch.from_numpy(np.random.RandomState(seed).randn(n, 3, size, size).astype(np.float32))


#: torch's global precision settings; a call must leave every one of them as it found it.
_FLAGS = (
    ("backends.cuda.matmul", "allow_tf32"),
    ("backends.cudnn", "allow_tf32"),
    ("backends.cuda.matmul", "allow_fp16_reduced_precision_reduction"),
    ("backends.cuda.matmul", "allow_bf16_reduced_precision_reduction"),
    ("backends.cudnn", "benchmark"),
    ("backends.cudnn", "deterministic"),
    ("backends.cudnn", "enabled"),
)


def _owner(path: str) -> Any:
    owner = torch
    for part in path.split("."):
        owner = getattr(owner, part)
    return owner


def _flags() -> dict[str, Any]:
    state = {f"{path}.{attr}": getattr(_owner(path), attr) for path, attr in _FLAGS}
    state["float32_matmul_precision"] = torch.get_float32_matmul_precision()
    state["grad_enabled"] = torch.is_grad_enabled()
    return state


@pytest.fixture
def tf32(request) -> Iterator[bool]:
    """TF32 convolutions and matmuls globally on (param True) or off, restored after."""
    on = bool(request.param)
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.get_float32_matmul_precision(),
    )
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on
    torch.set_float32_matmul_precision("high" if on else "highest")
    try:
        yield on
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
        torch.set_float32_matmul_precision(saved[2])


class Untouched:
    """Snapshot of a model and torch's settings, checked after a call."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.devices = {k: v.device for k, v in model.state_dict().items()}
        self.training = [m.training for m in model.modules()]
        self.requires_grad = [p.requires_grad for p in model.parameters()]
        self.flags = _flags()

    def check(self) -> None:
        after = self.model.state_dict()
        assert after.keys() == self.state.keys()
        for key, before in self.state.items():
            assert after[key].device == self.devices[key], f"{key} moved to {after[key].device}"
            assert torch.equal(after[key], before), f"{key} changed"
        assert [m.training for m in self.model.modules()] == self.training
        assert [p.requires_grad for p in self.model.parameters()] == self.requires_grad
        assert all(p.grad is None for p in self.model.parameters()), "a .grad was written"
        for module in self.model.modules():
            assert not module._forward_hooks and not module._forward_pre_hooks and not module._backward_hooks
        assert _flags() == self.flags


def _numpy_out(exp: limelight.Explanation) -> None:
    for name in ("values", "targets", "outputs", "inputs", "base_values"):
        value = getattr(exp, name)
        assert value is None or type(value) is np.ndarray, f"{name} is a {type(value).__name__}"


def _both(models: tuple[Any, Any], x: Any, method: str, **params: Any) -> tuple[Any, Any]:
    """The explanation on the CPU copy and on the CUDA copy (checked untouched)."""
    cpu_model, gpu_model = models
    on_cpu = limelight.explain(cpu_model, x, method, **params)
    guard = Untouched(gpu_model)
    gpu_params = {k: (v.to(CUDA) if isinstance(v, torch.Tensor) else v) for k, v in params.items()}
    x_gpu = x.to(CUDA)
    on_gpu = limelight.explain(gpu_model, x_gpu, method, **gpu_params)
    guard.check()
    assert x_gpu.device.type == "cuda"
    _numpy_out(on_gpu)
    np.testing.assert_array_equal(on_gpu.inputs, on_cpu.inputs)  # prefetched on a side stream
    assert on_gpu.values.shape == on_cpu.values.shape
    np.testing.assert_array_equal(on_gpu.targets, on_cpu.targets)
    return on_cpu, on_gpu


# -- CAMs -----------------------------------------------------------------------------------------
def _close(actual: np.ndarray, expected: np.ndarray, atol: float, mean: float) -> None:
    """Every pixel within ``atol`` and the mean abs difference within ``mean``."""
    np.testing.assert_allclose(actual, expected, rtol=0, atol=atol)
    assert float(np.abs(actual - expected).mean()) <= mean


@pytest.mark.parametrize("tf32", [True], indirect=True)
@pytest.mark.parametrize("method", CAMS)
def test_cams_match_the_cpu_within_tf32_tolerance(resnet18, method, tf32):
    """TF32 on (the user's setting): CAMs follow it. TF32 keeps 10 mantissa bits (relative
    rounding ≤ 4.9e-4); on the CPU a 1e-3 relative perturbation of every weight moves these
    normalized maps by ≤ 2.4e-2 per pixel and ≤ 1.6e-3 on average, hence 5e-2 and 5e-3."""
    x = _images(4, 224, 0)
    on_cpu, on_gpu = _both(resnet18, x, method, targets=[1, 2, 3, 4])
    assert on_gpu.params["precision"] == "default"
    _close(on_gpu.values, on_cpu.values, atol=5e-2, mean=5e-3)
    np.testing.assert_allclose(on_gpu.outputs, on_cpu.outputs, rtol=0, atol=5e-2 * np.abs(on_cpu.outputs).max())


#: Tight tolerances (TF32 off) per pixel on the small CNN; Eigen-Grad-CAM's SVD is
#: ill-conditioned on it (a 1e-6 relative weight perturbation moves its map by 3e-5 on the CPU).
TIGHT = {"eigengradcam": 1e-4}


@pytest.mark.parametrize("tf32", [True], indirect=True)
@pytest.mark.parametrize("method", CAMS)
def test_cams_match_the_cpu_tightly_at_highest_precision(resnet18, small_cnn, method, tf32):
    """precision="highest" turns TF32 off for the call (and back on after): float32 on both
    sides, so the maps agree far closer than with TF32 (ResNet-18: a 1e-6 relative weight
    perturbation moves them by ≤ 2.5e-5 on the CPU)."""
    x = _images(4, 224, 1)
    on_cpu, on_gpu = _both(resnet18, x, method, targets=[5, 6, 7, 8], precision="highest")
    assert on_gpu.params["precision"] == "highest"
    _close(on_gpu.values, on_cpu.values, atol=1e-3, mean=1e-4)
    assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32  # restored
    small_x = _images(4, 16, 2)
    tight = TIGHT.get(method, 1e-5)
    on_cpu, on_gpu = _both(small_cnn, small_x, method, targets=[0, 1, 2, 3], precision="highest")
    np.testing.assert_allclose(on_gpu.values, on_cpu.values, rtol=0, atol=tight)
    raw_cpu, raw_gpu = _both(
        small_cnn, small_x, method, targets=[0, 1, 2, 3], precision="highest", upsample=False, normalize=False
    )
    scale = max(float(np.abs(raw_cpu.values).max()), 1e-30)
    np.testing.assert_allclose(raw_gpu.values / scale, raw_cpu.values / scale, rtol=0, atol=tight)


def test_predicted_targets_and_batches_on_the_gpu(small_cnn):
    x = _images(5, 16, 3)
    on_cpu, on_gpu = _both(small_cnn, x, "gradcam", batch_size=2, precision="highest")
    np.testing.assert_allclose(on_gpu.values, on_cpu.values, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(on_gpu.targets, on_cpu.outputs.argmax(1))


def test_a_model_in_training_mode_is_left_in_training_mode(small_cnn):
    _, gpu_model = small_cnn
    model = copy.deepcopy(gpu_model).train()
    model[4].eval()  # mixed flags must come back exactly
    guard = Untouched(model)
    for method in ("gradcam", "shap-gradient", "shap-deep"):
        params = {} if method == "gradcam" else {"background": _images(3, 16, 4).to(CUDA)}
        if method == "shap-gradient":
            params.update(nsamples=4, seed=0)
        limelight.explain(model, _images(2, 16, 5).to(CUDA), method, **params)
        guard.check()
    assert model.training and not model[4].training


# -- SHAP -----------------------------------------------------------------------------------------
def _deep_case(model: Any, size: int) -> tuple[Any, Any, np.ndarray]:
    """Inputs, background and, per sample, the class with the largest gap f(x) - E f(bg)
    (so the relative completeness error is well defined)."""
    x, bg = _images(2, size, 6), _images(4, size, 7)
    with torch.no_grad():
        gap = model(x) - model(bg).mean(0)
    return x, bg, gap.abs().argmax(1).numpy()


def _relative_l2(actual: np.ndarray, expected: np.ndarray) -> float:
    """‖actual − expected‖ / ‖expected‖. Per-element gradients of a ReLU network flip where a
    unit sits at its kink, so attributions are compared in aggregate: on the CPU a 1e-5
    relative perturbation of ResNet-18's weights moves them by 0.3-0.6% in this norm (and by
    up to 2% of the largest value in single elements)."""
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def _completeness(exp: limelight.Explanation) -> float:
    n = len(exp.values)
    totals = exp.values.reshape(n, -1).astype(np.float64).sum(1)
    gap = exp.outputs[np.arange(n), exp.targets].astype(np.float64) - exp.base_values
    return float(np.abs(totals - gap).max() / np.abs(gap).max())


@pytest.mark.parametrize("tf32", [False, True], ids=["tf32-off", "tf32-on"], indirect=True)
def test_shap_deep_is_complete_under_the_default_policy(resnet18, tf32):
    """shap-deep runs with TF32 off unless told otherwise, also when the user turned TF32 on
    globally (on an H100 TF32 made ResNet-50's completeness error 1.2e-2)."""
    cpu_model, gpu_model = resnet18
    x, bg, targets = _deep_case(cpu_model, 112)
    guard = Untouched(gpu_model)
    exp = limelight.explain(gpu_model, x.to(CUDA), "shap-deep", background=bg.to(CUDA), targets=targets, batch_size=8)
    guard.check()
    _numpy_out(exp)
    assert exp.params["precision"] == "highest"
    assert _completeness(exp) <= 1e-4, _completeness(exp)
    assert torch.backends.cudnn.allow_tf32 is tf32 and torch.backends.cuda.matmul.allow_tf32 is tf32
    on_cpu = limelight.explain(cpu_model, x, "shap-deep", background=bg, targets=targets, batch_size=8)
    assert _relative_l2(exp.values, on_cpu.values) <= 5e-2


def test_shap_gradient_matches_the_cpu(resnet18):
    x, bg = _images(2, 64, 8), _images(3, 64, 9)
    on_cpu, on_gpu = _both(
        resnet18, x, "shap-gradient", background=bg, nsamples=8, seed=0, targets=[3, 4], precision="highest"
    )
    assert _relative_l2(on_gpu.values, on_cpu.values) <= 5e-2
    totals_gpu, totals_cpu = on_gpu.values.reshape(2, -1).sum(1), on_cpu.values.reshape(2, -1).sum(1)
    np.testing.assert_allclose(totals_gpu, totals_cpu, rtol=0, atol=1e-2 * np.abs(totals_cpu).max())
    np.testing.assert_allclose(on_gpu.base_values, on_cpu.base_values, rtol=1e-4, atol=1e-5)


# -- gradient-free CAMs ----------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["scorecam", "ablationcam", "rise"])
def test_gradient_free_methods_match_the_cpu(small_cnn, method):
    """Score-CAM, Ablation-CAM and RISE on the GPU (TF32 off) equal the CPU copy's maps: the
    masked / ablated batches are built on the device, the model sees at most batch_size rows."""
    x = _images(3, 16, 10)
    params: dict[str, Any] = {"targets": [0, 1, 2], "batch_size": 7, "precision": "highest"}
    if method == "rise":
        params.update(n_masks=64, seed=0)
    on_cpu, on_gpu = _both(small_cnn, x, method, **params)
    np.testing.assert_allclose(on_gpu.values, on_cpu.values, rtol=0, atol=1e-4)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("method", ["gradcam", "layercam", "scorecam", "ablationcam"])
def test_half_precision_models_on_the_gpu(resnet18, method, dtype):
    """A float16 / bfloat16 copy of the model on the GPU: finite maps, close to the float32
    CPU model's (float16 keeps ~3 decimal digits, bfloat16 ~2). Ablation-CAM in bfloat16 is
    only finite: its drops ``y - y_c`` are a few rounding steps of ``y`` (0.3 off on the CPU
    too), and it warns so, as its docstring says."""
    cpu, gpu = resnet18
    half = copy.deepcopy(gpu).to(getattr(torch, dtype))
    x = _images(2, 64, 12)
    params: dict[str, Any] = {"targets": [3, 7], "layer": "layer3", "batch_size": 64}
    want = limelight.explain(cpu, x, method, **params).values
    got = limelight.explain(half, x.to(CUDA, getattr(torch, dtype)), method, **params).values
    assert np.isfinite(got).all()
    if method == "ablationcam" and dtype == "bfloat16":
        return
    np.testing.assert_allclose(got, want, rtol=0, atol=3e-2 if dtype == "float16" else 1e-1)


@pytest.mark.parametrize("method", ["scorecam", "ablationcam", "rise"])
def test_gradient_free_loops_never_make_the_host_wait(resnet18, method, monkeypatch):
    """Inside the loops over batches nothing waits for the GPU (``.item()``, ``bool``,
    ``nonzero``, a copy to the host, a blocking copy to the device): with
    ``torch.cuda.set_sync_debug_mode("error")`` any such sync raises. Allowed, once per call
    (see tests/test_gradient_free_syncs.py, which counts them on the CPU): the inputs' check
    (``canonical``) and the host copies of ``to_numpy``/``prefetch`` (the constant / inert
    channels, the results). After a warm-up call, so Ablation-CAM's path choice (one
    comparison per model and layer) is made."""
    from limelight.backends.torch import TorchModel

    def allowed(fn: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            mode = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode(0)
            try:
                return fn(*args, **kwargs)
            finally:
                torch.cuda.set_sync_debug_mode(mode)

        return run

    to_numpy = allowed(TorchModel.to_numpy)
    monkeypatch.setattr(TorchModel, "to_numpy", to_numpy)
    monkeypatch.setattr(TorchModel, "prefetch", lambda self, a: lambda: to_numpy(self, a))
    monkeypatch.setattr(TorchModel, "canonical", allowed(TorchModel.canonical))
    model = resnet18[1]
    x = _images(2, 64, 11).to(CUDA)
    params: dict[str, Any] = {"targets": [1, 2], "batch_size": 16}
    params.update({"n_masks": 48, "seed": 0} if method == "rise" else {"layer": "layer4"})
    warm = limelight.explain(model, x, method, **params)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        again = limelight.explain(model, x, method, **params)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    np.testing.assert_allclose(again.values, warm.values, rtol=0, atol=1e-5)
