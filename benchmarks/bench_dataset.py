"""Dataset throughput: streaming ``explain_dataset`` vs a plain loop over ``explain``, and Ray.

    python benchmarks/bench_dataset.py [--device cpu|cuda] [--images N] [--batch B]
                                       [--resnet-images N] [--resnet-batch B] [--size 224]
                                       [--ray-images N] [--repeats 3] [--models demo resnet18] [--no-ray]

Models: the demo CNN (32², ``limelight.demo``) and torchvision ResNet-18 (weights=None, at
``--size``). Method: gradcam.

Table 1 (per model), in-memory batches of NCHW tensors (on ``--device``):

- *loop*: ``for x in batches: limelight.explain(model, x, "gradcam")`` (the baseline; the
  results are dropped, as a loop that wrote them out would);
- *explain_dataset, out=None*: the streaming core, keeping nothing;
- *explain_dataset, out=zarr*: the same, writing every batch into a fresh Zarr store.

Table 2 (per model, CPU only): the same images as PNG files, explained into a Zarr store by
``explain_dataset`` in this process and by ``limelight.ray.explain_on_ray`` with 1 and 2
workers on a local Ray cluster (started once, before timing; each timed call still starts its
actors and builds a model in each). Skipped with a message without Ray or ``limelight.ray``.

Repeats are interleaved (``_timing.measure``) and medians reported as images/s; "peak MB" is
the largest rise of this process's RSS above its value before the call (sampled every 2 ms
during one extra call; Ray workers are other processes and are not counted).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np

# torch (and torchvision) before TensorFlow: the other order can crash the process
import torch
import torchvision
from _timing import device_name, measure, synced

import limelight
from limelight import datasets, demo


def peak_rss_mb(fn: Callable[[], object]) -> float:
    """The largest rise of this process's RSS above its value before ``fn()``, in MB."""
    import psutil

    process = psutil.Process()
    before = process.memory_info().rss
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            done.wait(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    peak[0] = max(peak[0], process.memory_info().rss)
    return (peak[0] - before) / 2**20


def resnet18() -> Any:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


def images_for(model_name: str, n: int, size: int) -> np.ndarray:
    """``(n, H, W, 3)`` float32 in [0, 1]: shapes images for the demo model, noise for ResNet."""
    if model_name == "demo":
        return datasets.shapes(n, seed=0).images
    return np.random.RandomState(0).rand(n, size, size, 3).astype(np.float32)


def model_for(model_name: str) -> Any:
    return demo.torch_model() if model_name == "demo" else resnet18()


class Stores:
    """Fresh Zarr paths in one temporary folder (a store that exists would need resume=True)."""

    def __init__(self) -> None:
        self.root = tempfile.mkdtemp(prefix="bench_dataset_")
        self.count = 0

    def new(self) -> str:
        self.count += 1
        return os.path.join(self.root, f"run{self.count}.zarr")

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def table(title: str, n: int, times: dict[str, float], peaks: dict[str, float], baseline: str) -> str:
    lines = [f"### {title}", "", "| what | median s | images/s | ÷ baseline throughput | peak MB |",
             "|---|---:|---:|---:|---:|"]
    for name, seconds in times.items():
        lines.append(f"| {name} | {seconds:.3f} | {n / seconds:.1f} | {times[baseline] / seconds:.2f} | "
                     f"{peaks.get(name, float('nan')):.0f} |")
    return "\n".join(lines)


def bench_streaming(model_name: str, n: int, batch: int, size: int, repeats: int, device: str, stores: Stores) -> str:
    model = model_for(model_name).to(device)
    images = images_for(model_name, n, size)
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).to(device)
    batches = [x[i:i + batch] for i in range(0, n, batch)]

    def loop() -> None:
        for xb in batches:
            limelight.explain(model, xb, "gradcam")

    candidates = {
        "loop over limelight.explain (baseline)": loop,
        "explain_dataset, out=None": lambda: limelight.explain_dataset(
            model, batches, "gradcam", batch_size=batch, progress=False),
        "explain_dataset, out=zarr": lambda: limelight.explain_dataset(
            model, batches, "gradcam", batch_size=batch, progress=False, out=stores.new()),
    }
    timed = {k: synced(fn, device) for k, fn in candidates.items()}
    times = measure(timed, repeats)
    peaks = {k: peak_rss_mb(fn) for k, fn in timed.items()}
    side = f"{size}²" if model_name != "demo" else "32²"
    title = f"{model_name}, gradcam, {n} images {side}, batch {batch}, {device_name(device)}"
    return table(title, n, times, peaks, "loop over limelight.explain (baseline)")


