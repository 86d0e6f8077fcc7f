"""Input layouts inferred from what the model consumes (its first convolution, found by a
trial forward), ``(N, H, W)`` and ``(N, C, L)`` inputs, volumes, and 1-D / 3-D CAMs."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import limelight  # noqa: E402
from limelight.core.errors import InputError  # noqa: E402
from limelight.core.targets import resolve_target  # noqa: E402


def minmax(a):
    flat = a.reshape(len(a), -1)
    low, span = flat.min(1)[:, None], np.ptp(flat, axis=1)[:, None]
    return np.where(span > 0, (flat - low) / np.where(span > 0, span, 1), 0).reshape(a.shape)


def torch_gradcam(model, layer, x, classes, mode, size=None):
    """Grad-CAM by hand: torch hooks, channel weights = mean gradient, ReLU, ``interpolate``
    to the input's spatial size (``mode``, half-pixel centres), min-max."""
    store = {}
    handle = layer.register_forward_hook(lambda m, a, out: store.update(a=out))
    try:
        out = model(x)
    finally:
        handle.remove()
    acts = store["a"]
    (grads,) = torch.autograd.grad(out[torch.arange(len(x)), torch.tensor(np.array(classes))].sum(), acts)
    axes = tuple(range(2, acts.ndim))
    cam = torch.relu((grads.mean(dim=axes, keepdim=True) * acts).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=size or tuple(x.shape[2:]), mode=mode, align_corners=False)[:, 0]
    return minmax(cam.detach().double().numpy())


# -- the first registered convolution is not the stem ----------------------------------------
class HeadFirst(torch.nn.Module):
    """Registers its head convolution (16 input channels) before its stem (3)."""

    def __init__(self):
        super().__init__()
        self.head_conv = torch.nn.Conv2d(16, 8, 1)
        self.stem = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        x = self.head_conv(torch.relu(self.stem(x)))
        return self.fc(x.mean(dim=(2, 3)))


def test_the_stem_is_what_the_model_runs_first_not_what_it_registers_first():
    """Tried as a new user would: refused with "the model's first convolution takes 16
    channels" and the wrong advice."""
    torch.manual_seed(0)
    model = HeadFirst()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    exp = limelight.explain(model, x, "gradcam")
    assert exp.params["layer"] == "head_conv" and exp.values.shape == (2, 8, 8)
    np.testing.assert_allclose(exp.values, torch_gradcam(model, model.head_conv, x, exp.targets, "bilinear"), atol=1e-5)
    with pytest.raises(InputError, match=r"first convolution \('stem'\) takes 3 channels.*permute\(0, 3, 1, 2\)"):
        limelight.explain(model, x.permute(0, 2, 3, 1).contiguous(), "gradcam")
    with pytest.raises(InputError, match=r"\(1, 5, 8, 8\).*'stem'\) takes 3 channels in NCHW"):
        limelight.explain(model, torch.randn(1, 5, 8, 8), "gradcam")


def test_the_trial_forward_is_cached_and_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    model = HeadFirst().train()
    calls = []
    model.stem.register_forward_pre_hook(lambda *a: calls.append(1))
    wrapped = limelight.wrap(model)
    wrapped.canonical(torch.randn(2, 3, 8, 8))
    assert calls == []  # a convolution takes 3 channels: no trial needed
    for _ in range(3):
        with pytest.raises(InputError, match="'stem'"):
            wrapped.canonical(torch.randn(2, 8, 8, 3))
    assert len(calls) == 1  # one trial per model and input shape, stopped at the stem
    with pytest.raises(InputError, match="'stem'"):
        wrapped.canonical(torch.randn(2, 10, 10, 3))
    assert len(calls) == 2
    assert model.training and all(m.training for m in model.modules())
    assert len(model.stem._forward_pre_hooks) == 1  # the test's own: the trial's hooks are gone


# -- (N, H, W) grayscale batches --------------------------------------------------------------
class Gray(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 6, 3, padding=1)
        self.fc = torch.nn.Linear(6, 3)

    def forward(self, x):  # (N, H, W): the channel axis is added here
        return self.fc(torch.relu(self.conv(x.unsqueeze(1))).mean(dim=(2, 3)))


