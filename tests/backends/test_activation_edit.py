"""SupportsActivationEdit (``outputs_with``) in the torch and Keras backends: the outputs of
the model with a layer's activations replaced, against references computed the plain way
(the whole model run on the input repeated, the layer's output replaced)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # torch before TensorFlow (the other order segfaults)
torchvision = pytest.importorskip("torchvision")

import limelight  # noqa: E402
from limelight.backends.torch import TorchModel  # noqa: E402
from limelight.core.cache import model_cache  # noqa: E402
from limelight.core.errors import InputError, LayerError, LimelightError  # noqa: E402
from limelight.core.model import SupportsActivationEdit  # noqa: E402
from tests.backends.test_torch import assert_unchanged, snapshot  # noqa: E402

# -- helpers -------------------------------------------------------------------------------


def ablated_np(acts):
    """(n, h, w, C) -> (n·C, h, w, C): for each sample, C copies with one channel zeroed each."""
    n, channels = acts.shape[0], acts.shape[-1]
    rows = np.repeat(acts, channels, axis=0)
    idx = np.arange(n * channels)
    rows[idx, ..., idx % channels] = 0
    return rows


def ablated_torch(acts):
    return torch.from_numpy(ablated_np(acts.detach().cpu().numpy())).to(acts.device, acts.dtype)


def torch_reference(module, layer, x_nchw, rows_nhwc):
    """The plain way: the input repeated for each row, a hook replacing the layer's output."""
    repeats = len(rows_nhwc) // len(x_nchw)
    replacement = rows_nhwc.permute(0, 3, 1, 2).contiguous() if rows_nhwc.ndim == 4 else rows_nhwc
    handle = module.get_submodule(layer).register_forward_hook(lambda m, i, o: replacement.clone())
    try:
        with torch.no_grad():
            return module(x_nchw.repeat_interleave(repeats, 0))
    finally:
        handle.remove()


def assert_close(a, b, tol=1e-5):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, float(np.abs(b).max())))


def edit_mode(native, layer):
    """The path outputs_with chose for (model, layer): 'prefix' or 'repeat'."""
    modes = {k[0:2]: v for k, v in model_cache(native).items() if isinstance(k, tuple) and k[0] == "activation edit"}
    return modes.get(("activation edit", layer))


# -- torch models --------------------------------------------------------------------------


class Residual(torch.nn.Module):
    """stem -> [conv1 bn1 relu conv2] + skip -> relu -> GAP -> fc: the skip connection
    adds a tensor computed before the layer to the edited rows (the broadcast path)."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU())
        self.conv1 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.relu = torch.nn.ReLU(inplace=True)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 5)

    def forward(self, x):
        s = self.stem(x)
        out = self.conv2(self.relu(self.bn1(self.conv1(s))))
        out = torch.relu(out + s)
        return self.fc(out.mean((2, 3)))


class Concat(torch.nn.Module):
    """stem -> cat([branch(stem), stem]) -> conv -> GAP -> fc: the concatenation with a
    tensor computed before the layer forces the repeated-input path."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.branch = torch.nn.Sequential(torch.nn.Conv2d(6, 4, 3, padding=1), torch.nn.ReLU())
        self.head = torch.nn.Conv2d(10, 7, 1)
        self.fc = torch.nn.Linear(7, 4)

    def forward(self, x):
        s = torch.relu(self.stem(x))
        out = self.head(torch.cat([self.branch(s), s], 1))
        return self.fc(out.mean((2, 3)))


def seeded(cls):
    torch.manual_seed(0)
    model = cls()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def small_inputs(n=2, size=12, seed=0):
    return torch.from_numpy(np.random.RandomState(seed).rand(n, 3, size, size).astype(np.float32))


# -- torch ---------------------------------------------------------------------------------


def test_torch_and_keras_backends_support_activation_edit(twin_cnn):
    tm, km = twin_cnn[:2]
    assert isinstance(limelight.wrap(tm), SupportsActivationEdit)
    assert isinstance(limelight.wrap(km), SupportsActivationEdit)


@pytest.mark.parametrize(
    ("cls", "layer", "mode"),
    [
        (Residual, "conv1", "prefix"),
        (Residual, "bn1", "prefix"),
        (Residual, "stem", "prefix"),
        (Concat, "branch", "repeat"),
    ],
)
@pytest.mark.parametrize("batch_size", [None, 3])
def test_torch_outputs_with_matches_repeated_input(cls, layer, mode, batch_size):
    model = seeded(cls)
    w = TorchModel(model)
    x_nchw = small_inputs()
    x = w.canonical(x_nchw)
    acts = w.activations(x, layer)
    rows = ablated_torch(acts)
    rows_before = rows.clone()
    out = w.outputs_with(x, layer, rows, batch_size=batch_size)
    assert out.shape == (len(rows), model.fc.out_features)
    assert_close(out.numpy(), torch_reference(model, layer, x_nchw, rows).numpy())
    assert torch.equal(rows, rows_before)  # in-place ops after the layer never reach the caller's rows
    assert edit_mode(model, layer) == mode
    # unedited activations: the model's own outputs (the second call reuses the cached path)
    again = w.outputs_with(x, layer, acts.repeat_interleave(2, 0), batch_size=batch_size)
    assert_close(again.numpy(), w.predict(x).repeat_interleave(2, 0).numpy())


