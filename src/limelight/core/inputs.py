"""Several inputs: a model fed a tuple or a dict of arrays, framework-free.

A batch of inputs is either one array (the usual case) or a *structure*: a ``tuple`` of
arrays (positional inputs, in order) or a ``dict`` of arrays keyed by input name (torch
keyword arguments, Keras named inputs). Every array of a structure has the same number of
rows ``N``. Canonicalisation keeps the structure: each array is made canonical on its own
(a torch ``(N, C, H, W)`` image becomes an ``(N, H, W, C)`` view, an ``(N, D)`` table stays).

The helpers here work on either form, so code written for one array (``rows(x)``,
``take(x, slice)``) works unchanged for several.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

from .errors import InputError, ParameterError

__all__ = [
    "several",
    "leaves",
    "names",
    "rebuild",
    "map_inputs",
    "rows",
    "take",
    "concat",
    "shapes",
    "describe",
    "select",
    "spatial_input",
    "spatial_key",
    "held",
    "shape_reference",
    "from_user",
]

#: A batch of inputs: an array, a tuple of arrays or a dict of arrays.
Inputs = Any


def several(x: Inputs) -> bool:
    """Whether ``x`` is a structure of several inputs (a tuple or a dict)."""
    return isinstance(x, tuple | Mapping)


def leaves(x: Inputs) -> list[Any]:
    """The arrays of ``x`` in order (one array: ``[x]``)."""
    if isinstance(x, Mapping):
        return list(x.values())
    if isinstance(x, tuple):
        return list(x)
    return [x]


def names(x: Inputs) -> list[str | int]:
    """The inputs' names: dict keys, tuple positions, ``[0]`` for one array."""
    if isinstance(x, Mapping):
        return list(x.keys())
    if isinstance(x, tuple):
        return list(range(len(x)))
    return [0]


def rebuild(like: Inputs, arrays: list[Any]) -> Inputs:
    """``arrays`` in the structure of ``like`` (one array: ``arrays[0]``)."""
    if isinstance(like, Mapping):
        return dict(zip(like.keys(), arrays, strict=True))
    if isinstance(like, tuple):
        return tuple(arrays)
    (only,) = arrays
    return only


def map_inputs(fn: Callable[..., Any], x: Inputs, *others: Inputs) -> Inputs:
    """``fn`` applied to each array of ``x`` (and the matching arrays of ``others``, which
    have ``x``'s structure), in ``x``'s structure."""
    columns = [leaves(x), *(leaves(o) for o in others)]
    return rebuild(x, [fn(*args) for args in zip(*columns, strict=True)])


def rows(x: Inputs) -> int:
    """The number of samples ``N`` (the first array's leading axis)."""
    return int(leaves(x)[0].shape[0])


def take(x: Inputs, index: Any) -> Inputs:
    """``x[index]`` for every array (``index``: a slice or an int on the sample axis)."""
    return map_inputs(lambda a: a[index], x)


def concat(parts: list[Inputs], cat: Callable[[list[Any]], Any]) -> Inputs:
    """Batches of one structure joined on the sample axis with ``cat`` (a list of arrays ->
    one); a single part is returned as it is."""
    if len(parts) == 1:
        return parts[0]
    return map_inputs(lambda *arrays: cat(list(arrays)), parts[0], *parts[1:])


def shapes(x: Inputs) -> Any:
    """Per-sample shapes, in ``x``'s structure: a hashable key for caches."""
    per = [tuple(int(d) if d is not None else None for d in a.shape[1:]) for a in leaves(x)]
    if isinstance(x, Mapping):
        return tuple(zip(x.keys(), per, strict=True))
    if isinstance(x, tuple):
        return tuple(per)
    return per[0]


def describe(x: Inputs, shape_of: Callable[[Any], str]) -> str:
    """``shape_of(array)`` for one array; ``{'image': ..., 'meta': ...}`` / ``(..., ...)``
    for several (for error messages)."""
    if isinstance(x, Mapping):
        return "{" + ", ".join(f"{k!r}: {shape_of(a)}" for k, a in x.items()) + "}"
    if isinstance(x, tuple):
        return "(" + ", ".join(shape_of(a) for a in x) + ")"
    return shape_of(x)


