"""Vision transformers: token layers reshaped to grids, Swin's channels-last stages, the
default layer of a ViT, ``reshape=``; parity with pytorch-grad-cam's reshape_transforms."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
pgc = pytest.importorskip("pytorch_grad_cam")

from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from torchvision.models.vision_transformer import VisionTransformer  # noqa: E402

import limelight  # noqa: E402
from limelight.core.errors import LayerError  # noqa: E402
from limelight.core.tokens import grid_from_reshape, infer_grid, is_channels_last, tokens_to_grid  # noqa: E402


# -- the framework-free rules ---------------------------------------------------------------
@pytest.mark.parametrize(
    "tokens, size, expected",
    [
        (197, (224, 224), (1, (14, 14))),  # ViT-B/16: class token
        (198, (224, 224), (2, (14, 14))),  # DeiT distilled: class + distillation
        (201, (224, 224), (5, (14, 14))),  # class + 4 registers
        (196, (224, 224), (0, (14, 14))),  # no prefix (global-pool ViTs without class token)
        (257, (224, 224), (1, (16, 16))),  # patch 14
        (1 + 14 * 20, (224, 320), (1, (14, 20))),  # non-square input
        (1 + 20 * 14, (320, 224), (1, (20, 14))),
        (13, (64, 48), (1, (4, 3))),
        (21, (64, 64), (5, (4, 4))),
    ],
)
def test_infer_grid(tokens, size, expected):
    assert infer_grid(tokens, size) == expected


def test_infer_grid_none_when_nothing_fits():
    assert infer_grid(7 * 11 + 20, (64, 64)) is None  # 97 tokens, no square grid after 0..8 prefix tokens
    assert infer_grid(197, (224, 224, 3)) is None  # not an (H, W)


def test_channels_last_stages_are_told_from_nchw_by_the_input_size():
    assert is_channels_last((1, 56, 56, 96), (224, 224))  # swin_t stage 1
    assert is_channels_last((1, 7, 7, 768), (224, 224))  # swin_t's final norm
    assert not is_channels_last((1, 768, 7, 7), (224, 224))  # NCHW conv output
    assert not is_channels_last((1, 512, 7, 10), (224, 320))  # NCHW, non-square
    assert is_channels_last((1, 7, 10, 512), (224, 320))
    assert not is_channels_last((1, 7, 7, 7), (224, 224))  # ambiguous: NCHW
    assert not is_channels_last((1, 56, 56, 96), None)  # no image input: NCHW


def test_reshape_grid_and_its_errors():
    assert grid_from_reshape((14, 14), 197) == (1, (14, 14))
    assert grid_from_reshape([14, 14], 201) == (5, (14, 14))
    for bad in ((0, 14), (14.5, 14), "14", (True, 14), ()):
        with pytest.raises(LayerError, match="reshape must be a tuple of positive ints"):
            grid_from_reshape(bad, 197)
    with pytest.raises(LayerError, match=r"needs 225 tokens, but the layer outputs 197"):
        grid_from_reshape((15, 15), 197)


def test_tokens_to_grid_is_pytorch_grad_cams_reshape():
    import array_api_compat.numpy as xp

    a = np.arange(2 * 17 * 3, dtype=np.float32).reshape(2, 17, 3)
    ours = tokens_to_grid(xp, a, 1, (4, 4))
    np.testing.assert_array_equal(ours, a[:, 1:, :].reshape(2, 4, 4, 3))
    grads = np.arange(2 * 2 * 17 * 3, dtype=np.float32).reshape(2, 2, 17, 3)  # (N, T, tokens, C)
    np.testing.assert_array_equal(tokens_to_grid(xp, grads, 1, (4, 4)), grads[:, :, 1:].reshape(2, 2, 4, 4, 3))


# -- torchvision ViT --------------------------------------------------------------------------
def vit_reshape(tensor, height, width):
    """pytorch-grad-cam's ViT tutorial reshape_transform."""
    result = tensor[:, 1:, :].reshape(tensor.size(0), height, width, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


@pytest.fixture(scope="module")
def small_vit():
    torch.manual_seed(0)
    model = VisionTransformer(image_size=64, patch_size=16, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=5)
    torch.nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision zero-initialises the head
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    return model.eval(), x


@pytest.mark.parametrize("method, reference", [("gradcam", pgc.GradCAM), ("gradcam++", pgc.GradCAMPlusPlus), ("layercam", pgc.LayerCAM)])
def test_small_vit_default_layer_and_parity_with_pytorch_grad_cam(small_vit, method, reference):
    model, x = small_vit
    ours = limelight.explain(model, x, method, targets=[1, 3])
    assert ours.params["layer"] == "encoder.layers.encoder_layer_1.ln_1"  # the first norm of the last block
    assert ours.params["reshape"] is None
    layer = model.encoder.layers[-1].ln_1
    with reference(model=model, target_layers=[layer], reshape_transform=lambda t: vit_reshape(t, 4, 4)) as cam:
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(1), ClassifierOutputTarget(3)])
    assert ours.values.shape == ref.shape == (2, 64, 64)
    assert np.isfinite(ours.values).all() and (ours.values.reshape(2, -1).std(axis=1) > 0.05).all()
    np.testing.assert_allclose(ours.values, ref, atol=1e-5)


