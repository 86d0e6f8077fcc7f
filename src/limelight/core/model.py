"""The backend interface: :class:`Model`, the gradient API every explainer is written against.

Every array crossing this interface is NumPy and channels-last: inputs ``(N, H, W, C)``
(or ``(N, D)``), activations ``(N, h, w, C)``, outputs ``(N, K)``. A backend converts to and
from its framework's layout at its boundary, once.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .arrays import check_canonical, to_numpy_float32
from .errors import LayerError, ParameterError, UnsupportedError, close_matches

__all__ = ["Gradients", "Model", "GRADIENTS", "LAYERS", "DEEPLIFT", "RANDOMIZE", "reinitialize"]

#: Capability: ``gradients(x, targets, layer=None)`` (gradients with respect to the input).
GRADIENTS = "gradients"
#: Capability: ``layers()``, ``activations()`` and ``gradients(..., layer=name)``.
LAYERS = "layers"
#: Capability: ``parameter_layers()`` (layers with weights, input side first) and
#: ``randomized(layers, seed)`` (a new Model on a copy of the native model whose weights in
#: ``layers`` are redrawn; the user's model is never touched).
RANDOMIZE = "randomize"
#: Capability: ``deeplift_gradients(x, references, targets)`` (DeepLIFT rescale multipliers
#: ``(n, T, ...)`` for pairs of inputs and references) and ``deeplift_unsupported(x)`` (the
#: names of operations the rule cannot handle; empty when every one is fine).
DEEPLIFT = "deeplift"


@dataclass(frozen=True)
class Gradients:
    """What :meth:`Model.gradients` returns; all channels-last NumPy float32.

    ``outputs`` is ``(N, K)``; ``activations`` and ``gradients`` have the layer's (or the
    input's) shape, e.g. ``(N, h, w, C)``. ``gradients[i]`` is d ``outputs[i, targets[i]]`` /
    d ``activations[i]``.
    """

    outputs: np.ndarray
    activations: np.ndarray
    gradients: np.ndarray


class Model(abc.ABC):
    """A framework's model behind limelight's gradient API.

    Subclasses implement :meth:`predict` and :meth:`gradients` (and, for layer access,
    :meth:`layers`, :meth:`activations`, :meth:`default_layer`), convert layouts at their
    boundary, never leave the native model modified, and process at most
    :attr:`batch_size` samples per framework call.
    """

    framework: ClassVar[str]
    #: Optional capabilities this backend provides; explainers declare what they require.
    capabilities: ClassVar[frozenset[str]] = frozenset({GRADIENTS, LAYERS})

    def __init__(self, native: object) -> None:
        self.native = native
        #: Samples per framework call; ``None`` means the whole batch at once.
        self.batch_size: int | None = None

    def __repr__(self) -> str:
        return f"<limelight {type(self).__name__} ({self.framework}) of {type(self.native).__name__}>"

    # -- inputs ------------------------------------------------------------------------
    def canonical(self, inputs: Any) -> np.ndarray:
        """Convert inputs as the user feeds the native model to checked channels-last float32.

        The base version takes any array-like already in canonical layout; backends whose
        framework is channels-first override it.
        """
        return check_canonical(to_numpy_float32(inputs))

    # -- the gradient API ----------------------------------------------------------------
    @abc.abstractmethod
    def predict(self, x: np.ndarray) -> np.ndarray:
        """Model outputs ``(N, K)`` float32 for canonical inputs ``x``; no gradients."""

    @abc.abstractmethod
    def gradients(
        self, x: np.ndarray, targets: np.ndarray | None, layer: str | None = None
    ) -> Gradients:
        """Outputs, activations of ``layer`` (``None``: the input) and d score / d activations.

        The score is ``sum_i outputs[i, targets[i]]``; ``targets=None`` explains each
        sample's predicted class (resolved from the same forward pass with
        :func:`limelight.core.targets.resolve_targets`, which also range-checks targets).
        """

    def multi_gradients(
        self, x: np.ndarray, targets: np.ndarray, layer: str | None = None
    ) -> Gradients:
        """Like :meth:`gradients` for ``(N, T)`` targets: ``gradients`` is ``(N, T, ...)``.

        This version runs :meth:`gradients` once per column; backends override it to share
        one forward pass between the T targets.
        """
        columns = [self.gradients(x, targets[:, t], layer) for t in range(targets.shape[1])]
        return Gradients(
            columns[0].outputs,
            columns[0].activations,
            np.stack([c.gradients for c in columns], axis=1),
        )

    def layers(self) -> list[str]:
        """Names of the addressable layers, in the framework's own naming."""
        raise UnsupportedError(f"the {self.framework} backend does not expose layers.")

    def activations(self, x: np.ndarray, layer: str) -> np.ndarray:
        """Activations of ``layer`` for canonical ``x`` (channels-last); no gradients."""
        raise UnsupportedError(f"the {self.framework} backend does not expose activations.")

    def default_layer(self, x: np.ndarray | None = None) -> str:
        """The last layer with a spatial output (4-D with more than one position).

        ``x`` (canonical) is a sample input for backends that need a forward pass to learn
        output shapes.
        """
        raise UnsupportedError(f"the {self.framework} backend has no default layer.")

    # -- helpers for backends and explainers ------------------------------------------------
    def supports(self, capability: str) -> bool:
        """Whether this backend provides ``capability``."""
        return capability in self.capabilities

    def batches(self, n: int) -> Iterator[slice]:
        """Slices that cut ``n`` samples into chunks of at most :attr:`batch_size`."""
        size = self.batch_size or n
        for start in range(0, n, size):
            yield slice(start, min(start + size, n))

    @contextlib.contextmanager
    def batching(self, batch_size: int | None) -> Iterator[Model]:
        """Temporarily process at most ``batch_size`` samples per call (``None``: unchanged)."""
        if batch_size is None:
            yield self
            return
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ParameterError(f"batch_size must be a positive int, got {batch_size!r}.")
        previous, self.batch_size = self.batch_size, batch_size
        try:
            yield self
        finally:
            self.batch_size = previous

    def resolve_layer(self, layer: object) -> str:
        """Check a layer name against :meth:`layers`; unknown names list the closest ones."""
        names = self.layers()
        if isinstance(layer, str) and layer in names:
            return layer
        raise LayerError(
            f"unknown layer {layer!r} for this {self.framework} model."
            + close_matches(str(layer), names)
            + " Model.layers() lists every name."
        )


def reinitialize(arrays: list[np.ndarray], rng: np.random.RandomState) -> list[np.ndarray]:
    """Fresh random values for one layer's trainable arrays, given in canonical order
    (kernels ``(h, w, in, out)``, dense ``(in, out)``) and drawn from ``rng`` in that order,
    so twin backends draw the same numbers.

    A layer with a kernel is re-initialised as a new network would be (Adebayo et al. 2018):
    every array, bias included, uniform in ``±1/sqrt(fan_in)`` (PyTorch's default for
    convolutions and linear layers). A layer with only per-channel arrays (normalisation) has
    each array permuted across channels, which keeps its scale and scrambles its meaning.
    """
    kernels = [a for a in arrays if a.ndim >= 2]
    if not kernels:
        return [rng.permutation(a.ravel()).reshape(a.shape).astype(a.dtype) for a in arrays]
    bound = 1.0 / np.sqrt(max(1, int(np.prod(kernels[0].shape[:-1]))))
    return [rng.uniform(-bound, bound, a.shape).astype(a.dtype) for a in arrays]
