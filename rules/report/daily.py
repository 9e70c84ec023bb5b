"""The daily report of one park day (a calendar day in the park's time zone), computed with pandas from
what the store holds (through a ``FrameReader``). Pure computation: the reader is the only I/O.

Tables of ``DailyReport`` (one CSV each, ``write_csv``):

    hourly   station, hour (local start); the valid hourly mean of each pollutant, O3's 8 h moving mean
             ending with the hour, and the hourly AQI (实时报) with category, colour and primary pollutant
    daily    station, pollutant, mean (of the valid hourly means), unit, valid_hours, capture, valid
    aqi      station, edition, the daily AQI (日报) with level, category, colour, primary pollutant, the
             IAQI of each pollutant, the pollutants missing, and O3's daily max 8 h (o3_8h) and max 1 h
    limits   station, pollutant, averaging (1h, 24h, 8h), GB 3095 limit, value, hours_over (1h), exceeded
    alerts   one row per alert that changed during the day: severity (highest), last state, messages
    traffic  vehicle class (and persons): granted entries, granted exits, denied passages
    stays    hazmat and hazwaste vehicles inside during the day: entry, exit, stay in hours, overstay

Rules, the same as the live averages (rules/averages.py, ``ValidityPolicy``) so that the report agrees
with ``air_quality_avg``:

- Only real-time readings (no ``period`` tag) are averaged, as ``rules.common.live``; an hour without a
  real-time mean takes the HJ 212 hourly value (``period`` = hour, stamped with the start of its hour).
  HJ 212 minute and daily values are not used. A value flagged F, M, D, C or B is not valid.
- Hourly mean: the mean of the valid readings of a clock hour, valid with >= 45 distinct minutes.
- Daily mean: the mean of the valid hourly means, valid with >= 20 of them (GB 3095 Table 4);
  capture = valid hourly means / hours of the day (24).
- O3: 8 h moving mean of the valid hourly means with >= 6 of them; daily max 8 h over the windows that
  start at 00:00..16:00, valid with >= 14 valid windows.
- Daily AQI (HJ 633 edition in force that day): the valid, non-negative daily means of pm25, pm10, so2,
  no2 and co, the valid daily max 8 h as o3_8h and, for HJ 633-2012 only, the day's largest valid hourly
  O3 as o3_1h (``rules.aqi.daily_aqi``). Every pollutant the station reported that day is ``required``: one
  without a valid daily value makes an AQI of at most 100 "NA" (``rules.aqi``, HJ 633-2026 §5.3.1).
  The live tracker (rules/air_quality.py) passes neither o3_1h nor ``required``: the report follows the
  daily report as rules/aqi.py documents it.
- Hourly AQI: as the live tracker: the valid, non-negative hourly means, and for 2012 the O3 8 h mean.
- Limits: GB 3095 in force that day, grade II (a chemical park is a class-2 zone): hours whose valid hourly
  mean is strictly above the 1 h limit; a valid daily mean (O3: daily max 8 h) strictly above its limit.
- Means are rounded to 9 decimals, which only drops floating-point noise: the mean of sixty readings of
  0.8 is 0.8000000000000002, whose exact decimal would give CO an IAQI of 21 instead of 20. The rounding
  of concentrations that HJ 633-2026 asks for (GB/T 8170) is not applied, as in ``rules.aqi``.
- Gates: a granted ``in`` opens a hazmat vehicle's stay (paired by plate as ``rules.park_state`` compares
  plates), the next granted ``out`` closes it; events from ``stay_lookback`` before the day find entries
  of the days before. A vehicle still inside at the end of the day stays open (``inside``); its stay is
  counted to the end of the day.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from ingest.interfaces import FrameReader
from ingest.models import INVALID_FLAGS
from rules import aqi as hj633
from rules import standards
from rules.averages import WINDOW_HOURS, ValidityPolicy
from rules.common import SEVERITIES
from rules.gates import CLASS_ZH, DWELL
from rules.park_state import HAZMAT_CLASSES, plate_key

HOUR = timedelta(hours=1)
DECIMALS = 9  # rounding of means: drops float noise only (module docstring)
POLLUTANTS = hj633.POLLUTANTS  # pm25, pm10, so2, no2, co, o3
CLASS_ORDER = ("hazmat", "hazwaste", "truck", "car", "bus", "emergency", "other", "person")
CLASS_NAMES_ZH = {**CLASS_ZH, "person": "人员"}
TABLES = ("hourly", "daily", "aqi", "limits", "alerts", "traffic", "stays")
_SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}


@dataclass(frozen=True)
class ReportDay:
    """One local calendar day in a time zone: [start, end) as UTC instants."""

    day: date
    tz: ZoneInfo

    @property
    def start(self) -> datetime:
        return datetime.combine(self.day, time(), self.tz).astimezone(UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.day + timedelta(days=1), time(), self.tz).astimezone(UTC)

    @property
    def hours(self) -> int:
        """Hours of the day: 24, or 23/25 where the clock changes."""
        return int((self.end - self.start) / HOUR)

    def at_local_hour(self, hour: int) -> pd.Timestamp:
        """The UTC instant of a local clock hour of the day."""
        return pd.Timestamp(datetime.combine(self.day, time(hour), self.tz)).tz_convert(UTC)


@dataclass(frozen=True, eq=False)
class DailyReport:
    """The tables of one park day (see the module docstring); times are in the park's time zone."""

    park: str
    day: date
    timezone: str
    aqi_edition: str  # HJ 633
    gb3095_edition: str  # GB 3095 (edition and stage)
    hourly: pd.DataFrame
    daily: pd.DataFrame
    aqi: pd.DataFrame
    limits: pd.DataFrame
    alerts: pd.DataFrame
    traffic: pd.DataFrame
    stays: pd.DataFrame
    dwell_limit_h: float = 8.0

    @property
    def stations(self) -> list[str]:
        return sorted(self.aqi["station"]) if not self.aqi.empty else []

    def tables(self) -> dict[str, pd.DataFrame]:
        """Every table by name, in the order of TABLES."""
        return {name: getattr(self, name) for name in TABLES}


