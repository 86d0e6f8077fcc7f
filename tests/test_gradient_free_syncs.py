"""Score-CAM, Ablation-CAM and RISE on torch: no host round trip per batch, and Ablation-CAM
runs the network before its layer once per sample.

On a GPU, the loops of these methods are cheap per batch; what makes them slow is anything
that makes the host wait for the device (``.item()``, ``bool(tensor)``, ``nonzero``, copies
to the host) or a host array copied to the device per batch. On the CPU these are counted:
through a ``TorchDispatchMode`` (the ops behind ``.item()``/``bool``/``int``/``float``,
``nonzero``, ``unique``, ``masked_select``) and by wrapping ``TorchModel.asarray`` /
``TorchModel.to_numpy`` and ``Tensor.tolist``/``numpy``/``cpu``. The counts must not grow
with the number of batches. ``tests/test_cuda.py`` checks the same on a GPU with
``torch.cuda.set_sync_debug_mode("error")``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import limelight  # noqa: E402
from limelight.backends.torch import TorchModel  # noqa: E402

#: aten ops that make the host wait for the device (or have data-dependent shapes).
SYNC_OPS = ("_local_scalar_dense", "nonzero", "unique", "_unique", "masked_select", "is_nonzero", "equal")


class _Ops(TorchDispatchMode):
    def __init__(self, counts: Counter[str]) -> None:
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = str(func.overloadpacket.__name__)
        if name.startswith(SYNC_OPS):
            self.counts[f"sync:{name}"] += 1
        if name == "convolution":
            self.counts["convolution"] += 1
        return func(*args, **(kwargs or {}))


def traffic(call: Callable[[], Any]) -> Counter[str]:
    """What ``call`` does that costs a host round trip on a GPU, counted on the CPU (and its
    convolutions, as a measure of work)."""
    counts: Counter[str] = Counter()
    patched: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, attr: str, label: str) -> None:
        original = getattr(owner, attr)

        def counting(*args: Any, **kwargs: Any) -> Any:
            counts[label] += 1
            return original(*args, **kwargs)

        setattr(owner, attr, counting)
        patched.append((owner, attr, original))

    for attr in ("tolist", "numpy", "cpu"):
        wrap(torch.Tensor, attr, f"Tensor.{attr}")
    wrap(TorchModel, "asarray", "to device")
    wrap(TorchModel, "to_numpy", "to host")
    try:
        with _Ops(counts):
            call()
    finally:
        for owner, attr, original in reversed(patched):
            setattr(owner, attr, original)
    return counts


def cnn(channels: int, seed: int = 0) -> Any:
    """Conv(3→C) ReLU Conv(C→C) ReLU GAP Linear(5); the layer explained is the second Conv,
    "2"."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, channels, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(channels, channels, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(channels, 5),
    ).eval()


X = torch.randn(3, 3, 12, 12, generator=torch.Generator().manual_seed(1))
PARAMS = {"scorecam": {"layer": "2"}, "ablationcam": {"layer": "2"}, "rise": {"n_masks": 24, "seed": 0, "grid": 3}}


def explain(model: Any, method: str, batch_size: int) -> Callable[[], Any]:
    return lambda: limelight.explain(model, X, method, targets=[0, 1, 2], batch_size=batch_size, **PARAMS[method])


@pytest.mark.parametrize("method", ["scorecam", "ablationcam", "rise"])
def test_host_round_trips_do_not_grow_with_the_number_of_batches(method):
    model = cnn(8)
    explain(model, method, 2)()  # warm: Ablation-CAM's path choice is made once per model
    few, many = traffic(explain(model, method, 12)), traffic(explain(model, method, 2))
    few.pop("convolution")
    many.pop("convolution")
    assert few == many
    # once per call: the inputs' and results' copies, one control value (constant/inert
    # channels), one H2D of what the loop indexes; nothing per batch
    assert sum(v for k, v in many.items() if k.startswith("sync:")) <= 2, many
    assert many["to device"] <= 8, many
    assert many["to host"] <= 5, many


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_host_round_trips_do_not_grow_with_the_number_of_channels(method):
    counts = []
    for channels in (4, 32):
        model = cnn(channels)
        explain(model, method, 4)()
        counted = traffic(explain(model, method, 4))
        counted.pop("convolution")
        counts.append(counted)
    assert counts[0] == counts[1]


