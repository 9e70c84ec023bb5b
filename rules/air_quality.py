"""Air quality per GB 3095 / HJ 663 / HJ 633: running averages and AQI per station, and the rules on them.

`AirQualityTracker` is shared by the rules of this module and runs before them: it feeds every valid
reading into the station's `StationAverages`, and when an hour (or a day) closes it computes the hourly
(实时报) or daily (日报) AQI of HJ 633 and hands the statistics it completed to the rules that follow in
the same call (`completed`), and the points it derived to `on_points` (measurements `air_quality_avg` and
`aqi`, timestamped at the END of their period, as Chinese bulletins label hours).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import Field, model_validator

from ingest.points import FieldValue, Point, epoch_ns
from rules import aqi as hj633
from rules import standards
from rules.averages import (
    DailyMax8h,
    DailyMean,
    EightHourMean,
    HourlyMean,
    LateReading,
    StationAverages,
    Statistic,
    ValidityPolicy,
)
from rules.common import RuleConfig, fmt, live, severity_field
from rules.interfaces import BaseRule, Event
from rules.signals import Signal

log = logging.getLogger(__name__)
HOUR = timedelta(hours=1)
AIR_QUALITY = "air_quality"  # the tracker's name in rule state
Averaging = Literal["1h", "24h", "8h", "mda8"]


def _averaging(stat: Statistic) -> Averaging:
    if isinstance(stat, HourlyMean):
        return "1h"
    if isinstance(stat, DailyMean):
        return "24h"
    if isinstance(stat, EightHourMean):
        return "8h"
    return "mda8"


def _end(stat: Statistic, tz: Any) -> datetime:
    if isinstance(stat, HourlyMean):
        return stat.start + HOUR
    if isinstance(stat, EightHourMean):
        return stat.start + 8 * HOUR
    return datetime.combine(stat.day, datetime.min.time(), tz) + timedelta(days=1)


def _value(stat: Statistic) -> float | None:
    return stat.value if isinstance(stat, DailyMax8h) else stat.mean


class AirQualityTracker(BaseRule):
    """Averages and AQI of every station (see the module docstring)."""

    name = AIR_QUALITY

    def __init__(
        self, park_id: str, tz: Any, *, edition: str | None = None, policy: ValidityPolicy | None = None,
        on_points: Callable[[list[Point]], None] = lambda points: None,
    ) -> None:
        self._park = park_id
        self._tz = tz
        self._edition = edition  # HJ 633 edition; None: the one in force on the day
        self._policy = policy or ValidityPolicy()
        self._stations: dict[str, StationAverages] = {}
        self.on_points = on_points
        self.completed: list[Statistic] = []
        self.reports: list[tuple[str, datetime, hj633.AqiResult]] = []  # (station, period end, result)
        self.late = 0

    def observe(self, event: Event, at: datetime) -> Iterable[Signal]:
        self.completed, self.reports = [], []
        reading = live(event)
        if reading is not None:
            out: list[Statistic] = []
            for item in self._station(reading.station).add_reading(at, reading.values, reading.invalid):
                if isinstance(item, LateReading):
                    self.late += 1
                else:
                    out.append(item)
            self._completed(out)
        return ()

    def tick(self, now: datetime) -> Iterable[Signal]:
        self.completed, self.reports = [], []
        out: list[Statistic] = []
        for station in self._stations.values():
            out.extend(station.advance(now))
        self._completed(out)
        return ()

    def _station(self, station: str) -> StationAverages:
        if station not in self._stations:
            self._stations[station] = StationAverages(station, self._tz, self._policy)
        return self._stations[station]

    def _completed(self, stats: list[Statistic]) -> None:
        if not stats:
            return
        self.completed = stats
        self.reports = self._aqi(stats)
        try:
            self.on_points(self._points(stats) + [self._aqi_point(*r) for r in self.reports])
        except Exception:
            log.exception("derived air-quality points not kept")

    def _aqi(self, stats: list[Statistic]) -> list[tuple[str, datetime, hj633.AqiResult]]:
        hourly: dict[tuple[str, datetime], dict[str, float]] = {}
        daily: dict[tuple[str, datetime], dict[str, float]] = {}
        for s in stats:
            value = _value(s)
            if not s.valid or value is None or value < 0:
                continue
            value = round(value, 9)  # 60 readings of 0.8 average to 0.8000000000000002: not a higher IAQI
            end = _end(s, self._tz)
            if isinstance(s, HourlyMean):
                hourly.setdefault((s.station, end), {})[s.pollutant] = value
            elif isinstance(s, EightHourMean):
                hourly.setdefault((s.station, end), {})[f"{s.pollutant}_8h"] = value
            elif isinstance(s, DailyMean):
                daily.setdefault((s.station, end), {})[s.pollutant] = value
            else:
                daily.setdefault((s.station, end), {})[f"{s.pollutant}_8h"] = value
        out = []
        for (station, end), conc in hourly.items():
            if set(conc) & set(hj633.POLLUTANTS):
                out.append((station, end, hj633.hourly_aqi(conc, self._edition_on(end))))
        for (station, end), conc in daily.items():
            named = {k: v for k, v in conc.items() if k != "o3"}  # daily O3 is its daily maximum 8 h mean
            if set(named) & set(hj633.POLLUTANTS) or "o3_8h" in named:
                out.append((station, end, hj633.daily_aqi(named, self._edition_on(end - HOUR))))
        return out

    def _edition_on(self, at: datetime) -> str:
        return self._edition or hj633.edition_in_force(at.astimezone(self._tz).date())

    def _points(self, stats: Sequence[Statistic]) -> list[Point]:
        points = []
        for s in stats:
            value = _value(s)
            if value is None:
                continue
            tags = {"park": self._park, "station": s.station, "averaging": _averaging(s)}
            fields: dict[str, FieldValue] = {s.pollutant: float(value), f"{s.pollutant}_valid": bool(s.valid)}
            points.append(Point("air_quality_avg", tags, fields, epoch_ns(_end(s, self._tz))))
        return points

    def _aqi_point(self, station: str, end: datetime, r: hj633.AqiResult) -> Point:
        tags = {"park": self._park, "station": station, "report": r.report, "edition": r.edition}
        fields: dict[str, FieldValue] = {f"iaqi_{k}": int(v) for k, v in r.iaqi.items() if v is not None}
        if r.aqi is not None:
            fields.update(aqi=int(r.aqi), level=int(r.level or 0), category=str(r.category))
        fields["primary"] = ",".join(r.primary_pollutants)
        return Point("aqi", tags, fields, epoch_ns(end))

    def snapshot(self) -> dict[str, Any]:
        return {s: a.snapshot() for s, a in self._stations.items()}

    def restore(self, state: dict[str, Any]) -> None:
        for station, raw in state.items():
            try:
                self._station(station).restore(raw)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("averages of %s not restored: %s", station, exc)


class AverageConfig(RuleConfig):
    """A limit on a completed GB 3095 average: explicit (`limit`) or from the standard's table."""

    type: Literal["average"]
    pollutant: str
    averaging: Averaging
    limit: float | None = None
    edition: Literal["2012", "2026"] = "2026"  # GB 3095 edition when `limit` is not given
    grade: Literal[1, 2] = 2
    clear: float | None = None
    severity: str = severity_field()

    @model_validator(mode="after")
    def _has_limit(self) -> AverageConfig:
        if self.limit is None:
            table = "8h" if self.averaging == "mda8" else self.averaging
            day = datetime.now(UTC).date()
            if standards.limit(self.pollutant, table, standards.edition_for(day, self.edition), self.grade) is None:
                raise ValueError(f"GB 3095 has no {self.averaging} limit for {self.pollutant}: give `limit`")
        return self


