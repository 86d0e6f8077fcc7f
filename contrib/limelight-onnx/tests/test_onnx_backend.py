"""The ONNX backend against the PyTorch one, on a ResNet-18 and its ONNX export: the same
outputs, activations, edited-activation outputs and maps (≤ 1e-4)."""

from __future__ import annotations

import limelight
import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from limelight.core.errors import InputError, LayerError, UnsupportedError
from limelight.core.model import SupportsActivationEdit, SupportsGradients, SupportsLayers
from limelight.core.registry import registry

from limelight_onnx import OnnxModel, OnnxModelError, detect_layout

LAST_RELU = "/layer4/layer4.1/relu_1/Relu_output_0"
ATOL = 1e-4


def method_on_both(method, path, torch_model, x, **params):
    """``method``'s explanations of the ONNX file and of the torch model."""
    if method not in limelight.explainers():
        pytest.skip(f"the method {method!r} is not registered in this limelight")
    return limelight.explain(path, x, method, **params), limelight.explain(torch_model, x, method, **params)


def test_capabilities(resnet18_onnx):
    model = limelight.wrap(resnet18_onnx)
    assert isinstance(model, OnnxModel) and model.framework == "onnx" and model.layout == "NCHW"
    assert isinstance(model, SupportsLayers) and isinstance(model, SupportsActivationEdit)
    assert not isinstance(model, SupportsGradients)


def test_predict_equals_torch_and_respects_batch_size(resnet18_onnx, resnet18, images, monkeypatch):
    model = limelight.wrap(resnet18_onnx)
    x = model.canonical(images)
    assert x.shape == (2, 64, 64, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x, images.numpy().transpose(0, 2, 3, 1))
    sizes = []
    run = onnxruntime.InferenceSession.run
    monkeypatch.setattr(onnxruntime.InferenceSession, "run", lambda s, o, feed, *a: sizes.append(len(next(iter(feed.values())))) or run(s, o, feed, *a))
    outputs = model.predict(np.concatenate([x, x, x[:1]]), batch_size=2)
    assert sizes == [2, 2, 1]
    with torch.no_grad():
        expected = resnet18(images).numpy()
    assert outputs.shape == (5, 1000)
    np.testing.assert_allclose(outputs[:2], expected, rtol=0, atol=ATOL)
    np.testing.assert_allclose(outputs[4:], expected[:1], rtol=0, atol=ATOL)


@pytest.mark.parametrize("form", ["str", "path", "bytes", "proto", "session"])
def test_every_form_of_the_model_wraps(resnet18_onnx, images, form):
    native = {
        "str": lambda: str(resnet18_onnx),
        "path": lambda: resnet18_onnx,
        "bytes": lambda: resnet18_onnx.read_bytes(),
        "proto": lambda: onnx.load(resnet18_onnx),
        "session": lambda: onnxruntime.InferenceSession(str(resnet18_onnx), providers=["CPUExecutionProvider"]),
    }[form]()
    model = limelight.wrap(native)
    assert isinstance(model, OnnxModel) and model.native is native
    reference = limelight.wrap(resnet18_onnx)
    x = model.canonical(images[:1])
    np.testing.assert_array_equal(model.predict(x), reference.predict(x))
    assert model.default_layer(x) == LAST_RELU


def test_default_layer_and_activations_equal_torch_layer4(resnet18_onnx, resnet18, images):
    model, twin = limelight.wrap(resnet18_onnx), limelight.wrap(resnet18)
    x = model.canonical(images)
    assert model.default_layer(x) == LAST_RELU
    assert twin.default_layer(twin.canonical(images)) == "layer4.1"  # the same tensor
    acts = model.activations(x, LAST_RELU, batch_size=1)
    expected = twin.activations(twin.canonical(images), "layer4.1").numpy()
    assert acts.shape == expected.shape == (2, 2, 2, 512)  # channels-last
    np.testing.assert_allclose(acts, expected, rtol=0, atol=ATOL)
    # a node name stands for its one output
    assert model.resolve_layer("/layer4/layer4.1/relu_1/Relu") == LAST_RELU
    assert LAST_RELU in model.layers() and "logits" in model.layers()


