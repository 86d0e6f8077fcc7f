"""SHAP speed, measured in one run: limelight's shap-gradient / shap-deep beside the raw
framework passes they must do, shap and Captum (each when installed).

    python benchmarks/bench_shap.py [--device cpu|cuda] [--size 224] [--nsamples 100]
                                    [--images N] [--repeats 3]
                                    [--parts gradient targets deep deep-raw]

* ``gradient``: expected gradients, one target, on ResNet-18: the raw forward +
  input-gradient passes over the ``images × nsamples`` points (the baseline), limelight
  shap-gradient, shap's GradientExplainer and Captum's GradientShap.
* ``targets``: the top 5 classes at once, limelight vs shap's GradientExplainer.
* ``deep``: DeepSHAP on VGG-11 vs shap's DeepExplainer (CPU).
* ``deep-raw``: DeepSHAP on ResNet-50, ``deep-images × deep-references`` pairs, vs the raw
  forward + input-gradient pass over the (input, reference) pairs, which DeepLIFT must do.

Defaults: on the CPU 2 images and the parts gradient, targets, deep (and deep-raw with 1
image × 4 references when asked); on CUDA 8 images, deep-raw with 4 images × 10
references, and the parts gradient, targets, deep-raw. All samples in batches of 50 (pairs:
all at once). Repeats interleaved, medians, ``torch.cuda.synchronize()`` in every timed call
on CUDA; ratios only mean something within one run.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import math
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))

import torch
import torchvision
from _timing import device_name, measure, synced, table

import limelight
from limelight.backends.torch import TorchModel

warnings.filterwarnings("ignore")

BATCH = 50


def optional(name: str) -> Any:
    """An installed module, or None."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def timed(candidates: dict[str, Callable[[], object]], args: argparse.Namespace) -> dict[str, float]:
    return measure({k: synced(fn, args.device) for k, fn in candidates.items()}, args.repeats)


def bench_gradient(args: argparse.Namespace, parts: list[str]) -> None:
    device, ns, n = args.device, args.nsamples, args.images
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval().to(device)
    x = torch.randn(n, 3, args.size, args.size, device=device)
    bg = torch.randn(args.background, 3, args.size, args.size, device=device)
    with torch.no_grad():
        target = int(model(x[:1]).argmax())
        top5 = model(x).topk(5, dim=1).indices.cpu().numpy()
    where = f"{args.size}², {device_name(device)}"

    def raw_passes() -> None:  # what expected gradients must do: n×nsamples forward+input-gradient
        for start in range(0, n * ns, BATCH):
            size = min(BATCH, n * ns - start)
            points = torch.randn(size, 3, args.size, args.size, device=device, requires_grad=True)
            out = model(points)
            torch.autograd.grad(out[:, target].sum(), points)

    shap, captum = optional("shap"), optional("captum.attr")
    gradient_explainer = shap.GradientExplainer(model, bg, batch_size=BATCH) if shap else None
    baseline = "raw forward+input-gradient passes (baseline)"
    one: dict[str, Callable[[], object]] = {
        baseline: raw_passes,
        "limelight shap-gradient": lambda: limelight.explain(
            model, x, "shap-gradient", background=bg, nsamples=ns, batch_size=BATCH, seed=0, targets=[target] * n
        ),
    }
    if gradient_explainer is not None:
        one["shap GradientExplainer(ranked_outputs=1)"] = lambda: gradient_explainer.shap_values(
            x, nsamples=ns, ranked_outputs=1, rseed=0
        )
    if captum:
        gradient_shap = captum.GradientShap(model)
        one["captum GradientShap"] = lambda: gradient_shap.attribute(
            x, baselines=bg, n_samples=ns, stdevs=0.0, target=target
        )  # no batching option
    channels_last = TorchModel(model, memory_format=torch.channels_last)
    one["limelight shap-gradient, channels_last opt-in"] = lambda: limelight.explain(
        channels_last, x, "shap-gradient", background=bg, nsamples=ns, batch_size=BATCH, seed=0, targets=[target] * n
    )
    if "gradient" in parts:
        title = f"Expected gradients, 1 target: ResNet-18, {n} images × {ns} samples, {where}"
        print(table(title, timed(one, args), baseline), "\n", flush=True)

    if "targets" in parts:
        five: dict[str, Callable[[], object]] = {}
        if gradient_explainer is not None:
            five["shap GradientExplainer(ranked_outputs=5) (baseline)"] = lambda: gradient_explainer.shap_values(
                x, nsamples=ns, ranked_outputs=5, rseed=0
            )
        else:
            five["limelight shap-gradient, 1 target (baseline)"] = one["limelight shap-gradient"]
        five["limelight shap-gradient, 5 targets"] = lambda: limelight.explain(
            model, x, "shap-gradient", background=bg, nsamples=ns, batch_size=BATCH, seed=0, targets=top5
        )
        # the opt-in: the model in channels-last (limelight never forces it: it moves gradients on near-ties)
        five["limelight shap-gradient, 5 targets, channels_last opt-in"] = lambda: limelight.explain(
            channels_last, x, "shap-gradient", background=bg, nsamples=ns, batch_size=BATCH, seed=0, targets=top5
        )
        print(
            table(f"Expected gradients, the top 5 classes at once, {where}", timed(five, args), next(iter(five))),
            "\n",
            flush=True,
        )


