"""``Explainer``: the base class of every explanation method (built-in or plugin)."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from .errors import ParameterError, TargetError, UnsupportedError
from .explanation import Explanation
from .model import Model

__all__ = ["Explainer"]


class Explainer(abc.ABC):
    """One explanation method, written once against :class:`~limelight.Model` in NumPy.

    Subclasses set :attr:`name`, list the parameters they accept with their defaults in
    :attr:`defaults`, the backend capabilities they need in :attr:`requires`, and implement
    :meth:`explain`. The constructor rejects unknown parameters and a backend that lacks a
    required capability before any work is done.
    """

    #: The registered name, e.g. ``"gradcam"``.
    name: ClassVar[str]
    #: Accepted keyword parameters and their defaults.
    defaults: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    #: Backend capabilities (see :attr:`Model.capabilities`) this method needs.
    requires: ClassVar[frozenset[str]] = frozenset()
    #: Whether :meth:`explain` accepts ``(N, T)`` targets (several outputs per sample).
    multi_target: ClassVar[bool] = False

    def __init__(self, model: Model, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            accepted = ", ".join(sorted(self.defaults)) or "no parameters"
            raise ParameterError(
                f"explainer {self.name!r} does not accept {', '.join(unknown)}; it accepts: {accepted}."
            )
        missing = sorted(c for c in self.requires if not model.supports(c))
        if missing:
            raise UnsupportedError(
                f"explainer {self.name!r} needs the backend capability {', '.join(missing)}, which "
                f"the {model.framework} backend ({type(model).__name__}) does not provide."
            )
        self.model = model
        self.params: dict[str, Any] = {**self.defaults, **params}

    @abc.abstractmethod
    def explain(self, x: np.ndarray, targets: np.ndarray | None) -> Explanation:
        """Explain canonical inputs ``x`` for ``targets`` (``(N,)`` ints, ``(N, T)`` when
        :attr:`multi_target`, or None: the predicted class)."""

    def check_targets(self, targets: np.ndarray | None) -> None:
        """Reject ``(N, T)`` targets for single-target methods, before any work."""
        if targets is not None and targets.ndim == 2 and not self.multi_target:
            raise TargetError(
                f"explainer {self.name!r} explains one output per sample; pass one int per "
                "sample (or loop over the classes)."
            )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} on {self.model!r}>"
