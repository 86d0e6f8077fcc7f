"""Host-traffic guard: during ``limelight.explain`` only the returned arrays leave the
framework.

Every way a tensor's values reach the host is wrapped with a counting wrapper for the
duration of one ``explain`` call: for torch ``Tensor.numpy``, ``__array__``, ``tolist``,
``item`` (and ``__bool__``/``__int__``/``__float__``/``__index__``/``__dlpack__``); for
TensorFlow ``EagerTensor.numpy``, ``__array__`` and the ``_numpy`` they (and ``bool()``,
``int()``, ``float()``) go through, and NumPy's array constructors given an EagerTensor
(which NumPy reads through the buffer protocol, past any Python method). Nested calls (``__array__`` calling ``numpy``) count
once, at the outermost call; scalar conversions count the element's bytes. The bytes
counted must be at most the ``nbytes`` of the returned Explanation's arrays (values,
targets, outputs, inputs, base_values) plus 64 KiB, for every CAM method, shap-gradient
and shap-deep. Each check also asserts that the counter saw something, so a patch that
stopped working cannot pass silently.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

import limelight
from limelight.core.model import Model

CAMS = ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam", "eigengradcam"]
SLACK = 64 * 1024


class Traffic:
    """Bytes that left the framework, counted once per outermost call."""

    def __init__(self) -> None:
        self.bytes = 0
        self.calls: list[tuple[str, tuple[int, ...], int]] = []
        self._local = threading.local()

    def wrap(self, owner: type, name: str, size: Callable[[Any], int], monkeypatch: pytest.MonkeyPatch) -> None:
        """Replace ``owner.name`` by a counting wrapper (undone by ``monkeypatch``)."""
        original = getattr(owner, name)

        @functools.wraps(original)
        def counted(this: Any, *args: Any, **kwargs: Any) -> Any:
            depth = getattr(self._local, "depth", 0)
            if depth == 0:
                nbytes = size(this)
                self.bytes += nbytes
                self.calls.append((name, tuple(int(s) for s in this.shape), nbytes))
            self._local.depth = depth + 1
            try:
                return original(this, *args, **kwargs)
            finally:
                self._local.depth = depth

        monkeypatch.setattr(owner, name, counted)

    def wrap_converter(
        self, module: Any, name: str, kind: type, size: Callable[[Any], int], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Replace the function ``module.name`` (e.g. ``numpy.asarray``) by one that counts
        when its first argument is a ``kind`` (for arrays that export a buffer, which NumPy
        reads without calling any Python method)."""
        original = getattr(module, name)

        @functools.wraps(original)
        def counted(*args: Any, **kwargs: Any) -> Any:
            depth = getattr(self._local, "depth", 0)
            if depth == 0 and args and isinstance(args[0], kind):
                nbytes = size(args[0])
                self.bytes += nbytes
                self.calls.append((f"numpy.{name}", tuple(int(s) for s in args[0].shape), nbytes))
            self._local.depth = depth + 1
            try:
                return original(*args, **kwargs)
            finally:
                self._local.depth = depth

        monkeypatch.setattr(module, name, counted)

    def report(self) -> str:
        return f"{self.bytes} bytes in {len(self.calls)} calls: {self.calls[:20]}"


def returned_bytes(exp: limelight.Explanation) -> int:
    arrays = (exp.values, exp.targets, exp.outputs, exp.inputs, exp.base_values)
    return sum(np.asarray(a).nbytes for a in arrays if a is not None)


def check_traffic(traffic: Traffic, exp: limelight.Explanation) -> None:
    assert traffic.bytes > 0, "the counting wrappers saw nothing: the patch is broken"
    limit = returned_bytes(exp) + SLACK
    assert traffic.bytes <= limit, f"{exp.method}: {traffic.report()}; allowed {limit}"


# -- torch ------------------------------------------------------------------------------------
@contextmanager
def torch_traffic(monkeypatch: pytest.MonkeyPatch) -> Iterator[Traffic]:
    import torch

    traffic = Traffic()

    def whole(t: Any) -> int:
        return int(t.numel()) * int(t.element_size())

    def one(t: Any) -> int:
        return int(t.element_size())

    with monkeypatch.context() as patch:
        for name in ("numpy", "__array__", "tolist", "__dlpack__"):
            traffic.wrap(torch.Tensor, name, whole, patch)
        for name in ("item", "__bool__", "__int__", "__float__", "__index__"):
            traffic.wrap(torch.Tensor, name, one, patch)
        yield traffic