def test_vit_encoder_blocks_are_accepted_and_reshape_overrides(small_vit):
    """Tried as a new user would: vit_b_16 picked ``conv_proj`` and refused every encoder
    block as "not spatial"."""
    model, x = small_vit
    block = "encoder.layers.encoder_layer_0"
    auto = limelight.explain(model, x, "gradcam", layer=block, targets=[0, 0])
    given = limelight.explain(model, x, "gradcam", layer=block, targets=[0, 0], reshape=(4, 4))
    assert given.params["reshape"] == (4, 4) and auto.params["layer"] == block
    np.testing.assert_array_equal(auto.values, given.values)
    with reference_cam(model, model.encoder.layers[0], lambda t: vit_reshape(t, 4, 4)) as cam:
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(0)] * 2)
    np.testing.assert_allclose(auto.values, ref, atol=1e-5)
    # a grid of 2x8 is another reading of the same 16 patch tokens: a different map
    other = limelight.explain(model, x, "gradcam", layer=block, targets=[0, 0], reshape=(2, 8), upsample=False)
    assert other.values.shape == (2, 2, 8)
    with pytest.raises(LayerError, match=r"reshape=\(5, 5\) needs 25 tokens, but the layer outputs 17"):
        limelight.explain(model, x, "gradcam", layer=block, reshape=(5, 5))
    with pytest.raises(LayerError, match="reshape= arranges token layers.*conv_proj"):
        limelight.explain(model, x, "gradcam", layer="conv_proj", reshape=(4, 4))


def reference_cam(model, layer, reshape):
    return pgc.GradCAM(model=model, target_layers=[layer], reshape_transform=reshape)


def test_tokens_that_fit_no_grid_ask_for_reshape():
    class Tokens(torch.nn.Module):  # 3 "tokens" of an image: no grid of a 32x32 input after 0..8 prefix tokens
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Linear(3 * 32 * 32, 3 * 8)
            self.norm = torch.nn.LayerNorm(8)
            self.head = torch.nn.Linear(8, 2)

        def forward(self, x):
            tokens = self.norm(self.embed(x.flatten(1)).reshape(-1, 3, 8))
            return self.head(tokens.mean(1))

    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(LayerError, match=r"3 tokens, which form no grid.*pass reshape=\(h, w\)"):
        limelight.explain(Tokens(), x, "gradcam", layer="norm")
    exp = limelight.explain(Tokens(), x, "gradcam", layer="norm", reshape=(1, 3), upsample=False)
    assert exp.values.shape == (1, 1, 3)


@pytest.mark.slow
def test_vit_b_16_default_layer_and_parity():
    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(weights=None).eval()
    torch.nn.init.normal_(model.heads.head.weight, std=0.02)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    ours = limelight.explain(model, x, "gradcam", targets=[7])
    assert ours.params["layer"] == "encoder.layers.encoder_layer_11.ln_1"
    with reference_cam(model, model.encoder.layers[-1].ln_1, lambda t: vit_reshape(t, 14, 14)) as cam:
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(7)])
    assert np.isfinite(ours.values).all() and ours.values.std() > 0.05
    np.testing.assert_allclose(ours.values, ref, atol=1e-5)
    block = limelight.explain(model, x, "gradcam", layer="encoder.layers.encoder_layer_11", reshape=(14, 14))
    assert block.params["layer"] == "encoder.layers.encoder_layer_11" and np.isfinite(block.values).all()


