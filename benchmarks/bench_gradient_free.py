"""Score-CAM and Ablation-CAM speed and memory, beside pytorch-grad-cam.

    python benchmarks/bench_gradient_free.py [--device cpu|cuda] [--batch 8] [--size 224]
                                             [--repeats 3] [--methods scorecam ablationcam]

torchvision ResNet-18 (weights=None, seeded), layer4, explicit target classes. For each method:
limelight (also with the opt-in ``TorchModel(model, memory_format=torch.channels_last)``, which
feeds the model NHWC inputs) and pytorch-grad-cam (when installed) with the same ``batch_size``
(masked inputs / ablated copies per forward), time ÷ one no-grad forward of the batch, repeats interleaved,
medians; then each candidate once more in a fresh subprocess for its peak memory (RSS growth
on the CPU (VmHWM), ``torch.cuda.max_memory_allocated`` on CUDA), and the max abs difference between
the two maps. Ratios only mean something within one run.

``--ceiling`` (Score-CAM) asks how fast *any* exact Score-CAM can be: it runs ``N × C``
forwards of masked inputs, whoever implements it, so it times one forward of ``batch_size``
inputs in every fp32 form this torch offers (eager NCHW as pytorch-grad-cam runs it,
channels-last inputs, ``torch.compile`` with freezing, when a compiler is there) and in
bfloat16 autocast, projects each to ``N × C`` inputs and divides pytorch-grad-cam's measured
time by it: the most any implementation can gain at that precision. The bfloat16 row also
reports how far limelight's Score-CAM maps move when its forwards run under autocast.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's progress bars
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np
import torch
import torchvision
from _timing import device_name, measure, synced

import limelight

LAYER = "layer4"
PGC = {"scorecam": "ScoreCAM", "ablationcam": "AblationCAM"}


def setup(batch: int, size: int, device: str) -> tuple[Any, Any, list[int]]:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval().to(device)
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1)).to(device)
    with torch.no_grad():
        targets = [int(t) for t in model(x).argmax(1)]
    return model, x, targets


def candidates(model: Any, x: Any, targets: list[int], method: str, batch_size: int) -> dict[str, Any]:
    """name -> a call returning (N, H, W) maps in [0, 1] as NumPy."""
    from limelight.backends.torch import TorchModel

    channels_last = TorchModel(model, memory_format=torch.channels_last)  # inputs fed NHWC; weights untouched
    out = {
        f"limelight {method}": lambda: limelight.explain(
            model, x, method, targets=targets, layer=LAYER, batch_size=batch_size
        ).values,
        f"limelight {method}, channels_last opt-in": lambda: limelight.explain(
            channels_last, x, method, targets=targets, layer=LAYER, batch_size=batch_size
        ).values,
    }
    try:
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        return out
    cls = getattr(pytorch_grad_cam, PGC[method])
    cam = cls(model=model, target_layers=[model.layer4])
    cam.batch_size = batch_size  # AblationCAM's argument; ScoreCAM reads the attribute too
    pgc_targets = [ClassifierOutputTarget(t) for t in targets]
    out[f"pytorch-grad-cam {PGC[method]}"] = lambda: cam(input_tensor=x, targets=pgc_targets)
    return out


def peak(args: argparse.Namespace, method: str, name: str) -> float:
    """Peak memory (MiB) of one call of candidate ``name``, measured in a fresh process."""
    cmd = [sys.executable, __file__, "--peak-of", method, name, "--device", args.device]
    cmd += ["--batch", str(args.batch), "--size", str(args.size), "--batch-size", str(args.batch_size)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(json.loads(result.stdout.strip().splitlines()[-1])["mib"])


def _high_water_mib() -> float:
    """This process's peak resident memory (VmHWM). Not ``ru_maxrss``: Linux carries that
    over from the parent across exec, so a child started by a big parent reads the parent's."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def peak_child(args: argparse.Namespace) -> None:
    method, name = args.peak_of
    model, x, targets = setup(args.batch, args.size, args.device)
    fn = candidates(model, x, targets, method, args.batch_size)[name]
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        mib = (torch.cuda.max_memory_allocated() - before) / 2**20
    else:
        with torch.no_grad():
            model(x)  # allocator warm, so the baseline includes one forward's buffers
        before = _high_water_mib()
        fn()
        mib = _high_water_mib() - before
    print(json.dumps({"mib": mib}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32, help="masked inputs / ablated copies per forward")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=["scorecam", "ablationcam"], choices=sorted(PGC))
    parser.add_argument("--ceiling", action="store_true", help="Score-CAM: the fastest any exact Score-CAM can be")
    parser.add_argument("--peak-of", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak_of:
        peak_child(args)
        return
    model, x, targets = setup(args.batch, args.size, args.device)

    def forward() -> object:
        with torch.no_grad():
            return model(x)

    for method in args.methods:
        cands = candidates(model, x, targets, method, args.batch_size)
        maps = {name: np.asarray(fn()) for name, fn in cands.items()}
        times = measure(
            {"no-grad forward (baseline)": synced(forward, args.device)}
            | {k: synced(fn, args.device) for k, fn in cands.items()},
            args.repeats,
            warmup=0,
        )
        base = times["no-grad forward (baseline)"]
        ours = f"limelight {method}"
        title = (
            f"{method}: ResNet-18 {LAYER}, batch {args.batch}, {args.size}², batch_size {args.batch_size}, "
            f"{device_name(args.device)}"
        )
        print(f"### {title}\n\n| what | median s | ÷ forward | ÷ limelight | peak MiB |\n|---|---:|---:|---:|---:|")
        for name, seconds in times.items():
            mib = "" if name not in cands else f"{peak(args, method, name):.0f}"
            print(f"| {name} | {seconds:.3f} | {seconds / base:.1f} | {seconds / times[ours]:.2f} | {mib} |")
        others = [k for k in maps if k != ours]
        for other in others:
            print(f"\nmax abs difference of the maps, limelight vs {other}: {np.abs(maps[ours] - maps[other]).max():.2e}")
        print(flush=True)
        if args.ceiling and method == "scorecam":
            ceiling(args, model, x, targets, maps, times)


def ceiling(
    args: argparse.Namespace, model: Any, x: Any, targets: list[int], maps: dict[str, Any], times: dict[str, float]
) -> None:
    """The fastest an exact Score-CAM can be here: ``N × C`` forwards at the best per-forward speed."""
    pgc = "pytorch-grad-cam ScoreCAM"
    if pgc not in times:
        print("(--ceiling needs pytorch-grad-cam installed)")
        return
    channels = int(model.fc.in_features)  # layer4's channels
    forwards = x.shape[0] * channels / args.batch_size
    gen = torch.Generator().manual_seed(2)
    masked = torch.rand(args.batch_size, *x.shape[1:], generator=gen).to(x.device) * x[:1]
    last = masked.contiguous(memory_format=torch.channels_last)

    def run(fn: Any, inputs: Any) -> Any:
        def call() -> Any:
            with torch.no_grad():
                return fn(inputs)

        return synced(call, args.device)

    forms = {"eager NCHW (as pytorch-grad-cam)": run(model, masked), "eager, channels-last inputs": run(model, last)}
    compile_s = None
    try:
        import torch._inductor.config as inductor

        inductor.freezing = True
        fresh = torchvision.models.resnet18(weights=None).eval().to(x.device)  # the same weights, none
        fresh.load_state_dict(model.state_dict())  # of the hooks pytorch-grad-cam left on `model`
        compiled = torch.compile(fresh, dynamic=False)
        start = time.perf_counter()
        run(compiled, last)()
        compile_s = time.perf_counter() - start
        forms["torch.compile, freezing, channels-last"] = run(compiled, last)
    except Exception as error:  # noqa: BLE001  (no compiler, unsupported platform: the row is left out)
        print(f"(torch.compile row left out: {type(error).__name__}: {error})")

    def bf16(inputs: Any) -> Any:
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return model(inputs)

    forms["bfloat16 autocast, channels-last"] = run(bf16, last)
    per = measure(forms, max(args.repeats, 5))
    title = f"Score-CAM ceiling: {forwards:.0f} forwards of {args.batch_size} inputs, {device_name(args.device)}"
    print(f"### {title}\n\n| forward form | s per forward | projected s | pytorch-grad-cam ÷ projected |")
    print("|---|---:|---:|---:|")
    for name, seconds in per.items():
        print(f"| {name} | {seconds:.3f} | {seconds * forwards:.1f} | {times[pgc] / (seconds * forwards):.2f} |")
    if compile_s is not None:
        print(f"\n(torch.compile's first call, compilation included: {compile_s:.1f} s)")
    with torch.autocast(x.device.type, dtype=torch.bfloat16):
        low = np.asarray(limelight.explain(model, x, "scorecam", targets=targets, layer=LAYER,
                                           batch_size=args.batch_size).values)
    ours = maps["limelight scorecam"]
    print(f"\nlimelight scorecam with its forwards under bfloat16 autocast: max abs difference of the maps "
          f"{np.abs(low - ours).max():.2e} (fp32 limelight vs pytorch-grad-cam: {np.abs(ours - maps[pgc]).max():.2e})\n",
          flush=True)


if __name__ == "__main__":
    main()