@pytest.mark.parametrize("layer", ["layer4", "layer3.0.conv1"])
def test_torch_resnet18_outputs_with(layer):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    w = TorchModel(model)
    x_nchw = small_inputs(n=2, size=32)
    x = w.canonical(x_nchw)
    acts = w.activations(x, layer)
    keep = np.random.RandomState(1).rand(2 * 5, *acts.shape[1:]) > 0.3  # 5 random edits per sample
    rows = acts.repeat_interleave(5, 0) * torch.from_numpy(keep).float()
    runs = []
    handle = model.layer1[0].conv1.register_forward_hook(lambda m, args, out: runs.append(len(out)))
    try:
        out = w.outputs_with(x, layer, rows, batch_size=4)  # 2 chunks per sample, the prefix once
    finally:
        handle.remove()
    assert runs == [1, 2, 1]  # sample 0, the probe's check on 2 rows, sample 1
    assert_close(out.numpy(), torch_reference(model, layer, x_nchw, rows).numpy())
    assert edit_mode(model, layer) == "prefix"
    assert_close(w.outputs_with(x, layer, acts).numpy(), w.predict(x).numpy())


def test_torch_outputs_with_channels_last_model():
    model = seeded(Residual).to(memory_format=torch.channels_last)
    w = TorchModel(model)
    x_nchw = small_inputs()
    x = w.canonical(x_nchw)
    rows = ablated_torch(w.activations(x, "conv1"))
    assert_close(w.outputs_with(x, "conv1", rows).numpy(), torch_reference(model, "conv1", x_nchw, rows).numpy())


@pytest.mark.parametrize(("cls", "layer"), [(Residual, "conv1"), (Concat, "branch")])
@pytest.mark.parametrize("batch_size", [1, 3, 7])
def test_torch_outputs_with_respects_batch_size(cls, layer, batch_size):
    model = seeded(cls)
    w = TorchModel(model)
    x = w.canonical(small_inputs(n=3))
    rows = ablated_torch(w.activations(x, layer))
    seen = []
    handle = model.fc.register_forward_pre_hook(lambda m, args: seen.append(len(args[0])))
    try:
        out = w.outputs_with(x, layer, rows, batch_size=batch_size)
    finally:
        handle.remove()
    assert len(out) == len(rows)
    assert seen and max(seen) <= batch_size
    stem_runs = []
    inner = model.stem[0] if cls is Residual else model.stem
    handle = inner.register_forward_hook(lambda m, args, out: stem_runs.append(len(out)))
    try:
        again = w.outputs_with(x, layer, rows, batch_size=batch_size)  # the path is cached now
    finally:
        handle.remove()
    assert torch.equal(again, out)
    if cls is Residual and batch_size > 1:  # the network before the layer ran once per sample, at batch 1
        assert stem_runs == [1, 1, 1]


def test_torch_model_left_unchanged_also_after_errors():
    model = seeded(Residual).train()
    model.bn1.eval()  # a mixed state, restored exactly
    before = snapshot(model)
    w = TorchModel(model)
    x = w.canonical(small_inputs())
    rows = ablated_torch(w.activations(x, "conv1"))
    w.outputs_with(x, "conv1", rows, batch_size=5)
    assert_unchanged(model, before)
    with pytest.raises(InputError):
        w.outputs_with(x, "conv1", rows[..., :3])
    assert_unchanged(model, before)
    assert model.training and not model.bn1.training
    assert all(not m._forward_hooks for m in model.modules())


def test_torch_outputs_with_errors():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    w = TorchModel(model)
    x = w.canonical(small_inputs(n=2, size=32))
    acts = w.activations(x, "layer4")
    with pytest.raises(InputError, match=r"\(n·R, 1, 1, 512\)"):
        w.outputs_with(x, "layer4", acts[..., :100])
    with pytest.raises(InputError, match="multiple of 2"):
        w.outputs_with(x, "layer4", acts[:1])
    with pytest.raises(LayerError, match="unknown layer"):
        w.outputs_with(x, "layer9", acts)
    with pytest.raises(LayerError, match="more than once"):  # BasicBlock's relu runs twice
        w.outputs_with(x, "layer3.0.relu", w.activations(x, "layer3.0.bn1").repeat_interleave(2, 0))
    assert all(not m._forward_hooks for m in model.modules())


