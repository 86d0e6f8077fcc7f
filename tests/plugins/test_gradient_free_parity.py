"""Score-CAM and Ablation-CAM against pytorch-grad-cam on torchvision resnet18 (weights=None).

With torchvision's random initialisation the logits barely move when the input is masked, so
Score-CAM's softmax weights are nearly uniform and its map is the channel-mean of the
activations (correlation 0.99): a weak test. The head is therefore redrawn (seeded, std 0.5),
which makes the weights, and so the maps, depend on the scores.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
pytest.importorskip("pytorch_grad_cam")

import pytorch_grad_cam as pgc  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

import limelight  # noqa: E402

pytestmark = pytest.mark.slow

TARGETS = [3, 7]


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    with torch.no_grad():
        generator = torch.Generator().manual_seed(1)
        model.fc.weight.copy_(torch.randn(model.fc.weight.shape, generator=generator) * 0.5)
        model.fc.bias.zero_()
    # 80×80 inputs: layer4 is 3×3, so align_corners upsampling has an interior pixel that no
    # output pixel hits exactly (the per-channel min/max are taken after upsampling)
    x = torch.randn(2, 3, 80, 80, generator=torch.Generator().manual_seed(0))
    return model, x


@pytest.mark.parametrize("method, reference", [("scorecam", pgc.ScoreCAM), ("ablationcam", pgc.AblationCAM)])
def test_normalized_maps_equal_pytorch_grad_cam(resnet, method, reference):
    model, x = resnet
    ours = limelight.explain(model, x, method, targets=TARGETS, layer="layer4", batch_size=64)
    with reference(model=model, target_layers=[model.layer4]) as cam:
        cam.batch_size = 64
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in TARGETS])
    assert ours.values.shape == ref.shape == (2, 80, 80)
    assert (ref.reshape(2, -1).max(axis=1) > 0.99).all()  # non-trivial maps
    # informative: the map is not just the channel-mean of the activations
    wrapped = limelight.wrap(model)
    mean_map = wrapped.to_numpy(wrapped.activations(wrapped.canonical(x), "layer4")).mean(-1)
    raw = limelight.explain(model, x, method, targets=TARGETS, layer="layer4", relu=False, upsample=False,
                            normalize=False, batch_size=64).values
    assert max(abs(np.corrcoef(raw[i].ravel(), mean_map[i].ravel())[0, 1]) for i in range(2)) < 0.9
    difference = np.abs(ours.values - ref).max()
    print(f"{method}: max |limelight - pytorch-grad-cam| = {difference:.2e}")
    assert difference <= 1e-4