def write_pngs(images: np.ndarray, folder: str) -> None:
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray((image * 255).round().astype(np.uint8)).save(os.path.join(folder, f"{i:06d}.png"))


def bench_ray(model_name: str, n: int, batch: int, size: int, repeats: int, stores: Stores) -> str:
    try:
        import ray

        import limelight.ray as llray
    except ImportError as exc:
        return f"### Ray, {model_name}\n\nskipped: {exc} (pip install 'limelight[ray]')."
    side = 32 if model_name == "demo" else size
    folder = os.path.join(stores.root, f"{model_name}_png")
    write_pngs(images_for(model_name, n, side), folder)
    factory = demo.torch_model if model_name == "demo" else resnet18
    model = factory()
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")

    def on_ray(workers: int) -> Callable[[], object]:
        return lambda: llray.explain_on_ray(factory, folder, "gradcam", out=stores.new(), batch_size=batch,
                                            num_workers=workers, size=side, progress=False)

    candidates = {
        "explain_dataset, 1 process (baseline)": lambda: limelight.explain_dataset(
            model, folder, "gradcam", out=stores.new(), batch_size=batch, size=side, progress=False),
        "explain_on_ray, 1 worker": on_ray(1),
        "explain_on_ray, 2 workers": on_ray(2),
    }
    times = measure(candidates, repeats)
    peaks = {k: peak_rss_mb(fn) for k, fn in candidates.items()}
    title = (f"Ray, {model_name}, gradcam, {n} PNG files {side}², batch {batch}, into Zarr; "
             f"local cluster of {int(ray.cluster_resources().get('CPU', 0))} CPUs, {device_name('cpu')}")
    return table(title, n, times, peaks, "explain_dataset, 1 process (baseline)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:i] (the Ray table stays on the CPU)")
    parser.add_argument("--images", type=int, default=1024, help="demo-model images (default 1024)")
    parser.add_argument("--batch", type=int, default=64, help="demo-model batch (default 64)")
    parser.add_argument("--resnet-images", type=int, default=64, help="ResNet-18 images (default 64; 1024 on CUDA)")
    parser.add_argument("--resnet-batch", type=int, default=16, help="ResNet-18 batch (default 16; 64 on CUDA)")
    parser.add_argument("--size", type=int, default=224, help="ResNet-18 image side (default 224)")
    parser.add_argument("--ray-images", type=int, help="images in the Ray table (default: as in table 1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+", choices=["demo", "resnet18"], default=["demo", "resnet18"])
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray table")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    settings = {
        "demo": (args.images, args.batch),
        "resnet18": (args.resnet_images if args.resnet_images != 64 or not cuda else 1024,
                     args.resnet_batch if args.resnet_batch != 16 or not cuda else 64),
    }
    stores = Stores()
    try:
        for name in args.models:
            n, batch = settings[name]
            print(bench_streaming(name, n, batch, args.size, args.repeats, args.device, stores), "\n", flush=True)
        if args.no_ray:
            return
        for name in args.models:
            n, batch = settings[name]
            n = args.ray_images or n
            print(bench_ray(name, n, batch, args.size, args.repeats, stores), "\n", flush=True)
    finally:
        stores.close()
        try:
            import ray

            if ray.is_initialized():
                ray.shutdown()
        except ImportError:
            pass


if __name__ == "__main__":
    main()