# -- torchvision Swin ------------------------------------------------------------------------
def swin_reshape(tensor):
    """pytorch-grad-cam's reshape for torchvision Swin: stages are (N, h, w, C) already."""
    return tensor.permute(0, 3, 1, 2)


@pytest.mark.slow
@pytest.mark.parametrize("method, reference", [("gradcam", pgc.GradCAM), ("hirescam", pgc.HiResCAM)])
def test_swin_t_default_layer_and_parity(method, reference):
    torch.manual_seed(0)
    model = torchvision.models.swin_t(weights=None, num_classes=5).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ours = limelight.explain(model, x, method, targets=[2])
    # the final norm over the last stage (the Permute module after it is a view of its output)
    assert ours.params["layer"] == "norm"
    with reference(model=model, target_layers=[model.norm], reshape_transform=swin_reshape) as cam:
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(2)])
    assert np.isfinite(ours.values).all() and ours.values.std() > 0.05
    np.testing.assert_allclose(ours.values, ref, atol=1e-5)
    # a stage inside: (N, h, w, C) recognised as channels-last
    stage = limelight.explain(model, x, method, targets=[2], layer="features.5")
    with reference(model=model, target_layers=[model.features[5]], reshape_transform=swin_reshape) as cam:
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(2)])
    np.testing.assert_allclose(stage.values, ref, atol=1e-5)
    acts = limelight.wrap(model).activations(limelight.wrap(model).canonical(x), "features.5")
    assert tuple(acts.shape) == (1, 4, 4, 384)


# -- timm --------------------------------------------------------------------------------------
def timm_models():
    timm = pytest.importorskip("timm")
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.swin_transformer import SwinTransformer
    from timm.models.vision_transformer import VisionTransformer as TimmViT

    common = dict(img_size=64, patch_size=16, embed_dim=32, depth=2, num_heads=2, num_classes=5)
    return {
        "vit": (lambda: TimmViT(**common), 1),
        "vit_reg4": (lambda: TimmViT(reg_tokens=4, **common), 5),
        "deit_distilled": (lambda: VisionTransformerDistilled(**common), 2),
        "swin": (
            lambda: SwinTransformer(img_size=64, patch_size=4, window_size=4, embed_dim=16, depths=(1, 1), num_heads=(2, 2), num_classes=5),
            None,
        ),
    }, timm


@pytest.mark.parametrize("name", ["vit", "vit_reg4", "deit_distilled"])
def test_timm_vits_default_layer_and_parity(name):
    models, _ = timm_models()
    factory, prefix = models[name]
    torch.manual_seed(0)
    model = factory().eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ours = limelight.explain(model, x, "gradcam", targets=[1, 4])

    def reshape(t):  # pytorch-grad-cam's ViT reshape, with this model's prefix tokens
        return t[:, prefix:, :].reshape(t.size(0), 4, 4, t.size(2)).permute(0, 3, 1, 2)

    assert ours.params["layer"] == "blocks.1.norm1"
    with pgc.GradCAM(model=model, target_layers=[model.blocks[-1].norm1], reshape_transform=reshape) as cam:
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(1), ClassifierOutputTarget(4)])
    assert np.isfinite(ours.values).all() and (ours.values.reshape(2, -1).std(axis=1) > 0.05).all()
    np.testing.assert_allclose(ours.values, ref, atol=1e-5)


def test_timm_vit_on_a_non_square_input():
    models, timm = timm_models()
    from timm.models.vision_transformer import VisionTransformer as TimmViT

    torch.manual_seed(0)
    model = TimmViT(img_size=(64, 48), patch_size=16, embed_dim=32, depth=2, num_heads=2, num_classes=5, reg_tokens=2).eval()
    x = torch.randn(2, 3, 64, 48, generator=torch.Generator().manual_seed(0))
    ours = limelight.explain(model, x, "gradcam", targets=[0, 1])

    def reshape(t):  # 3 prefix tokens (class + 2 registers), a 4x3 grid
        return t[:, 3:, :].reshape(t.size(0), 4, 3, t.size(2)).permute(0, 3, 1, 2)

    assert ours.params["layer"] == "blocks.1.norm1" and ours.values.shape == (2, 64, 48)
    with pgc.GradCAM(model=model, target_layers=[model.blocks[-1].norm1], reshape_transform=reshape) as cam:
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(0), ClassifierOutputTarget(1)])
    assert (ours.values.reshape(2, -1).std(axis=1) > 0.05).all()
    np.testing.assert_allclose(ours.values, ref, atol=1e-5)