def test_grayscale_batches_without_channel_axis():
    torch.manual_seed(0)
    model = Gray()
    x = torch.randn(2, 12, 12, generator=torch.Generator().manual_seed(0))
    wrapped = limelight.wrap(model)
    assert wrapped.canonical(x).shape == (2, 12, 12)  # kept as it is: (N, H, W)
    exp = limelight.explain(model, x, "gradcam", layer="conv")
    assert exp.values.shape == (2, 12, 12)
    ref = torch_gradcam(model, model.conv, x, exp.targets, "bilinear", (12, 12))  # hooks see (N, C, H, W)
    np.testing.assert_allclose(exp.values, ref, atol=1e-5)
    assert limelight.explain(model, x, "gradcam").params["layer"] == "conv"
    shap = limelight.explain(model, x, "shap-gradient", background=torch.zeros(4, 12, 12), nsamples=4, seed=0)
    assert shap.values.shape[-2:] == (12, 12)


# -- 1-D signals (N, C, L) ----------------------------------------------------------------------
def signal_models():
    torch.manual_seed(0)
    tm = torch.nn.Sequential(
        torch.nn.Conv1d(2, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool1d(2),
        torch.nn.Conv1d(6, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool1d(1),
        torch.nn.Flatten(), torch.nn.Linear(8, 3),
    ).eval()
    return tm


def test_signals_are_channels_last_views_and_give_1d_maps():
    tm = signal_models()
    x = torch.randn(3, 2, 16, generator=torch.Generator().manual_seed(0))
    wrapped = limelight.wrap(tm)
    xc = wrapped.canonical(x)
    assert xc.shape == (3, 16, 2) and xc.data_ptr() == x.data_ptr()  # a view, (N, L, C)
    np.testing.assert_allclose(wrapped.predict(xc).numpy(), tm(x).detach().numpy(), rtol=1e-6)
    assert wrapped.activations(xc, "4").shape == (3, 8, 8)  # (N, l, C)
    grads = wrapped.gradients(xc, resolve_target([0, 1, 2], 3))
    assert grads.gradients.shape == (3, 16, 2)  # input gradients in the canonical layout
    exp = limelight.explain(tm, x, "gradcam", targets=[0, 1, 2])
    assert exp.params["layer"] == "4" and exp.values.shape == (3, 16)
    np.testing.assert_allclose(exp.values, torch_gradcam(tm, tm[4], x, [0, 1, 2], "linear"), atol=1e-5)
    with pytest.raises(InputError, match=r"takes 2 channels in \(N, C, L\) layout.*permute\(0, 2, 1\)"):
        limelight.explain(tm, x.permute(0, 2, 1).contiguous(), "gradcam")


# -- volumes (N, C, D, H, W) --------------------------------------------------------------------
def volume_model(pool=True):
    torch.manual_seed(0)
    layers = [torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU()]
    layers += [torch.nn.MaxPool3d(2)] if pool else [torch.nn.Identity()]
    layers += [torch.nn.Conv3d(4, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool3d(1), torch.nn.Flatten(),
               torch.nn.Linear(6, 3)]
    return torch.nn.Sequential(*layers).eval()


def test_volumes_give_3d_maps_resized_trilinearly():
    tm = volume_model()
    x = torch.randn(2, 1, 8, 6, 10, generator=torch.Generator().manual_seed(0))
    xc = limelight.wrap(tm).canonical(x)
    assert xc.shape == (2, 8, 6, 10, 1)
    exp = limelight.explain(tm, x, "gradcam", targets=[1, 2])
    assert exp.params["layer"] == "4" and exp.values.shape == (2, 8, 6, 10)
    np.testing.assert_allclose(exp.values, torch_gradcam(tm, tm[4], x, [1, 2], "trilinear"), atol=1e-5)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam"])
def test_volumes_equal_pytorch_grad_cam(method):
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    references = {"gradcam": pgc.GradCAM, "gradcam++": pgc.GradCAMPlusPlus, "xgradcam": pgc.XGradCAM,
                  "hirescam": pgc.HiResCAM, "layercam": pgc.LayerCAM}
    # pytorch-grad-cam resizes 3-D maps with scipy.ndimage.zoom (a cubic spline); limelight
    # trilinearly: compared at the layer's own resolution (zoom factor 1)
    tm = volume_model(pool=False)
    x = torch.randn(2, 1, 6, 6, 6, generator=torch.Generator().manual_seed(0))
    ours = limelight.explain(tm, x, method, targets=[0, 2])
    with references[method](model=tm, target_layers=[tm[4]]) as cam:
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(0), ClassifierOutputTarget(2)])
    assert ours.values.shape == ref.shape == (2, 6, 6, 6) and (ref.reshape(2, -1).max(1) > 0.99).all()
    np.testing.assert_allclose(ours.values, ref, atol=1e-5)


# -- Keras twins ------------------------------------------------------------------------------
def keras_twin(tm, dims):
    keras = pytest.importorskip("keras")
    conv = {1: keras.layers.Conv1D, 3: keras.layers.Conv3D}[dims]
    pool = {1: keras.layers.MaxPooling1D, 3: keras.layers.MaxPooling3D}[dims]
    gap = {1: keras.layers.GlobalAveragePooling1D, 3: keras.layers.GlobalAveragePooling3D}[dims]
    convs = [m for m in tm if isinstance(m, torch.nn.modules.conv._ConvNd)]
    shape = {1: (16, 2), 3: (8, 6, 10, 1)}[dims]
    km = keras.Sequential([
        keras.Input(shape),
        conv(convs[0].out_channels, 3, padding="same", name="conv1"), keras.layers.ReLU(name="relu1"), pool(2, name="pool"),
        conv(convs[1].out_channels, 3, padding="same", name="conv2"), keras.layers.ReLU(name="relu2"), gap(name="gap"),
        keras.layers.Dense(3, name="fc"),
    ])
    order = (2, 1, 0) if dims == 1 else (2, 3, 4, 1, 0)
    for name, module in (("conv1", convs[0]), ("conv2", convs[1])):
        km.get_layer(name).set_weights([module.weight.detach().numpy().transpose(order), module.bias.detach().numpy()])
    km.get_layer("fc").set_weights([tm[-1].weight.detach().numpy().T, tm[-1].bias.detach().numpy()])
    return km


@pytest.mark.parametrize("dims", [1, 3])
@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "eigencam"])
def test_torch_and_keras_twins_agree_in_1d_and_3d(dims, method):
    tm = signal_models() if dims == 1 else volume_model()
    km = keras_twin(tm, dims)
    x = torch.randn(*((2, 2, 16) if dims == 1 else (2, 1, 8, 6, 10)), generator=torch.Generator().manual_seed(3))
    x_last = np.ascontiguousarray(x.numpy().transpose(0, *range(2, x.ndim), 1))
    np.testing.assert_allclose(km(x_last).numpy(), tm(x).detach().numpy(), rtol=1e-5, atol=1e-5)
    ours_torch = limelight.explain(tm, x, method, targets=[0, 2])
    ours_keras = limelight.explain(km, x_last, method, targets=[0, 2])
    assert ours_torch.params["layer"] == "4" and ours_keras.params["layer"] == "relu2"
    assert ours_torch.values.shape == ours_keras.values.shape == x_last.shape[:-1]
    assert (ours_torch.values.reshape(2, -1).std(1) > 0.01).all()
    np.testing.assert_allclose(ours_torch.values, ours_keras.values, atol=1e-5)


def test_keras_channels_first_hints_for_signals_and_volumes():
    pytest.importorskip("keras")
    km = keras_twin(volume_model(), 3)
    with pytest.raises(InputError, match=r"look channels-first \(N, C, D, H, W\).*transpose\(0, 2, 3, 4, 1\)"):
        limelight.explain(km, np.zeros((1, 1, 8, 6, 10), np.float32), "gradcam")
    km = keras_twin(signal_models(), 1)
    with pytest.raises(InputError, match=r"look channels-first \(N, C, L\).*transpose\(0, 2, 1\)"):
        limelight.explain(km, np.zeros((1, 2, 16), np.float32), "gradcam")
