"""Grad-CAM speed: time ÷ the framework's own no-grad forward, beside the peers.

    python benchmarks/bench_gradcam.py [--batch 8] [--size 224] [--repeats 5]

ResNet-50 (torchvision and keras.applications, weights=None), CPU. Everything in one run,
repeats interleaved, medians; ratios only mean something within one run.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
from _timing import measure, table  # noqa: E402

import limelight  # noqa: E402


def bench_torch(batch: int, size: int, repeats: int) -> str:
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    x = torch.randn(batch, 3, size, size)
    targets = model(x[:1]).argmax(1).repeat(batch).tolist()

    def forward() -> object:
        with torch.no_grad():
            return model(x)

    candidates = {
        "torch no-grad forward (baseline)": forward,
        "limelight gradcam": lambda: limelight.explain(model, x, "gradcam", targets=targets, layer="layer4.2"),
    }
    try:
        from captum.attr import LayerGradCam

        captum = LayerGradCam(model, model.layer4[-1])
        candidates["captum LayerGradCam (raw map, no upsampling)"] = lambda: captum.attribute(
            x, target=targets, relu_attributions=True
        )
    except ImportError:
        pass
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        pgc = GradCAM(model=model, target_layers=[model.layer4[-1]])
        pgc_targets = [ClassifierOutputTarget(t) for t in targets]
        candidates["pytorch-grad-cam GradCAM"] = lambda: pgc(input_tensor=x, targets=pgc_targets)
    except ImportError:
        pass
    times = measure(candidates, repeats)
    return table(f"PyTorch ResNet-50, batch {batch}, {size}², CPU ({torch.get_num_threads()} threads)", times,
                 "torch no-grad forward (baseline)")


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
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=["torch", "keras"])
    args = parser.parse_args()
    if args.only != "keras":
        print(bench_torch(args.batch, args.size, args.repeats), "\n", flush=True)
    if args.only != "torch":
        print(bench_keras(args.batch, args.size, args.repeats), flush=True)


if __name__ == "__main__":
    main()
