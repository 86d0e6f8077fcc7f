"""Grad-CAM speed: time ÷ the framework's own no-grad forward, beside the peers.

    python benchmarks/bench_gradcam.py [--device cpu|cuda] [--batch N] [--size 224] [--repeats 5]
                                       [--models resnet50 vgg16 vit_b_16] [--only torch|keras]

torchvision ResNet-50 / VGG-16 / ViT-B/16 (weights=None; the ViT's zero-initialised head
redrawn) and keras.applications ResNet50 (CPU only). Defaults: on the CPU batch 8 and
ResNet-50; on CUDA batch 64, ResNet-50, VGG-16 and ViT-B/16 (its token layer reshaped to a
grid by limelight, by ``vit_tokens`` for the minimal Grad-CAM and pytorch-grad-cam).

Each PyTorch table has: the no-grad forward (the baseline); a minimal Grad-CAM kept on
the device (a forward hook, ``torch.autograd.grad`` on the activation, then mean / sum / ReLU /
bilinear upsampling / min-max normalisation all in torch: the limit any Grad-CAM can reach);
limelight's gradcam (its NumPy result included); Captum's LayerGradCam and pytorch-grad-cam's
GradCAM when installed. Everything in one run, repeats interleaved, medians, and on CUDA
every timed call ends with ``torch.cuda.synchronize()``; ratios only mean something within
one run. The max abs difference between limelight's maps and the minimal ones is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np
from _timing import device_name, measure, synced, table

# torch (and torchvision) before TensorFlow: the other order can crash the process
try:
    import torch
    import torchvision
except ImportError:  # a Keras-only environment
    torch = None  # type: ignore[assignment]

import limelight


def vit_tokens(tensor: Any) -> Any:
    """ViT tokens ``(N, 1 + h·w, C)`` -> ``(N, C, h, w)`` (class token dropped): the
    ``reshape_transform`` of pytorch-grad-cam's ViT tutorial."""
    side = int(round((tensor.shape[1] - 1) ** 0.5))
    return tensor[:, 1:, :].reshape(tensor.shape[0], side, side, tensor.shape[2]).permute(0, 3, 1, 2)


#: model name -> (torchvision constructor, layer name for limelight, module getter for the
#: peers, the peers' reshape of the layer's output to NCHW or None)
TORCH_MODELS = {
    "resnet50": ("resnet50", "layer4.2", lambda m: m.layer4[-1], None),
    "vgg16": ("vgg16", "features.29", lambda m: m.features[29], None),
    "vit_b_16": ("vit_b_16", "encoder.layers.encoder_layer_11.ln_1", lambda m: m.encoder.layers[-1].ln_1, vit_tokens),
}


def minimal_gradcam(model: Any, layer: Any, x: Any, targets: Any, reshape: Any = None) -> Any:
    """Grad-CAM kept on the device: hook, autograd.grad, mean/sum/ReLU, upsample, min-max.

    The forward runs without autograd up to the layer; the hook makes the activation a leaf
    and records the graph from there on (the least work a Grad-CAM can do). ``targets`` is a
    ``(N,)`` long tensor on the device; ``reshape`` turns the layer's output into NCHW (ViT
    tokens). Returns ``(N, H, W)`` on the device.
    """
    store: dict[str, Any] = {}

    def hook(module: Any, args: Any, output: Any) -> Any:
        store["a"] = leaf = output.detach().requires_grad_(True)
        torch.set_grad_enabled(True)  # undone when the no_grad block below exits
        return leaf

    handle = layer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        handle.remove()
    (grads,) = torch.autograd.grad(out.gather(1, targets[:, None]).sum(), store["a"])
    activations = store["a"]
    if reshape is not None:
        activations, grads = reshape(activations), reshape(grads)
    cam = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * activations).sum(1, keepdim=True))
    cam = torch.nn.functional.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    low = cam.amin(dim=(1, 2), keepdim=True)
    span = cam.amax(dim=(1, 2), keepdim=True) - low
    return torch.where(span > 0, (cam - low) / span.clamp_min(1e-30), torch.zeros_like(cam)).detach()


