"""A process that uses Keras through limelight and then torch/torchvision must not crash.

TensorFlow >= 2.20 loads with RTLD_GLOBAL; triton (pulled in lazily by torchvision and the
first torch.optim optimizer) segfaulted (rc 139) when its LLVM loaded after TensorFlow's.
limelight imports triton before it imports TensorFlow (``limelight.core.lazy``).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

from limelight.core import lazy
from limelight.core.errors import FrameworkNotInstalledError

SCRIPT = textwrap.dedent(
    """
    import numpy as np
    import limelight
    from limelight.zoo import load_model

    keras_model = load_model("keras:MobileNetV2", "none").model
    x = np.random.default_rng(0).random((1, 224, 224, 3), dtype=np.float32)
    exp = limelight.explain(keras_model, x, method="gradcam")
    assert exp.values.shape == (1, 224, 224), exp.values.shape

    import torch
    import torchvision  # noqa: F401

    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])
    loaded = load_model("torchvision:resnet18", "none")
    assert isinstance(loaded.model, torch.nn.Module)
    print("mixed ok")
    """
)


def _available(*names: str) -> bool:
    return all(importlib.util.find_spec(name) is not None for name in names)


@pytest.mark.skipif(not _available("keras", "tensorflow", "torch", "torchvision"), reason="needs both frameworks")
@pytest.mark.slow
def test_keras_then_torchvision_in_one_process_does_not_crash():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, (done.returncode, done.stderr[-3000:])
    assert "mixed ok" in done.stdout


def test_lazy_module_runs_its_before_hook_before_importing():
    calls: list[str] = []
    module = lazy.LazyModule("limelight_no_such_module", extra="none", before=lambda: calls.append("before"))
    with pytest.raises(FrameworkNotInstalledError):
        module.anything  # noqa: B018
    assert calls == ["before"]


def test_import_triton_first_is_a_no_op_once_tensorflow_is_loaded(monkeypatch):
    imported: list[str] = []
    monkeypatch.setitem(sys.modules, "tensorflow", object())
    monkeypatch.delitem(sys.modules, "triton", raising=False)
    monkeypatch.setattr(lazy.importlib, "import_module", lambda name: imported.append(name))
    lazy.import_triton_first()
    assert imported == []


def test_import_triton_first_imports_an_installed_triton(monkeypatch):
    imported: list[str] = []
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    monkeypatch.delitem(sys.modules, "triton", raising=False)
    monkeypatch.setattr(lazy.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(lazy.importlib, "import_module", lambda name: imported.append(name))
    lazy.import_triton_first()
    assert imported == ["triton"]