def daily_report(
    reader: FrameReader,
    park: str,
    day: date,
    tz: ZoneInfo,
    *,
    policy: ValidityPolicy | None = None,
    stay_lookback: timedelta = timedelta(days=3),
    dwell_limit: timedelta = timedelta(seconds=DWELL["hazmat"]),
) -> DailyReport:
    """Read one day of the park from the store and compute every table of the report (validity rules:
    `policy`, by default those of the live averages)."""
    policy = policy or ValidityPolicy()
    span = ReportDay(day, tz)
    edition, gb_edition = hj633.edition_in_force(day), standards.edition_for(day)
    lookback = (WINDOW_HOURS - 1) * HOUR  # the 8 h means that end in the day's first hours
    readings = _readings(_of_park(reader.read_frame("air_quality", span.start - lookback, span.end), park))
    air = _AirDay(span, readings, policy, edition, gb_edition)
    gates = _of_park(reader.read_frame("gate_event", span.start - stay_lookback, span.end), park)
    alerts = _of_park(reader.read_frame("alert", span.start, span.end), park)
    return DailyReport(
        park=park, day=day, timezone=tz.key, aqi_edition=edition, gb3095_edition=gb_edition,
        hourly=air.hourly_table(), daily=air.daily, aqi=air.aqi_table(), limits=air.limits_table(),
        alerts=alerts_table(alerts, tz), traffic=traffic_table(_within(gates, span)),
        stays=stays_table(gates, span, dwell_limit), dwell_limit_h=dwell_limit / HOUR,
    )