# -- Keras ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras_models():
    """A functional CNN with an Add skip around the layer, and one with a Concatenate."""
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    layers = keras.layers
    inp = keras.Input((12, 12, 3))
    stem = layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inp)
    a = layers.Conv2D(8, 3, padding="same", name="conv1")(stem)
    a = layers.BatchNormalization(name="bn1")(a)
    a = layers.ReLU(name="relu1")(a)
    b = layers.Conv2D(8, 3, padding="same", name="conv2")(a)
    out = layers.ReLU(name="relu2")(layers.Add(name="add")([b, stem]))
    out = layers.Dense(5, name="fc")(layers.GlobalAveragePooling2D(name="gap")(out))
    residual = keras.Model(inp, out)
    bn = residual.get_layer("bn1")
    bn.moving_mean.assign(np.random.RandomState(0).uniform(-0.5, 0.5, 8).astype(np.float32))

    inp = keras.Input((12, 12, 3))
    stem = layers.Conv2D(6, 3, padding="same", activation="relu", name="stem")(inp)
    branch = layers.Conv2D(4, 3, padding="same", activation="relu", name="branch")(stem)
    out = layers.Conv2D(7, 1, name="head")(layers.Concatenate(name="cat")([branch, stem]))
    out = layers.Dense(4, name="fc")(layers.GlobalAveragePooling2D(name="gap")(out))
    concat = keras.Model(inp, out)
    return residual, concat


def keras_suffix(model, layer, rows, x):
    """The reference: the layers after ``layer`` called eagerly on the edited rows and the
    repeated earlier tensors."""
    repeats = len(rows) // len(x)
    stem = np.repeat(np.asarray(model.get_layer("stem")(x)), repeats, axis=0)
    g = model.get_layer
    if layer == "relu1":
        out = g("relu2")(g("add")([g("conv2")(rows), stem]))
    else:  # "branch" of the concat model
        out = g("head")(g("cat")([rows, stem]))
    return np.asarray(g("fc")(g("gap")(out)))


@pytest.mark.parametrize(("which", "layer", "mode"), [(0, "relu1", "prefix"), (1, "branch", "repeat")])
@pytest.mark.parametrize("batch_size", [None, 3])
def test_keras_outputs_with_matches_reference(keras_models, which, layer, mode, batch_size):
    model = keras_models[which]
    w = limelight.wrap(model)
    x_np = np.random.RandomState(0).rand(2, 12, 12, 3).astype(np.float32)
    x = w.canonical(x_np)
    acts = w.activations(x, layer)
    rows = ablated_np(w.to_numpy(acts))
    out = w.outputs_with(x, layer, w.asarray(rows), batch_size=batch_size)
    assert tuple(out.shape) == (len(rows), model.output_shape[-1])
    assert_close(w.to_numpy(out), keras_suffix(model, layer, rows, x_np))
    assert edit_mode(model, layer) == mode
    same = w.outputs_with(x, layer, w.asarray(np.repeat(w.to_numpy(acts), 2, axis=0)), batch_size=batch_size)
    assert_close(w.to_numpy(same), np.repeat(w.to_numpy(w.predict(x)), 2, axis=0))


def test_keras_outputs_with_errors(keras_models):
    w = limelight.wrap(keras_models[0])
    x = w.canonical(np.random.RandomState(0).rand(2, 12, 12, 3).astype(np.float32))
    acts = w.to_numpy(w.activations(x, "relu1"))
    with pytest.raises(InputError, match=r"\(n·R, 12, 12, 8\)"):
        w.outputs_with(x, "relu1", w.asarray(acts[..., :3]))
    with pytest.raises(InputError, match="multiple of 2"):
        w.outputs_with(x, "relu1", w.asarray(acts[:1]))
    with pytest.raises(LayerError, match="unknown layer"):
        w.outputs_with(x, "relu9", w.asarray(acts))
    assert issubclass(InputError, LimelightError) and issubclass(LayerError, LimelightError)


def test_twins_agree_on_ablated_outputs(twin_cnn):
    tm, km, t_layer, k_layer, x_nchw, x_nhwc = twin_cnn
    t, k = limelight.wrap(tm), limelight.wrap(km)
    xt, xk = t.canonical(x_nchw), k.canonical(x_nhwc)
    rows = ablated_np(t.to_numpy(t.activations(xt, t_layer)))
    ot = t.to_numpy(t.outputs_with(xt, t_layer, t.asarray(rows), batch_size=6))
    ok = k.to_numpy(k.outputs_with(xk, k_layer, k.asarray(rows), batch_size=6))
    assert ot.shape == (4 * 16, 5)
    np.testing.assert_allclose(ot, ok, rtol=1e-5, atol=1e-5 * np.abs(ot).max())
