"""Faulty-sensor rules: a value flat for too long, a value outside its physical range, a fault flag."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, model_validator

from ingest.models import AirReading
from rules.common import RuleConfig, epoch, fmt, live, severity_field
from rules.interfaces import BaseRule, Event
from rules.signals import Signal


class _PerValueRule(BaseRule):
    """A rule about one value of the watched stations; `_check` sees each valid reading of it."""

    value: str

    def observe(self, event: Event, at: datetime) -> Iterable[Signal]:
        cfg: Any = self.config  # type: ignore[attr-defined]
        reading = live(event)
        if reading is None or not cfg.watches(reading.station):
            return ()
        return self._check(reading, at)

    def _check(self, reading: AirReading, at: datetime) -> Iterable[Signal]:
        raise NotImplementedError


class FlatlineConfig(RuleConfig):
    type: Literal["flatline"]
    value: str
    duration_s: float = Field(gt=0)
    epsilon: float = Field(default=0.0, ge=0)
    severity: str = severity_field()


class FlatlineRule(_PerValueRule):
    """Fires when a value has not moved by more than `epsilon` for `duration_s`; resolves when it moves."""

    def __init__(self, config: FlatlineConfig) -> None:
        self.config = config
        self.name = config.name
        self._state: dict[str, list[Any]] = {}  # station -> [value, since, firing]

    def _check(self, reading: AirReading, at: datetime) -> Iterable[Signal]:
        c = self.config
        if not reading.valid(c.value):
            return ()
        value, t = reading.values[c.value], epoch(at)
        state = self._state.setdefault(reading.station, [value, t, False])
        if abs(value - state[0]) > c.epsilon:
            was_firing = state[2]
            self._state[reading.station] = [value, t, False]
            if was_firing:
                return [self._signal("resolved", reading.station, at, value, 0.0)]
            return ()
        if not state[2] and t - state[1] >= c.duration_s:
            state[2] = True
            return [self._signal("firing", reading.station, at, value, t - state[1])]
        return ()

    def _signal(self, state: Literal["firing", "resolved"], source: str, at: datetime, value: float,
                flat_for: float) -> Signal:
        c = self.config
        if state == "firing":
            en = f"{c.value} at {source} has stayed at {fmt(value)} for {fmt(flat_for)} s (sensor stuck?)"
            cn = f"{source} 站 {c.value} 持续 {fmt(flat_for)} 秒保持 {fmt(value)}（传感器疑似故障）"
        else:
            en, cn = f"{c.value} at {source} is moving again", f"{source} 站 {c.value} 数据恢复变化"
        return Signal(self.name, source, state, at, c.severity, value, c.duration_s, en, cn, {"value_name": c.value})

    def snapshot(self) -> dict[str, Any]:
        return {k: list(v) for k, v in self._state.items()}  # [value, since, firing] changes in place

    def restore(self, state: dict[str, Any]) -> None:
        self._state = {k: list(v) for k, v in state.items()}


class RangeConfig(RuleConfig):
    type: Literal["range"]
    value: str
    min: float | None = None
    max: float | None = None
    severity: str = severity_field()

    @model_validator(mode="after")
    def _bounds(self) -> RangeConfig:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError(f"min {self.min} must be below max {self.max}")
        return self


class RangeRule(_PerValueRule):
    """Fires while a value lies outside its physical range [min, max]; resolves when it is back inside."""

    def __init__(self, config: RangeConfig) -> None:
        self.config = config
        self.name = config.name
        self._outside: set[str] = set()

    def _check(self, reading: AirReading, at: datetime) -> Iterable[Signal]:
        c = self.config
        if not reading.valid(c.value):
            return ()
        value, source = reading.values[c.value], reading.station
        low = c.min is not None and value < c.min
        outside = low or (c.max is not None and value > c.max)
        if outside and source not in self._outside:
            self._outside.add(source)
            bound = c.min if low else c.max
            return [Signal(self.name, source, "firing", at, c.severity, value, bound,
                           f"{c.value} at {source} is {fmt(value)}, outside [{c.min}, {c.max}] (sensor fault?)",
                           f"{source} 站 {c.value} 为 {fmt(value)}，超出物理范围", {"value_name": c.value})]
        if not outside and source in self._outside:
            self._outside.discard(source)
            return [Signal(self.name, source, "resolved", at, c.severity, value, None,
                           f"{c.value} at {source} is within range again", f"{source} 站 {c.value} 恢复正常范围",
                           {"value_name": c.value})]
        return ()

    def snapshot(self) -> dict[str, Any]:
        return {"outside": sorted(self._outside)}

    def restore(self, state: dict[str, Any]) -> None:
        self._outside = set(state.get("outside", ()))


FLAG_MEANINGS = {"F": "stopped", "M": "maintenance", "D": "fault", "C": "calibration", "B": "communication fault"}


class FlagConfig(RuleConfig):
    type: Literal["flag"]
    value: str = "*"
    flags: tuple[str, ...] = ("D", "B", "F")
    severity: str = severity_field()


class FlagRule(_PerValueRule):
    """Fires while a station flags a value with one of `flags` (instrument fault...); resolves when the
    station sends that value unflagged (or with another flag) again."""

    def __init__(self, config: FlagConfig) -> None:
        self.config = config
        self.name = config.name
        self._flagged: dict[str, str] = {}  # station -> "name:flag" that fired

    def _check(self, reading: AirReading, at: datetime) -> Iterable[Signal]:
        c, source = self.config, reading.station
        names = reading.values if c.value == "*" else ({c.value} & set(reading.values))
        bad = sorted(f"{n}:{reading.flags[n]}" for n in names if reading.flags.get(n) in c.flags)
        if bad and source not in self._flagged:
            self._flagged[source] = bad[0]
            flag = bad[0].split(":")[1]
            meaning = FLAG_MEANINGS.get(flag, flag)
            return [Signal(self.name, source, "firing", at, c.severity, None, None,
                           f"{source} flags {', '.join(bad)} ({meaning})",
                           f"{source} 站数据标记 {', '.join(bad)}", {"flags": ",".join(bad)})]
        if not bad and source in self._flagged and (c.value == "*" or c.value in reading.values):
            del self._flagged[source]
            return [Signal(self.name, source, "resolved", at, c.severity, None, None,
                           f"{source} data flags are normal again", f"{source} 站数据标记恢复正常")]
        return ()

    def snapshot(self) -> dict[str, Any]:
        return dict(self._flagged)

    def restore(self, state: dict[str, Any]) -> None:
        self._flagged = {k: str(v) for k, v in state.items()}
