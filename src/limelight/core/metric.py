"""``Metric``: the base class of evaluation metrics (built-in or plugin).

A metric scores relevance maps ``(N, H, W)`` one sample at a time and returns ``(N,)``
scores. Localisation metrics need ground-truth masks ``(N, H, W)``; faithfulness metrics
need the model (through :class:`~limelight.Model`, so every backend works).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from .errors import InputError, ParameterError
from .explanation import Explanation
from .model import Model

__all__ = ["Metric", "relevance_map"]


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


class Metric(abc.ABC):
    """One evaluation metric. Subclasses set :attr:`name`, :attr:`defaults`,
    :attr:`needs_mask`/:attr:`needs_model`, :attr:`higher_is_better`, and implement
    :meth:`score`."""

    name: ClassVar[str]
    defaults: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    needs_mask: ClassVar[bool] = False
    needs_model: ClassVar[bool] = False
    higher_is_better: ClassVar[bool] = True

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ParameterError(
                f"metric {self.name!r} does not accept {', '.join(unknown)}; it accepts: "
                f"{', '.join(sorted(self.defaults)) or 'no parameters'}."
            )
        self.params: dict[str, Any] = {**self.defaults, **params}

    def __call__(
        self,
        maps: np.ndarray,
        *,
        x: np.ndarray | None = None,
        targets: np.ndarray | None = None,
        masks: np.ndarray | None = None,
        model: Model | None = None,
        explanation: Explanation | None = None,
    ) -> np.ndarray:
        """Scores ``(N,)`` of maps ``(N, H, W)`` (canonical ``x``, ``(N,)`` targets); the
        ``explanation`` the maps came from, if any, for metrics that need more than a map."""
        if self.needs_mask and masks is None:
            raise InputError(f"metric {self.name!r} needs ground-truth masks (N, H, W).")
        if self.needs_model and (model is None or x is None or targets is None):
            raise InputError(f"metric {self.name!r} needs the model, the inputs and the targets.")
        if masks is not None and masks.shape != maps.shape:
            raise InputError(f"masks have shape {masks.shape}, maps {maps.shape}: they must match.")
        scores = self.score(maps, x=x, targets=targets, masks=masks, model=model, explanation=explanation)
        return np.asarray(scores, np.float64)

    @abc.abstractmethod
    def score(self, maps: np.ndarray, **context: Any) -> np.ndarray:
        """Per-sample scores ``(N,)``."""
