"""One retry policy: capped exponential backoff with jitter, declared once and frozen."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Delay before attempt `n` (0-based): min(cap, initial * factor**n), less up to `jitter` of it at random."""

    initial_s: float = 0.2
    cap_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        base = min(self.cap_s, self.initial_s * self.factor ** min(attempt, 64))
        return base * (1.0 - self.jitter * rand())