def write_csv(report: DailyReport, folder: Path) -> list[Path]:
    """One CSV per table, `{park}_{day}_{table}.csv`, UTF-8 with a BOM so that Excel and WPS read the
    Chinese text; floats to 3 decimals, times with the park's UTC offset (2026-11-26 08:00:00+08:00)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, table in report.tables().items():
        path = folder / f"{report.park}_{report.day.isoformat()}_{name}.csv"
        table.to_csv(path, index=False, encoding="utf-8-sig", float_format="%.3f")
        paths.append(path)
    return paths


# --- air quality ----------------------------------------------------------------------------------------


def _readings(raw: pd.DataFrame) -> pd.DataFrame:
    """One row per value: station, period, time, pollutant, value, valid (its flag is not F, M, D, C, B)."""
    columns = ["station", "period", "time", "pollutant", "value", "valid"]
    names = [name for name in POLLUTANTS if name in raw.columns]
    parts = []
    for name in names:
        flag = _column(raw, f"{name}_flag", "N")
        part = pd.DataFrame({
            "station": _column(raw, "station", ""), "period": _column(raw, "period", ""), "time": raw["time"],
            "pollutant": name, "value": pd.to_numeric(raw[name], errors="coerce"),
            "valid": ~flag.isin(INVALID_FLAGS),
        })
        parts.append(part[part["value"].notna()])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def hourly_means(readings: pd.DataFrame, policy: ValidityPolicy) -> pd.DataFrame:
    """The valid hourly means (station, pollutant, hour as UTC start, mean); see the module docstring."""
    columns = ["station", "pollutant", "hour", "mean"]
    good = readings[readings["valid"].astype(bool)]
    if good.empty:
        return pd.DataFrame(columns=columns)
    live = good[good["period"] == ""]
    live = live.assign(hour=live["time"].dt.floor("h"), minute=live["time"].dt.minute)
    means = (live.groupby(["station", "pollutant", "hour"])
             .agg(mean=("value", "mean"), minutes=("minute", "nunique")).reset_index())
    means = means[means["minutes"] >= policy.min_minutes_per_hour]
    hj212 = good[good["period"] == "hour"]
    hj212 = (hj212.assign(hour=hj212["time"].dt.floor("h"))
             .groupby(["station", "pollutant", "hour"]).agg(mean=("value", "mean")).reset_index())
    both = pd.concat([means[columns], hj212[columns]], ignore_index=True)
    return both.drop_duplicates(["station", "pollutant", "hour"], keep="first").round({"mean": DECIMALS})


class _AirDay:
    """The air-quality tables of one day, from the readings of the day and the 7 hours before it."""

    def __init__(
        self, span: ReportDay, readings: pd.DataFrame, policy: ValidityPolicy, edition: str, gb_edition: str
    ) -> None:
        self.span, self.policy, self.edition, self.gb_edition = span, policy, edition, gb_edition
        today = _within(readings, span)
        self.stations = sorted(set(today["station"]))
        self.reported = {s: [p for p in POLLUTANTS if p in set(today.loc[today["station"] == s, "pollutant"])]
                         for s in self.stations}
        self.grid = self._grid(hourly_means(readings, policy))
        self.day_grid = self.grid[self.grid.index.get_level_values("hour") >= pd.Timestamp(span.start)]
        self.daily = self._daily_table()

    def _grid(self, means: pd.DataFrame) -> pd.DataFrame:
        """Hourly means by (station, hour) over the day and the 7 hours before, every hour present, with
        o3_8h, the O3 8 h moving mean of the window that ends with the hour."""
        hours = pd.date_range(self.span.start - (WINDOW_HOURS - 1) * HOUR, self.span.end, freq="h",
                              inclusive="left")
        index = pd.MultiIndex.from_product([self.stations, hours], names=["station", "hour"])
        grid = pd.DataFrame(float("nan"), index=index, columns=list(POLLUTANTS))
        if not means.empty:
            wide = means.pivot_table(index=["station", "hour"], columns="pollutant", values="mean", aggfunc="first")
            grid.update(wide.reindex(index=index, columns=grid.columns))
        grid["o3_8h"] = grid.groupby(level="station")["o3"].transform(
            lambda s: s.rolling(WINDOW_HOURS, min_periods=self.policy.min_hours_per_8h).mean().round(DECIMALS))
        return grid

    def _hours(self, station: str, column: str, *, whole_grid: bool = False) -> pd.Series:
        """The hourly values of one station (UTC hour -> value), of the day or of the whole grid."""
        grid = self.grid if whole_grid else self.day_grid
        return grid.xs(station, level="station")[column]

    def _daily_table(self) -> pd.DataFrame:
        rows = []
        for station in self.stations:
            for pollutant in self.reported[station]:
                values = self._hours(station, pollutant).dropna()
                hours = len(values)
                rows.append({
                    "station": station, "pollutant": pollutant,
                    "mean": round(float(values.mean()), DECIMALS) if hours else float("nan"),
                    "unit": standards.unit(pollutant),
                    "valid_hours": hours, "capture": hours / self.span.hours,
                    "valid": hours >= self.policy.min_hours_per_day,
                })
        return pd.DataFrame(rows, columns=["station", "pollutant", "mean", "unit", "valid_hours", "capture", "valid"])

    def _daily_values(self, station: str) -> dict[str, float]:
        """The valid daily values of a station, as daily_aqi names them."""
        mine = self.daily[(self.daily["station"] == station) & self.daily["valid"] & (self.daily["mean"] >= 0)]
        values = dict(zip(mine["pollutant"], mine["mean"].astype(float), strict=True))
        o3_valid = values.pop("o3", None) is not None
        mda8, windows = self._mda8(station)
        if mda8 is not None and windows >= self.policy.min_windows_per_day and mda8 >= 0:
            values["o3_8h"] = mda8
        if self.edition == "2012" and o3_valid:
            values["o3_1h"] = float(self._hours(station, "o3").max())
        return values

    def _mda8(self, station: str) -> tuple[float | None, int]:
        """The largest valid 8 h mean among the day's windows, and how many windows were valid."""
        ends = [self.span.at_local_hour(h) + (WINDOW_HOURS - 1) * HOUR for h in self.policy.mda8_window_starts]
        values = self._hours(station, "o3_8h", whole_grid=True).reindex(pd.DatetimeIndex(ends)).dropna()
        return (float(values.max()) if len(values) else None), len(values)

    def aqi_table(self) -> pd.DataFrame:
        rows = []
        for station in self.stations:
            values = self._daily_values(station)
            result = hj633.daily_aqi(values, self.edition, required=self.reported[station])
            mda8, windows = self._mda8(station)
            rows.append({
                "station": station, "edition": f"HJ 633-{self.edition}", **_aqi_fields(result),
                **{f"iaqi_{p}": result.iaqi.get(p) for p in POLLUTANTS},
                "missing": ",".join(result.missing), "o3_8h": mda8, "o3_8h_windows": windows,
                "o3_1h": float(self._hours(station, "o3").max()) if "o3" in self.reported[station] else None,
            })
        columns = ["station", "edition", "aqi", "level", "category", "category_en", "colour", "primary",
                   *(f"iaqi_{p}" for p in POLLUTANTS), "missing", "o3_8h", "o3_8h_windows", "o3_1h"]
        table = pd.DataFrame(rows, columns=columns)
        for name in ("aqi", "level", "o3_8h_windows", *(f"iaqi_{p}" for p in POLLUTANTS)):
            table[name] = table[name].astype("Int64")
        return table

    def hourly_table(self) -> pd.DataFrame:
        table = self.day_grid.reset_index()
        results = [self._hourly_aqi(row) for row in table.to_dict("records")]
        table = pd.concat([table, pd.DataFrame(results, index=table.index, columns=list(_aqi_fields(None)))], axis=1)
        table["hour"] = table["hour"].dt.tz_convert(self.span.tz)
        table["aqi"] = table["aqi"].astype("Int64")
        table["level"] = table["level"].astype("Int64")
        return table

    def _hourly_aqi(self, row: Mapping[str, Any]) -> dict[str, Any]:
        values = {p: row[p] for p in POLLUTANTS if pd.notna(row[p]) and row[p] >= 0}
        if self.edition == "2012" and pd.notna(row["o3_8h"]) and row["o3_8h"] >= 0:
            values["o3_8h"] = row["o3_8h"]
        if not set(values) & set(POLLUTANTS):
            return _aqi_fields(None)
        return _aqi_fields(hj633.hourly_aqi(values, self.edition))

    def limits_table(self) -> pd.DataFrame:
        rows: list[dict[str, Any]] = []
        for station in self.stations:
            for pollutant in self.reported[station]:
                rows.extend(self._limit_rows(station, pollutant))
        columns = ["station", "pollutant", "averaging", "limit", "unit", "value", "valid", "hours_over", "exceeded"]
        table = pd.DataFrame(rows, columns=columns)
        table["hours_over"] = table["hours_over"].astype("Int64")
        table["exceeded"] = table["exceeded"].astype("boolean")
        return table

    def _limit_rows(self, station: str, pollutant: str) -> Iterable[dict[str, Any]]:
        base = {"station": station, "pollutant": pollutant, "unit": standards.unit(pollutant)}
        hourly = self._hours(station, pollutant).dropna()
        if (one_hour := standards.limit(pollutant, "1h", self.gb_edition)) is not None:
            over = int((hourly > one_hour).sum())
            peak = float(hourly.max()) if len(hourly) else None
            yield {**base, "averaging": "1h", "limit": one_hour, "value": peak, "valid": bool(len(hourly)),
                   "hours_over": over, "exceeded": over > 0}
        if pollutant == "o3":
            mda8, windows = self._mda8(station)
            valid = mda8 is not None and windows >= self.policy.min_windows_per_day
            yield self._daily_limit(base, "8h", mda8, valid)
        elif standards.limit(pollutant, "24h", self.gb_edition) is not None:
            valid = len(hourly) >= self.policy.min_hours_per_day
            mean = round(float(hourly.mean()), DECIMALS) if len(hourly) else None
            yield self._daily_limit(base, "24h", mean, valid)

    def _daily_limit(self, base: dict[str, Any], averaging: str, value: float | None, valid: bool) -> dict[str, Any]:
        limit = standards.limit(base["pollutant"], averaging, self.gb_edition)
        exceeded = (value > limit) if valid and value is not None and limit is not None else None
        return {**base, "averaging": averaging, "limit": limit, "value": value, "valid": valid,
                "hours_over": None, "exceeded": exceeded}


