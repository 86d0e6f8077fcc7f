"""The PyTorch backend: layouts, layers, gradients, and leaving the user's model untouched."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import limelight  # noqa: E402
from limelight.backends.torch import TorchModel  # noqa: E402
from limelight.core.errors import InputError, LayerError, NotDifferentiableError, TargetError  # noqa: E402
from limelight.core.targets import Predicted, resolve_target  # noqa: E402
from tests.conftest import quick_params  # noqa: E402


def snapshot(model):
    """Everything about a module that limelight must not change."""
    return {
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "buffers": {n: b.detach().clone() for n, b in model.named_buffers()},
        "grads": {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "training": {n: m.training for n, m in model.named_modules()},
        "hooks": {
            n: (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks),
                len(getattr(m, "_backward_pre_hooks", {})))
            for n, m in model.named_modules()
        },
    }


def assert_unchanged(model, before):
    after = snapshot(model)
    for n in before["params"]:
        assert torch.equal(before["params"][n], after["params"][n]), n
    for n in before["buffers"]:
        assert torch.equal(before["buffers"][n], after["buffers"][n]), n
    for n, g in before["grads"].items():
        assert (g is None and after["grads"][n] is None) or torch.equal(g, after["grads"][n]), n
    assert before["requires_grad"] == after["requires_grad"]
    assert before["training"] == after["training"]
    assert before["hooks"] == after["hooks"]


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=10)


def test_layout_conversion_and_layers(twin_cnn):
    tm, _, layer, _, x_nchw, x_nhwc = twin_cnn
    model = limelight.wrap(tm)
    assert isinstance(model, TorchModel) and model.framework == "torch"
    x = model.canonical(x_nchw)
    assert x.data_ptr() == x_nchw.data_ptr() and x.shape == (4, 16, 16, 3)  # a view, not a copy
    np.testing.assert_array_equal(x, x_nhwc)
    np.testing.assert_array_equal(model.canonical(x_nchw.numpy()), x_nhwc)  # arrays as fed: NCHW
    assert model.layers() == [str(i) for i in range(9)]
    acts = model.activations(x, layer)
    with torch.no_grad():
        ref = tm[:6](x_nchw).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(acts, ref, rtol=1e-6, atol=1e-6)
    out = model.predict(x)
    assert isinstance(out, torch.Tensor) and not out.requires_grad
    np.testing.assert_allclose(out, tm(x_nchw).detach().numpy(), rtol=1e-6, atol=1e-6)


def test_input_gradients_match_autograd(twin_cnn):
    tm, _, _, _, x_nchw, x_nhwc = twin_cnn
    x = x_nchw.clone().requires_grad_(True)
    out = tm(x)
    targets = np.array([0, 1, 2, 3])
    out[torch.arange(4), torch.as_tensor(targets)].sum().backward()
    model = limelight.wrap(tm)
    grads = model.gradients(model.canonical(x_nchw), resolve_target(targets, 4))
    np.testing.assert_allclose(grads.gradients, x.grad.permute(0, 2, 3, 1).numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(grads.activations, x_nhwc)


def test_layer_gradients_batched_equal_unbatched(resnet18):
    model = limelight.wrap(resnet18)
    x = model.canonical(torch.randn(5, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
    whole = model.gradients(x, Predicted(), "layer3")
    parts = model.gradients(x, Predicted(), "layer3", batch_size=2)
    for a, b in zip(whole.__dict__.values(), parts.__dict__.values(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(a).max())  # conv algorithms vary by batch
    assert whole.activations.shape == (5, 4, 4, 256)  # NHWC


def test_module_object_accepted_as_layer(resnet18):
    x = torch.randn(2, 3, 64, 64)
    by_object = limelight.explain(resnet18, x, layer=resnet18.layer4[1])
    by_name = limelight.explain(resnet18, x, layer="layer4.1")
    assert by_object.params["layer"] == "layer4.1"
    np.testing.assert_array_equal(by_object.values, by_name.values)


def test_inplace_relu_after_the_layer(resnet18):
    """layer4.1.bn2's output is modified in place by `out += identity` and ReLU(inplace)."""
    model = limelight.wrap(resnet18)
    x = model.canonical(torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2)))
    grads = model.gradients(x, resolve_target([1, 2], 2), "layer4.1.bn2")
    acts = model.activations(x, "layer4.1.bn2")
    np.testing.assert_allclose(grads.activations, acts, rtol=1e-5, atol=1e-6)
    assert (grads.activations < 0).any()  # captured before the in-place ReLU

    # reference: gradient through an explicit, non-in-place recomputation of the block tail
    block = resnet18.eval().layer4[1]
    with torch.no_grad():
        h = resnet18.layer4[0](resnet18.layer3(resnet18.layer2(resnet18.layer1(
            resnet18.maxpool(resnet18.relu(resnet18.bn1(resnet18.conv1(x.permute(0, 3, 1, 2)))))))))
    bn2 = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(h))))).detach().requires_grad_(True)
    out = resnet18.fc(torch.flatten(resnet18.avgpool(torch.relu(bn2 + h)), 1))
    out[torch.arange(2), torch.tensor([1, 2])].sum().backward()
    np.testing.assert_allclose(grads.gradients, bn2.grad.permute(0, 2, 3, 1).numpy(), rtol=1e-4, atol=1e-7)


