"""The default CAM layer: the output of the last block that runs once per forward, never a
branch inside a residual block; the first norm of the last block of a vision transformer.

A regression list over real architectures in both frameworks (weights=None, small inputs),
each with its exact expected name and a finite, non-constant Grad-CAM map.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import limelight  # noqa: E402
from limelight.core.errors import LayerError  # noqa: E402
from limelight.core.layers import Traced, pick_default_layer  # noqa: E402


def informative(values):
    """A finite map in [0, 1] that is not constant in any sample."""
    flat = values.reshape(len(values), -1)
    return np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1 and (flat.std(axis=1) > 0.01).all()


# -- the rule on hand-made traces -------------------------------------------------------------
def test_descends_only_into_the_same_tensor():
    block = [  # a residual block: its last child has the block's shape but is another tensor
        Traced("stage.block.conv", (1, 4, 4, 8), output=1),
        Traced("stage.block.drop", (1, 4, 4, 8), output=2),
        Traced("stage.block", (1, 4, 4, 8), output=3),  # input + branch
        Traced("stage", (1, 4, 4, 8), output=3),
        Traced("pool", (1, 8), output=4),
    ]
    assert pick_default_layer(block, ".") == "stage.block"
    plain = [  # a container whose last child returns the very same tensor
        Traced("features.0", (1, 4, 4, 8), output=1),
        Traced("features.1", (1, 4, 4, 8), output=2),
        Traced("features", (1, 4, 4, 8), output=2),
    ]
    assert pick_default_layer(plain, ".") == "features.1"
    # without identities (a backend that reports none) nothing is descended into
    assert pick_default_layer([(n, s) for n, s, *_ in plain], ".") == "features"


def test_a_view_of_the_previous_output_names_the_layer_that_computed_it():
    trace = [
        Traced("norm", (1, 7, 7, 16), output=1, memory=(100, 784)),
        Traced("permute", (1, 7, 7, 16), output=2, memory=(100, 784)),  # a view: same memory
        Traced("pool", (1, 16), output=3, memory=(200, 16)),
    ]
    assert pick_default_layer(trace, ".") == "norm"
    trace[1] = Traced("permute", (1, 7, 7, 16), output=2, memory=(300, 784))  # a copy: its own
    assert pick_default_layer(trace, ".") == "permute"


def test_token_rule_picks_the_first_norm_of_the_last_block():
    tokens = (1, 17, 8)  # 4x4 patches of a 64x64 input and a class token
    trace = []
    for b in range(2):
        trace += [
            Traced(f"blocks.{b}.norm1", tokens, output=f"n{b}"),
            Traced(f"blocks.{b}.attn", tokens, output=f"a{b}"),
            Traced(f"blocks.{b}.mlp", tokens, output=f"m{b}"),
            Traced(f"blocks.{b}", tokens, output=f"b{b}"),
        ]
    trace += [Traced("blocks", tokens, output="b1"), Traced("norm", tokens, output="f"), Traced("head", (1, 5))]
    assert pick_default_layer(trace, ".", input_shape=(1, 64, 64, 3)) == "blocks.1.norm1"
    # without the input's shape token outputs do not count: no spatial layer at all
    with pytest.raises(LayerError, match="no layer with a spatial"):
        pick_default_layer(trace, ".")
    # a flat model (no block containers) keeps the last token layer
    flat = [Traced("norm1", tokens, output=1), Traced("add", tokens, output=2), Traced("norm", tokens, output=3)]
    assert pick_default_layer(flat, ".", input_shape=(1, 64, 64, 3)) == "norm"


# -- torchvision ------------------------------------------------------------------------------
TORCHVISION = [
    ("resnet18", "layer4.1"),
    pytest.param("densenet121", "features.norm5", marks=pytest.mark.slow),
    ("efficientnet_b0", "features.8.2"),
    ("mobilenet_v2", "features.18.2"),
    ("mobilenet_v3_small", "features.12.2"),
    # the block's ReLU on the sum: the same tensor as the block's output
    pytest.param("regnet_y_400mf", "trunk_output.block4.block4-5.activation", marks=pytest.mark.slow),
    # the block (input + branch), not features.7.2.stochastic_depth
    pytest.param("convnext_tiny", "features.7.2", marks=pytest.mark.slow),
    pytest.param("swin_t", "norm", marks=pytest.mark.slow),  # the final norm over the last stage, (N, h, w, C)
]


@pytest.mark.parametrize("arch, layer", TORCHVISION)
def test_torchvision_default_layers(arch, layer):
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None, num_classes=10)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    exp = limelight.explain(model, x, "gradcam")
    assert exp.params["layer"] == layer
    assert exp.values.shape == (2, 64, 64) and informative(exp.values)


def test_torchvision_vit_default_layer():
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(image_size=64, patch_size=16, num_layers=3, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=5)
    torch.nn.init.normal_(model.heads.head.weight, std=0.02)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    exp = limelight.explain(model, x, "gradcam")
    assert exp.params["layer"] == "encoder.layers.encoder_layer_2.ln_1"  # not conv_proj, not encoder.ln
    assert informative(exp.values)
    # the final norm's patch tokens get no gradient: the map there is blank
    blank = limelight.explain(model, x, "gradcam", layer="encoder.ln", relu=False, normalize=False)
    assert np.abs(blank.values).max() == 0


class InplaceResidual(torch.nn.Module):
    """ConvNeXt's block pattern: ``result = branch(x); result += x`` (in place, after the
    branch's last module returned ``result``)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.drop = torch.nn.Identity()

    def forward(self, x):
        result = self.drop(self.conv(x))
        result += x
        return result


