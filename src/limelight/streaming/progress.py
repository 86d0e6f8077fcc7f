"""The progress bar of a dataset run: tqdm with images/s and ETA, or nothing (quiet)."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["Progress"]


class Progress:
    """``update(n, failed)`` after each batch; ``close()`` at the end. ``enabled=False`` (or
    no tqdm installed) shows nothing; the bar goes to stderr and hides itself where stderr is
    not a terminal only if ``enabled`` is None (tqdm's ``disable=None``)."""

    def __init__(self, total: int | None, *, enabled: bool | None = True, initial: int = 0,
                 desc: str = "explaining") -> None:
        self.failed = 0
        self._bar: Any = None
        if enabled is False:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:  # the bar is a nicety: tqdm comes with the viz extra
            return
        self._bar = tqdm(total=total, initial=initial, desc=desc, unit="img", unit_scale=False,
                         dynamic_ncols=True, smoothing=0.1, file=sys.stderr,
                         disable=None if enabled is None else False, leave=True)

    def update(self, n: int, failed: int = 0) -> None:
        self.failed += failed
        if self._bar is not None:
            if self.failed:
                self._bar.set_postfix(failed=self.failed, refresh=False)
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