def test_timm_swin_default_layer_and_parity():
    models, _ = timm_models()
    torch.manual_seed(0)
    model = models["swin"][0]().eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ours = limelight.explain(model, x, "gradcam", targets=[3])
    assert ours.params["layer"] == "norm"  # timm's final norm over the last stage, (N, h, w, C)
    with pgc.GradCAM(model=model, target_layers=[model.norm], reshape_transform=swin_reshape) as cam:
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(3)])
    assert np.isfinite(ours.values).all() and ours.values.std() > 0.05
    np.testing.assert_allclose(ours.values, ref, atol=1e-5)


# -- a Keras ViT ------------------------------------------------------------------------------
def keras_vit():
    keras = pytest.importorskip("keras")

    class ClassToken(keras.layers.Layer):
        def build(self, input_shape):
            self.token = self.add_weight(shape=(1, 1, input_shape[-1]), initializer="random_normal")

        def call(self, x):
            token = keras.ops.broadcast_to(self.token, (keras.ops.shape(x)[0], 1, x.shape[-1]))
            return keras.ops.concatenate([token, x], axis=1)

    class Block(keras.layers.Layer):
        def __init__(self, dim, **kwargs):
            super().__init__(**kwargs)
            self.norm1 = keras.layers.LayerNormalization(epsilon=1e-6, name="norm1")
            self.attn = keras.layers.MultiHeadAttention(num_heads=2, key_dim=dim // 2, name="attn")
            self.norm2 = keras.layers.LayerNormalization(epsilon=1e-6, name="norm2")
            self.fc1 = keras.layers.Dense(2 * dim, activation="gelu", name="fc1")
            self.fc2 = keras.layers.Dense(dim, name="fc2")

        def call(self, x):
            y = self.norm1(x)
            x = x + self.attn(y, y)
            return x + self.fc2(self.fc1(self.norm2(x)))

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    patches = keras.layers.Conv2D(16, 8, strides=8, name="patch_embed")(inputs)
    tokens = keras.layers.Reshape((16, 16), name="flatten_patches")(patches)
    x = ClassToken(name="cls")(tokens)
    x = Block(16, name="block_0")(x)
    x = Block(16, name="block_1")(x)
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="norm")(x)
    x = keras.layers.Lambda(lambda t: t[:, 0], name="pool")(x)
    outputs = keras.layers.Dense(4, name="head")(x)
    return keras.Model(inputs, outputs)


@pytest.mark.slow
def test_keras_vit_default_layer_and_token_reshape():
    model = keras_vit()
    x = np.random.RandomState(0).rand(2, 32, 32, 3).astype(np.float32)
    exp = limelight.explain(model, x, "gradcam", targets=[0, 2], upsample=False, normalize=False, relu=False)
    assert exp.params["layer"] == "block_1/norm1"
    wrapped = limelight.wrap(model)
    from limelight.core.targets import resolve_target

    grads = wrapped.gradients(wrapped.canonical(x), resolve_target([0, 2], 2), "block_1/norm1")
    acts, g = grads.activations.numpy(), grads.gradients.numpy()
    assert acts.shape == g.shape == (2, 17, 16)
    acts, g = acts[:, 1:].reshape(2, 4, 4, 16), g[:, 1:].reshape(2, 4, 4, 16)  # the manual reshape
    manual = (acts * g.mean(axis=(1, 2), keepdims=True)).sum(-1)
    assert np.abs(manual).max() > 0 and manual.std() > 0
    np.testing.assert_allclose(exp.values, manual, rtol=1e-5, atol=1e-6 * np.abs(manual).max())
    full = limelight.explain(model, x, "gradcam", targets=[0, 2])
    assert full.values.shape == (2, 32, 32) and np.isfinite(full.values).all()
    assert (full.values.reshape(2, -1).std(axis=1) > 0.05).all()
    # the final norm: only the class token reaches the head, the patch tokens' map is blank
    blank = limelight.explain(model, x, "gradcam", layer="norm", targets=[0, 2], relu=False, normalize=False)
    assert np.abs(blank.values).max() == 0