def test_model_unchanged_after_success_and_after_errors():
    # torchvision's ResNet with one BasicBlock per stage: the same in-place ReLU, BatchNorm and
    # shared-ReLU structure as resnet18 at half the depth, run on 32x32 inputs
    from torchvision.models.resnet import BasicBlock, ResNet

    torch.manual_seed(0)
    model = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=10)
    model.train()
    model.layer2.eval()  # a mixed state must come back exactly
    model.fc.weight.grad = torch.ones_like(model.fc.weight)  # a pre-existing .grad stays
    model.conv1.weight.requires_grad_(False)
    before = snapshot(model)
    assert before["training"]["layer1"] and not before["training"]["layer2.0.bn1"]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    methods = limelight.explainers()
    assert len(methods) >= 8 and {"gradcam", "shap-deep", "shap-gradient"} <= set(methods)
    for method in methods:
        exp = limelight.explain(model, x, method=method, **quick_params(method, x[:1]))
        assert exp.method == method and np.isfinite(exp.values).all()
    assert_unchanged(model, before)
    with pytest.raises(TargetError):
        limelight.explain(model, x, targets=10)
    assert_unchanged(model, before)
    with pytest.raises(LayerError):
        limelight.explain(model, x, layer="layer4.0.relu")  # runs twice per forward
    assert_unchanged(model, before)


def test_model_unchanged_when_forward_raises():
    class Exploding(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.bn = torch.nn.BatchNorm2d(4)

        def forward(self, x):
            self.bn(self.conv(x))
            raise RuntimeError("boom")

    model = Exploding().train()
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        limelight.explain(model, torch.randn(1, 3, 8, 8), layer="bn")
    assert_unchanged(model, before)


def test_runs_in_model_dtype():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 3)).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    exp = limelight.explain(model, x, method="gradcam", layer="1", upsample=False, normalize=False)
    acts = model[:2](x)
    weights = torch.autograd.grad(model[2:](acts).max(dim=1).values.sum(), acts)[0].mean(dim=(2, 3))
    # reference computed in float64 by hand
    ref = torch.relu((weights[:, :, None, None] * acts).sum(1)).detach().numpy()
    np.testing.assert_allclose(exp.values, ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "arch, size, layer",  # the smallest inputs at which the last block still has more than one position
    [("vgg16", 64, "avgpool"), ("resnet50", 40, "layer4.2"), ("densenet121", 64, "features.norm5"),
     ("mobilenet_v3_small", 40, "features.12.2")],
)
def test_real_architectures_default_layer(arch, size, layer):
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None, num_classes=10)
    x = torch.randn(2, 3, size, size)
    exp = limelight.explain(model, x, method="gradcam")
    assert exp.params["layer"] == layer
    assert exp.values.shape == (2, size, size) and exp.values.dtype == np.float32
    assert np.isfinite(exp.values).all() and exp.values.min() >= 0 and exp.values.max() <= 1
    assert exp.values.reshape(2, -1).max(axis=1).max() == pytest.approx(1.0)
    np.testing.assert_array_equal(exp.targets, model.eval()(x).argmax(1).numpy())


