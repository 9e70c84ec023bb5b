"""Incremental averages of one station per GB 3095 Table 4 and HJ 663, without keeping raw history.

``StationAverages`` takes readings ``(ts, name, value, valid)`` in event time and emits, as frozen values,
each statistic when it is complete: the hourly mean of every pollutant, its daily (24 h) mean, the O3 8 h
moving mean and the O3 daily maximum 8 h mean. Only valid readings count (a reading whose HJ 212 flag
marks it invalid is given with ``valid=False``). Every statistic is emitted with ``valid`` saying whether
it meets the minimum data requirement; only a valid one may be used (AQI, compliance).

Validity (``ValidityPolicy``; domain.md §3.3; figures marked UNCONFIRMED are unchecked recollections):

    statistic              requirement                                                  default
    hourly mean            distinct minutes with a valid reading in the hour (UNCONFIRMED)   45
    daily (24 h) mean      valid hourly means in the calendar day (confirmed)                20
    O3 8 h moving mean     valid hourly means in the 8 h window (confirmed)                  6
    O3 daily max 8 h       valid 8 h means among the day's windows (UNCONFIRMED)             14
                           windows starting at these local hours                             00:00-16:00

The daily maximum 8 h windows: HJ 663-2013 takes the 8 h moving means "from 8 时 to 24 时", and an 8 h
moving mean is labelled by the end of its last hour, so the windows END at 08:00..24:00, i.e. start at
00:00..16:00: 17 windows within the calendar day, matching domain.md's "17 windows" (its "start
08:00-23:00" gives 16 and reaches into the next day, so it is taken as a slip). The day's maximum is then
complete at midnight. Pass ``mda8_window_starts=range(8, 24)`` for the other reading. HJ 663's exception (a day with
fewer valid windows still counts if its maximum exceeds the limit) is not applied: ``valid`` is False and
``value`` still carries the maximum of the valid windows.

Time: hours are clock hours of the UTC grid, which are the local clock hours of every whole-hour time zone
(Asia/Shanghai); days are calendar days in the park's time zone. An hour closes when the station's event
time (the latest ``ts`` seen, or the time given to ``advance``) has passed the hour's end by ``lateness``;
a reading for a closed hour is returned as ``LateReading`` and not counted. Means are arithmetic: of the
readings in an hour, of the valid hourly means in a day or 8 h window.

Memory per pollutant: the open hours' accumulators (one, or two within the lateness), the valid hourly
means of the last 8 hours, and one running sum for the day and one running maximum for the day's 8 h
means. ``snapshot()`` returns this state as JSON-safe values; ``restore()`` takes it back after a restart.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Collection, Container, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

HOUR = timedelta(hours=1)
WINDOW_HOURS = 8
DEFAULT_POLLUTANTS = ("pm25", "pm10", "so2", "no2", "co", "o3")
SNAPSHOT_VERSION = 1


def _within(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, not {value}")


@dataclass(frozen=True)
class ValidityPolicy:
    """Minimum data for each statistic, and how late a reading may be. See the module docstring."""

    min_minutes_per_hour: int = 45  # UNCONFIRMED (GB 3095-2012 Table 4, recollection)
    min_hours_per_day: int = 20
    min_hours_per_8h: int = 6
    min_windows_per_day: int = 14  # UNCONFIRMED (HJ 663-2013, recollection)
    mda8_window_starts: tuple[int, ...] = tuple(range(17))  # local hours; see the module docstring
    lateness: timedelta = timedelta(minutes=10)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mda8_window_starts", tuple(sorted(set(self.mda8_window_starts))))
        _within("min_minutes_per_hour", self.min_minutes_per_hour, 1, 60)
        _within("min_hours_per_day", self.min_hours_per_day, 1, 24)
        _within("min_hours_per_8h", self.min_hours_per_8h, 1, WINDOW_HOURS)
        _within("min_windows_per_day", self.min_windows_per_day, 1, max(1, len(self.mda8_window_starts)))
        if not self.mda8_window_starts or not all(0 <= h <= 23 for h in self.mda8_window_starts):
            raise ValueError(f"mda8_window_starts must be hours 0..23, not {self.mda8_window_starts!r}")
        if self.lateness < timedelta(0):
            raise ValueError(f"lateness must not be negative, not {self.lateness}")


@dataclass(frozen=True)
class HourlyMean:
    """The mean of the valid readings in one clock hour [start, start + 1 h)."""

    station: str
    pollutant: str
    start: datetime
    mean: float
    minutes: int  # distinct minutes with a valid reading
    valid: bool


@dataclass(frozen=True)
class DailyMean:
    """The mean of the valid hourly means of one calendar day; None if no hour of it was valid."""

    station: str
    pollutant: str
    day: date
    mean: float | None
    hours: int  # valid hourly means
    valid: bool


@dataclass(frozen=True)
class EightHourMean:
    """The 8 h moving mean of the window [start, start + 8 h): the mean of its valid hourly means."""

    station: str
    pollutant: str
    start: datetime
    mean: float
    hours: int  # valid hourly means in the window
    valid: bool

    @property
    def end(self) -> datetime:
        """The end of the window (exclusive)."""
        return self.start + WINDOW_HOURS * HOUR


@dataclass(frozen=True)
class DailyMax8h:
    """The largest valid 8 h mean among the windows starting on `day`; None if none was valid."""

    station: str
    pollutant: str
    day: date
    value: float | None
    windows: int  # valid 8 h means among the day's windows
    valid: bool


@dataclass(frozen=True)
class LateReading:
    """A reading for an hour that had already closed: returned to the caller, not counted."""

    station: str
    name: str
    ts: datetime
    value: float
    closed_until: datetime  # hours before this instant were closed


Statistic = HourlyMean | DailyMean | EightHourMean | DailyMax8h
Emitted = Statistic | LateReading


@dataclass
class _HourSum:
    total: float = 0.0
    count: int = 0
    minutes: int = 0  # bit m set: minute m of the hour had a valid reading

    def add(self, value: float, minute: int) -> None:
        self.total += value
        self.count += 1
        self.minutes |= 1 << minute


@dataclass
class _DaySum:
    """A day's running sum (daily mean) or running maximum (daily max 8 h) of valid values."""

    day: date
    total: float = 0.0
    count: int = 0
    best: float | None = None

    def add(self, value: float) -> None:
        self.total += value
        self.count += 1
        self.best = value if self.best is None else max(self.best, value)


