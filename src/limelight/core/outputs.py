"""``output=``: which tensor of a model's (possibly structured) outputs is explained.

Backends call :func:`select_output` on whatever the model returned, with the selector the
user gave (``limelight.explain(..., output=...)`` / ``limelight.wrap(model, output=...)``)
and a predicate that recognises the backend's tensors; nothing here imports a framework.

A selector is one of

* ``None`` (the default): a single tensor as it is; from a mapping (a ``dict``, a Hugging
  Face ``ModelOutput``, which is an ``OrderedDict`` with attributes) its ``"logits"``, else
  its ``"out"`` (torchvision segmentation models return ``{"out", "aux"}``); a container
  holding exactly one tensor, that tensor; anything else is an :class:`InputError` listing
  the choices;
* a ``str``: a mapping key, an attribute name, or (for a Keras multi-output model returning
  a list) one of the model's ``output_names``;
* an ``int``: a position in a tuple / list (a Keras multi-output list) or in a mapping's
  values (as ``ModelOutput.to_tuple()[i]``); negative counts from the end;
* a callable ``fn(raw_outputs) -> tensor``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import InputError, LimelightError, ParameterError

__all__ = ["OutputSelector", "check_selector", "select_output", "selector_key", "DEFAULT_KEYS"]

#: A selector as users give it (see the module docstring).
OutputSelector = str | int | Callable[[Any], Any] | None

#: Mapping keys picked when ``output=None``, in order.
DEFAULT_KEYS = ("logits", "out")


def check_selector(output: Any) -> OutputSelector:
    """``output=`` checked: None, a str, an int (not a bool) or a callable."""
    if output is None or isinstance(output, str) or callable(output):
        return output
    if not isinstance(output, bool):
        try:
            return operator.index(output)
        except TypeError:
            pass
    raise ParameterError(
        f"output= takes a key or attribute name (str), a position (int) or a callable "
        f"fn(outputs) -> tensor; got {output!r}."
    )


def selector_key(output: OutputSelector) -> Any:
    """A hashable stand-in of ``output`` for caches of compiled functions."""
    return ("output", output if output is None or isinstance(output, str | int) else id(output))


def _describe(value: Any) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None:
        try:
            return "(" + ", ".join("None" if s is None else str(int(s)) for s in shape) + ")"
        except (TypeError, ValueError):
            return str(shape)
    return type(value).__name__


def _choices(raw: Any, names: Sequence[str] | None) -> str:
    if isinstance(raw, Mapping):
        return ", ".join(f"{k!r}: {_describe(v)}" for k, v in raw.items())
    if isinstance(raw, list | tuple):
        labels = list(names) if names is not None and len(names) == len(raw) else None
        return ", ".join(
            f"{i}{f' ({labels[i]!r})' if labels else ''}: {_describe(v)}" for i, v in enumerate(raw)
        )
    return _describe(raw)


def _kind(raw: Any) -> str:
    if isinstance(raw, Mapping):
        return f"a {type(raw).__name__}"
    if isinstance(raw, list | tuple):
        return f"a {type(raw).__name__} of {len(raw)}"
    return f"a {type(raw).__name__}"


def select_output(
    raw: Any,
    output: OutputSelector,
    *,
    is_array: Callable[[Any], bool],
    names: Sequence[str] | None = None,
) -> Any:
    """The tensor of ``raw`` (what the model returned) picked by ``output``.

    ``is_array`` tells the backend's tensors; ``names`` names the entries of a list or tuple
    ``raw`` (a Keras model's ``output_names``). Raises :class:`InputError` when nothing fits,
    naming the choices and ``output=``.
    """
    if output is None:
        if is_array(raw):
            return raw
        if isinstance(raw, Mapping):
            for key in DEFAULT_KEYS:
                if key in raw and is_array(raw[key]):
                    return raw[key]
        arrays = list(raw.values()) if isinstance(raw, Mapping) else list(raw) if isinstance(raw, list | tuple) else []
        if len(arrays) == 1 and is_array(arrays[0]):
            return arrays[0]
        if isinstance(raw, Mapping | list | tuple):
            raise InputError(
                f"the model returned {_kind(raw)} ({_choices(raw, names)}); pick the tensor to explain "
                f"with output=: a key or name (str), a position (int) or a callable "
                f"fn(outputs) -> tensor, e.g. limelight.explain(model, x, method, output=...)."
            )
        picked = raw
    elif callable(output) and not isinstance(output, str):
        try:
            picked = output(raw)
        except LimelightError:
            raise
        except Exception as exc:  # the user's callable: one clear error, chained
            raise InputError(
                f"the output= callable {getattr(output, '__qualname__', output)!r} raised "
                f"{type(exc).__name__}: {exc}; it is called with what the model returned "
                f"({_kind(raw)}: {_choices(raw, names)}) and must return one tensor of it."
            ) from exc
    elif isinstance(output, str):
        picked = _by_name(raw, output, names)
    else:
        picked = _by_position(raw, int(output), names)
    if not is_array(picked):
        what = "the model" if output is None else f"output={output!r}"
        raise InputError(
            f"{what} gave a {type(picked).__name__}, not a tensor: limelight explains one tensor of "
            "scores, (N, K) or dense (N, ..., K); pick one with output= (a key, an attribute, a "
            "position or a callable)."
        )
    return picked


def _by_name(raw: Any, name: str, names: Sequence[str] | None) -> Any:
    if isinstance(raw, Mapping) and name in raw:
        return raw[name]
    if isinstance(raw, list | tuple) and names is not None and name in names and len(names) == len(raw):
        return raw[list(names).index(name)]
    attribute = getattr(raw, name, None) if type(raw) not in (dict, list, tuple) else None
    if attribute is not None and not callable(attribute):  # an object's or ModelOutput's field
        return attribute
    raise InputError(
        f"output={name!r} is not among what the model returned ({_kind(raw)}: {_choices(raw, names)}); "
        "pass one of those keys or names, a position (int) or a callable fn(outputs) -> tensor."
    )


def _by_position(raw: Any, index: int, names: Sequence[str] | None) -> Any:
    if isinstance(raw, Mapping):
        values = list(raw.values())
    elif isinstance(raw, list | tuple):
        values = list(raw)
    else:
        raise InputError(
            f"output={index} picks a position, but the model returned {_kind(raw)} "
            f"{_describe(raw)}, not a tuple, list or mapping; leave output= out for a single tensor."
        )
    if not -len(values) <= index < len(values):
        raise InputError(
            f"output={index} is out of range: the model returned {_kind(raw)} ({_choices(raw, names)})."
        )
    return values[index]
