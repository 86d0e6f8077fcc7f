"""What both kits share: the report, named checks that fail with AssertionError, host copies."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

import numpy as np

from ..core.arrays import host_array

__all__ = ["Report", "Checks", "NotApplicable", "host"]


class NotApplicable(Exception):
    """Raised inside ``Checks.check``: the check does not apply (noted in the report)."""


@dataclass
class Report:
    """What a check function did: the checks that passed and notes on what it could not check
    (and, for :func:`~limelight.testing.check_explainer`, the models it ran on and skipped)."""

    subject: str
    passed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"{self.subject}: {len(self.passed)} checks passed ({', '.join(self.passed)})"]
        if self.checked:
            lines.append("models: " + ", ".join(self.checked))
        lines += [f"skipped {name}: {why}" for name, why in self.skipped.items()]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def host(a: Any) -> np.ndarray:
    """Any array (NumPy, torch, TensorFlow, ...) as a NumPy array, without importing a framework."""
    return host_array(a)


class Checks:
    """Named checks: inside ``with checks.check(name):`` a failure (or any unexpected
    exception) becomes ``AssertionError("<prefix> [name]: what was wrong")``."""

    def __init__(self, prefix: str, report: Report) -> None:
        self.prefix = prefix
        self.report = report
        self.current = "?"

    @contextlib.contextmanager
    def check(self, name: str) -> Iterator[None]:
        self.current = name
        try:
            yield
        except NotApplicable as why:
            self.report.notes.append(f"{name}: not checked ({why})")
            return
        except AssertionError:
            raise
        except Exception as exc:
            raise AssertionError(f"{self.prefix} [{name}]: raised {type(exc).__name__}: {exc}") from exc
        if name not in self.report.passed:
            self.report.passed.append(name)

    def fail(self, message: str) -> NoReturn:
        raise AssertionError(f"{self.prefix} [{self.current}]: {message}")

    def expect(self, condition: object, message: str) -> None:
        if not condition:
            self.fail(message)

    def close(self, actual: Any, expected: Any, what: str, *, atol: float, rtol: float = 1e-5) -> None:
        """``actual`` ≈ ``expected`` (host arrays): same shape, and ``|a - e| <= atol · max|e|
        + rtol · |e|`` (``atol`` is relative to the largest magnitude)."""
        a, e = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
        if a.shape != e.shape:
            self.fail(f"{what}: shape {a.shape}, expected {e.shape}")
        if not np.isfinite(a).all():
            self.fail(f"{what}: contains NaN or inf")
        scale = float(np.abs(e).max()) if e.size else 0.0
        tol = atol * max(scale, 1e-30) + rtol * np.abs(e)
        diff = np.abs(a - e)
        if (diff > tol).any():
            worst = np.unravel_index(int(np.argmax(diff - tol)), diff.shape)
            self.fail(
                f"{what}: differs by up to {diff.max():.3g} (at {tuple(int(i) for i in worst)}: "
                f"{a[worst]:.6g} vs {e[worst]:.6g}; tolerance {atol:g} of max |value| {scale:.3g})"
            )

    def raises(self, errors: type[BaseException] | tuple[type[BaseException], ...], call: Callable[[], object],
               what: str) -> BaseException:
        """``call()`` raises one of ``errors``; anything else (or nothing) fails the check."""
        names = errors.__name__ if isinstance(errors, type) else " or ".join(e.__name__ for e in errors)
        try:
            call()
        except errors as exc:
            return exc
        except Exception as exc:  # noqa: BLE001
            self.fail(f"{what} raised {type(exc).__name__} ({exc}); expected a {names}")
        self.fail(f"{what} raised nothing; expected a {names}")