def select(x: Inputs, which: Any) -> str | int:
    """The key of the input named by ``explain_input=`` (a dict key or a tuple position;
    negative positions count from the end), checked against ``x``."""
    keys = names(x)
    if not several(x):
        if which in (None, 0):
            return 0
        raise ParameterError(
            f"explain_input={which!r} names one of several inputs, but the model is fed one "
            "array; leave explain_input out."
        )
    if isinstance(x, Mapping):
        if which in keys:
            return which
        raise ParameterError(
            f"explain_input={which!r} is not one of the inputs {', '.join(map(repr, keys))}; "
            "name one of the dict's keys."
        )
    try:
        position = operator.index(which)
    except TypeError:
        raise ParameterError(
            f"explain_input={which!r}: the inputs are a tuple of {len(keys)}; give a position "
            f"0..{len(keys) - 1}."
        ) from None
    if not -len(keys) <= position < len(keys):
        raise ParameterError(
            f"explain_input={which!r} is out of range for a tuple of {len(keys)} inputs."
        )
    return position % len(keys)


def get(x: Inputs, key: str | int) -> Any:
    """The input ``key`` of ``x`` (one array: ``x`` itself for key 0)."""
    if several(x):
        return x[key]
    return x


def held(xp: Any, x: Inputs, key: str | int, replacement: Any, samples: Any) -> Inputs:
    """Inputs for a batch of edited rows of input ``key`` (``replacement``, ``(B, ...)``)
    whose row ``j`` belongs to sample ``samples[j]`` (ints in ``xp``'s arrays): the other
    inputs are held at those samples' values (``xp.take``)."""
    return rebuild(
        x, [replacement if k == key else xp.take(a, samples, axis=0) for k, a in zip(names(x), leaves(x), strict=True)]
    )


def spatial_key(x: Inputs, which: Any = None) -> str | int:
    """The key of :func:`spatial_input`'s input (``0`` for one array): for several, the one
    named by ``which`` (``explain_input=``), else the only 4-D ``(N, H, W, C)`` one (an
    :class:`InputError` when there are none or several)."""
    if which is not None or not several(x):
        return select(x, which)
    images = [k for k, a in zip(names(x), leaves(x), strict=True) if a.ndim == 4]
    if len(images) == 1:
        return images[0]
    found = ", ".join(map(repr, images)) or "none"
    raise InputError(
        f"maps are sized by the model's one image input (N, H, W, C); among the inputs "
        f"{', '.join(map(repr, names(x)))} the image-shaped ones are: {found}. Name the one "
        "to map with explain_input=."
    )


def spatial_input(x: Inputs, which: Any = None) -> Any:
    """The input whose ``(H, W)`` spatial maps are sized by: ``x`` itself for one array, else
    the input :func:`spatial_key` names."""
    return get(x, spatial_key(x, which)) if several(x) else x


def shape_reference(x: Inputs) -> Any:
    """The input that layer shapes are judged against (token grids, channels-last stages):
    ``x`` itself, or of several inputs the first image-shaped ``(N, H, W, C)`` one (else the
    first). Never raises, unlike :func:`spatial_input`."""
    if not several(x):
        return x
    return next((a for a in leaves(x) if a.ndim == 4), leaves(x)[0])


def from_user(inputs: Any, canonical_one: Callable[[Any], Any], *, lists: bool = False) -> Inputs:
    """A user's inputs -> canonical ones: one array through ``canonical_one``; a tuple or a
    dict (a list too, with ``lists``: for models that declare several inputs) input by input,
    keeping the structure. Every input must have the same number of rows."""
    if isinstance(inputs, list) and lists:
        inputs = tuple(inputs)
    if not several(inputs):
        return canonical_one(inputs)
    if not len(inputs):
        raise InputError("inputs are an empty tuple/dict; pass the model's inputs.")
    done = []
    for key, value in zip(names(inputs), leaves(inputs), strict=True):
        try:
            done.append(canonical_one(value))
        except InputError as exc:
            raise InputError(f"input {key!r}: {exc}") from exc
    x = rebuild(inputs, done)
    counts = {k: int(a.shape[0]) for k, a in zip(names(x), leaves(x), strict=True)}
    if len(set(counts.values())) > 1:
        raise InputError(
            f"the inputs have different numbers of samples {counts}; every input needs one row "
            "per sample."
        )
    return x