def test_outputs_with_edited_layer4_equals_torch(resnet18_onnx, resnet18, images):
    model, twin = limelight.wrap(resnet18_onnx), limelight.wrap(resnet18)
    x, tx = model.canonical(images), twin.canonical(images)
    acts = model.activations(x, LAST_RELU)
    scale = np.random.RandomState(0).rand(6, 1, 1, 512).astype(np.float32)
    edited = np.repeat(acts, 3, axis=0) * scale  # R = 3 rows per sample, sample-major
    out = model.outputs_with(x, LAST_RELU, edited, batch_size=4)
    with torch.no_grad():
        manual = resnet18.fc(torch.from_numpy(edited).mean((1, 2))).numpy()
    assert out.shape == (6, 1000)
    np.testing.assert_allclose(out, manual, rtol=0, atol=ATOL)
    if isinstance(twin, SupportsActivationEdit):
        expected = twin.to_numpy(twin.outputs_with(tx, "layer4.1", torch.from_numpy(edited), batch_size=4))
        np.testing.assert_allclose(out, expected, rtol=0, atol=ATOL)


def test_outputs_with_inside_a_residual_block(resnet18_onnx, resnet18, images):
    """A layer before a skip connection's addition: the block input is computed once per
    sample and repeated for the sample's rows; equal to torch with a replacing hook."""
    model = limelight.wrap(resnet18_onnx)
    x = model.canonical(images)
    layer = "/layer4/layer4.1/conv1/Conv_output_0"
    acts = model.activations(x, layer)
    edited = np.repeat(acts, 2, axis=0) * np.random.RandomState(1).rand(4, 1, 1, acts.shape[-1]).astype(np.float32)
    out = model.outputs_with(x, layer, edited, batch_size=3)
    rows = torch.from_numpy(edited).permute(0, 3, 1, 2)
    handle = resnet18.layer4[1].conv1.register_forward_hook(lambda m, a, o: rows)
    try:
        with torch.no_grad():
            expected = resnet18(images.repeat_interleave(2, dim=0)).numpy()
    finally:
        handle.remove()
    np.testing.assert_allclose(out, expected, rtol=0, atol=ATOL)
    with pytest.raises(InputError, match=r"pass \(n·R, 2, 2, 512\)"):
        model.outputs_with(x, layer, edited[:, :1], batch_size=3)
    with pytest.raises(InputError, match="3 rows for 2 samples"):
        model.outputs_with(x, layer, edited[:3])


def test_eigencam_equals_torch(resnet18_onnx, resnet18, images):
    if SupportsGradients in registry.explainer("eigencam").requires:
        pytest.skip("limelight's eigencam declares requires=(SupportsGradients, ...) although it uses activations only")
    ours, theirs = method_on_both("eigencam", resnet18_onnx, resnet18, images)
    assert ours.params["layer"] == LAST_RELU and ours.framework == "onnx"
    np.testing.assert_allclose(ours.values, theirs.values, rtol=0, atol=ATOL)
    np.testing.assert_allclose(ours.outputs, theirs.outputs, rtol=0, atol=ATOL)


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_gradient_free_cams_equal_torch(resnet18_onnx, resnet18, images, method):
    ours, theirs = method_on_both(method, resnet18_onnx, resnet18, images[:1], batch_size=128)
    assert ours.params["layer"] == LAST_RELU and theirs.params["layer"] == "layer4.1"
    np.testing.assert_array_equal(ours.targets, theirs.targets)
    np.testing.assert_allclose(ours.values, theirs.values, rtol=0, atol=ATOL)


@pytest.mark.slow
def test_shap_partition_equals_torch(resnet18_onnx, resnet18, images):
    pytest.importorskip("shap")
    ours, theirs = method_on_both("shap-partition", resnet18_onnx, resnet18, images[:1], max_evals=64, batch_size=64)
    assert ours.values.shape == (1, 64, 64, 3)
    scale = np.abs(theirs.values).max()
    np.testing.assert_allclose(ours.values, theirs.values, rtol=0, atol=ATOL * max(scale, 1.0))
    np.testing.assert_allclose(ours.base_values, theirs.base_values, rtol=0, atol=ATOL)