def test_the_torch_counter_counts(monkeypatch):
    import torch

    t = torch.zeros(100, 10)
    with torch_traffic(monkeypatch) as traffic:
        t.numpy()
        np.asarray(t)  # __array__ calls numpy(): counted once
        t[0].tolist()
        t[0, 0].item()
        bool(t[0, 0])
    assert traffic.bytes == 4000 + 4000 + 40 + 4 + 4, traffic.report()
    with torch_traffic(monkeypatch) as traffic:
        pass
    t.numpy()  # unpatched again
    assert traffic.bytes == 0


def _torch_run(model: Any, x: Any, method: str, background: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    params: dict[str, Any] = {}
    if method == "shap-gradient":
        params = {"background": background, "nsamples": 4, "seed": 0, "batch_size": 4}
    elif method == "shap-deep":
        params = {"background": background[:2], "batch_size": 4}
    with torch_traffic(monkeypatch) as traffic:
        exp = limelight.explain(model, x, method, **params)
    check_traffic(traffic, exp)


@pytest.mark.parametrize("method", [*CAMS, "shap-gradient", "shap-deep"])
def test_torch_twin_cnn(request, method, monkeypatch):
    import torch

    pytest.importorskip("keras")  # the twin fixture builds the Keras half too
    tm, _, _, _, x, _ = request.getfixturevalue("twin_cnn")
    background = torch.from_numpy(np.random.RandomState(1).rand(3, 3, 16, 16).astype(np.float32))
    _torch_run(tm, x, method, background, monkeypatch)


@pytest.fixture(scope="module")
def resnet18():
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


@pytest.mark.parametrize("method", [*CAMS, "shap-gradient", "shap-deep"])
def test_torch_resnet18(resnet18, method, monkeypatch):
    import torch

    rng = np.random.RandomState(0)
    x = torch.from_numpy(rng.randn(2, 3, 64, 64).astype(np.float32))
    background = torch.from_numpy(rng.randn(3, 3, 64, 64).astype(np.float32))
    _torch_run(resnet18, x, method, background, monkeypatch)


# -- TensorFlow --------------------------------------------------------------------------------
def _keras_backend_ported() -> bool:
    try:
        from limelight.backends.tensorflow import KerasModel
    except ImportError:
        return False
    return KerasModel.xp is not Model.xp and not getattr(KerasModel, "__abstractmethods__", None)


needs_tf_backend = pytest.mark.skipif(
    not _keras_backend_ported(), reason="the TensorFlow backend is not ported to contract v2 (no KerasModel.xp)"
)


@contextmanager
def tf_traffic(monkeypatch: pytest.MonkeyPatch) -> Iterator[Traffic]:
    import tensorflow as tf
    from tensorflow.python.framework.ops import _EagerTensorBase

    traffic = Traffic()

    def whole(t: Any) -> int:
        return int(t.shape.num_elements()) * int(tf.as_dtype(t.dtype).size)

    with monkeypatch.context() as patch:
        for name in ("numpy", "__array__", "_numpy"):
            traffic.wrap(_EagerTensorBase, name, whole, patch)
        for name in ("array", "asarray", "asanyarray", "ascontiguousarray", "asfortranarray", "from_dlpack"):
            traffic.wrap_converter(np, name, _EagerTensorBase, whole, patch)
        yield traffic


def test_the_tf_counter_counts(monkeypatch):
    tf = pytest.importorskip("tensorflow")
    t = tf.zeros((100, 10))
    with tf_traffic(monkeypatch) as traffic:
        t.numpy()
        np.asarray(t)  # read through the buffer protocol: counted by the numpy wrapper
        bool(t[0, 0] > 1)  # goes through _numpy: one bool
    assert traffic.bytes == 4000 + 4000 + 1, traffic.report()
    with tf_traffic(monkeypatch) as traffic:
        pass
    t.numpy()
    assert traffic.bytes == 0


@needs_tf_backend
@pytest.mark.parametrize("method", [*CAMS, "shap-gradient", "shap-deep"])
def test_keras_twin_cnn(request, method, monkeypatch):
    pytest.importorskip("keras")
    _, km, _, _, _, x = request.getfixturevalue("twin_cnn")
    background = np.random.RandomState(1).rand(3, 16, 16, 3).astype(np.float32)
    params: dict[str, Any] = {}
    if method == "shap-gradient":
        params = {"background": background, "nsamples": 4, "seed": 0, "batch_size": 4}
    elif method == "shap-deep":
        params = {"background": background[:2], "batch_size": 4}
    with tf_traffic(monkeypatch) as traffic:
        exp = limelight.explain(km, x, method, **params)
    check_traffic(traffic, exp)
