"""``Metric``: the base class of evaluation metrics (built-in or plugin), and the helpers that
move a metric's arrays between the host and the model's device.

A metric scores relevance maps ``(N, H, W)`` and returns ``(N,)`` scores. Localisation
metrics need ground-truth masks ``(N, H, W)``; faithfulness metrics need the model (through
:class:`~limelight.Model`, so every backend works). Maps, masks and scores are NumPy; the
images a metric feeds the model are built on the model's device with ``model.xp`` and fed in
batches of at most ``batch_size``.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from ..core.arrays import host_array
from ..core.errors import InputError, ParameterError, UnsupportedError
from ..core.explanation import Explanation
from ..core.model import Array, Model, check_batch_size
from ..core.targets import Class, Classes, Predicted, Target

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "Metric",
    "as_host",
    "check_class_explanation",
    "check_class_targets",
    "host_classes",
    "on_device",
    "on_host",
    "relevance_map",
]

#: Images per model call for metrics that run the model (deletion, insertion, ROAD, ...).
DEFAULT_BATCH_SIZE = 64


def relevance_map(exp: Explanation | np.ndarray) -> np.ndarray:
    """An explanation's evidence *for* its target as ``(N, H, W)`` float64: CAM maps as they
    are; attributions ``(N, H, W, C)`` summed over channels, positive part kept."""
    values = np.asarray(exp.values if isinstance(exp, Explanation) else exp, np.float64)
    if isinstance(exp, Explanation) and exp.targets.ndim == 2:
        values = values[..., 0]
    if values.ndim == 4:
        values = np.maximum(values.sum(axis=-1), 0)
    if values.ndim != 3:
        raise InputError(f"metrics take maps (N, H, W) or attributions (N, H, W, C); got {values.shape}")
    return values


def on_device(model: Model, x: Any) -> Array:
    """Canonical inputs on the model's device: a NumPy batch is moved once (as float32, the
    dtype of every model input so far); a backend array is used as it is."""
    if isinstance(x, np.ndarray):
        return model.asarray(np.asarray(x, np.float32))
    return x


def on_host(model: Model, x: Any) -> np.ndarray:
    """Canonical inputs as a NumPy array (a backend array is copied out once)."""
    return x if isinstance(x, np.ndarray) else model.to_numpy(x)


def as_host(a: Any, what: str = "masks") -> np.ndarray:
    """A user's array (NumPy, a torch tensor on any device, a TensorFlow tensor, anything
    ``np.asarray`` takes) as a NumPy array, without importing a framework."""
    if isinstance(a, np.ndarray):
        return a
    try:
        return host_array(a)
    except Exception as exc:
        raise InputError(f"{what} must be an array (NumPy, or a tensor of the model's framework); "
                         f"got {type(a).__name__}: {exc}") from exc


def host_classes(model: Model | None, targets: Any) -> np.ndarray:
    """The explained class per sample as ``(N,)`` int64 host ints (the first column of
    ``(N, T)`` targets, as :func:`relevance_map` takes the first map)."""
    if model is not None and hasattr(targets, "shape") and not isinstance(targets, np.ndarray):
        targets = model.to_numpy(targets)
    classes = np.asarray(targets).astype(np.int64)
    return classes[:, 0] if classes.ndim == 2 else classes.reshape(-1)


def _class_only(what: str, got: str) -> UnsupportedError:
    return UnsupportedError(
        f"{what}: these score one class's output per sample (its probability, or a map of another "
        f"class), so they need class targets on a classifier's outputs (N, K); {got}. Pass targets=None "
        "(the predicted class), an int or one int per sample (limelight.targets.Class), with a "
        "classifier's output (output= picks one); or score such explanations with metrics that "
        "need no class (localisation metrics, sparseness, complexity)."
    )


def check_class_targets(targets: Any, what: str) -> None:
    """Refuse ``targets=`` that name no class (:class:`~limelight.targets.Function`,
    :class:`~limelight.targets.Similarity`, :class:`~limelight.targets.Region`) with an
    :class:`UnsupportedError`, before any work: ``what`` (e.g. "the faithfulness metrics")
    score a class's output."""
    if isinstance(targets, Target) and not isinstance(targets, Class | Classes | Predicted):
        raise _class_only(what, f"targets=limelight.targets.{type(targets).__name__}(...) names no class's output")


