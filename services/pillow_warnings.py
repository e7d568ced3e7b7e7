"""Pillow's warnings about untrusted images, rate-limited into the service log.

A hostile image can make Pillow warn once per element: one PNG carrying an 8 MB EXIF block
with 65,535 bad tags wrote ~127,000 lines ("Tag data larger than file. Skipping tag N") to
the error log, each message distinct, so Python's default once-per-message filter neither
stops them nor stops its registry of seen messages from growing with every request.

:func:`install` sends every warning raised inside Pillow (``PIL.*`` modules) to
:class:`RateLimitedWarnings`: the first :data:`BURST` of each :data:`WINDOW_S` are logged at
WARNING, the rest only counted, and the count is logged when the next window opens. Warnings
from anywhere else keep Python's usual handling.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

BURST = 10
"""Pillow warnings logged per window."""
WINDOW_S = 60.0
"""Length of a window, seconds."""
PILLOW_MODULES = r"PIL(\..*)?"


class RateLimitedWarnings:
    """A ``warnings.showwarning`` replacement: Pillow's warnings go to ``logger`` at most
    ``burst`` per ``window_s`` seconds; any other warning goes to ``fallback``."""

    def __init__(self, fallback: Callable[..., Any], logger: logging.Logger = log, *,
                 burst: int = BURST, window_s: float = WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.fallback = fallback
        self.logger = logger
        self.burst = burst
        self.window_s = window_s
        self.clock = clock
        self.suppressed_total = 0
        self._lock = threading.Lock()
        self._window_start = -float("inf")
        self._logged = 0
        self._suppressed = 0

    def __call__(self, message: Warning | str, category: type[Warning], filename: str,
                 lineno: int, file: Any = None, line: str | None = None) -> None:
        if not _from_pillow(filename):
            self.fallback(message, category, filename, lineno, file, line)
            return
        with self._lock:
            now = self.clock()
            if now - self._window_start >= self.window_s:
                if self._suppressed:
                    self.logger.warning("%d more Pillow warnings suppressed in the last %.0f s",
                                        self._suppressed, self.window_s)
                self._window_start, self._logged, self._suppressed = now, 0, 0
            if self._logged >= self.burst:
                self._suppressed += 1
                self.suppressed_total += 1
                return
            self._logged += 1
        self.logger.warning("Pillow: %s: %s", category.__name__, message)


def _from_pillow(filename: str) -> bool:
    parts = filename.replace("\\", "/").split("/")
    return len(parts) >= 2 and parts[-2] == "PIL"


def install(logger: logging.Logger = log) -> RateLimitedWarnings:
    """Route Pillow's warnings through one process-wide :class:`RateLimitedWarnings`
    (idempotent: a second call returns the installed one). The ``always`` filter for Pillow's
    modules keeps Python's per-module registry of seen messages from growing."""
    current = warnings.showwarning
    if isinstance(current, RateLimitedWarnings):
        return current
    warnings.filterwarnings("always", module=PILLOW_MODULES)
    limiter = RateLimitedWarnings(current, logger)
    warnings.showwarning = limiter
    return limiter
