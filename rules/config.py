"""The rules file: TOML, validated and compiled once per load into ready rule objects.

    lateness_s = 3600            # a reading older than this behind its source's newest is stored, not judged
    [bookings]                   # gate rules: bookings besides MQTT (rules.park_state), reloaded when changed
    file = "bookings.json"       # a JSON list of appointments; relative: beside this file
    [[maintenance]]              # windows in which a station raises nothing but a maintenance notice
    stations = ["ST01"]
    start = "2026-11-27T09:00:00+08:00"
    end = "2026-11-27T11:00:00+08:00"     # or: daily = "02:00-03:00" (park time)
    [[rule]]
    type = "threshold"           # the key of RULE_TYPES
    name = "pm25_high"
    ...

A bad file raises ConfigError naming the key (e.g. ``rule[2].levels``) and the reason.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ingest.errors import ConfigError
from ingest.points import Point
from rules.air_quality import AIR_QUALITY, AirQualityTracker, AqiConfig, AqiRule, AverageConfig, AverageRule
from rules.devices import OfflineConfig, OfflineRule, SilentConfig, SilentRule
from rules.gates import GATE_RULES, AnyGateRuleConfig
from rules.interfaces import Rule
from rules.park_state import PARK_STATE, ParkState
from rules.rate import RateConfig, RateRule
from rules.sensor import FlagConfig, FlagRule, FlatlineConfig, FlatlineRule, RangeConfig, RangeRule
from rules.threshold import ThresholdConfig, ThresholdRule


@dataclass(frozen=True, slots=True)
class Park:
    """What rules need to know of the park: its time zone, its configured devices, and (set by
    `compile_rules` when gate rules are configured) the one ParkState the gate rules share."""

    tz: ZoneInfo
    stations: tuple[str, ...] = ()
    gates: tuple[str, ...] = ()
    park_state: ParkState | None = None
    id: str = "demo"
    derived: Callable[[list[Point]], None] | None = None  # where averages and AQI points go (the store)
    air_quality: AirQualityTracker | None = None  # set by `compile_rules`


def _with_park_state(build: Callable[[Any, ParkState], Rule]) -> Callable[[Any, Park], Rule]:
    """A gate rule's builder: the rule reads the park's one ParkState, which `compile_rules` sets up."""

    def builder(config: Any, park: Park) -> Rule:
        if park.park_state is None:
            raise ValueError(f"rule {config.name}: a gate rule needs the park state that compile_rules shares")
        return build(config, park.park_state)

    return builder


def _with_tracker(build: Callable[[Any, AirQualityTracker], Rule]) -> Callable[[Any, Park], Rule]:
    """An average or AQI rule's builder: the rule reads the tracker that `compile_rules` puts first."""

    def builder(config: Any, park: Park) -> Rule:
        if park.air_quality is None:
            raise ValueError(f"rule {config.name}: needs the air-quality tracker that compile_rules shares")
        return build(config, park.air_quality)

    return builder


# type name -> builder; the same key as the `type` field of the config union below
RULE_TYPES: dict[str, Callable[[Any, Park], Rule]] = {
    "threshold": lambda c, park: ThresholdRule(c),
    "rate_of_change": lambda c, park: RateRule(c),
    "silent": lambda c, park: SilentRule(c, park.stations if c.kind == "air" else park.gates),
    "offline": lambda c, park: OfflineRule(c),
    "flatline": lambda c, park: FlatlineRule(c),
    "range": lambda c, park: RangeRule(c),
    "flag": lambda c, park: FlagRule(c),
    "average": _with_tracker(AverageRule),
    "aqi": _with_tracker(AqiRule),
    **{kind: _with_park_state(build) for kind, build in GATE_RULES.items()},
}

AnyRuleConfig = Annotated[
    ThresholdConfig | RateConfig | SilentConfig | OfflineConfig | FlatlineConfig | RangeConfig | FlagConfig
    | AverageConfig | AqiConfig | AnyGateRuleConfig,
    Field(discriminator="type"),
]