class AverageRule(BaseRule):
    """Fires when a completed, valid average exceeds its limit; resolves when a later one is at or below
    `clear` (default: the limit). Invalid averages (too few hours) neither fire nor clear."""

    def __init__(self, config: AverageConfig, tracker: AirQualityTracker) -> None:
        self.config = config
        self.name = config.name
        self._tracker = tracker
        self._firing: set[str] = set()

    def _limit(self, end: datetime) -> float:
        c = self.config
        if c.limit is not None:
            return c.limit
        table = "8h" if c.averaging == "mda8" else c.averaging
        edition = standards.edition_for((end - HOUR).date(), c.edition)
        value = standards.limit(c.pollutant, table, edition, c.grade)
        return float(value) if value is not None else float("inf")

    def observe(self, event: Event, at: datetime) -> Iterable[Signal]:
        return self._judge()

    def tick(self, now: datetime) -> Iterable[Signal]:
        return self._judge()

    def _judge(self) -> list[Signal]:
        c, out = self.config, []
        for s in self._tracker.completed:
            value = _value(s)
            if (s.pollutant != c.pollutant or _averaging(s) != c.averaging or not s.valid or value is None
                    or not c.watches(s.station)):
                continue
            end = _end(s, self._tracker._tz)
            limit = self._limit(end)
            clear = c.clear if c.clear is not None else limit
            if value > limit and s.station not in self._firing:
                self._firing.add(s.station)
                out.append(Signal(self.name, s.station, "firing", end, c.severity, value, limit,
                                  f"{c.averaging} mean of {c.pollutant} at {s.station} is {fmt(value)}, "
                                  f"above {fmt(limit)}",
                                  f"{s.station} 站 {c.pollutant} {c.averaging} 均值 {fmt(value)}，"
                                  f"超过限值 {fmt(limit)}",
                                  {"averaging": c.averaging, "pollutant": c.pollutant}))
            elif value <= clear and s.station in self._firing:
                self._firing.discard(s.station)
                out.append(Signal(self.name, s.station, "resolved", end, c.severity, value, limit,
                                  f"{c.averaging} mean of {c.pollutant} at {s.station} is back to {fmt(value)}",
                                  f"{s.station} 站 {c.pollutant} {c.averaging} 均值恢复至 {fmt(value)}"))
        return out

    def snapshot(self) -> dict[str, Any]:
        return {"firing": sorted(self._firing)}

    def restore(self, state: dict[str, Any]) -> None:
        self._firing = set(state.get("firing", ()))


