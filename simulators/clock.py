"""Simulated time: a virtual clock (as fast as possible), a scaled clock (real time or N x), seeds, durations.

A simulation never reads the wall clock for the content of a message: every timestamp is a scheduled
simulated time (start + offsets), so with a :class:`VirtualClock` the same seed and start give the same
messages byte for byte. The clock only decides *when* a message goes out:

    VirtualClock    jumps to the next scheduled time at once (``--speed max`` or ``0``)
    ScaledClock     simulated time runs at ``speed`` x the monotonic clock (``--speed 1`` is real time)

Randomness comes from one ``random.Random`` per device, seeded by :func:`derive_seed` (a SHA-256 of the
scenario seed and the device's name), so adding a device does not change the others' streams.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Final, Protocol

from pydantic import BeforeValidator, Field

MAX_WAIT_S: Final = 0.5
"""A scaled clock sleeps in slices of at most this long, so a stop request is seen promptly."""

_DURATION: Final = re.compile(r"(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")
_UNITS: Final = (86400.0, 3600.0, 60.0, 1.0)


class SimClock(Protocol):
    """The simulated time, and waiting for it."""

    def now(self) -> datetime:
        """The current simulated time (timezone-aware)."""
        ...

    def sleep_until(self, moment: datetime) -> bool:
        """Wait until the simulated time reaches ``moment``; False if stopped meanwhile."""
        ...


class VirtualClock:
    """As fast as possible: ``sleep_until`` moves the time forward at once and never sleeps.

    ``stop`` (optional) ends a run early: once set, ``sleep_until`` returns False.
    """

    def __init__(self, start: datetime, *, stop: threading.Event | None = None) -> None:
        _aware(start)
        self._now = start
        self._stop = stop

    def now(self) -> datetime:
        return self._now

    def sleep_until(self, moment: datetime) -> bool:
        if self._stop is not None and self._stop.is_set():
            return False
        self._now = max(self._now, moment)
        return True


class ScaledClock:
    """Simulated time = ``start`` + ``speed`` x (monotonic time since construction).

    ``monotonic`` and ``wait`` are injected so tests run without real sleeps: ``wait(seconds)`` blocks up to
    that long and returns True when the run must stop (the default waits on ``stop``).
    """

    def __init__(
        self,
        start: datetime,
        speed: float = 1.0,
        *,
        stop: threading.Event | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        _aware(start)
        if not speed > 0:
            raise ValueError(f"speed must be above 0, not {speed}")
        self._start = start
        self._speed = speed
        self._monotonic = monotonic
        self._origin = monotonic()
        event = stop if stop is not None else threading.Event()
        self._wait = wait if wait is not None else event.wait

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> datetime:
        return self._start + timedelta(seconds=(self._monotonic() - self._origin) * self._speed)

    def sleep_until(self, moment: datetime) -> bool:
        while True:
            ahead = (moment - self.now()).total_seconds() / self._speed
            if ahead <= 0:
                return True
            if self._wait(min(ahead, MAX_WAIT_S)):
                return False


def parse_speed(text: str) -> float | None:
    """``max`` or ``0``: as fast as possible (None, a virtual clock); otherwise a factor above 0."""
    if text.strip().lower() in ("max", "0", "0.0"):
        return None
    try:
        speed = float(text)
    except ValueError:
        raise ValueError(f"speed {text!r} is not a number or 'max'") from None
    if not speed > 0 or speed == float("inf"):
        raise ValueError(f"speed {text!r} must be above 0 (or 'max')")
    return speed


def make_clock(speed: float | None, start: datetime, *, stop: threading.Event | None = None) -> SimClock:
    """A virtual clock for ``speed`` None, else a scaled one."""
    if speed is None:
        return VirtualClock(start, stop=stop)
    return ScaledClock(start, speed, stop=stop)


def parse_duration(raw: object) -> float:
    """Seconds from a number or from text such as ``90``, ``"90s"``, ``"15m"``, ``"2h30m"``, ``"1d"``."""
    if isinstance(raw, bool):
        raise ValueError("a duration is a number of seconds or text such as '2h30m'")
    if isinstance(raw, int | float):
        return float(raw)
    if not isinstance(raw, str):
        raise ValueError("a duration is a number of seconds or text such as '2h30m'")
    text = raw.strip().lower()
    try:
        return float(text)
    except ValueError:
        pass
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"{raw!r} is not a duration (seconds, or text such as '90s', '15m', '2h30m', '1d')")
    return sum(float(part) * unit for part, unit in zip(match.groups(), _UNITS, strict=True) if part)


Seconds = Annotated[float, BeforeValidator(parse_duration), Field(ge=0, allow_inf_nan=False)]
"""A duration or offset in a scenario file: seconds, or text such as ``"2h30m"``."""


def derive_seed(seed: int, *names: str) -> int:
    """A 64-bit seed for one device, the same on every run and platform (unlike ``hash()`` of a str)."""
    text = "\x1f".join([str(seed), *names]).encode("utf-8")
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big")


def device_random(seed: int, *names: str) -> random.Random:
    """The random stream of one device (or one part of the park), derived from the scenario seed."""
    return random.Random(derive_seed(seed, *names))


def floor_time(moment: datetime, step_s: float) -> datetime:
    """``moment`` rounded down to a whole multiple of ``step_s`` seconds since the epoch."""
    epoch = moment.timestamp()
    return moment - timedelta(seconds=epoch - (epoch // step_s) * step_s)


def _aware(moment: datetime) -> None:
    if moment.tzinfo is None:
        raise ValueError(f"{moment} must be timezone-aware")