@dataclass
class _Series:
    """The state of one pollutant of one station."""

    open: dict[datetime, _HourSum] = field(default_factory=dict)  # hour start (UTC) -> readings so far
    means: dict[datetime, float] = field(default_factory=dict)  # valid hourly means of the last 8 hours
    day: _DaySum | None = None
    mda8: _DaySum | None = None

    @property
    def idle(self) -> bool:
        """Nothing but open hours: closing an hour without readings changes nothing."""
        return not self.means and self.day is None and self.mda8 is None


class StationAverages:
    """The running averages of one station. Not thread-safe: one owner feeds it, in any order of ts."""

    def __init__(
        self,
        station: str,
        tz: ZoneInfo | str = "Asia/Shanghai",
        policy: ValidityPolicy = ValidityPolicy(),
        pollutants: Collection[str] = DEFAULT_POLLUTANTS,
        ozone: str | None = "o3",
    ) -> None:
        self.station = station
        self.tz = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
        self.policy = policy
        self.ozone = ozone
        self._series = {name: _Series() for name in pollutants}
        self._watermark: datetime | None = None  # latest event time seen
        self._closed_until: datetime | None = None  # hours starting before this are closed
        self._closes_next = HOUR + policy.lateness  # after _closed_until: when the event time closes an hour

    def add(self, ts: datetime, name: str, value: float, valid: bool = True) -> tuple[Emitted, ...]:
        """Take one reading; return what it completed, or a LateReading if its hour had closed.

        Readings of names not tracked, and invalid readings, only move the station's event time on.
        """
        _aware(ts)
        series = self._series.get(name)
        late: tuple[Emitted, ...] = ()
        if series is not None and valid:
            if not math.isfinite(value):
                raise ValueError(f"{name}: a valid reading must be finite, not {value!r}")
            hour = _hour(ts)
            if self._closed_until is not None and hour < self._closed_until:
                late = (LateReading(self.station, name, ts, value, self._closed_until.astimezone(self.tz)),)
            else:
                series.open.setdefault(hour, _HourSum()).add(value, ts.astimezone(UTC).minute)
        return late + self.advance(ts)

    def add_reading(
        self, ts: datetime, values: Mapping[str, float], invalid: Container[str] = ()
    ) -> tuple[Emitted, ...]:
        """Take every value of one reading at once (the same as `add` for each, advancing the clock once);
        the values named in `invalid` (flagged invalid, `AirReading.invalid`) do not count.

        Called for every reading (the service's readings come in UTC): the hour and the clock are worked
        out once per reading, without converting a time that is UTC already."""
        utc = _as_utc(ts)
        hour, minute = utc.replace(minute=0, second=0, microsecond=0), utc.minute
        closed = self._closed_until is not None and hour < self._closed_until
        late: list[Emitted] = []
        for name, value in values.items():
            series = self._series.get(name)
            if series is None or name in invalid:
                continue
            if not math.isfinite(value):
                raise ValueError(f"{name}: a valid reading must be finite, not {value!r}")
            if closed:
                assert self._closed_until is not None
                late.append(LateReading(self.station, name, ts, value, self._closed_until.astimezone(self.tz)))
                continue
            bucket = series.open.get(hour)
            if bucket is None:
                bucket = series.open[hour] = _HourSum()
            bucket.add(value, minute)
        if self._watermark is not None and utc <= self._watermark:
            return tuple(late)  # the clock did not move: nothing can have completed
        return (*late, *self._advance(utc))

    def advance(self, now: datetime) -> tuple[Statistic, ...]:
        """Move the station's event time on to `now` (if later) and return the statistics that completed."""
        return self._advance(_as_utc(now))

    def _advance(self, now: datetime) -> tuple[Statistic, ...]:
        """`advance` to a UTC time."""
        mark = self._watermark
        if mark is None or now > mark:
            mark = self._watermark = now
        if self._closed_until is not None and mark < self._closed_until + self._closes_next:
            return ()  # the next hour to close is still open: most readings of an hour end here
        return tuple(self._close_until(_hour(mark - self.policy.lateness)))

    def _close_until(self, target: datetime) -> Iterable[Statistic]:
        hour = self._closed_until or self._earliest_open() or target
        while hour < target:
            if all(series.idle for series in self._series.values()):
                hour = min(self._earliest_open() or target, target)
                if hour >= target:
                    break
            for name, series in self._series.items():
                yield from self._close_hour(name, series, hour)
            hour += HOUR
        if self._closed_until is None or target > self._closed_until:
            self._closed_until = target

    def _earliest_open(self) -> datetime | None:
        return min((hour for series in self._series.values() for hour in series.open), default=None)

    def _close_hour(self, name: str, series: _Series, hour: datetime) -> Iterable[Statistic]:
        readings = series.open.pop(hour, None)
        if readings is not None:
            mean = self._hourly_mean(name, hour, readings)
            yield mean
            series.day = series.day or _DaySum(self._local(hour).date())
            if mean.valid:
                series.means[hour] = mean.mean
                series.day.add(mean.mean)
        if name == self.ozone:
            yield from self._eight_hours(name, series, hour)
        for old in [h for h in series.means if h <= hour - (WINDOW_HOURS - 1) * HOUR]:
            del series.means[old]
        if series.day is not None and self._local(hour + HOUR).date() != series.day.day:
            day, series.day = series.day, None
            yield self._daily_mean(name, day)

    def _hourly_mean(self, name: str, hour: datetime, readings: _HourSum) -> HourlyMean:
        minutes = readings.minutes.bit_count()
        valid = minutes >= self.policy.min_minutes_per_hour
        return HourlyMean(self.station, name, self._local(hour), readings.total / readings.count, minutes, valid)

    def _daily_mean(self, name: str, day: _DaySum) -> DailyMean:
        mean = day.total / day.count if day.count else None
        return DailyMean(self.station, name, day.day, mean, day.count, day.count >= self.policy.min_hours_per_day)

    def _eight_hours(self, name: str, series: _Series, last_hour: datetime) -> Iterable[Statistic]:
        """The 8 h window ending with `last_hour`, and the daily maximum it may complete."""
        start = last_hour - (WINDOW_HOURS - 1) * HOUR
        local_start = self._local(start)
        values = [mean for hour, mean in series.means.items() if start <= hour <= last_hour]
        if series.mda8 is not None and local_start.date() > series.mda8.day:
            day, series.mda8 = series.mda8, None
            yield self._daily_max(name, day)
        if values:
            window = EightHourMean(self.station, name, local_start, sum(values) / len(values), len(values),
                                   len(values) >= self.policy.min_hours_per_8h)
            yield window
            if local_start.hour in self.policy.mda8_window_starts:
                series.mda8 = series.mda8 or _DaySum(local_start.date())
                if window.valid:
                    series.mda8.add(window.mean)
        last_start = self.policy.mda8_window_starts[-1]
        if series.mda8 is not None and (local_start.date(), local_start.hour) >= (series.mda8.day, last_start):
            day, series.mda8 = series.mda8, None
            yield self._daily_max(name, day)

    def _daily_max(self, name: str, day: _DaySum) -> DailyMax8h:
        return DailyMax8h(self.station, name, day.day, day.best, day.count,
                          day.count >= self.policy.min_windows_per_day)

    def _local(self, instant: datetime) -> datetime:
        return instant.astimezone(self.tz)

    def snapshot(self) -> dict[str, Any]:
        """The whole state as JSON-safe values (times as ISO 8601 UTC), for `restore` after a restart."""
        return {
            "version": SNAPSHOT_VERSION,
            "station": self.station,
            "watermark": _iso(self._watermark),
            "closed_until": _iso(self._closed_until),
            "series": {name: _series_state(series) for name, series in self._series.items()},
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Take back a `snapshot`. Pollutants no longer tracked are dropped; new ones start empty."""
        if state.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"snapshot version {state.get('version')!r} is not {SNAPSHOT_VERSION}")
        if state.get("station") != self.station:
            raise ValueError(f"snapshot of station {state.get('station')!r}, not {self.station!r}")
        self._watermark = _from_iso(state["watermark"])
        self._closed_until = _from_iso(state["closed_until"])
        saved = state["series"]
        self._series = {name: _restore_series(saved[name]) if name in saved else _Series() for name in self._series}


def _series_state(series: _Series) -> dict[str, Any]:
    return {
        "open": {_hour_iso(h): [s.total, s.count, s.minutes] for h, s in series.open.items()},
        "means": {_hour_iso(h): mean for h, mean in series.means.items()},
        "day": _day_state(series.day),
        "mda8": _day_state(series.mda8),
    }


def _restore_series(state: dict[str, Any]) -> _Series:
    return _Series(
        open={_utc(h): _HourSum(float(t), int(c), int(m)) for h, (t, c, m) in state["open"].items()},
        means={_utc(h): float(mean) for h, mean in state["means"].items()},
        day=_restore_day(state["day"]),
        mda8=_restore_day(state["mda8"]),
    )


def _day_state(day: _DaySum | None) -> list[Any] | None:
    return None if day is None else [day.day.isoformat(), day.total, day.count, day.best]


def _restore_day(state: list[Any] | None) -> _DaySum | None:
    if state is None:
        return None
    day, total, count, best = state
    return _DaySum(date.fromisoformat(day), float(total), int(count), None if best is None else float(best))


def _hour(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _as_utc(ts: datetime) -> datetime:
    """`ts` in UTC; one that is UTC already as it is (the service's are). ValueError for a naive time."""
    if ts.tzinfo is UTC:
        return ts
    _aware(ts)
    return ts.astimezone(UTC)


def _aware(ts: datetime) -> None:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"timestamps must be timezone-aware, not {ts!r}")


@functools.lru_cache(maxsize=64)
def _hour_iso(hour: datetime) -> str:
    """An hour's start in ISO 8601, remembered: every station's series hold the same few hours, and
    formatting them was half of a snapshot's time (25,500 calls for a day of 500 stations)."""
    return hour.isoformat()


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.isoformat()


def _from_iso(text: str | None) -> datetime | None:
    return None if text is None else _utc(text)


def _utc(text: str) -> datetime:
    ts = datetime.fromisoformat(text)
    _aware(ts)
    return ts.astimezone(UTC)
