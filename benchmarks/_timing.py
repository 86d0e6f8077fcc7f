"""Timing helpers shared by the benchmarks: interleaved repeats, medians, a ratio table."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


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


def table(title: str, times: dict[str, float], baseline: str) -> str:
    """A Markdown table of median times and their ratio to ``baseline``."""
    base = times[baseline]
    lines = [f"### {title}", "", "| what | median s | ÷ baseline |", "|---|---:|---:|"]
    for name, seconds in times.items():
        lines.append(f"| {name} | {seconds:.3f} | {seconds / base:.2f} |")
    return "\n".join(lines)