class TestBadInput:
    def test_unknown_layer_lists_close_names(self, resnet18):
        with pytest.raises(LayerError, match=r"unknown layer 'layer4.2'.*Did you mean: 'layer4.1'"):
            limelight.explain(resnet18, torch.randn(1, 3, 32, 32), layer="layer4.2")

    def test_non_spatial_layer(self, resnet18):
        with pytest.raises(LayerError, match=r"layer 'fc'.*not spatial.*default 'layer4.1'"):
            limelight.explain(resnet18, torch.randn(1, 3, 64, 64), layer="fc")
        # at 32x32 layer4 is 1x1, so the default moves to the last layer that is still spatial
        assert limelight.explain(resnet18, torch.randn(1, 3, 32, 32)).params["layer"] == "layer3.1"

    def test_channels_last_input(self, resnet18):
        with pytest.raises(InputError, match=r"look channels-last.*permute\(0, 3, 1, 2\)"):
            limelight.explain(resnet18, torch.randn(1, 32, 32, 3))

    def test_missing_batch_axis(self, resnet18):
        with pytest.raises(InputError, match=r"x\[None\]"):
            limelight.explain(resnet18, torch.randn(3, 32, 32))

    def test_nan_and_inf(self, resnet18):
        x = torch.randn(3, 3, 32, 32)
        x[1, 0, 0, 0] = float("nan")
        with pytest.raises(InputError, match=r"NaN values \(samples \[1\]\)"):
            limelight.explain(resnet18, x)
        x[1, 0, 0, 0] = float("inf")
        with pytest.raises(InputError, match="inf"):
            limelight.explain(resnet18, x)

    def test_empty_batch(self, resnet18):
        with pytest.raises(InputError, match="empty batch"):
            limelight.explain(resnet18, torch.randn(0, 3, 32, 32))

    def test_class_out_of_range(self, resnet18):
        with pytest.raises(TargetError, match=r"target class 10 .*has 10 outputs"):
            limelight.explain(resnet18, torch.randn(2, 3, 32, 32), targets=[0, 10])

    def test_non_differentiable_model(self):
        class Detached(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = torch.nn.Conv2d(3, 4, 3)

            def forward(self, x):
                return self.conv(x).mean(dim=(2, 3)).detach()

        with pytest.raises(NotDifferentiableError, match="detach"):
            limelight.explain(Detached(), torch.randn(1, 3, 8, 8), layer="conv")

    def test_output_not_a_class_score_tensor(self):
        class Dict(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = torch.nn.Conv2d(3, 4, 3)

            def forward(self, x):
                return {"scores": self.conv(x).mean(dim=(2, 3)), "features": x.mean(dim=1)}

        # no "logits" / "out" key: the choices are listed, and output= named (tests/test_outputs.py)
        with pytest.raises(InputError, match=r"returned a dict \('scores': \(1, 4\), 'features'.*output="):
            limelight.explain(Dict(), torch.randn(1, 3, 8, 8), layer="conv")


def test_default_layer_is_cached_until_the_architecture_changes():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 2))
    x = torch.rand(1, 3, 8, 8)
    assert limelight.explain(model, x).params["layer"] == "1"
    calls = []
    model[0].register_forward_hook(lambda *a: calls.append(1))
    limelight.explain(model, x)
    assert len(calls) == 1  # the explanation's forward only: no second tracing pass
    model.insert(2, torch.nn.Conv2d(4, 4, 1))
    assert limelight.explain(model, x).params["layer"] == "2"


def test_the_users_inputs_are_never_modified_by_an_inplace_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.ReLU(inplace=True), torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()
    x, bg = torch.randn(2, 3, 8, 8), torch.randn(3, 3, 8, 8)
    before, bg_before = x.clone(), bg.clone()
    for method, params in [("gradcam", {"layer": "2"}), ("shap-gradient", {"background": bg, "nsamples": 4, "seed": 0}),
                           ("shap-deep", {"background": bg})]:
        exp = limelight.explain(model, x, method, **params)
        assert torch.equal(x, before) and torch.equal(bg, bg_before), method
        np.testing.assert_array_equal(exp.inputs, before.permute(0, 2, 3, 1).numpy())
    assert (before < 0).any()  # the in-place ReLU would have changed them


def test_memory_format_follows_the_weights_not_the_inputs_or_earlier_calls():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()
    seen = []
    model[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous()))
    wrapped = limelight.wrap(model)
    x = torch.randn(2, 3, 8, 8)
    limelight.explain(wrapped, x.contiguous(memory_format=torch.channels_last), layer="1")
    limelight.explain(wrapped, x, layer="1")
    assert seen and all(seen)  # NCHW weights: NCHW runs, whatever the inputs' format was
    seen.clear()
    model.to(memory_format=torch.channels_last)
    limelight.explain(model, x, layer="1")
    assert seen and not any(seen)  # a channels-last model runs channels-last
    seen.clear()
    limelight.explain(TorchModel(model, memory_format=torch.contiguous_format), x, layer="1")
    assert seen and all(seen)  # forced