def _aqi_fields(result: hj633.AqiResult | None) -> dict[str, Any]:
    if result is None or result.aqi is None:
        return {"aqi": None, "level": None, "category": None, "category_en": None, "colour": None, "primary": ""}
    return {"aqi": result.aqi, "level": result.level, "category": result.category, "category_en": result.category_en,
            "colour": result.colour, "primary": ",".join(result.primary_pollutants)}


# --- alerts and gates -----------------------------------------------------------------------------------

ALERT_COLUMNS = ["alert_id", "rule", "source", "severity", "state", "started_at", "last_change", "changes",
                 "value", "threshold", "message", "message_zh"]


def alerts_table(raw: pd.DataFrame, tz: ZoneInfo) -> pd.DataFrame:
    """One row per alert that changed during the day: its highest severity, its last state, and the message,
    value and threshold of its last change before it resolved (what it was about, not that it ended)."""
    if raw.empty or "alert_id" not in raw.columns:
        return pd.DataFrame(columns=ALERT_COLUMNS)
    changes = _ensure(raw, ["rule", "source", "severity", "state", "started_at", "value", "threshold", "message",
                            "message_zh"]).sort_values("time", kind="stable")
    grouped = changes.groupby("alert_id", sort=False)
    table = grouped.agg(
        rule=("rule", "first"), source=("source", "first"), state=("state", "last"),
        started_at=("started_at", "first"), last_change=("time", "last"), changes=("time", "size"),
    )
    table["severity"] = grouped["severity"].agg(lambda s: max(s, key=lambda v: _SEVERITY_RANK.get(v, -1)))
    last_active = changes[changes["state"] != "resolved"].groupby("alert_id").tail(1)
    headline = (pd.concat([last_active, grouped.tail(1)])  # the last active change, else the last change
                .drop_duplicates("alert_id", keep="first").set_index("alert_id"))
    table = table.join(headline[["value", "threshold", "message", "message_zh"]]).reset_index()
    started = pd.to_datetime(table["started_at"], utc=True, errors="coerce", format="ISO8601")
    table["started_at"] = started.dt.tz_convert(tz)
    table["last_change"] = table["last_change"].dt.tz_convert(tz)
    return table[ALERT_COLUMNS].sort_values(["started_at", "alert_id"], ignore_index=True)


