"""Scenarios as files, and the simulation that plays one.

A scenario (``simulators/scenarios/*.toml``) names the devices (``[[stations]]``, ``[[gates]]``, emission
``[[sources]]``), the weather and the gate traffic, the ``[[episodes]]`` and ``[[faults]]`` at offsets from
the start (seconds, or text such as ``"2h30m"``; told apart by ``type``), a ``seed``, a ``duration``, and
the alerts it should cause (``[[expect]]``: rule, source, severity, and when: within ``within_s`` of
``after_s``; data for the rules and alerts to check themselves against). :func:`load_scenario` validates it
all at once and raises :class:`ingest.errors.ConfigError` naming the key (``faults.2.station``) and the
reason.

A :class:`Simulation` turns a scenario into devices (the booking system, the stations, the gates; each
with its own random stream derived from the seed) and :meth:`Simulation.run` plays them on a clock:
it repeatedly takes the device due first (ties in device order), waits for its time, and publishes what
it says through that device's sink. Message content depends only on the scenario, the seed and the start.
"""

from __future__ import annotations

import heapq
import math
import tomllib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Annotated, Any, Final, Protocol
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from ingest.errors import ConfigError
from simulators.clock import Seconds, SimClock, VirtualClock, device_random
from simulators.gates import (
    BlacklistedEpisode,
    CancelledAppointmentEpisode,
    ExitWithoutEntryEpisode,
    ExpiredAppointmentEpisode,
    GateEpisode,
    GateKind,
    GateOfflineFault,
    GateSpec,
    OverstayEpisode,
    PlannedDevice,
    RepeatEpisode,
    TrafficPlan,
    TrafficPlanner,
    TrafficSpec,
    UnbookedHazmatEpisode,
    WrongGateEpisode,
    gate_devices,
)
from simulators.publish import Connector, MemorySink, Outgoing, SharedConnector, Sink, message_kind
from simulators.recording import Record
from simulators.stations import (
    BuildupEpisode,
    Cn,
    CorruptFault,
    DriftFault,
    DropoutFault,
    FlagFault,
    FlatlineFault,
    Format,
    GasLeakEpisode,
    NegativeFault,
    PlumeEpisode,
    SourceSpec,
    SpikeFault,
    Station,
    StationEpisode,
    StationFault,
    StationSpec,
    Weather,
    WeatherSpec,
)

SCENARIO_DIR: Final = Path(__file__).resolve().parent / "scenarios"
VIRTUAL_START: Final = datetime(2026, 6, 1, tzinfo=timezone(timedelta(hours=8)))
"""Where a run on the virtual clock starts when neither the scenario nor the command line says: a fixed
time, so the same seed gives the same bytes on every run."""

Episode = Annotated[
    PlumeEpisode | BuildupEpisode | GasLeakEpisode | UnbookedHazmatEpisode | ExpiredAppointmentEpisode
    | CancelledAppointmentEpisode | WrongGateEpisode | BlacklistedEpisode | OverstayEpisode
    | ExitWithoutEntryEpisode | RepeatEpisode,
    Field(discriminator="type"),
]
Fault = Annotated[
    FlatlineFault | SpikeFault | DropoutFault | NegativeFault | DriftFault | FlagFault | CorruptFault
    | GateOfflineFault,
    Field(discriminator="type"),
]
_HAZMAT_EPISODES: Final = (UnbookedHazmatEpisode, ExpiredAppointmentEpisode, CancelledAppointmentEpisode,
                           WrongGateEpisode, OverstayEpisode)
_DEFAULT_GATE_KINDS: Final[tuple[GateKind, ...]] = ("general", "hazmat", "car", "emergency")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Expectation(_Spec):
    """An alert the scenario should cause: data for the rules and alerts to test themselves against.

    It fires (rule, source; at ``severity`` if given) at or after ``after_s``, seconds from the start of the
    scenario (the ``at`` of the episode or fault that causes it), and no later than ``within_s`` after that
    (no limit when not given). Times are event times, as the rules judge them.
    """

    rule: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    source: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    severity: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None
    after_s: Seconds = 0.0
    within_s: Seconds | None = None

    def covers(self, rule: str, source: str, severity: str) -> bool:
        """Whether an alert of ``rule`` on ``source`` at ``severity`` is the one expected."""
        return rule == self.rule and source == self.source and self.severity in (None, severity)

    def window(self, start: datetime) -> tuple[datetime, datetime | None]:
        """From when and until when (None: the end of the run) it should fire, for a run from ``start``."""
        begin = start + timedelta(seconds=self.after_s)
        return begin, None if self.within_s is None else begin + timedelta(seconds=self.within_s)