def bench_torch(name: str, batch: int, size: int, repeats: int, device: str) -> str:
    constructor, layer_name, layer_of, reshape = TORCH_MODELS[name]
    torch.manual_seed(0)
    model = getattr(torchvision.models, constructor)(weights=None).eval().to(device)
    if name.startswith("vit"):  # torchvision zero-initialises the head: every map would be blank
        torch.nn.init.normal_(model.heads.head.weight, std=0.02)
    layer = layer_of(model)
    x = torch.randn(batch, 3, size, size, device=device)
    with torch.no_grad():
        target = int(model(x[:1]).argmax())
    targets = [target] * batch
    targets_device = torch.full((batch,), target, device=device, dtype=torch.long)

    def forward() -> object:
        with torch.no_grad():
            return model(x)

    candidates = {
        "torch no-grad forward (baseline)": forward,
        "minimal on-device Grad-CAM (the limit)": lambda: minimal_gradcam(model, layer, x, targets_device, reshape),
        "limelight gradcam": lambda: limelight.explain(model, x, "gradcam", targets=targets, layer=layer_name),
    }
    try:
        from captum.attr import LayerGradCam

        if reshape is not None:  # LayerGradCam has no reshape: its map of tokens is not a grid
            raise ImportError
        captum = LayerGradCam(model, layer)
        candidates["captum LayerGradCam (raw map, no upsampling)"] = lambda: captum.attribute(
            x, target=targets, relu_attributions=True
        )
    except ImportError:
        pass
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        pgc = GradCAM(model=model, target_layers=[layer], reshape_transform=reshape)
        pgc_targets = [ClassifierOutputTarget(t) for t in targets]
        candidates["pytorch-grad-cam GradCAM"] = lambda: pgc(input_tensor=x, targets=pgc_targets)
    except ImportError:
        pass

    ours = limelight.explain(model, x, "gradcam", targets=targets, layer=layer_name).values
    limit = minimal_gradcam(model, layer, x, targets_device, reshape).cpu().numpy()
    diff = float(np.abs(ours - limit).max())

    times = measure({k: synced(fn, device) for k, fn in candidates.items()}, repeats)
    title = f"PyTorch {name}, batch {batch}, {size}², {device_name(device)}"
    return (
        table(title, times, "torch no-grad forward (baseline)")
        + f"\n\nlimelight gradcam vs the minimal on-device Grad-CAM: max abs difference of the maps {diff:.2e}"
    )


def bench_keras(batch: int, size: int, repeats: int) -> str:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50(weights=None, input_shape=(size, size, 3))
    x = np.random.RandomState(0).rand(batch, size, size, 3).astype(np.float32)
    xt = tf.constant(x)
    targets = np.zeros(batch, np.int64)
    compiled = tf.function(lambda inputs: model(inputs, training=False))
    layer = model.get_layer("conv5_block3_out")
    to_layer = keras.Model(model.inputs, [layer.output, model.output])

    def eager_tape() -> object:  # the textbook Keras Grad-CAM (sub-model + eager GradientTape)
        with tf.GradientTape() as tape:
            acts, out = to_layer(xt, training=False)
            score = tf.reduce_sum(tf.gather(out, targets, axis=1, batch_dims=1))
        grads = tape.gradient(score, acts)
        return tf.nn.relu(tf.reduce_sum(acts * tf.reduce_mean(grads, axis=(1, 2), keepdims=True), -1)).numpy()

    times = measure(
        {
            "keras compiled forward (baseline)": lambda: compiled(xt).numpy(),
            "limelight gradcam": lambda: limelight.explain(model, x, "gradcam", targets=targets),
            "eager GradientTape grad-cam": eager_tape,
        },
        repeats,
    )
    return table(f"Keras ResNet50, batch {batch}, {size}², CPU", times, "keras compiled forward (baseline)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:i]")
    parser.add_argument("--batch", type=int, help="default: 8 on the CPU, 64 on CUDA")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--models",
        nargs="+",
        choices=sorted(TORCH_MODELS),
        help="PyTorch models (default: resnet50 on the CPU; resnet50 vgg16 vit_b_16 on CUDA)",
    )
    parser.add_argument("--only", choices=["torch", "keras"])
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    batch = args.batch or (64 if cuda else 8)
    models = args.models or (["resnet50", "vgg16", "vit_b_16"] if cuda else ["resnet50"])
    if args.only != "keras":
        if torch is None:
            print("PyTorch is not installed: skipping the PyTorch tables.", flush=True)
        else:
            for name in models:
                print(bench_torch(name, batch, args.size, args.repeats, args.device), "\n", flush=True)
    if args.only != "torch":
        if cuda:
            print("The Keras table runs on the CPU only (without --device cuda).", flush=True)
            return
        try:
            import tensorflow  # noqa: F401
        except ImportError:
            print("TensorFlow is not installed: skipping the Keras table.", flush=True)
            return
        print(bench_keras(batch, args.size, args.repeats), flush=True)


if __name__ == "__main__":
    main()
