"""Synthetic datasets with exact ground truth, for demos, tests and evaluation.

:func:`shapes` draws one class-defining shape (square, disk, triangle, cross) in one quadrant
and a class-independent distractor (ring or line) in another, on noise. Its masks say exactly
where the evidence for the class is, so an explanation can be scored against them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CLASSES", "DISTRACTORS", "Shapes", "shapes"]

CLASSES = ("square", "disk", "triangle", "cross")
DISTRACTORS = ("ring", "line")


@dataclass(frozen=True)
class Shapes:
    """A batch of the shapes dataset.

    Attributes:
        images: ``(N, S, S, 3)`` float32 in [0, 1], channels-last.
        labels: ``(N,)`` int64 class index into :data:`CLASSES`.
        masks: ``(N, S, S)`` bool, the pixels of the class-defining shape.
        distractor_masks: ``(N, S, S)`` bool, the pixels of the distractor.
        boxes: ``(N, 4)`` int64 ``(top, left, bottom, right)`` bounding box of the shape
            (bottom/right exclusive).
    """

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    distractor_masks: np.ndarray
    boxes: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASSES


def _shape_mask(kind: str, dy: np.ndarray, dx: np.ndarray, r: float) -> np.ndarray:
    if kind == "square":
        return (np.abs(dx) <= 0.8 * r) & (np.abs(dy) <= 0.8 * r)
    if kind == "disk":
        return dx**2 + dy**2 <= r**2
    if kind == "triangle":  # apex up: half-width grows from 0 at the top to r at the bottom
        return (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
    if kind == "cross":
        bar = r / 3
        return ((np.abs(dx) <= bar) & (np.abs(dy) <= r)) | ((np.abs(dy) <= bar) & (np.abs(dx) <= r))
    if kind == "ring":
        dist = np.sqrt(dx**2 + dy**2)
        return (dist <= r) & (dist >= 0.6 * r)
    raise ValueError(kind)


def shapes(n: int, seed: int = 0, size: int = 32, noise: float = 0.25) -> Shapes:
    """Generate ``n`` images of ``size × size`` (32 or 64) with exact ground-truth masks.

    Classes are balanced in expectation; shape, distractor, quadrants, sizes, positions and
    colours are drawn from ``numpy.random.RandomState(seed)``, so a seed gives the same set.
    """
    if size % 2 or size < 16:
        raise ValueError(f"size must be an even number >= 16, got {size}")
    rng = np.random.RandomState(seed)
    q = size // 2
    yy, xx = np.mgrid[0:q, 0:q].astype(np.float32)
    images = (rng.rand(n, size, size, 3) * noise).astype(np.float32)
    labels = rng.randint(0, len(CLASSES), size=n).astype(np.int64)
    masks = np.zeros((n, size, size), bool)
    distractors = np.zeros((n, size, size), bool)
    for i in range(n):
        quadrant, other = rng.choice(4, size=2, replace=False)
        for kind, quad, target in (
            (CLASSES[labels[i]], quadrant, masks),
            (DISTRACTORS[rng.randint(len(DISTRACTORS))], other, distractors),
        ):
            r = rng.uniform(0.28, 0.42) * q
            cy, cx = rng.uniform(r + 0.5, q - r - 0.5, size=2)
            dy, dx = yy - cy, xx - cx
            if kind == "line":
                angle = rng.uniform(0, np.pi)
                local = (np.abs(dx * np.sin(angle) - dy * np.cos(angle)) <= 0.08 * q) & (dx**2 + dy**2 <= r**2)
            else:
                local = _shape_mask(kind, dy, dx, r)
            top, left = (quad // 2) * q, (quad % 2) * q
            target[i, top : top + q, left : left + q] = local
            colour = rng.uniform(0.55, 1.0, size=3).astype(np.float32)
            images[i][target[i]] = colour
    boxes = np.zeros((n, 4), np.int64)
    for i in range(n):
        rows, cols = np.flatnonzero(masks[i].any(1)), np.flatnonzero(masks[i].any(0))
        boxes[i] = rows[0], cols[0], rows[-1] + 1, cols[-1] + 1
    return Shapes(images=images, labels=labels, masks=masks, distractor_masks=distractors, boxes=boxes)
