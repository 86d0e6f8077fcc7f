"""The sub-pixel input gradient of a strided first convolution equals autograd's."""

import pytest

torch = pytest.importorskip("torch")

import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import limelight  # noqa: E402
from limelight.backends import torch_subpixel  # noqa: E402
from limelight.backends.torch_subpixel import InputConvMode, conv2d_input_grad  # noqa: E402
from limelight.core.targets import resolve_target  # noqa: E402

CASES = [  # kernel, stride, padding, input size, in channels, out channels
    (7, (2, 2), (3, 3), (224, 224), 3, 64),  # ResNet stem
    (3, (2, 2), (1, 1), (33, 32), 3, 8),  # odd size: the last phase is cropped
    (11, (4, 4), (2, 2), (67, 64), 3, 16),  # AlexNet stem
    (4, (2, 2), (1, 1), (16, 17), 2, 5),  # even kernel
    (3, (2, 1), (1, 0), (15, 14), 3, 4),  # different strides and paddings per axis
    (5, (3, 3), (0, 0), (20, 23), 1, 3),
    (1, (2, 2), (0, 0), (9, 9), 3, 2),  # pixels no output reads get zero
    (3, (2, 2), (4, 4), (10, 10), 2, 3),  # padding wider than the kernel
]


@pytest.mark.parametrize(("kernel", "stride", "padding", "size", "cin", "cout"), CASES)
def test_equals_autograd(kernel, stride, padding, size, cin, cout):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, cin, *size, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(cout, cin, kernel, kernel, dtype=torch.float64, generator=gen)
    y = F.conv2d(x, w, None, stride, padding)
    g = torch.randn(y.shape, dtype=torch.float64, generator=gen)
    (expected,) = torch.autograd.grad(y, x, g)
    got = conv2d_input_grad(g, w, stride, padding, size)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-11)


def test_channels_last_float32_on_resnet18_and_the_model_is_untouched():
    torchvision = pytest.importorskip("torchvision")
    with torch.random.fork_rng():  # resnet18's random init: the same weights on every run
        torch.manual_seed(0)
        model = torchvision.models.resnet18(weights=None).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    leaf = x.clone().requires_grad_()
    (expected,) = torch.autograd.grad(model(leaf)[:, 3].sum(), leaf)
    wrapped = limelight.wrap(model)
    got = wrapped.gradients(wrapped.canonical(x), resolve_target([3, 3], 2)).gradients
    torch.testing.assert_close(got.permute(0, 3, 1, 2), expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in model.parameters())


def test_only_a_strided_plain_convolution_of_the_input_is_rerouted(monkeypatch):
    calls = []
    original = torch_subpixel._SubPixelConv.apply
    monkeypatch.setattr(torch_subpixel._SubPixelConv, "apply", lambda *a: calls.append(1) or original(*a))
    x = torch.randn(1, 4, 12, 12, requires_grad=True)
    w = torch.randn(6, 4, 3, 3)
    with InputConvMode(x):
        F.conv2d(x, w, stride=1, padding=1)  # stride 1: oneDNN is fine
        F.conv2d(x, w[:, :2], stride=2, groups=2)  # grouped
        F.conv2d(x, w, stride=2, dilation=2)  # dilated
        F.conv2d(x * 2, w, stride=2)  # not the input itself
        assert not calls
        nn.Conv2d(4, 6, 3, stride=2, padding=1)(x)
    assert calls == [1]