def bench_deep(args: argparse.Namespace) -> None:
    """DeepSHAP on VGG-11 vs shap's DeepExplainer: shap cannot run torchvision's ResNets at
    all (its backward hooks raise on the in-place residual addition), and on
    ReLU(inplace=True) it raises too, so it gets a copy with out-of-place ReLUs (same
    weights, same function)."""
    shap = optional("shap")
    if shap is None:
        print("shap is not installed: skipping the DeepExplainer comparison.", flush=True)
        return
    device = args.device
    torch.manual_seed(0)
    size = args.size // 2
    model = torchvision.models.vgg11(weights=None).eval().to(device)
    x = torch.randn(2, 3, size, size, device=device)
    deep_bg = torch.randn(10, 3, size, size, device=device)
    shap_model = copy.deepcopy(model)
    for module in shap_model.modules():
        if isinstance(module, torch.nn.ReLU):
            module.inplace = False
    deep_explainer = shap.DeepExplainer(shap_model, deep_bg)
    deep = {
        "shap DeepExplainer(ranked_outputs=1) (baseline)": lambda: deep_explainer.shap_values(
            x, ranked_outputs=1, check_additivity=False
        ),
        # batch_size counts samples: 20 = 10 (input, reference) pairs a pass
        "limelight shap-deep": lambda: limelight.explain(model, x, "shap-deep", background=deep_bg, batch_size=20),
        "limelight shap-deep, channels_last opt-in": lambda: limelight.explain(
            TorchModel(model, memory_format=torch.channels_last), x, "shap-deep", background=deep_bg, batch_size=20
        ),
    }
    title = f"DeepSHAP: VGG-11, 2 images × {len(deep_bg)} background rows, {size}², {device_name(device)}"
    print(table(title, timed(deep, args), "shap DeepExplainer(ranked_outputs=1) (baseline)"), "\n", flush=True)


def bench_deep_raw(args: argparse.Namespace) -> None:
    """DeepSHAP on ResNet-50 vs the raw pass over its (input, reference) pairs: one forward of
    every input and reference of a batch of pairs and one input gradient, as DeepLIFT does."""
    device, n, m = args.device, args.deep_images, args.deep_references
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval().to(device)
    x = torch.randn(n, 3, args.size, args.size, device=device)
    bg = torch.randn(m, 3, args.size, args.size, device=device)
    with torch.no_grad():
        targets = model(x).argmax(1)
    pairs = n * m
    batch = args.deep_batch or pairs
    rows = torch.arange(pairs, device=device) // m
    refs = torch.arange(pairs, device=device) % m

    def raw_pairs() -> None:
        for start in range(0, pairs, batch):
            r, b = rows[start : start + batch], refs[start : start + batch]
            both = torch.cat([x[r], bg[b]]).requires_grad_(True)
            out = model(both)
            score = out[: len(r)].gather(1, targets[r][:, None]).sum()
            torch.autograd.grad(score, both)

    candidates = {
        "raw forward+input-gradient pass over the pairs (baseline)": raw_pairs,
        "limelight shap-deep": lambda: limelight.explain(
            model, x, "shap-deep", background=bg, batch_size=batch, targets=targets.cpu().numpy()
        ),
    }
    exp = limelight.explain(model, x, "shap-deep", background=bg, batch_size=batch, targets=targets.cpu().numpy())
    gap = exp.outputs[range(n), exp.targets] - exp.base_values
    error = abs(exp.values.reshape(n, -1).sum(1) - gap).max() / abs(gap).max()
    title = (
        f"DeepSHAP: ResNet-50, {n} images × {m} references ({pairs} pairs, {math.ceil(pairs / batch)} "
        f"batch(es)), {args.size}², {device_name(device)}"
    )
    print(
        table(title, timed(candidates, args), "raw forward+input-gradient pass over the pairs (baseline)")
        + f"\n\nlimelight shap-deep completeness: max |Σφ − (f(x) − E f(bg))| / max |f(x) − E f(bg)| = "
        f"{error:.1e} (precision={exp.params['precision']!r})",
        "\n",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:i]")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--nsamples", type=int, default=100)
    parser.add_argument("--images", type=int, help="images for expected gradients (default: 2 on CPU, 8 on CUDA)")
    parser.add_argument("--background", type=int, default=20)
    parser.add_argument("--deep-images", type=int, help="images for deep-raw (default: 1 on CPU, 4 on CUDA)")
    parser.add_argument("--deep-references", type=int, help="references for deep-raw (default: 4 on CPU, 10 on CUDA)")
    parser.add_argument("--deep-batch", type=int, help="pairs per call for deep-raw (default: all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", nargs="+", choices=["gradient", "targets", "deep", "deep-raw"])
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    args.images = args.images or (8 if cuda else 2)
    args.deep_images = args.deep_images or (4 if cuda else 1)
    args.deep_references = args.deep_references or (10 if cuda else 4)
    parts = args.parts or (["gradient", "targets", "deep-raw"] if cuda else ["gradient", "targets", "deep"])

    if {"gradient", "targets"} & set(parts):
        bench_gradient(args, parts)
    if "deep" in parts:
        bench_deep(args)
    if "deep-raw" in parts:
        bench_deep_raw(args)


if __name__ == "__main__":
    main()
