"""pytest fixtures for plugin tests: ``pytest_plugins = ["limelight.testing.fixtures"]``.

* ``small_images``: 4 seeded float32 images ``(4, 16, 16, 3)`` in [0, 1) (NHWC, NumPy).
* ``torch_model_factory`` / ``keras_model_factory``: factories of the tiny twin CNN
  (skipped when the framework is not installed); ``torch_images`` / ``keras_images``: the
  ``small_images`` as each model is fed.
* ``model_cases``: :func:`limelight.testing.builtin_cases` (the installed frameworks' twins).
* ``fresh_limelight_registry``: plugins reloaded before and after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from . import models
from .models import ModelCase

__all__ = [
    "fresh_limelight_registry",
    "keras_images",
    "keras_model_factory",
    "model_cases",
    "small_images",
    "torch_images",
    "torch_model_factory",
]


@pytest.fixture
def small_images() -> np.ndarray:
    """4 seeded images ``(4, 16, 16, 3)``, float32 in [0, 1)."""
    return models.small_images()


@pytest.fixture
def torch_model_factory() -> Callable[[], Any]:
    """:func:`limelight.testing.torch_cnn` (skips the test without torch)."""
    pytest.importorskip("torch")
    return models.torch_cnn


@pytest.fixture
def torch_images(small_images: np.ndarray) -> Any:
    """``small_images`` as an NCHW torch tensor (skips the test without torch)."""
    torch = pytest.importorskip("torch")
    return torch.from_numpy(np.ascontiguousarray(small_images.transpose(0, 3, 1, 2)))


@pytest.fixture
def keras_model_factory() -> Callable[[], Any]:
    """:func:`limelight.testing.keras_cnn` (skips the test without Keras and TensorFlow)."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("keras")
    return models.keras_cnn


@pytest.fixture
def keras_images(small_images: np.ndarray) -> np.ndarray:
    """``small_images`` as the Keras model is fed (NHWC)."""
    return small_images


@pytest.fixture
def model_cases() -> list[ModelCase]:
    """The installed frameworks' twin CNNs with their inputs (skips if there are none)."""
    cases = models.builtin_cases()
    if not cases:
        pytest.skip("neither torch nor Keras is installed")
    return cases


@pytest.fixture
def fresh_limelight_registry() -> Iterator[Any]:
    """The plugin registry, reloaded before and after the test."""
    from ..core.registry import registry

    registry.reset()
    yield registry
    registry.reset()