class Scenario(_Spec):
    """One scenario file, validated."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "scenario"
    description: str = ""
    seed: int = 0
    start: datetime | None = None  # None: chosen by the run (fixed on the virtual clock, else now)
    duration: Annotated[Seconds, Field(gt=0)] = 86400.0
    interval: Annotated[Seconds, Field(ge=1)] = 60.0  # how often each station publishes
    format: Format = "json"
    hj212_cns: tuple[Cn, ...] = ("2011", "2051", "2061")
    weather: WeatherSpec = WeatherSpec()
    stations: tuple[StationSpec, ...] = ()
    sources: tuple[SourceSpec, ...] = ()
    gates: tuple[GateSpec, ...] = ()
    traffic: TrafficSpec = TrafficSpec()
    episodes: tuple[Episode, ...] = ()
    faults: tuple[Fault, ...] = ()
    expect: tuple[Expectation, ...] = ()

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a UTC offset, e.g. 2026-06-01T00:00:00+08:00")
        return value


# ------------------------------------------------------------------------------------------ loading


def load_scenario(path: Path | str) -> Scenario:
    """Read and validate a scenario file; ConfigError naming the key and the reason if it is wrong."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError("(file)", f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("(file)", f"{path} is not valid TOML: {exc}") from exc
    return scenario_from_dict(raw)


def scenario_from_dict(raw: Mapping[str, Any]) -> Scenario:
    """Validate a scenario given as a dict (a parsed TOML file)."""
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        key = _key(error["loc"], raw, error["type"])
        value = error.get("input")
        shown = "" if isinstance(value, dict | list) else f" (got {value!r})"
        reason = "unknown key" if error["type"] == "extra_forbidden" else error["msg"] + shown
        raise ConfigError(key, reason) from None
    check_references(scenario)
    return scenario


def shipped_scenarios() -> list[Path]:
    """The scenario files shipped in ``simulators/scenarios/``."""
    return sorted(SCENARIO_DIR.glob("*.toml"))


def _key(loc: Sequence[int | str], raw: Any, error_type: str) -> str:
    """The dotted key of a pydantic error location, without the union tags pydantic inserts."""
    parts: list[str] = []
    node = raw
    for part in loc:
        if isinstance(node, Mapping) and isinstance(part, str) and part not in node and node.get("type") == part:
            continue  # the discriminator value of a tagged union, not a key of the file
        parts.append(str(part))
        node = _child(node, part)
    if error_type in ("union_tag_invalid", "union_tag_not_found"):
        parts.append("type")
    return ".".join(parts) or "(top level)"


def _child(node: Any, part: int | str) -> Any:
    if isinstance(node, Mapping):
        return node.get(part)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return None


def check_references(s: Scenario) -> None:
    """Names that must refer to something in the scenario do; ConfigError naming the key if not."""
    stations = _unique("stations", [st.id for st in s.stations], "id")
    gates = _unique("gates", [g.id for g in s.gates], "id")
    sources = _unique("sources", [src.name for src in s.sources], "name")
    if not stations and not gates:
        raise ConfigError("stations", "a scenario needs at least one station or gate")
    hazmat_gates = any("hazmat" in g.allowed for g in s.gates)
    for i, ep in enumerate(s.episodes):
        if isinstance(ep, PlumeEpisode | GasLeakEpisode | BuildupEpisode):
            _check_station_episode(f"episodes.{i}", ep, stations, sources)
        else:
            _check_gate_episode(f"episodes.{i}", ep, gates, hazmat_gates=hazmat_gates)
    for i, fault in enumerate(s.faults):
        if isinstance(fault, GateOfflineFault):
            _known(f"faults.{i}.gate", fault.gate, gates, "gate")
        else:
            _known(f"faults.{i}.station", fault.station, stations, "station")