def test_precision_highest_uses_and_restores_the_tf32_flags():
    model = TorchModel(torch.nn.Linear(2, 2))
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    saved = (matmul.fp32_precision, conv.fp32_precision, matmul.allow_fp16_reduced_precision_reduction)
    try:
        matmul.fp32_precision, conv.fp32_precision = "tf32", "tf32"
        matmul.allow_fp16_reduced_precision_reduction = True
        with model.precision("highest"):
            assert (matmul.fp32_precision, conv.fp32_precision) == ("ieee", "ieee")
            assert not matmul.allow_fp16_reduced_precision_reduction
        assert (matmul.fp32_precision, conv.fp32_precision) == ("tf32", "tf32")
        assert matmul.allow_fp16_reduced_precision_reduction
        with pytest.raises(RuntimeError, match="boom"), model.precision("highest"):
            raise RuntimeError("boom")
        assert (matmul.fp32_precision, conv.fp32_precision) == ("tf32", "tf32")
        with model.precision("default"):
            assert matmul.fp32_precision == "tf32"
    finally:
        matmul.fp32_precision, conv.fp32_precision, matmul.allow_fp16_reduced_precision_reduction = saved


def test_precision_is_recorded_and_overridable():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()
    x = torch.randn(2, 3, 8, 8)
    assert limelight.explain(model, x, "shap-deep", background=x).params["precision"] == "highest"
    assert limelight.explain(model, x, "shap-deep", background=x, precision="default").params["precision"] == "default"
    assert limelight.explain(model, x, "gradcam").params["precision"] == "default"
    assert limelight.explain(model, x, "gradcam", precision="highest").params["precision"] == "highest"
    auto = limelight.explain(model, x, "shap", background=x)
    assert auto.params["algorithm"] == "shap-deep" and auto.params["precision"] == "highest"
    from limelight.core.errors import ParameterError

    with pytest.raises(ParameterError, match="precision must be one of auto, highest, default"):
        limelight.explain(model, x, "gradcam", precision="tf32")


def test_inputs_of_the_wrong_rank_give_an_input_error_naming_shape_and_layout():
    torch.manual_seed(0)
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()
    flat = np.random.RandomState(0).rand(2, 16).astype(np.float32)
    for kwargs in ({}, {"layer": "0"}, {"method": "shap-gradient", "background": flat}):
        with pytest.raises(InputError, match=r"shape \(N, 16\).*NCHW batches \(N, 3, H, W\)") as info:
            limelight.explain(cnn, flat, **kwargs)
        assert isinstance(info.value.__cause__, RuntimeError)  # the framework's error, chained
    mlp = torch.nn.Sequential(torch.nn.Linear(10, 3))
    with pytest.raises(InputError, match=r"shape \(N, 7\).*\(N, 10\)") as info:
        limelight.explain(mlp, torch.rand(2, 7), "shap-deep", background=torch.rand(2, 7))
    assert "mat1 and mat2" in str(info.value) and isinstance(info.value.__cause__, RuntimeError)


def test_layer_as_a_list_is_a_short_error(resnet18):
    x = torch.rand(1, 3, 32, 32)
    for layers in ([resnet18.layer4], (resnet18.layer3, resnet18.layer4), ["layer4"]):
        with pytest.raises(LayerError, match="one layer") as info:
            limelight.explain(resnet18, x, layer=layers)
        assert len(str(info.value)) < 200 and "Sequential(" not in str(info.value)


def test_batch_size_accepts_any_integral_number(twin_cnn):
    tm, _, layer, _, x_nchw, _ = twin_cnn
    expected = limelight.explain(tm, x_nchw, layer=layer).values
    for size in (np.int64(1), np.int32(3), np.uint8(2), 2):
        got = limelight.explain(tm, x_nchw, layer=layer, batch_size=size)
        np.testing.assert_allclose(got.values, expected, rtol=1e-5, atol=1e-6)
    from limelight.core.errors import ParameterError

    for bad in (0, np.int64(0), -1, 1.5, np.float64(2.0), True, np.bool_(True), "2"):
        with pytest.raises(ParameterError, match="batch_size must be a positive int"):
            limelight.explain(tm, x_nchw, layer=layer, batch_size=bad)
