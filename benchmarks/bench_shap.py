"""SHAP speed, measured in one run (CPU): limelight's shap-gradient / shap-deep beside shap,
Captum and the raw framework passes they must do.

    python benchmarks/bench_shap.py [--size 224] [--nsamples 100] [--repeats 3]

ResNet-18 (torchvision, weights=None), 2 images, 100 expected-gradient samples in batches of
50, 20 background images. Ratios only mean something within one run.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from _timing import measure, table  # noqa: E402

import limelight  # noqa: E402

warnings.filterwarnings("ignore")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--nsamples", type=int, default=100)
    parser.add_argument("--background", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", nargs="+", default=["gradient", "targets", "deep"],
                        choices=["gradient", "targets", "deep"])
    args = parser.parse_args()

    import shap
    from captum.attr import GradientShap

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(2, 3, args.size, args.size)
    bg = torch.randn(args.background, 3, args.size, args.size)
    batch, ns = 50, args.nsamples
    target = int(model(x[:1]).argmax())
    top5 = model(x).topk(5, dim=1).indices.numpy()

    def raw_passes() -> None:  # what expected gradients must do: N×nsamples forward+input-gradient
        for _ in range(2 * ns // batch):
            points = torch.randn(batch, 3, args.size, args.size, requires_grad=True)
            out = model(points)
            torch.autograd.grad(out[:, target].sum(), points)

    gradient_explainer = shap.GradientExplainer(model, bg, batch_size=batch)
    captum = GradientShap(model)
    one = {
        "raw forward+input-gradient passes (baseline)": raw_passes,
        "limelight shap-gradient": lambda: limelight.explain(
            model, x, "shap-gradient", background=bg, nsamples=ns, batch_size=batch, seed=0, targets=[target] * 2),
        "shap GradientExplainer(ranked_outputs=1)": lambda: gradient_explainer.shap_values(
            x, nsamples=ns, ranked_outputs=1, rseed=0),
        "captum GradientShap": lambda: captum.attribute(
            x, baselines=bg, n_samples=ns, stdevs=0.0, target=target),  # no batching option
    }
    if "gradient" in args.parts:
        print(table(f"Expected gradients, 1 target: ResNet-18, 2 images × {ns} samples, {args.size}², CPU",
                    measure(one, args.repeats), "raw forward+input-gradient passes (baseline)"), "\n", flush=True)

    five = {
        "shap GradientExplainer(ranked_outputs=5) (baseline)": lambda: gradient_explainer.shap_values(
            x, nsamples=ns, ranked_outputs=5, rseed=0),
        "limelight shap-gradient, 5 targets": lambda: limelight.explain(
            model, x, "shap-gradient", background=bg, nsamples=ns, batch_size=batch, seed=0, targets=top5),
    }
    if "targets" in args.parts:
        print(table("Expected gradients, the top 5 classes at once", measure(five, args.repeats),
                    "shap GradientExplainer(ranked_outputs=5) (baseline)"), "\n", flush=True)

    if "deep" in args.parts:
        bench_deep(args, shap)


def bench_deep(args: argparse.Namespace, shap: object) -> None:
    """DeepSHAP on VGG-11: shap's DeepExplainer cannot run torchvision's ResNets at all (its
    backward hooks raise on the in-place residual addition), and on ReLU(inplace=True) it
    raises too, so it gets a copy with out-of-place ReLUs (same weights, same function)."""
    torch.manual_seed(0)
    size = args.size // 2
    model = torchvision.models.vgg11(weights=None).eval()
    x, deep_bg = torch.randn(2, 3, size, size), torch.randn(10, 3, size, size)
    shap_model = copy.deepcopy(model)
    for module in shap_model.modules():
        if isinstance(module, torch.nn.ReLU):
            module.inplace = False
    deep_explainer = shap.DeepExplainer(shap_model, deep_bg)
    deep = {
        "shap DeepExplainer(ranked_outputs=1) (baseline)": lambda: deep_explainer.shap_values(
            x, ranked_outputs=1, check_additivity=False),
        "limelight shap-deep": lambda: limelight.explain(model, x, "shap-deep", background=deep_bg, batch_size=10),
    }
    print(table(f"DeepSHAP: VGG-11, 2 images × {len(deep_bg)} background rows, {size}², CPU",
                measure(deep, args.repeats), "shap DeepExplainer(ranked_outputs=1) (baseline)"), flush=True)


if __name__ == "__main__":
    main()