@pytest.mark.parametrize("batch_size", [2, 5, 64])
def test_ablationcam_runs_the_network_before_the_layer_once_per_sample(batch_size):
    """Convolutions (2 per forward): predict and activations (a forward per batch of
    samples each) + per sample one forward up to and through the layer; every further batch
    of a sample replays the first conv's output and skips the layer's own forward (the edit
    replaces its output). Before, each batch of ablated rows ran both convolutions."""
    model = cnn(8)
    explain(model, "ablationcam", batch_size)()  # the first call also probes the path once
    counted = traffic(explain(model, "ablationcam", batch_size))
    n = len(X)
    assert counted["convolution"] == 2 * 2 * math.ceil(n / batch_size) + 2 * n


def test_ablationcam_maps_do_not_depend_on_the_batch_size():
    model = cnn(8)
    maps = [limelight.explain(model, X, "ablationcam", layer="2", batch_size=b).values for b in (1, 3, 64)]
    np.testing.assert_allclose(maps[1], maps[0], atol=1e-5)
    np.testing.assert_allclose(maps[2], maps[0], atol=1e-5)


# -- the prefix kept across outputs_with calls on the same one-sample tensor ---------------------
def reference(model: Any, layer: str, x: Any, rows_nhwc: Any) -> np.ndarray:
    """The whole model on x repeated, a hook replacing the layer's output."""
    replacement = rows_nhwc.permute(0, 3, 1, 2).contiguous()
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: replacement.clone())
    try:
        with torch.no_grad():
            return model(x.repeat(len(rows_nhwc), 1, 1, 1)).numpy()
    finally:
        handle.remove()


def edited_rows(model: Any, layer: str, x: Any, k: int, seed: int) -> Any:
    acts = TorchModel(model).activations(TorchModel(model).canonical(x), layer)
    g = torch.Generator().manual_seed(seed)
    return acts.repeat(k, 1, 1, 1) * torch.rand(k, 1, 1, acts.shape[-1], generator=g)


def test_kept_prefix_follows_weights_and_inputs_changed_in_place():
    model = cnn(6)
    wrapped = TorchModel(model)
    x = X[:1].clone()
    sample = wrapped.canonical(x)  # one tensor object, passed again and again
    rows = edited_rows(model, "2", x, 4, 0)
    for _ in range(2):
        np.testing.assert_allclose(
            wrapped.outputs_with(sample, "2", rows, batch_size=2).numpy(), reference(model, "2", x, rows), atol=1e-5
        )
    with torch.no_grad():
        model[0].weight.mul_(-0.5)  # weights changed in place
    np.testing.assert_allclose(
        wrapped.outputs_with(sample, "2", rows, batch_size=2).numpy(), reference(model, "2", x, rows), atol=1e-5
    )
    with torch.no_grad():
        x.mul_(2.0)  # the input changed in place (sample is a view of x)
    np.testing.assert_allclose(
        wrapped.outputs_with(sample, "2", rows, batch_size=2).numpy(), reference(model, "2", x, rows), atol=1e-5
    )


class _InPlaceLayer(torch.nn.Module):
    """The layer explained, an in-place ReLU, changes its input, which the head reads again:
    skipping the layer's forward on replay would be wrong here."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.act = torch.nn.ReLU(inplace=True)
        self.head = torch.nn.Linear(4, 3)

    def forward(self, x: Any) -> Any:
        a = self.conv(x)
        b = self.act(a)  # a is b's storage, rectified in place
        return self.head((b + a.abs()).mean(dim=(2, 3)))


def test_a_layer_that_changes_its_input_in_place_still_runs_on_replay():
    torch.manual_seed(0)
    model = _InPlaceLayer().eval()
    x = X[:1] - 0.5
    wrapped = TorchModel(model)
    sample = wrapped.canonical(x)
    rows = edited_rows(model, "act", x, 5, 1)
    expected = reference(model, "act", x, rows)
    for _ in range(2):
        np.testing.assert_allclose(wrapped.outputs_with(sample, "act", rows, batch_size=2).numpy(), expected, atol=1e-5)


def test_the_kept_prefix_goes_when_the_sample_is_freed():
    from limelight.backends.torch import _PrefixMemo
    from limelight.core.cache import model_cache

    model = cnn(4)
    wrapped = TorchModel(model)
    sample = wrapped.canonical(X[:1].clone())
    rows = edited_rows(model, "2", X[:1], 3, 2)
    wrapped.outputs_with(sample, "2", rows, batch_size=2)
    assert _PrefixMemo.KEPT in model_cache(model)
    del sample
    assert _PrefixMemo.KEPT not in model_cache(model)
