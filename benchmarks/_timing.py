"""Timing helpers shared by the benchmarks: interleaved repeats, medians, a ratio table,
CUDA-synchronised candidates."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def measure(candidates: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds per call for each candidate, repeats interleaved so machine noise is shared."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in samples.items()}


def synced(fn: Callable[[], Any], device: str) -> Callable[[], Any]:
    """``fn`` followed by ``torch.cuda.synchronize()`` when ``device`` is a CUDA device, so a
    timed call includes the GPU work it queued (and nothing queued before it)."""
    if not device.startswith("cuda"):
        return fn
    import torch

    def call() -> Any:
        out = fn()
        torch.cuda.synchronize()
        return out

    return call


def device_name(device: str) -> str:
    """What the benchmark ran on, for table titles."""
    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    return f"CPU ({torch.get_num_threads()} threads, torch {torch.__version__})"


def table(title: str, times: dict[str, float], baseline: str) -> str:
    """A Markdown table of median times and their ratio to ``baseline``."""
    base = times[baseline]
    lines = [f"### {title}", "", "| what | median s | ÷ baseline |", "|---|---:|---:|"]
    for name, seconds in times.items():
        lines.append(f"| {name} | {seconds:.4f} | {seconds / base:.2f} |")
    return "\n".join(lines)
