"""Concurrent explain calls on one model give the sequential results and leave the model as
it was (the backends hold a per-model lock, :func:`limelight.core.cache.model_lock`)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import limelight  # noqa: E402

THREADS, CALLS = 4, 5


def run_concurrently(work, threads=THREADS):
    """``work(i)`` in ``threads`` threads started together; their results (or errors) by i."""
    barrier = threading.Barrier(threads)
    results: dict[int, object] = {}

    def body(i):
        barrier.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            results[i] = exc

    pool = [threading.Thread(target=body, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=300)
    errors = [r for r in results.values() if isinstance(r, BaseException)]
    assert not errors, errors
    assert len(results) == threads
    return [results[i] for i in range(threads)]


def torch_state(model):
    return {
        "training": {n: m.training for n, m in model.named_modules()},
        "hooks": {n: (len(m._forward_hooks), len(m._forward_pre_hooks)) for n, m in model.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grads": [p.grad for p in model.parameters()],
        "params": {n: p.detach().clone() for n, p in model.state_dict().items()},
    }


def assert_same_torch_state(before, after):
    assert before["training"] == after["training"]
    assert before["hooks"] == after["hooks"]
    assert before["requires_grad"] == after["requires_grad"]
    assert all(g is None for g in after["grads"])
    for name, value in before["params"].items():
        assert torch.equal(value, after["params"][name]), name


def test_concurrent_torch_explanations_match_sequential_and_leave_the_model_alone():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    model.train()
    model.layer2.eval()  # a mixed train/eval model must come back exactly so
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    before = torch_state(model)

    def calls():
        return [
            limelight.explain(model, x, "gradcam").values,  # the default layer (traced)
            limelight.explain(model, x, "gradcam", layer="layer3").values,
            limelight.explain(model, x, "gradcam", layer="layer4.1", targets=3).values,
            limelight.explain(model, x, "gradcam++", layer="layer2").values,
            limelight.explain(model, x, "gradcam").values,
        ]

    expected = calls()
    assert len(expected) == CALLS
    assert_same_torch_state(before, torch_state(model))
    for got in run_concurrently(lambda i: calls()):
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
    assert_same_torch_state(before, torch_state(model))


def test_concurrent_keras_default_layer_calls_match_sequential_and_unpatch():
    keras = pytest.importorskip("keras")

    def build():
        keras.utils.set_random_seed(0)
        return keras.Sequential(
            [
                keras.Input((16, 16, 3)),
                keras.layers.Conv2D(8, 3, padding="same", name="conv1"),
                keras.layers.ReLU(name="relu1"),
                keras.layers.Conv2D(8, 3, padding="same", name="conv2"),
                keras.layers.ReLU(name="relu2"),
                keras.layers.GlobalAveragePooling2D(name="gap"),
                keras.layers.Dense(5, name="fc"),
            ]
        )

    x = np.random.RandomState(0).rand(2, 16, 16, 3).astype(np.float32)
    expected = limelight.explain(build(), x, "gradcam").values  # default layer: relu2

    def patched(model):
        return [layer.name for layer in model.layers if "call" in layer.__dict__]

    for _ in range(CALLS):  # each round: a fresh model, so every thread races to trace its default layer
        model = build()
        weights = [w.copy() for w in model.get_weights()]
        got = run_concurrently(lambda i, m=model: limelight.explain(m, x, "gradcam").values)
        for values in got:
            np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-6)
        assert patched(model) == []
        for w, w0 in zip(model.get_weights(), weights, strict=True):
            np.testing.assert_array_equal(w, w0)

    model = build()  # and many calls on one model, through the compiled functions
    got = run_concurrently(
        lambda i: [limelight.explain(model, x, "gradcam", layer=name).values for name in ("relu2", "relu1", "conv2")]
        + [limelight.explain(model, x, "gradcam").values for _ in range(CALLS - 3)]
    )
    sequential = [limelight.explain(model, x, "gradcam", layer=name).values for name in ("relu2", "relu1", "conv2")]
    for values in got:
        for g, e in zip(values[:3], sequential, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
        for g in values[3:]:
            np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-6)
    assert patched(model) == []


def test_overlapping_precision_calls_restore_the_users_flags_last():
    """Thread A enters precision("highest"), B enters, A leaves (B still needs full
    precision), B leaves: the user's flags come back only then, and exactly."""
    from limelight.backends.torch import TorchModel

    model = TorchModel(torch.nn.Linear(2, 2))
    matmul = torch.backends.cuda.matmul
    saved = matmul.fp32_precision
    matmul.fp32_precision = "tf32"
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, str] = {}

    def a():
        with model.precision("highest"):
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def b():
        a_in.wait(10)
        with model.precision("highest"):
            b_in.set()
            a_out.wait(10)
            seen["b after a left"] = matmul.fp32_precision

    try:
        threads = [threading.Thread(target=a), threading.Thread(target=b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert seen == {"b after a left": "ieee"}
        assert matmul.fp32_precision == "tf32"
    finally:
        matmul.fp32_precision = saved