def traffic_table(events: pd.DataFrame) -> pd.DataFrame:
    """Granted entries and exits, and denied passages, per vehicle class (persons as class "person")."""
    columns = ["vehicle_class", "class_zh", "entries", "exits", "denied"]
    if events.empty or "direction" not in events.columns:
        return pd.DataFrame(columns=columns)
    subject = _column(events, "subject", "vehicle")
    vehicle_class = _column(events, "vehicle_class", "").replace("", "other").where(subject != "person", "person")
    granted = _granted(events)
    counts = pd.DataFrame({
        "vehicle_class": vehicle_class, "entries": granted & (events["direction"] == "in"),
        "exits": granted & (events["direction"] == "out"), "denied": ~granted,
    }).groupby("vehicle_class").sum().astype(int)
    order = [c for c in CLASS_ORDER if c in counts.index] + sorted(set(counts.index) - set(CLASS_ORDER))
    table = counts.reindex(order).reset_index()
    table.insert(1, "class_zh", table["vehicle_class"].map(lambda c: CLASS_NAMES_ZH.get(c, c)))
    return table[columns]


STAY_COLUMNS = ["plate", "vehicle_class", "un_number", "hazard_class", "load_t", "gate_in", "entry", "gate_out",
                "exit", "stay_h", "inside", "overstay"]