class MaintenanceWindow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stations: tuple[str, ...]
    start: datetime | None = None
    end: datetime | None = None
    daily: str | None = Field(default=None, pattern=r"^\d\d:\d\d-\d\d:\d\d$")

    @model_validator(mode="after")
    def _one_kind(self) -> MaintenanceWindow:
        absolute = self.start is not None and self.end is not None
        if absolute == (self.daily is not None):
            raise ValueError("give either start and end, or daily = \"HH:MM-HH:MM\"")
        if absolute and (self.start.tzinfo is None or self.end.tzinfo is None):  # type: ignore[union-attr]
            raise ValueError("start and end need a UTC offset")
        if absolute and self.end <= self.start:  # type: ignore[operator]
            raise ValueError("end must be after start")
        if self.daily is not None:
            a, b = (time.fromisoformat(p) for p in self.daily.split("-"))
            if a == b:
                raise ValueError("a daily window must not be empty")
        return self

    def covers(self, station: str, at: datetime, tz: ZoneInfo) -> bool:
        if station not in self.stations and "*" not in self.stations:
            return False
        if self.daily is None:
            return self.start <= at < self.end  # type: ignore[operator]
        a, b = (time.fromisoformat(p) for p in self.daily.split("-"))
        local = at.astimezone(tz).time()
        return a <= local < b if a < b else (local >= a or local < b)


class BookingsSection(BaseModel):
    """Bookings for the gate rules besides MQTT: a JSON list of appointments (contract §5)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str | None = None  # relative: beside the rules file; reloaded when it changes


class RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lateness_s: float = Field(default=3600.0, ge=0)
    aqi_edition: Literal["2012", "2026"] | None = None  # HJ 633 edition; none: the one in force on the day
    maintenance: tuple[MaintenanceWindow, ...] = ()
    rule: tuple[AnyRuleConfig, ...] = ()
    bookings: BookingsSection = BookingsSection()

    @model_validator(mode="after")
    def _unique_names(self) -> RulesFile:
        names = [r.name for r in self.rule]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"rule names must be unique: {', '.join(dup)} used twice")
        if PARK_STATE in names or AIR_QUALITY in names:
            raise ValueError(f"the rule names {PARK_STATE!r} and {AIR_QUALITY!r} are reserved for shared state")
        return self

    @property
    def lateness(self) -> timedelta:
        return timedelta(seconds=self.lateness_s)


def parse_rules(raw: dict[str, Any]) -> RulesFile:
    try:
        return RulesFile.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        loc = [str(p) for p in error["loc"]]
        if len(loc) > 2 and loc[0] == "rule" and loc[2] in RULE_TYPES:
            del loc[2]  # the union's tag: rule[0].levels reads better than rule[0].threshold.levels
        key = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc).lstrip(".") or "(top level)"
        reason = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        raise ConfigError(f"rules: {key}", reason) from None


def load_rules(path: Path) -> RulesFile:
    try:
        rules = parse_rules(tomllib.loads(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise ConfigError("rules.file", f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("rules.file", f"{path} is not valid TOML: {exc}") from exc
    if rules.bookings.file and not Path(rules.bookings.file).is_absolute():
        rules = rules.model_copy(update={"bookings": BookingsSection(file=str(path.parent / rules.bookings.file))})
    return rules


def uses_park_state(rules: RulesFile) -> bool:
    return any(config.type in GATE_RULES for config in rules.rule)


def compile_rules(rules: RulesFile, park: Park) -> list[Rule]:
    """Ready rules in file order; with gate rules, the one ParkState they share first (it must see each
    event before they do)."""
    tracker = AirQualityTracker(park.id, park.tz, edition=rules.aqi_edition,
                                on_points=park.derived or (lambda points: None))
    shared: list[Rule] = [tracker]
    park = replace(park, air_quality=tracker)
    if uses_park_state(rules):
        state = ParkState(park.tz, Path(rules.bookings.file) if rules.bookings.file else None)
        park = replace(park, park_state=state)
        shared.append(state)
    return [*shared, *(RULE_TYPES[config.type](config, park) for config in rules.rule)]


def fingerprints(rules: RulesFile) -> dict[str, str]:
    """A rule's identity for restoring state: state of a changed rule is not carried over."""
    prints = {r.name: r.model_dump_json() for r in rules.rule}
    prints[AIR_QUALITY] = f"averages of every station, AQI edition {rules.aqi_edition}"
    if uses_park_state(rules):
        prints[PARK_STATE] = "who is inside, MQTT bookings"  # kept whatever the gate rules' settings
    return prints


def rule_names(rules: Sequence[Rule]) -> list[str]:
    return [r.name for r in rules]
