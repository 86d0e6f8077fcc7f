"""output=: structured outputs (dict, ModelOutput, tuple, Keras multi-output) and dense
(segmentation) outputs, with Region targets; parity with pytorch-grad-cam's
SemanticSegmentationTarget and torch-vs-Keras twins."""

import collections

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import limelight  # noqa: E402
from limelight import targets as T  # noqa: E402
from limelight.core.errors import InputError, ParameterError, TargetError  # noqa: E402
from limelight.core.outputs import select_output  # noqa: E402


class FakeModelOutput(collections.OrderedDict):
    """Like Hugging Face's ModelOutput: an OrderedDict whose set fields are also attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Net(torch.nn.Module):
    """Conv(3→8) ReLU GAP Linear(5), returning ``kind`` of structured output."""

    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.relu = torch.nn.ReLU()
        self.fc = torch.nn.Linear(8, 5)

    def forward(self, x):
        features = self.relu(self.conv(x))
        logits = self.fc(features.mean(dim=(2, 3)))
        if self.kind == "tensor":
            return logits
        if self.kind == "dict":
            return {"logits": logits, "features": features}
        if self.kind == "ambiguous dict":
            return {"scores": logits, "features": features}
        if self.kind == "model output":
            return FakeModelOutput(logits=logits, hidden_states=features.mean(dim=(2, 3)))
        if self.kind == "tuple":
            return logits, features
        raise AssertionError(self.kind)


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    base = Net("tensor").eval()
    models = {}
    for kind in ("tensor", "dict", "ambiguous dict", "model output", "tuple"):
        m = Net(kind).eval()
        m.load_state_dict(base.state_dict())
        models[kind] = m
    x = torch.rand(3, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    reference = limelight.explain(base, x, "gradcam", targets=[0, 1, 4], layer="relu")
    return models, x, reference


@pytest.mark.parametrize(
    "kind, output",
    [
        ("dict", None),  # the default: "logits"
        ("dict", "logits"),
        ("ambiguous dict", "scores"),
        ("ambiguous dict", 0),  # a position among the mapping's values
        ("model output", None),  # a ModelOutput's logits
        ("model output", "logits"),
        ("tuple", 0),
        ("tuple", -2),
        ("tuple", lambda out: out[0]),
        ("ambiguous dict", lambda out: out["scores"]),
    ],
)
def test_output_selects_the_same_logits(nets, kind, output):
    models, x, reference = nets
    exp = limelight.explain(models[kind], x, "gradcam", targets=[0, 1, 4], layer="relu", output=output)
    np.testing.assert_array_equal(exp.values, reference.values)
    np.testing.assert_array_equal(exp.outputs, reference.outputs)
    if output is None:
        assert "output" not in exp.params
    elif callable(output):
        assert exp.params["output"].endswith("<lambda>")
    else:
        assert exp.params["output"] == output


def test_model_output_attribute_and_other_fields(nets):
    models, x, _ = nets
    hidden = limelight.explain(models["model output"], x, "gradcam", targets=2, layer="relu", output="hidden_states")
    assert hidden.outputs.shape == (3, 8)
    by_position = limelight.explain(models["model output"], x, "gradcam", targets=2, layer="relu", output=1)
    np.testing.assert_array_equal(hidden.values, by_position.values)


def test_ambiguous_outputs_list_the_choices(nets):
    models, x, _ = nets
    with pytest.raises(InputError, match=r"a tuple of 2 \(0: \(\d+, 5\), 1: \(\d+, 8, 12, 12\)\).*output=") as err:
        limelight.explain(models["tuple"], x, "gradcam", layer="relu")
    assert "wrap it" not in str(err.value)
    with pytest.raises(InputError, match=r"'scores': \(\d+, 5\), 'features': .*output="):
        limelight.explain(models["ambiguous dict"], x, "gradcam", layer="relu")
    with pytest.raises(InputError, match=r"output='logit' is not among .*'scores'"):
        limelight.explain(models["ambiguous dict"], x, "gradcam", layer="relu", output="logit")
    with pytest.raises(InputError, match="output=2 is out of range"):
        limelight.explain(models["tuple"], x, "gradcam", layer="relu", output=2)
    with pytest.raises(InputError, match="output=0 picks a position"):
        limelight.explain(models["tensor"], x, "gradcam", layer="relu", output=0)
    with pytest.raises(InputError, match="gave a str, not a tensor"):
        limelight.explain(models["tuple"], x, "gradcam", layer="relu", output=lambda out: "logits")
    with pytest.raises(ParameterError, match="output= takes"):
        limelight.explain(models["tuple"], x, "gradcam", layer="relu", output=1.5)


def test_wrap_stores_the_selector(nets):
    models, x, reference = nets
    wrapped = limelight.wrap(models["tuple"], output=0)
    assert wrapped.output == 0
    exp = limelight.explain(wrapped, x, "gradcam", targets=[0, 1, 4], layer="relu")
    np.testing.assert_array_equal(exp.values, reference.values)
    assert exp.params["output"] == 0
    other = limelight.wrap(wrapped, output=1)  # a copy: the first wrapper keeps its choice
    assert other is not wrapped and other.output == 1 and wrapped.output == 0
    assert limelight.wrap(wrapped) is wrapped


def test_select_output_is_framework_free():
    is_array = lambda a: isinstance(a, np.ndarray)  # noqa: E731
    a, b = np.zeros((2, 3)), np.ones((2, 4))
    assert select_output(a, None, is_array=is_array) is a
    assert select_output({"out": a, "aux": b}, None, is_array=is_array) is a  # torchvision segmentation
    assert select_output({"logits": a, "out": b}, None, is_array=is_array) is a
    assert select_output([a], None, is_array=is_array) is a  # one tensor: unambiguous
    assert select_output([a, b], "second", is_array=is_array, names=["first", "second"]) is b
    named = collections.namedtuple("Named", "logits features")(a, b)
    assert select_output(named, "features", is_array=is_array) is b
    with pytest.raises(InputError, match=r"0 \('first'\): \(2, 3\), 1 \('second'\): \(2, 4\)"):
        select_output([a, b], None, is_array=is_array, names=["first", "second"])


# -- dense outputs ----------------------------------------------------------------------------


class DenseNet(torch.nn.Module):
    """Conv(3→8) ReLU Conv1x1(8→4): a dense (N, 4, H, W) output, as a dict {"out", "aux"}."""

    def __init__(self, as_dict=True):
        super().__init__()
        self.as_dict = as_dict
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.relu = torch.nn.ReLU()
        self.head = torch.nn.Conv2d(8, 4, 1)

    def forward(self, x):
        out = self.head(self.relu(self.conv(x)))
        return {"out": out, "aux": out.mean(dim=1)} if self.as_dict else out


@pytest.fixture(scope="module")
def dense():
    torch.manual_seed(1)
    model = DenseNet().eval()
    x = torch.rand(2, 3, 10, 10, generator=torch.Generator().manual_seed(2))
    mask = np.zeros((10, 10), np.float32)
    mask[2:7, 3:8] = 1
    return model, x, mask


def test_dense_outputs_are_channels_last_and_need_a_region(dense):
    model, x, mask = dense
    with pytest.raises(TargetError, match=r"dense, \(N, 10, 10, 4\).*targets.Region"):
        limelight.explain(model, x, "gradcam", layer="relu")
    exp = limelight.explain(model, x, "gradcam", layer="relu", targets=T.Region(2, mask), relu=False, normalize=False)
    out = model(x)["out"].detach()
    np.testing.assert_allclose(exp.outputs, out.permute(0, 2, 3, 1).numpy(), rtol=1e-6)
    np.testing.assert_array_equal(exp.targets, [2, 2])
    # Grad-CAM by hand: d(Σ mask · out[:, 2]) / d relu = mask · w_head[2, c]
    act = model.relu(model.conv(x)).detach()
    grad = torch.from_numpy(mask)[None, None] * model.head.weight[2, :, 0, 0].detach()[None, :, None, None]
    by_hand = (act * grad.mean(dim=(2, 3), keepdim=True)).sum(1)
    np.testing.assert_allclose(exp.values, by_hand.numpy(), rtol=1e-5, atol=1e-6)


def test_shap_deep_completeness_on_a_region(dense):
    model, x, mask = dense
    bg = torch.rand(3, 3, 10, 10, generator=torch.Generator().manual_seed(3))
    masks = np.stack([mask, 1 - mask])  # one mask per sample
    exp = limelight.explain(model, x, "shap-deep", background=bg, targets=T.Region(1, masks))
    scores = (model(x)["out"][:, 1].detach().numpy() * masks).sum((1, 2))
    base = np.stack([(model(bg)["out"][:, 1].detach().numpy() * m).sum((1, 2)).mean() for m in masks])
    np.testing.assert_allclose(exp.base_values, base, rtol=1e-5)
    np.testing.assert_allclose(exp.values.sum(axis=(1, 2, 3)), scores - base, rtol=1e-4, atol=1e-4)


def test_gradient_free_methods_score_regions(dense):
    model, x, mask = dense
    rise = limelight.explain(model, x, "rise", targets=T.Region(0, mask), n_masks=16, seed=0)
    assert rise.values.shape == (2, 10, 10) and np.isfinite(rise.values).all()
    for method in ("scorecam", "ablationcam"):
        exp = limelight.explain(model, x, method, layer="relu", targets=T.Region(0, mask), normalize=False, relu=False)
        assert exp.values.shape == (2, 10, 10) and np.ptp(exp.values) > 0
    # Ablation-CAM on a linear head: w_c = (s - s without channel c) / s, s = Σ mask · out[..., 0]
    act = model.relu(model.conv(x)).detach()
    contrib = (act * torch.from_numpy(mask)).sum((2, 3)) * model.head.weight[0, :, 0, 0].detach()  # (N, C)
    s = contrib.sum(1, keepdim=True) + model.head.bias[0].detach() * mask.sum()
    by_hand = ((contrib / s)[:, :, None, None] * act).sum(1).numpy()
    np.testing.assert_allclose(exp.values, by_hand, rtol=1e-4, atol=1e-5 * np.abs(by_hand).max())


@pytest.mark.slow
def test_region_on_fcn_resnet50_equals_pytorch_grad_cam():
    torchvision = pytest.importorskip("torchvision")
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    torch.manual_seed(0)
    model = torchvision.models.segmentation.fcn_resnet50(
        weights=None, weights_backbone=None, num_classes=5, aux_loss=False
    ).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        seg = model(x)["out"][0]
    category = int(seg.argmax(0).flatten().mode().values)
    mask = (seg.argmax(0) == category).numpy().astype(np.float32)
    assert 0 < mask.sum() < mask.size

    class Out(torch.nn.Module):  # pytorch-grad-cam's tutorial wrapper
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(x)["out"]

    with pgc.GradCAM(model=Out(model), target_layers=[model.backbone.layer4]) as cam:
        ref = cam(input_tensor=x, targets=[SemanticSegmentationTarget(category, mask)])
    ours = limelight.explain(model, x, "gradcam", targets=T.Region(category, mask), layer="backbone.layer4")
    assert ours.values.shape == ref.shape == (1, 64, 64)
    assert ref.max() > 0.99
    np.testing.assert_allclose(ours.values, ref, atol=1e-5)
    assert ours.outputs.shape == (1, 64, 64, 5)


# -- Keras -------------------------------------------------------------------------------------


def _keras():
    pytest.importorskip("keras")
    import keras

    return keras


def test_keras_dense_twin_agrees_on_a_region(dense):
    keras = _keras()
    torch_model, x, mask = dense
    inputs = keras.Input((10, 10, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    h = keras.layers.ReLU(name="relu")(h)
    out = keras.layers.Conv2D(4, 1, name="head")(h)
    km = keras.Model(inputs, out)
    for name, conv in (("conv", torch_model.conv), ("head", torch_model.head)):
        km.get_layer(name).set_weights([conv.weight.detach().numpy().transpose(2, 3, 1, 0), conv.bias.detach().numpy()])
    x_nhwc = x.permute(0, 2, 3, 1).numpy().copy()
    masks = np.stack([mask, np.roll(mask, 2, axis=1)])
    for target in (T.Region(3, mask), T.Region(1, masks)):
        et = limelight.explain(torch_model, x, "gradcam", layer="relu", targets=target)
        ek = limelight.explain(km, x_nhwc, "gradcam", layer="relu", targets=target)
        assert et.values.max() > 0.99
        np.testing.assert_allclose(et.values, ek.values, atol=1e-5)
        np.testing.assert_allclose(et.outputs, ek.outputs, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(et.targets, ek.targets)
    with pytest.raises(TargetError, match="targets.Region"):
        limelight.explain(km, x_nhwc, "gradcam", layer="relu")


@pytest.fixture(scope="module")
def keras_two_outputs(nets):
    keras = _keras()
    models, x, reference = nets
    tm = models["tuple"]
    inputs = keras.Input((12, 12, 3))
    features = keras.layers.ReLU(name="relu")(keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs))
    logits = keras.layers.Dense(5, name="logits")(keras.layers.GlobalAveragePooling2D(name="gap")(features))
    km = keras.Model(inputs, [logits, features])
    km.get_layer("conv").set_weights([tm.conv.weight.detach().numpy().transpose(2, 3, 1, 0), tm.conv.bias.detach().numpy()])
    km.get_layer("logits").set_weights([tm.fc.weight.detach().numpy().T, tm.fc.bias.detach().numpy()])
    return km, x.permute(0, 2, 3, 1).numpy().copy(), reference


@pytest.mark.parametrize("output", [0, "logits", -2, lambda outs: outs[0]])
def test_keras_multi_output_by_name_or_index(keras_two_outputs, output):
    km, x, reference = keras_two_outputs
    exp = limelight.explain(km, x, "gradcam", targets=[0, 1, 4], layer="relu", output=output)
    np.testing.assert_allclose(exp.values, reference.values, atol=1e-5)
    np.testing.assert_allclose(exp.outputs, reference.outputs, rtol=1e-5, atol=1e-6)


def test_keras_multi_output_errors_list_the_output_names(keras_two_outputs):
    km, x, _ = keras_two_outputs
    with pytest.raises(InputError, match=r"0 \('logits'\): \(None, 5\), 1 \('relu'\).*output="):
        limelight.explain(km, x, "gradcam", layer="relu")
    with pytest.raises(InputError, match="output='scores' is not among"):
        limelight.explain(km, x, "gradcam", layer="relu", output="scores")
    # one wrapper per selector: a compiled function is not shared with another output=
    features = limelight.explain(km, x, "shap-gradient", output="relu", background=x[:1], nsamples=2,
                                 targets=T.Function(lambda xp, out: xp.mean(out, axis=(1, 2, 3))))
    assert features.outputs.shape == (3, 12, 12, 8)


def test_keras_dict_outputs(keras_two_outputs):
    keras = _keras()
    km, x, reference = keras_two_outputs
    as_dict = keras.Model(km.inputs, {"logits": km.outputs[0], "features": km.outputs[1]})
    exp = limelight.explain(as_dict, x, "gradcam", targets=[0, 1, 4], layer="relu")  # default: "logits"
    np.testing.assert_allclose(exp.values, reference.values, atol=1e-5)


def test_shap_partition_scores_regions(dense):
    model, x, mask = dense
    exp = limelight.explain(model, x, "shap-partition", targets=T.Region(2, mask), mask=0.0, max_evals=40)
    scores = (model(x)["out"][:, 2].detach().numpy() * mask).sum((1, 2))
    blank = (model(torch.zeros_like(x))["out"][:, 2].detach().numpy() * mask).sum((1, 2))
    np.testing.assert_allclose(exp.base_values, blank, rtol=1e-5, atol=1e-5)  # f(fully masked x)
    np.testing.assert_allclose(exp.values.sum(axis=(1, 2, 3)), scores - blank, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(exp.targets, [2, 2])
