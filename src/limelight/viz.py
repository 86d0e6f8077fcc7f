"""Pictures of explanations (matplotlib): heatmap overlays, SHAP red/blue maps, and a
comparison grid. Importing this module imports matplotlib; no framework."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .core.errors import InputError, UnsupportedError
from .core.lazy import require
from .core.ops import displayable
from .core.targets import target_name

if TYPE_CHECKING:  # explanation.py imports this module (Explanation.plot): no run-time cycle
    from .core.explanation import Explanation

__all__ = ["comparison_grid", "overlay", "plot", "shap_colormap"]


def _pyplot() -> Any:
    return require("matplotlib.pyplot", "viz", "matplotlib")


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


def _targets(exp: Explanation, index: int) -> list[int]:
    """The explained class of each target column ``t`` of sample ``index``."""
    return [int(t) for t in np.ravel(exp.targets[index])]


def _sample_values(exp: Explanation, index: int, t: int) -> np.ndarray:
    """The values of sample ``index`` for target column ``t`` (the ``T`` axis dropped)."""
    values = exp.values[index]
    return values[..., t] if exp.targets.ndim == 2 else values


def _kind(exp: Explanation) -> str:
    """``"map"`` (CAM ``(H, W)``), ``"image"`` (attributions ``(H, W, C)``) or ``"bars"``
    (tabular ``(D,)``) per sample; anything else is refused with a clear error."""
    ndim = exp.values.ndim - 1 - (exp.targets.ndim == 2)
    inputs = None if exp.inputs is None else exp.inputs.ndim - 1
    if ndim == 1 and inputs in (None, 1):
        return "bars"
    if ndim == 2 and inputs in (None, 3):
        return "map"
    if ndim == 3 and inputs in (None, 3):
        return "image"
    raise UnsupportedError(
        f"cannot draw {exp.method!r} values of shape {exp.values.shape} (targets {exp.targets.shape}"
        + ("" if exp.inputs is None else f", inputs {exp.inputs.shape}")
        + "): limelight.viz draws image explanations, (N, H, W) maps or (N, H, W, C) attributions, "
        "and (N, D) tabular attributions as bars."
    )


def _draw(ax: Any, exp: Explanation, index: int, alpha: float, mask: np.ndarray | None, t: int = 0) -> Any:
    """Draw target column ``t`` of sample ``index`` of ``exp`` on ``ax``; returns the
    mappable for a colorbar (None for a bar plot)."""
    kind = _kind(exp)
    values = _sample_values(exp, index, t)
    if kind == "bars":  # tabular attributions: one bar per feature, red up / blue down
        colors = np.where(values >= 0, "#ff0051", "#008bfb")
        ax.bar(np.arange(len(values)), values, color=colors)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_xlabel("feature", fontsize=8)
        return None
    image = None if exp.inputs is None else _displayable(exp.inputs[index])
    if kind == "map":  # a CAM map in [0, 1]
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


def _score(exp: Explanation, index: int, target: int) -> str:
    """The model's output for the explained class of sample ``index`` as a title's
    ``" (0.28)"``; ``""`` where the explanation does not hold it (a target that is no class, or a class of dense
    ``(N, ..., K)`` outputs, e.g. a Region target, whose score depends on its mask)."""
    if target < 0 or exp.outputs.ndim != 2:
        return ""
    return f" ({float(exp.outputs[index, target]):.2f})"


def plot(
    exp: Explanation,
    index: int | None = None,
    alpha: float = 0.5,
    colorbar: bool = True,
    class_names: Sequence[str] | None = None,
) -> Any:
    """A figure of one sample (``index``) or every sample of ``exp``; returns the Figure.

    Each panel is titled with the explained target (with ``(N, T)`` targets, one panel per
    target). Image explanations are drawn as maps, ``(N, D)`` tabular attributions as bars."""
    plt = _pyplot()
    _kind(exp)  # a clear error before any figure is made
    n = len(exp)
    if index is None:
        indices = list(range(n))
    else:
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for an explanation of {n} samples")
        indices = [index % n]
    panels = [(i, t) for i in indices for t in range(len(_targets(exp, i)))]
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.2), squeeze=False)
    for ax, (i, t) in zip(axes[0], panels, strict=True):
        mappable = _draw(ax, exp, i, alpha, None, t)
        ax.set_title(f"{exp.method}: {target_name(_targets(exp, i)[t], class_names)}", fontsize=9)
        if colorbar and mappable is not None:
            fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def _check_aligned(columns: list[tuple[str, Explanation]], masks: np.ndarray | None) -> None:
    """Refuse explanations that do not show the same images (another number of samples or
    another image size than the first) and masks of another shape, with an InputError."""
    label0, first = columns[0]
    size = tuple(first.values.shape[1:3])
    for label, exp in columns[1:]:
        if len(exp) != len(first) or tuple(exp.values.shape[1:3]) != size:
            raise InputError(
                f"comparison_grid puts the explanations of the same images side by side, but {label!r} has "
                f"{len(exp)} samples of {exp.values.shape[1:3]} and {label0!r} {len(first)} of {size}: "
                "explain the same images with each, or slice them alike (exp[:k])."
            )
    if masks is not None and np.shape(masks) != (len(first), *size):
        raise InputError(f"masks have shape {np.shape(masks)}; the explanations need (N, H, W) = "
                         f"{(len(first), *size)}.")


def comparison_grid(
    explanations: Mapping[str, Explanation],
    class_names: Sequence[str] | None = None,
    masks: np.ndarray | None = None,
    alpha: float = 0.5,
) -> Any:
    """Rows = images, columns = the given explanations (e.g. method × framework), each titled
    with its column name, the explained target's class and the model's score for it (with
    ``(N, T)`` targets, one column per target); ``masks`` ``(N, H, W)`` are outlined. A target
    that is no class (a Function or Similarity target) is titled ``score``, and a class of
    dense outputs (a Region target) has no score in its title. Explanations of other images
    (another number, or size) are refused with an InputError."""
    plt = _pyplot()
    columns = list(explanations.items())
    if not columns:
        raise UnsupportedError("comparison_grid needs at least one explanation.")
    for label, exp in columns:
        if _kind(exp) == "bars":
            raise UnsupportedError(
                f"comparison_grid draws image explanations; {label!r} has tabular values of shape "
                f"{exp.values.shape} (plot it with exp.plot())."
            )
    _check_aligned(columns, masks)
    n = len(columns[0][1])
    # one panel column per (explanation, target column)
    panels = [
        (label, exp, t) for label, exp in columns for t in range(exp.targets.shape[1] if exp.targets.ndim == 2 else 1)
    ]
    fig, axes = plt.subplots(n, len(panels) + 1, figsize=(2.3 * (len(panels) + 1), 2.4 * n), squeeze=False)
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
        for col, (label, exp, t) in enumerate(panels, start=1):
            ax = axes[row, col]
            _draw(ax, exp, row, alpha, None if masks is None else masks[row], t)
            target = _targets(exp, row)[t]
            title = target_name(target, class_names, prefix="") + _score(exp, row, target)
            ax.set_title(f"{label}\n{title}" if row == 0 else title, fontsize=8)
    fig.tight_layout()
    return fig
