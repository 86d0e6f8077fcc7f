"""The exceptions limelight raises. Every one is a :class:`LimelightError`.

Each message says what was wrong and what to do about it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "LimelightError",
    "InputError",
    "TargetError",
    "LayerError",
    "ParameterError",
    "NotDifferentiableError",
    "UnsupportedError",
    "UnsupportedModelError",
    "UnknownExplainerError",
    "UnknownModelError",
    "PluginError",
    "PluginWarning",
    "FrameworkNotInstalledError",
    "close_matches",
    "no_deeplift_rule",
]


class LimelightError(Exception):
    """Base class of every error limelight raises on purpose."""


class InputError(LimelightError, ValueError):
    """The inputs have the wrong rank, layout, dtype or values (NaN, inf, empty batch)."""


class TargetError(LimelightError, IndexError):
    """A target class index is out of range or the targets do not match the batch."""


class LayerError(LimelightError, KeyError):
    """A layer name is unknown, ambiguous, or unsuitable for the method."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ParameterError(LimelightError, TypeError):
    """An explainer got a parameter it does not accept."""


class NotDifferentiableError(LimelightError):
    """The model's output does not depend differentiably on the requested tensor."""


class UnsupportedError(LimelightError):
    """A backend lacks a capability an explainer needs, or an operation is not supported."""


class UnsupportedModelError(LimelightError, TypeError):
    """No installed backend can adapt this model."""


class UnknownExplainerError(LimelightError, KeyError):
    """No explainer is registered under this name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownModelError(LimelightError, ValueError):
    """No plugin could load a model spec."""


class PluginError(LimelightError):
    """A plugin failed to load or two plugins conflict."""


class FrameworkNotInstalledError(LimelightError, ImportError):
    """A framework a backend needs is not installed."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"limelight needs {module!r} for this, but it is not installed. "
            f"Install it with: pip install 'limelight[{extra}]'"
        )
        self.module = module
        self.extra = extra


def close_matches(name: str, candidates: Iterable[str], n: int = 5) -> str:
    """A short 'did you mean' clause listing the candidates closest to ``name``."""
    pool = list(dict.fromkeys(candidates))
    matches = difflib.get_close_matches(name, pool, n=n, cutoff=0.5)
    if not matches:
        matches = [c for c in pool if name.lower() in c.lower()][:n]
    if not matches:
        return ""
    return " Did you mean: " + ", ".join(repr(m) for m in matches) + "?"


class PluginWarning(UserWarning):
    """A plugin failed to load and was skipped (set LIMELIGHT_STRICT_PLUGINS=1 to raise)."""


def no_deeplift_rule(unsupported: dict[str, int]) -> UnsupportedError:
    """The error for a model with operations DeepLIFT has no rule for (name -> count), the
    same from every backend."""
    listed = ", ".join(f"{name} ({count}x)" for name, count in sorted(unsupported.items()))
    return UnsupportedError(
        f"DeepLIFT has no rule for these operations of the model: {listed}. Use "
        "method='shap-gradient' or 'shap-partition' (or 'shap', which picks for you)."
    )
