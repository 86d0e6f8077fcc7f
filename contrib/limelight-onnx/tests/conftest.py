"""Fixtures: a seeded torchvision ResNet-18 and its ONNX export (64×64 inputs).

torch and torchvision are imported before anything that could import TensorFlow (its
bundled LLVM and triton's clash when TensorFlow comes first).
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
import torch
import torchvision
from limelight.testing.fixtures import fresh_limelight_registry  # noqa: F401 - limelight's contract-kit fixture

SIZE = 64


def export(model, x, path) -> None:
    """``torch.onnx.export`` with a dynamic batch axis: the TorchScript-based exporter where
    this torch has it (readable node names, no onnxscript needed), else the dynamo one."""
    kwargs = {"input_names": ["input"], "output_names": ["logits"]}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
                torch.onnx.export(
                    model, (x,), str(path), dynamo=False, dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, **kwargs
                )
            return
        except Exception:  # noqa: BLE001 - a torch without the legacy exporter: try dynamo
            pass
    batch = torch.export.Dim("N", min=1)
    torch.onnx.export(model, (x,), str(path), dynamo=True, dynamic_shapes=({0: batch},), **kwargs)


@pytest.fixture(scope="session")
def exporter():
    """:func:`export`, for tests that export models of their own."""
    return export




@pytest.fixture(scope="session")
def resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


@pytest.fixture(scope="session")
def resnet18_onnx(resnet18, tmp_path_factory):
    """The path of ``resnet18``'s export, taking (N, 3, 64, 64)."""
    path = tmp_path_factory.mktemp("onnx") / "resnet18.onnx"
    export(resnet18, torch.zeros(1, 3, SIZE, SIZE), path)
    return path


@pytest.fixture(scope="session")
def images():
    """Two NCHW images (as the models are fed), seeded."""
    return torch.from_numpy(np.random.RandomState(1).rand(2, 3, SIZE, SIZE).astype(np.float32))