def _check_station_episode(key: str, ep: StationEpisode, stations: set[str], sources: set[str]) -> None:
    if isinstance(ep, PlumeEpisode):
        _known(f"{key}.source", ep.source, sources, "source")
    elif isinstance(ep, GasLeakEpisode):
        _known(f"{key}.station", ep.station, stations, "station")
    else:
        for j, target in enumerate(ep.targets):
            _known(f"{key}.targets.{j}", target, stations, "station")


def _check_gate_episode(key: str, ep: GateEpisode, gates: set[str], *, hazmat_gates: bool) -> None:
    if not gates:
        raise ConfigError(f"{key}.type", f"a {ep.type} episode needs gates")
    if ep.gate is not None:
        _known(f"{key}.gate", ep.gate, gates, "gate")
    if isinstance(ep, _HAZMAT_EPISODES) and not hazmat_gates:
        raise ConfigError(f"{key}.type", f"a {ep.type} episode needs a gate that admits hazmat vehicles")


def _unique(key: str, names: Sequence[str], field_name: str) -> set[str]:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise ConfigError(f"{key}.{i}.{field_name}", f"{name!r} is defined twice")
        seen.add(name)
    return seen


def _known(key: str, name: str, known: set[str], what: str) -> None:
    if name not in known:
        listed = ", ".join(sorted(known)) or "none"
        raise ConfigError(key, f"no {what} named {name!r} (defined: {listed})")