class AqiConfig(RuleConfig):
    """AQI above a level for a while, e.g. hourly AQI above 200 for 2 hours."""

    type: Literal["aqi"]
    report: Literal["hourly", "daily"] = "hourly"
    above: int = Field(ge=0, le=500)
    clear: int | None = Field(default=None, ge=0, le=500)
    for_s: float = Field(default=0.0, ge=0)
    severity: str = severity_field()


class AqiRule(BaseRule):
    """Fires when consecutive AQI reports above `above` cover `for_s` (from the start of the first report's
    period to the end of the latest); resolves on a report at or below `clear` (default: above)."""

    def __init__(self, config: AqiConfig, tracker: AirQualityTracker) -> None:
        self.config = config
        self.name = config.name
        self._tracker = tracker
        self._since: dict[str, float] = {}
        self._firing: set[str] = set()

    def observe(self, event: Event, at: datetime) -> Iterable[Signal]:
        return self._judge()

    def tick(self, now: datetime) -> Iterable[Signal]:
        return self._judge()

    def _judge(self) -> list[Signal]:
        c, out = self.config, []
        period = HOUR if c.report == "hourly" else timedelta(days=1)
        clear = c.clear if c.clear is not None else c.above
        for station, end, r in self._tracker.reports:
            if r.report != c.report or r.aqi is None or not c.watches(station):
                continue
            if r.aqi > c.above:
                since = self._since.setdefault(station, (end - period).timestamp())
                if station not in self._firing and end.timestamp() - since >= c.for_s:
                    self._firing.add(station)
                    out.append(self._signal("firing", station, end, r))
            else:
                self._since.pop(station, None)
                if r.aqi <= clear and station in self._firing:
                    self._firing.discard(station)
                    out.append(self._signal("resolved", station, end, r))
        return out

    def _signal(
        self, state: Literal["firing", "resolved"], station: str, end: datetime, r: hj633.AqiResult
    ) -> Signal:
        c = self.config
        primary = ",".join(r.primary_pollutants) or "-"
        en = f"{c.report} AQI at {station} is {r.aqi} ({r.category_en}), primary {primary}"
        span = "小时" if c.report == "hourly" else "日"
        zh = f"{station} 站{span} AQI 为 {r.aqi}（{r.category}），首要污染物 {primary}"
        return Signal(self.name, station, state, end, c.severity, float(r.aqi or 0), float(c.above), en, zh,
                      {"category": str(r.category), "primary": primary, "edition": r.edition})

    def snapshot(self) -> dict[str, Any]:
        return {"since": dict(self._since), "firing": sorted(self._firing)}

    def restore(self, state: dict[str, Any]) -> None:
        self._since = {k: float(v) for k, v in state.get("since", {}).items()}
        self._firing = set(state.get("firing", ()))
