"""Logging that does not flood: a million bad messages make a handful of lines, not a million."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class ThrottledLog:
    """Logs the first `burst` events of each key per `window_s`, then one summary line per window."""

    def __init__(
        self, logger: logging.Logger, *, burst: int = 5, window_s: float = 60.0,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._burst = burst
        self._window = window_s
        self._now = now
        self._counts: dict[str, int] = {}
        self._window_start = now()

    def warning(self, key: str, msg: str, *args: object) -> None:
        self._roll()
        count = self._counts.get(key, 0) + 1
        self._counts[key] = count
        if count <= self._burst:
            self._log.warning(msg, *args)

    def _roll(self) -> None:
        if self._now() - self._window_start < self._window:
            return
        for key, count in self._counts.items():
            if count > self._burst:
                self._log.warning("%s: %d more like this in the last %.0fs", key, count - self._burst, self._window)
        self._counts.clear()
        self._window_start = self._now()