def default_scenario(*, stations: int = 4, gates: int = 4, seed: int = 0, interval: float = 60.0,
                     duration: float = 86400.0) -> Scenario:
    """A quiet park built from counts (``parkwatch simulate`` without ``--scenario``): stations ST01...
    800 m apart on a grid, gates G1... of the classes general, hazmat, car, emergency, general..."""
    cols = max(1, math.ceil(math.sqrt(stations)))
    raw: dict[str, Any] = {
        "name": "default",
        "seed": seed,
        "interval": interval,
        "duration": duration,
        "stations": [{"id": f"ST{i + 1:02d}", "x": (i % cols) * 800.0, "y": (i // cols) * 800.0}
                     for i in range(stations)],
        "gates": [{"id": f"G{i + 1}", "kind": _DEFAULT_GATE_KINDS[i] if i < len(_DEFAULT_GATE_KINDS) else "general"}
                  for i in range(gates)],
    }
    return scenario_from_dict(raw)


def choose_start(scenario: Scenario, speed: float | None, now: datetime) -> datetime:
    """The scenario's start; else :data:`VIRTUAL_START` on the virtual clock (``speed`` None); else now
    in real time or slower; else (faster than real time) now minus the duration, so that no message
    carries a time in the future. Whole seconds."""
    if scenario.start is not None:
        return scenario.start
    if speed is None:
        return VIRTUAL_START
    begin = now if speed <= 1 else now - timedelta(seconds=scenario.duration)
    return begin.replace(microsecond=0)


# --------------------------------------------------------------------------------------- simulation


class Device(Protocol):
    """A simulated device: when it next publishes, what, and what it says when the run ends."""

    @property
    def device_id(self) -> str: ...

    @property
    def will(self) -> Outgoing | None: ...

    def next_at(self) -> datetime | None:
        """The simulated time of its next messages; None when it has nothing more to say."""
        ...

    def fire(self, at: datetime) -> Sequence[Outgoing]:
        """Its messages due at ``at`` (= the last ``next_at``), in order."""
        ...

    def finish(self, at: datetime) -> Sequence[Outgoing]:
        """Its last messages when the run ends at ``at`` (a device going offline)."""
        ...


@dataclass(slots=True)
class RunStats:
    """What a run published, by kind (reading, hj212, event, status, appointment)."""

    published: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    stopped: bool = False

    def count(self, message: Outgoing) -> None:
        self.published += 1
        self.by_kind[message_kind(message.topic)] += 1


class Simulation:
    """A scenario's devices, ready to run from ``start``. Building it does no I/O and reads no clock."""

    def __init__(self, scenario: Scenario, *, park: str, tz: tzinfo, start: datetime,
                 fmt: Format | None = None) -> None:
        self.scenario = scenario
        self.park = park
        self.start = start
        self.end = start + timedelta(seconds=scenario.duration)
        s = scenario
        weather = Weather(s.weather, start, tz, device_random(s.seed, "weather"))
        station_episodes: list[StationEpisode] = [
            e for e in s.episodes if isinstance(e, PlumeEpisode | BuildupEpisode | GasLeakEpisode)]
        gate_episodes: list[GateEpisode] = [
            e for e in s.episodes if not isinstance(e, PlumeEpisode | BuildupEpisode | GasLeakEpisode)]
        station_faults: list[StationFault] = [f for f in s.faults if not isinstance(f, GateOfflineFault)]
        gate_faults = [f for f in s.faults if isinstance(f, GateOfflineFault)]
        sources = {src.name: src for src in s.sources}
        self.stations = [
            Station(spec, park=park, tz=tz, start=start, end=self.end, interval_s=spec.interval or s.interval,
                    fmt=fmt or s.format, cns=s.hj212_cns, weather=weather, weather_spec=s.weather,
                    rng=device_random(s.seed, "station", spec.id),
                    fault_rng=device_random(s.seed, "station-faults", spec.id),
                    episodes=station_episodes, faults=station_faults, sources=sources)
            for spec in s.stations
        ]
        self.plan = TrafficPlan()
        self.registry: PlannedDevice | None = None
        gates: list[PlannedDevice] = []
        if s.gates:
            planner = TrafficPlanner(s.gates, s.traffic, park=park, tz=tz, start=start, end=self.end,
                                     rng=device_random(s.seed, "gates"))
            self.plan = planner.plan(gate_episodes)
            self.registry = PlannedDevice("registry", self.plan.appointments, end=self.end)
            gates = gate_devices(self.plan, s.gates, gate_faults, park=park, tz=tz, start=start, end=self.end)
        self.gates = gates
        self.devices: list[Device] = [*([self.registry] if self.registry else []), *self.stations, *gates]

    def run(self, clock: SimClock, connector: Connector) -> RunStats:
        """Play every device on ``clock`` until the end (or until the clock is stopped), then let each
        device say its last words. Each device publishes through ``connector.sink_for(device, will)``."""
        stats = RunStats()
        sinks = {d.device_id: connector.sink_for(d.device_id, d.will) for d in self.devices}
        due = [(at, i) for i, d in enumerate(self.devices) if (at := d.next_at()) is not None]
        heapq.heapify(due)
        while due:
            at, i = heapq.heappop(due)
            if not clock.sleep_until(at):
                stats.stopped = True
                break
            device = self.devices[i]
            self._publish(sinks[device.device_id], device.fire(at), stats)
            following = device.next_at()
            if following is not None:
                heapq.heappush(due, (following, i))
        if not stats.stopped and not clock.sleep_until(self.end):
            stats.stopped = True
        final = min(self.end, max(self.start, clock.now()))
        for device in self.devices:
            self._publish(sinks[device.device_id], device.finish(final), stats)
        return stats

    @staticmethod
    def _publish(sink: Sink, messages: Sequence[Outgoing], stats: RunStats) -> None:
        for m in messages:
            sink.publish(m.topic, m.payload, m.qos, m.retain)
            stats.count(m)


def scenario_records(scenario: Scenario, *, park: str, tz: tzinfo | None = None, start: datetime | None = None,
                     fmt: Format | None = None) -> list[Record]:
    """Everything a scenario publishes, played on a virtual clock, as records stamped with their simulated
    time: what ``parkwatch rules test`` feeds the rules. ``tz`` defaults to the contract's Asia/Shanghai,
    ``start`` to the scenario's (else :data:`VIRTUAL_START`)."""
    begin = start or choose_start(scenario, None, VIRTUAL_START)
    clock = VirtualClock(begin)
    sink = MemorySink(clock.now)
    Simulation(scenario, park=park, tz=tz or ZoneInfo("Asia/Shanghai"), start=begin, fmt=fmt).run(
        clock, SharedConnector(sink))
    return [Record(at, m.topic, m.payload, m.qos, m.retain) for at, m in zip(sink.times, sink.messages, strict=True)]
