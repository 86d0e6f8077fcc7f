"""Pictures of explanations (matplotlib): heatmap overlays, SHAP red/blue maps, and a
comparison grid. Importing this module imports matplotlib; no framework."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .core.errors import FrameworkNotInstalledError
from .core.ops import displayable

if TYPE_CHECKING:  # explanation.py imports this module (Explanation.plot): no run-time cycle
    from .core.explanation import Explanation

__all__ = ["comparison_grid", "overlay", "plot", "shap_colormap"]


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise FrameworkNotInstalledError("matplotlib", extra="viz") from exc
    return plt


def shap_colormap() -> Any:
    """shap's own red/blue colormap (red pushes the class score up), or matplotlib's bwr."""
    try:
        from shap.plots import colors

        return colors.red_transparent_blue
    except ImportError:
        return _pyplot().get_cmap("bwr")


def _displayable(image: np.ndarray) -> np.ndarray:
    """One image for ``imshow``: pixel values in [0, 1], a single channel squeezed."""
    image = displayable(image)
    return image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Blend a ``(H, W)`` heatmap in [0, 1] over an ``(H, W, 3)`` image; returns RGB in [0, 1]."""
    plt = _pyplot()
    rgb = _displayable(image)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=-1)
    colored = plt.get_cmap(cmap)(np.clip(heatmap, 0, 1))[..., :3]
    return (1 - alpha) * rgb + alpha * colored


def _draw(ax: Any, exp: Explanation, index: int, alpha: float, mask: np.ndarray | None) -> Any:
    """Draw sample ``index`` of ``exp`` on ``ax``; returns the mappable for a colorbar."""
    image = None if exp.inputs is None else _displayable(exp.inputs[index])
    values = exp.values[index]
    if exp.targets.ndim == 2:
        values = values[..., 0]
    if values.ndim == 2:  # a CAM map in [0, 1]
        if image is not None:
            ax.imshow(overlay(image, values, alpha=alpha))
        mappable = ax.imshow(values, cmap="jet", vmin=0, vmax=1, alpha=0 if image is not None else 1)
    else:  # SHAP attributions (H, W, C): summed over channels, red up / blue down
        summed = values.sum(axis=-1)
        limit = float(np.abs(summed).max()) or 1.0
        if image is not None:
            gray = image.mean(axis=-1) if image.ndim == 3 else image
            ax.imshow(gray, cmap="gray", alpha=0.35)
        mappable = ax.imshow(summed, cmap=shap_colormap(), vmin=-limit, vmax=limit)
    if mask is not None:
        ax.contour(mask.astype(float), levels=[0.5], colors="white", linewidths=1.2)
    ax.set_xticks([])
    ax.set_yticks([])
    return mappable


def plot(
    exp: Explanation,
    index: int | None = None,
    alpha: float = 0.5,
    colorbar: bool = True,
    class_names: Sequence[str] | None = None,
) -> Any:
    """A figure of one sample (``index``) or every sample of ``exp``; returns the Figure."""
    plt = _pyplot()
    indices = range(len(exp)) if index is None else [index]
    fig, axes = plt.subplots(1, len(indices), figsize=(3 * len(indices), 3.2), squeeze=False)
    for ax, i in zip(axes[0], indices, strict=True):
        mappable = _draw(ax, exp, i, alpha, None)
        target = int(np.ravel(exp.targets[i])[0])
        name = class_names[target] if class_names else f"class {target}"
        ax.set_title(f"{exp.method}: {name}", fontsize=9)
        if colorbar:
            fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def comparison_grid(
    explanations: Mapping[str, Explanation],
    class_names: Sequence[str] | None = None,
    masks: np.ndarray | None = None,
    alpha: float = 0.5,
) -> Any:
    """Rows = images, columns = the given explanations (e.g. method × framework), each titled
    with its column name, predicted class and score; ``masks`` ``(N, H, W)`` are outlined."""
    plt = _pyplot()
    columns = list(explanations.items())
    n = len(columns[0][1])
    fig, axes = plt.subplots(n, len(columns) + 1, figsize=(2.3 * (len(columns) + 1), 2.4 * n), squeeze=False)
    first = columns[0][1]
    for row in range(n):
        ax = axes[row, 0]
        if first.inputs is not None:
            ax.imshow(_displayable(first.inputs[row]))
        if masks is not None:
            ax.contour(masks[row].astype(float), levels=[0.5], colors="white", linewidths=1.2)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(f"image {row}", fontsize=8)
        if row == 0:
            ax.set_title("input", fontsize=9)
        for col, (label, exp) in enumerate(columns, start=1):
            ax = axes[row, col]
            _draw(ax, exp, row, alpha, None if masks is None else masks[row])
            predicted = int(exp.outputs[row].argmax())
            name = class_names[predicted] if class_names else str(predicted)
            score = float(exp.outputs[row, predicted])
            ax.set_title(f"{label}\n{name} ({score:.2f})" if row == 0 else f"{name} ({score:.2f})", fontsize=8)
    fig.tight_layout()
    return fig