def test_an_inplace_residual_sum_is_not_its_branch():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), InplaceResidual(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    exp = limelight.explain(model, x, "gradcam", upsample=False, normalize=False, relu=False)
    assert exp.params["layer"] == "1"  # not "1.drop": same object, but changed in place after it returned
    acts = limelight.wrap(model).activations(limelight.wrap(model).canonical(x), "1")
    with torch.no_grad():
        ref = model[1](model[0](x)).permute(0, 2, 3, 1)
    np.testing.assert_allclose(acts.numpy(), ref.numpy(), rtol=1e-6, atol=1e-6)


def test_an_inplace_activation_is_not_mistaken_for_a_view():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(inplace=True),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))
    assert limelight.explain(model, torch.randn(1, 3, 8, 8)).params["layer"] == "2"  # the ReLU, not the BatchNorm
    permuted = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torchvision.ops.Permute([0, 2, 3, 1]),
                                   torchvision.ops.Permute([0, 3, 1, 2]), torch.nn.AdaptiveAvgPool2d(1),
                                   torch.nn.Flatten(), torch.nn.Linear(4, 3))
    assert limelight.explain(permuted, torch.randn(1, 3, 8, 8)).params["layer"] == "0"  # views name the conv


def test_convnext_block_output_differs_from_its_branch():
    """Tried as a new user would: the default was the residual branch
    ``features.7.2.stochastic_depth``, whose map differs from the block's."""
    torch.manual_seed(0)
    model = torchvision.models.convnext_tiny(weights=None, num_classes=10)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    block = limelight.explain(model, x, "gradcam")
    branch = limelight.explain(model, x, "gradcam", layer="features.7.2.stochastic_depth")
    assert block.params["layer"] == "features.7.2"
    assert np.abs(block.values - branch.values).max() > 0.1
    # the block's activations are input + branch (what the next stage and the head see)
    wrapped = limelight.wrap(model)
    xc = wrapped.canonical(x)
    total = wrapped.activations(xc, "features.7.2")
    inner = wrapped.activations(xc, "features.7.2.stochastic_depth")
    before = wrapped.activations(xc, "features.7.1")
    np.testing.assert_allclose(total.numpy(), (inner + before).numpy(), rtol=1e-5, atol=1e-5)


# -- keras.applications ------------------------------------------------------------------------
KERAS = [
    pytest.param("ResNet50", "conv5_block3_out", marks=pytest.mark.slow),
    pytest.param("DenseNet121", "relu", marks=pytest.mark.slow),
    pytest.param("EfficientNetB0", "top_activation", marks=pytest.mark.slow),
    pytest.param("MobileNetV2", "out_relu", marks=pytest.mark.slow),
    # the block output is ``inputs + branch``, a keras.ops Add (auto-named add, add_17, ...),
    # not the branch's last layer ``..._block_2_identity``
    pytest.param("ConvNeXtTiny", r"add(_\d+)?", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("factory, layer", KERAS)
def test_keras_applications_default_layers(factory, layer):
    keras = pytest.importorskip("keras")
    import re

    keras.utils.set_random_seed(0)  # the same weights every run (an unseeded MobileNetV2 once gave a flat map)
    model = getattr(keras.applications, factory)(weights=None, input_shape=(64, 64, 3), classes=10)
    x = np.random.RandomState(0).rand(2, 64, 64, 3).astype(np.float32)
    exp = limelight.explain(model, x, "gradcam")
    assert re.fullmatch(layer, exp.params["layer"]), exp.params["layer"]
    assert exp.values.shape == (2, 64, 64) and informative(exp.values)


def test_keras_residual_block_output_is_the_add_operation():
    """A functional Keras model whose residual sum is ``inputs + x`` (ConvNeXt's way): the
    default is that sum, not the branch's last layer."""
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    stem = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    branch = keras.layers.Conv2D(8, 3, padding="same", name="branch_conv")(stem)
    branch = keras.layers.Activation("linear", name="branch_identity")(branch)
    total = stem + branch
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(total)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(pooled))
    x = np.random.RandomState(0).rand(2, 16, 16, 3).astype(np.float32)
    exp = limelight.explain(model, x, "gradcam", upsample=False, normalize=False, relu=False)
    layer = exp.params["layer"]
    assert layer.startswith("add") and layer in limelight.wrap(model).layers()
    acts = limelight.wrap(model).activations(x, layer).numpy()
    ref = model.get_layer("stem")(x).numpy() + model.get_layer("branch_identity")(model.get_layer("branch_conv")(model.get_layer("stem")(x))).numpy()
    np.testing.assert_allclose(acts, ref, rtol=1e-5, atol=1e-6)
    branch_map = limelight.explain(model, x, "gradcam", layer="branch_identity", upsample=False, normalize=False, relu=False)
    assert np.abs(exp.values - branch_map.values).max() > 1e-3