def stays_table(events: pd.DataFrame, span: ReportDay, dwell_limit: timedelta) -> pd.DataFrame:
    """The stays of hazmat and hazwaste vehicles that overlap the day (see the module docstring)."""
    if events.empty or "vehicle_class" not in events.columns:
        return pd.DataFrame(columns=STAY_COLUMNS)
    events = _ensure(events, ["plate", "gate", "un_number", "hazard_class", "load_t"])
    hazmat = events[events["vehicle_class"].isin(HAZMAT_CLASSES) & _granted(events)].sort_values("time")
    stays = _pair(hazmat.to_dict("records"))
    if not stays:
        return pd.DataFrame(columns=STAY_COLUMNS)
    table = pd.DataFrame(stays)
    for name in ("entry", "exit"):  # a column of NaT only would not be tz-aware
        table[name] = pd.to_datetime(table[name], utc=True)
    start, end = pd.Timestamp(span.start), pd.Timestamp(span.end)
    table = table[(table["entry"].isna() | (table["entry"] < end)) & (table["exit"].isna() | (table["exit"] >= start))]
    table = table.assign(inside=table["exit"].isna())
    table["stay_h"] = (table["exit"].fillna(end) - table["entry"]).dt.total_seconds() / 3600
    table["overstay"] = table["stay_h"] > dwell_limit / HOUR
    for name in ("entry", "exit"):
        table[name] = table[name].dt.tz_convert(span.tz)
    return table[STAY_COLUMNS].sort_values(["entry", "plate"], ignore_index=True, na_position="first")


def _pair(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stays from granted hazmat events in time order: an entry opens one, the plate's next exit closes it."""
    inside: dict[str, dict[str, Any]] = {}
    stays: list[dict[str, Any]] = []
    for event in events:
        key = plate_key(str(event["plate"]))
        if event["direction"] == "in":
            if key in inside:  # entered again with no exit seen: the earlier stay has no known exit
                stays.append(inside.pop(key))
            inside[key] = {**_vehicle(event), "gate_in": event["gate"], "entry": event["time"], "gate_out": "",
                           "exit": pd.NaT}
        else:
            stay = inside.pop(key, None) or {**_vehicle(event), "gate_in": "", "entry": pd.NaT}
            stays.append({**stay, "gate_out": event["gate"], "exit": event["time"]})
    return stays + list(inside.values())


def _vehicle(event: Mapping[str, Any]) -> dict[str, Any]:
    return {name: event[name] for name in ("plate", "vehicle_class", "un_number", "hazard_class", "load_t")}


def _granted(events: pd.DataFrame) -> pd.Series:
    """`granted` as booleans: InfluxDB answers true/false, SQLite 1/0 (and NaN where absent: not granted)."""
    return _column(events, "granted", 0).eq(1)


# --- frames ---------------------------------------------------------------------------------------------


def _of_park(frame: pd.DataFrame, park: str) -> pd.DataFrame:
    """The rows of one park (rows without a park tag are kept: a store of one park may not tag them)."""
    if "park" not in frame.columns:
        return frame
    return frame[frame["park"].isin([park, ""])].reset_index(drop=True)


def _within(frame: pd.DataFrame, span: ReportDay) -> pd.DataFrame:
    if frame.empty:
        return frame
    return frame[(frame["time"] >= pd.Timestamp(span.start)) & (frame["time"] < pd.Timestamp(span.end))]


def _column(frame: pd.DataFrame, name: str, default: Any) -> pd.Series:
    if name in frame.columns:
        return frame[name].where(frame[name].notna(), default)
    return pd.Series(default, index=frame.index, dtype=object if isinstance(default, str) else None)


def _ensure(frame: pd.DataFrame, names: Iterable[str]) -> pd.DataFrame:
    missing = [n for n in names if n not in frame.columns]
    return frame.assign(**dict.fromkeys(missing)) if missing else frame
