"""Framework-free layer logic shared by backends: picking the default layer."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import NamedTuple

from .errors import LayerError
from .tokens import infer_grid

__all__ = ["Traced", "pick_default_layer", "is_spatial"]

Shape = Sequence[int | None]


class Traced(NamedTuple):
    """One layer call of a traced forward pass, as backends report it.

    ``shape`` is the output's shape, channels-last (``(N, h, w, C)``, tokens ``(N, T, C)``),
    None for outputs that are not one tensor. ``output`` identifies the output tensor object
    and its contents (``id()``, with torch's in-place version counter): equal for two layers
    that return the very same, unmodified tensor. ``memory`` identifies
    the memory behind it where the framework has views (torch: the storage's pointer and the
    element count), else None.
    """

    name: str
    shape: Shape | None
    output: Hashable | None = None
    memory: Hashable | None = None


def is_spatial(shape: Shape | None, input_shape: Shape | None = None) -> bool:
    """Whether a channels-last layer output has more than one position to map.

    ``(N, h, w, C)`` and ``(N, d, h, w, C)`` always count. With ``input_shape`` (the
    canonical input's): for image inputs ``(N, H, W, C)`` a ``(N, T, C)`` token output
    counts when its tokens form a grid of the image (:func:`~limelight.core.tokens.infer_grid`);
    for 3-D inputs (1-D signals ``(N, L, C)``) a ``(N, l, C)`` output counts.
    """
    if shape is None:
        return False
    dims = tuple(shape)
    if len(dims) in (4, 5):
        positions = 1
        for d in dims[1:-1]:
            if d is None:
                return True
            positions *= d
        return positions > 1
    if len(dims) == 3 and input_shape is not None and dims[1] is not None:
        if len(input_shape) == 4 and None not in input_shape[1:3]:
            found = infer_grid(int(dims[1]), (int(input_shape[1]), int(input_shape[2])))  # type: ignore[arg-type]
            return found is not None and found[1][0] * found[1][1] > 1
        if len(input_shape) == 3:
            return int(dims[1]) > 1
    return False


def _is_tokens(shape: Shape | None, input_shape: Shape | None) -> bool:
    return shape is not None and len(shape) == 3 and input_shape is not None and len(input_shape) == 4


def pick_default_layer(
    finished: Sequence[tuple[str, Shape | None] | Traced],
    separator: str,
    input_shape: Shape | None = None,
) -> str:
    """Choose the default CAM layer from one traced forward pass.

    ``finished`` lists the layer calls (:class:`Traced`, or ``(name, shape)`` pairs) in the
    order layers *finished* running (a container finishes after its children); shapes are
    channels-last. ``input_shape`` is the canonical input's shape (token layers count only
    with it). The rule:

    1. The last layer with a spatial output (:func:`is_spatial`) that ran once.
    2. If it only re-arranges the output of the layer that finished just before it (a view
       of the same memory: ``Permute``, ``Flatten``-like modules), that layer instead
       (torchvision Swin: ``norm``, not the ``permute`` after it).
    3. If it is a container, its innermost descendant that returned the very same tensor
       (``layer4.1`` rather than ``layer4``, ``mobilenetv2/out_relu`` rather than
       ``mobilenetv2``); never a branch of a residual block, whose output is a different
       tensor of the same shape (ConvNeXt's ``stochastic_depth``).
    4. Token outputs ``(N, T, C)`` of an image model (vision transformers): after the last
       block only the class token reaches the head, so the patch tokens' gradients there are
       zero. The default is the first layer, in finishing order, inside the last transformer
       block with the block's token shape (its first norm in pre-norm blocks: torchvision
       ``encoder.layers.encoder_layer_11.ln_1``, timm ``blocks.11.norm1``). The last block is
       the chosen layer when it has token-shaped descendants, else the nearest earlier
       token-shaped container (narrowed by rule 3): ``encoder.layers`` ->
       ``encoder_layer_11``. A flat model without block containers keeps the layer of 1-3.
    """
    calls = [c if isinstance(c, Traced) else Traced(c[0], c[1]) for c in finished]
    counts: dict[str, int] = {}
    for call in calls:
        counts[call.name] = counts.get(call.name, 0) + 1
    for index in range(len(calls) - 1, -1, -1):
        if counts[calls[index].name] == 1 and is_spatial(calls[index].shape, input_shape):
            break
    else:
        raise LayerError(
            "this model has no layer with a spatial (h, w, channels) or token output that runs once "
            "per forward; pass layer= explicitly (Model.layers() lists the names)."
        )
    names = {c.name for c in calls}

    def has_descendants(name: str) -> bool:
        return any(other.startswith(name + separator) for other in names)

    # 2. a view of the previous layer's output: name the layer that computed it
    while index > 0 and not has_descendants(calls[index].name):
        here, before = calls[index], calls[index - 1]
        if (
            here.memory is None
            or here.memory != before.memory
            or here.output == before.output
            or counts[before.name] != 1
            or not is_spatial(before.shape, input_shape)
            or here.name.startswith(before.name + separator)
        ):
            break
        index -= 1

    def innermost(index: int) -> int:
        chosen = calls[index]
        for inner_index in range(index - 1, -1, -1):
            inner = calls[inner_index]
            if not inner.name.startswith(chosen.name + separator) or inner.shape is None:
                break
            same = inner.output is not None and inner.output == chosen.output
            if counts[inner.name] != 1 or not same:
                break
            index, chosen = inner_index, inner
        return index

    index = innermost(index)
    chosen = calls[index]
    if not _is_tokens(chosen.shape, input_shape):
        return chosen.name
    assert chosen.shape is not None
    token_shape = tuple(chosen.shape[1:])

    def token_call(call: Traced) -> bool:
        return call.shape is not None and tuple(call.shape[1:]) == token_shape and counts[call.name] == 1

    block = None
    if has_descendants(chosen.name):
        block = index
    else:
        for earlier in range(index - 1, -1, -1):
            call = calls[earlier]
            if chosen.name.startswith(call.name + separator):
                continue  # an ancestor of the chosen layer
            if token_call(call) and has_descendants(call.name):
                block = innermost(earlier)
                break
    if block is None:
        return chosen.name
    prefix = calls[block].name + separator
    for call in calls[:block]:
        if call.name.startswith(prefix) and token_call(call):
            return call.name
    return chosen.name
