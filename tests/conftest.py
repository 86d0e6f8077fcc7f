"""Shared fixtures: tiny twin CNNs (torch and Keras with copied weights), registry reset."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# torchvision pulls in triton, whose bundled LLVM crashes the process (segfault) if TensorFlow
# was imported first; torch first, then TensorFlow, is fine. Fix the order for the session.
try:
    import torch  # noqa: F401
    import torchvision  # noqa: F401
except ImportError:  # a torch-less environment runs the Keras tests only
    pass

import numpy as np
import pytest

from limelight.core.registry import registry


@pytest.fixture
def fresh_registry():
    """Reload plugins before and after the test (for tests that change what is installed)."""
    registry.reset()
    yield registry
    registry.reset()


@pytest.fixture(scope="session")
def twin_cnn():
    """A small CNN in torch and the same CNN in Keras with copied weights.

    Conv(3→8) ReLU MaxPool(2) Conv(8→16) BatchNorm ReLU GAP Dense(5), inputs 16×16.
    Returns (torch_model, keras_model, torch_layer, keras_layer, x_nchw, x_nhwc).
    """
    import torch

    from limelight.testing.models import keras_cnn_layers

    torch.manual_seed(0)
    tm = small_torch_cnn()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode matters
        bn = tm[4]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    tm.eval()

    km = keras_cnn_layers(5, 16)
    copy_torch_to_keras(tm, km)
    rng = np.random.RandomState(0)
    x_nhwc = rng.rand(4, 16, 16, 3).astype(np.float32)
    x_nchw = torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2).copy())
    return tm, km, "5", "relu2", x_nchw, x_nhwc


def small_torch_cnn():
    """Conv(3→8) ReLU MaxPool(2) Conv(8→16) BatchNorm ReLU GAP Linear(5), drawn from torch's
    global generator (seed it first)."""
    from limelight.testing.models import torch_cnn_layers

    return torch_cnn_layers(5)


def copy_torch_to_keras(tm, km) -> None:
    """Copy Conv2d / BatchNorm2d / Linear weights from a torch Sequential to a Keras one."""
    import torch

    torch_layers = [m for m in tm if isinstance(m, torch.nn.Conv2d | torch.nn.BatchNorm2d | torch.nn.Linear)]
    copy_weights(torch_layers, [layer for layer in km.layers if layer.weights])


def copy_weights(torch_layers, keras_layers) -> None:
    """Copy weights layer by layer: conv kernels transpose(2, 3, 1, 0), dense kernels .T."""
    import torch

    for t, k in zip(torch_layers, keras_layers, strict=True):
        if isinstance(t, torch.nn.Conv2d):
            k.set_weights([t.weight.detach().numpy().transpose(2, 3, 1, 0), t.bias.detach().numpy()])
        elif isinstance(t, torch.nn.BatchNorm2d):
            k.set_weights([p.detach().numpy() for p in (t.weight, t.bias, t.running_mean, t.running_var)])
        else:
            k.set_weights([t.weight.detach().numpy().T, t.bias.detach().numpy()])


def quick_params(method: str, background) -> dict:
    """The cheapest parameters that run ``method`` (for tests that loop over every method):
    the benchmark's settings with fewer samples and evaluations."""
    from limelight.evaluation.benchmark import method_params

    params = method_params(method, background)
    if "nsamples" in params:
        params["nsamples"] = 4
    if "max_evals" in params:
        params["max_evals"] = 20
    return params
