"""Score-CAM and Ablation-CAM on a vision transformer's token layer, against pytorch-grad-cam
with its ViT ``reshape_transform`` (and ``AblationLayerVit``): tokens are arranged on their
grid by limelight (class token dropped), channels ablated at every token.

pytorch-grad-cam's ablation value drifts with the row's place in its batch (see the
AblationCAM docstring), so it runs with ``batch_size=1`` here, where its rule is limelight's.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("pytorch_grad_cam")

import pytorch_grad_cam as pgc  # noqa: E402
from pytorch_grad_cam.ablation_layer import AblationLayerVit  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from torchvision.models.vision_transformer import VisionTransformer  # noqa: E402

import limelight  # noqa: E402

TARGETS = [1, 3]
LAYER = "encoder.layers.encoder_layer_1.ln_1"


def vit_tokens(tensor):
    """pytorch-grad-cam's ViT tutorial reshape: (N, 1 + 16, C) -> (N, C, 4, 4)."""
    return tensor[:, 1:, :].reshape(tensor.shape[0], 4, 4, tensor.shape[2]).permute(0, 3, 1, 2)


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    model = VisionTransformer(image_size=64, patch_size=16, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5)
    with torch.no_grad():  # torchvision zero-initialises the head; a strong one makes weights matter
        model.heads.head.weight.copy_(torch.randn(model.heads.head.weight.shape, generator=torch.Generator().manual_seed(2)))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    return model.eval(), x


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_token_layer_maps_equal_pytorch_grad_cam(vit, method):
    model, x = vit
    ours = limelight.explain(model, x, method, targets=TARGETS, batch_size=8)
    assert ours.params["layer"] == LAYER  # the ViT default: the last block's first norm
    module = model.encoder.layers[-1].ln_1
    if method == "scorecam":
        cam = pgc.ScoreCAM(model=model, target_layers=[module], reshape_transform=vit_tokens)
        cam.batch_size = 8
    else:
        cam = pgc.AblationCAM(
            model=model, target_layers=[module], reshape_transform=vit_tokens,
            ablation_layer=AblationLayerVit(), batch_size=1,
        )
    ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in TARGETS])
    assert ours.values.shape == ref.shape == (2, 64, 64)
    assert np.isfinite(ours.values).all() and (ours.values.reshape(2, -1).std(axis=1) > 0.05).all()
    assert np.abs(ours.values - ref).max() <= 1e-4


def test_reshape_override_and_a_grid_that_does_not_fit(vit):
    model, x = vit
    default = limelight.explain(model, x, "ablationcam", targets=TARGETS)
    forced = limelight.explain(model, x, "ablationcam", targets=TARGETS, reshape=(4, 4))
    np.testing.assert_allclose(forced.values, default.values, atol=1e-6)
    assert forced.params["reshape"] == (4, 4)
    with pytest.raises(limelight.LimelightError, match="reshape"):
        limelight.explain(model, x, "scorecam", targets=TARGETS, reshape=(5, 5))