def test_gradient_methods_are_refused_clearly(resnet18_onnx, images):
    with pytest.raises(UnsupportedError) as raised:
        limelight.explain(resnet18_onnx, images, "gradcam")
    message = str(raised.value)
    assert "'gradcam'" in message and "SupportsGradients" in message and "onnx" in message


def test_the_plugin_is_an_entry_point(fresh_limelight_registry):
    found = {info.name: info for info in limelight.plugins()}
    info = found["onnx"]
    assert info.source == "entry point" and info.distribution == "limelight-onnx"
    assert info.backend and info.loader and info.error is None


# -- errors ------------------------------------------------------------------------------------
def test_inputs_of_the_wrong_layout_or_size(resnet18_onnx, images):
    model = limelight.wrap(resnet18_onnx)
    with pytest.raises(InputError, match=r"takes \(N, 3, 64, 64\) \(NCHW\)\. They look channels-last.*transpose\(0, 3, 1, 2\)"):
        model.canonical(images.numpy().transpose(0, 2, 3, 1))
    with pytest.raises(InputError, match=r"takes \(N, 3, 64, 64\)"):
        model.canonical(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(InputError, match=r"x\[None\]"):
        model.canonical(images[0])


def test_unknown_layer_lists_close_names(resnet18_onnx, images):
    model = limelight.wrap(resnet18_onnx)
    with pytest.raises(LayerError, match=r"unknown layer '/layer4/layer4.1/relu_1/Relu_output'.*Did you mean"):
        model.activations(model.canonical(images), "/layer4/layer4.1/relu_1/Relu_output")
    with pytest.raises(LayerError, match="does not depend on layer"):
        model.outputs_with(model.canonical(images), "logits", np.zeros((2, 1000), np.float32))


def test_bad_files(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07not a model at all")
    with pytest.raises(OnnxModelError, match="not a valid ONNX model|empty graph"):
        limelight.wrap(bad)
    with pytest.raises(OnnxModelError, match="no such ONNX file"):
        limelight.wrap(tmp_path / "missing.onnx")
    with pytest.raises(OnnxModelError, match="not an ONNX model|empty graph"):
        limelight.wrap(b"\xff\xfe garbage")
    assert isinstance(OnnxModelError("x"), limelight.LimelightError)


@pytest.mark.parametrize(
    "shape, layout",
    [
        (("N", 3, 224, 224), "NCHW"),
        (("N", 224, 224, 3), "NHWC"),
        ((None, 1, 28, 28), "NCHW"),
        (("N", 6, 32, 32), "NCHW"),
        (("N", 32, 32, 6), "NHWC"),
        (("N", 3, "H", "W"), "NCHW"),
        (("N", "H", "W", 3), "NHWC"),
        (("N", "C", "H", "W"), "NCHW"),
        (("N", 10), "flat"),
    ],
)
def test_detect_layout(shape, layout):
    assert detect_layout(shape) == layout


def test_a_channels_last_graph(tmp_path, exporter):
    """A graph taking NHWC (as Keras exports): inputs pass through unchanged."""
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x.permute(0, 3, 1, 2))).mean((2, 3)))

    torch.manual_seed(0)
    net, path = Net().eval(), tmp_path / "nhwc.onnx"
    x = np.random.RandomState(0).rand(2, 8, 8, 3).astype(np.float32)
    exporter(net, torch.from_numpy(x[:1]), path)
    model = limelight.wrap(str(path))
    assert model.layout == "NHWC"
    np.testing.assert_array_equal(model.canonical(x), x)
    with torch.no_grad():
        np.testing.assert_allclose(model.predict(model.canonical(x)), net(torch.from_numpy(x)).numpy(), rtol=0, atol=1e-5)


def test_limelight_contract_kit(resnet18_onnx, resnet18):
    """limelight's own backend contract (``limelight.testing.check_backend``), with the torch
    model as the twin."""
    testing = pytest.importorskip("limelight.testing")
    x = np.random.RandomState(2).rand(3, 3, 64, 64).astype(np.float32)
    testing.check_backend(
        lambda: resnet18_onnx, x, reference=lambda: resnet18, layer=(LAST_RELU, "layer4.1"), atol=ATOL
    )
