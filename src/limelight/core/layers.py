"""Framework-free layer logic shared by backends: picking the default layer."""

from __future__ import annotations

from collections.abc import Sequence

from .errors import LayerError

__all__ = ["pick_default_layer"]


def _is_spatial(shape: Sequence[int | None] | None) -> bool:
    if shape is None or len(shape) != 4:
        return False
    h, w = shape[1], shape[2]
    return h is None or w is None or h * w > 1


def pick_default_layer(
    finished: Sequence[tuple[str, Sequence[int | None] | None]], separator: str
) -> str:
    """Choose the default CAM layer from one traced forward pass.

    ``finished`` lists ``(layer name, output shape)`` in the order layers *finished* running
    (a container finishes after its children). The default is the last layer with a spatial
    4-D output (more than one position) that ran once; when that is a container, its
    innermost descendant that produced the same output shape just before it is named
    instead (``layer4.1`` rather than ``layer4``, ``mobilenetv2/out_relu`` rather than
    ``mobilenetv2``), since it is the same tensor under a more precise name.
    """
    counts: dict[str, int] = {}
    for name, _ in finished:
        counts[name] = counts.get(name, 0) + 1
    for index in range(len(finished) - 1, -1, -1):
        name, shape = finished[index]
        if counts[name] == 1 and _is_spatial(shape):
            break
    else:
        raise LayerError(
            "this model has no layer with a spatial (h, w, channels) output that runs once per "
            "forward; pass layer= explicitly (Model.layers() lists the names)."
        )
    assert shape is not None  # _is_spatial(None) is False
    chosen, chosen_shape = name, tuple(shape)
    for inner, inner_shape in reversed(finished[:index]):
        if not inner.startswith(chosen + separator) or inner_shape is None:
            break
        if counts[inner] != 1 or tuple(inner_shape) != chosen_shape:
            break
        chosen = inner
    return chosen