def check_class_outputs(shape: tuple[int, ...], what: str) -> None:
    """Refuse model outputs that are not ``(N, K)`` (dense outputs ``(N, ..., K)``)."""
    if len(shape) != 2:
        raise _class_only(what, f"this model's output is dense, {tuple(shape)} (channels-last, classes last)")


def check_class_explanation(exp: Explanation, what: str) -> None:
    """Refuse an explanation whose targets are no class (-1: a Function or Similarity
    target) or whose outputs are dense (a Region target)."""
    check_class_outputs(tuple(exp.outputs.shape), what)
    if (np.asarray(exp.targets) < 0).any():
        raise _class_only(what, f"the {exp.method!r} explanation explains a score that is no class's (targets -1: "
                                "a limelight.targets.Function or Similarity)")


class Metric(abc.ABC):
    """One evaluation metric. Subclasses set :attr:`name`, :attr:`defaults`,
    :attr:`needs_mask`/:attr:`needs_model`, :attr:`higher_is_better`, and implement
    :meth:`score`.

    Every metric also takes ``batch_size``: the most images per model call for metrics that
    run the model (None: all at once).
    """

    name: ClassVar[str]
    defaults: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    needs_mask: ClassVar[bool] = False
    needs_model: ClassVar[bool] = False
    #: Whether the metric reads the explained class's output (the metrics that run the model
    #: do too): :func:`~limelight.evaluate` refuses targets that name no class for them.
    needs_class: ClassVar[bool] = False
    higher_is_better: ClassVar[bool] = True

    @property
    def reads_class(self) -> bool:
        """Whether a score depends on which class is explained (:attr:`needs_class`, or it
        runs the model)."""
        return self.needs_model or self.needs_class

    def __init__(self, *, batch_size: int | None = DEFAULT_BATCH_SIZE, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ParameterError(
                f"metric {self.name!r} does not accept {', '.join(unknown)}; it accepts: "
                f"{', '.join(sorted(self.defaults)) or 'no parameters'}."
            )
        self.batch_size = check_batch_size(batch_size)
        self.params: dict[str, Any] = {**self.defaults, **params}

    def __call__(
        self,
        maps: np.ndarray,
        *,
        x: Any = None,
        targets: Any = None,
        masks: Any = None,
        model: Model | None = None,
        explanation: Explanation | None = None,
    ) -> np.ndarray:
        """Scores ``(N,)`` of maps ``(N, H, W)``.

        Args:
            maps: relevance maps ``(N, H, W)`` (see :func:`relevance_map`).
            x: the canonical inputs ``(N, H, W, C)``: a NumPy array, or the model's own
                array on its device (as ``model.canonical`` returns it).
            targets: the explained class per sample, ``(N,)`` ints.
            masks: ground-truth masks ``(N, H, W)`` for localisation metrics (NumPy, or a
                framework's tensor: copied to the host).
            model: the :class:`~limelight.Model` for metrics that run it.
            explanation: the explanation the maps came from, for metrics that need more
                than a map.
        """
        maps = np.asarray(maps)
        if masks is not None:
            masks = as_host(masks)
        if self.needs_mask and masks is None:
            raise InputError(f"metric {self.name!r} needs ground-truth masks (N, H, W).")
        if self.needs_model and (model is None or x is None or targets is None):
            raise InputError(f"metric {self.name!r} needs the model, the inputs and the targets.")
        if masks is not None and masks.shape != maps.shape:
            raise InputError(f"masks have shape {masks.shape}, maps {maps.shape}: they must match.")
        if targets is not None:
            targets = host_classes(model, targets)
        scores = self.score(maps, x=x, targets=targets, masks=masks, model=model, explanation=explanation)
        return np.asarray(scores, np.float64)

    @abc.abstractmethod
    def score(self, maps: np.ndarray, *args: Any, **context: Any) -> np.ndarray:
        """Per-sample scores ``(N,)`` of ``maps``; called with :meth:`__call__`'s keywords
        (``x``, ``targets`` as ``(N,)`` host ints, ``masks``, ``model``, ``explanation``),
        so a subclass names the ones it uses, e.g.
        ``def score(self, maps, masks, **_)``."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.params}>"
