"""Rate-of-change rule: a value rising (or falling) by more than `change` within `window_s`.

Per station, a window of recent (time, value) pairs in event time and a monotonic deque of its minimum
(or maximum), so each reading costs O(1) amortised. Fires when the rise over the window exceeds `change`;
resolves when it falls to `clear` (default: change) or below.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from rules.common import RuleConfig, epoch, fmt, live, severity_field
from rules.interfaces import BaseRule, Event
from rules.signals import Signal


class RateConfig(RuleConfig):
    type: Literal["rate_of_change"]
    value: str
    direction: Literal["rising", "falling"] = "rising"
    change: float = Field(gt=0)
    clear: float | None = Field(default=None, ge=0)
    window_s: float = Field(gt=0, le=86400)
    severity: str = severity_field()


class _Window:
    """Values within the window, and a monotonic deque giving the window's extreme in O(1)."""

    def __init__(self) -> None:
        self.points: deque[tuple[float, float]] = deque()
        self.extreme: deque[tuple[float, float]] = deque()
        self.firing = False

    def add(self, t: float, x: float, window: float) -> float:
        self.points.append((t, x))
        while self.extreme and self.extreme[-1][1] >= x:
            self.extreme.pop()
        self.extreme.append((t, x))
        while self.points and self.points[0][0] < t - window:
            self.points.popleft()
        while self.extreme[0][0] < t - window:
            self.extreme.popleft()
        return x - self.extreme[0][1]


class RateRule(BaseRule):
    def __init__(self, config: RateConfig) -> None:
        self.config = config
        self.name = config.name
        self._sign = 1.0 if config.direction == "rising" else -1.0
        self._windows: dict[str, _Window] = {}

    def observe(self, event: Event, at: datetime) -> Iterable[Signal]:
        c = self.config
        reading = live(event)
        if reading is None or not c.watches(reading.station) or not reading.valid(c.value):
            return ()
        event = reading
        value = event.values[c.value]
        window = self._windows.setdefault(event.station, _Window())
        change = window.add(epoch(at), self._sign * value, c.window_s)
        clear = c.clear if c.clear is not None else c.change
        if not window.firing and change > c.change:
            window.firing = True
            return [self._signal("firing", event.station, at, value, change)]
        if window.firing and change <= clear:
            window.firing = False
            return [self._signal("resolved", event.station, at, value, change)]
        return ()

    def _signal(self, state: Literal["firing", "resolved"], source: str, at: datetime, value: float,
                change: float) -> Signal:
        c = self.config
        minutes = fmt(c.window_s / 60)
        en = f"{c.value} at {source} {c.direction.replace('ing', 'es')} by {fmt(change)} within {minutes} min"
        cn = f"{source} 站 {c.value} {minutes} 分钟内{'上升' if self._sign > 0 else '下降'} {fmt(change)}"
        if state == "resolved":
            en, cn = f"{c.value} at {source} is steady again", f"{source} 站 {c.value} 变化已平稳"
        return Signal(self.name, source, state, at, c.severity, value, c.change, en, cn,
                      {"value_name": c.value, "change": change})

    def snapshot(self) -> dict[str, Any]:
        return {s: {"points": list(w.points), "firing": w.firing} for s, w in self._windows.items()}

    def restore(self, state: dict[str, Any]) -> None:
        for source, raw in state.items():
            window = _Window()
            for t, x in raw["points"]:
                window.add(t, x, self.config.window_s)
            window.firing = bool(raw["firing"])
            self._windows[source] = window
