"""Simulated air-quality stations: what they measure, how it varies, and what goes wrong with them.

A station publishes, every ``interval`` seconds of simulated time, the values of contract §2 in its units
(µg/m³ for pm25 pm10 so2 no2 o3 h2s nh3; mg/m³ for co and tvoc; m/s, degrees, °C, %RH, kPa for the
weather), either as a JSON reading on ``park/{park}/air/{station}/reading`` or as HJ 212-2017 frames on
``park/{park}/air/{station}/hj212`` (CN 2011 every tick; CN 2051 and 2061 with Avg/Min/Max of the
minute and the hour, sent at the first tick after it ends). A value is made in four steps:

1. **truth**: the park's :class:`Weather` (a slow random walk of wind, diurnal temperature, a regional
   stagnation factor that correlates PM, NO2, CO, SO2 and TVOC) times daily shapes (traffic peaks at 8 and
   18 h for NO2 and PM, a night-time shallow mixing layer, photochemistry peaking at 15 h for O3) times
   the station's own AR(1) noise;
2. **episodes** add to it: a plume from a named source reaching the stations downwind (by wind direction
   and distance, after the travel time), a slow build-up, a gas leak at one station;
3. **faults** change what the instrument reports: flatline, spikes, dropout (nothing is sent), negative
   values, drift, flags M / C / D during maintenance, calibration or a fault, corrupted frames;
4. rounding to the resolution instruments report.

Episodes and faults are frozen pydantic models (the scenario file's ``[[episodes]]`` and ``[[faults]]``,
told apart by ``type``) that carry their own effect. Episodes use no randomness, so a run with an episode
differs from the same run without it only where the episode reaches; faults draw from their own stream.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Annotated, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from ingest import hj212
from ingest.models import DEVICE_ID
from simulators.clock import Seconds, floor_time
from simulators.publish import Outgoing

POLLUTANTS: Final = ("pm25", "pm10", "so2", "no2", "co", "o3", "tvoc", "h2s", "nh3")
WEATHER_VALUES: Final = ("wind_speed", "wind_dir", "temp", "rh", "pressure")
VALUE_NAMES: Final = POLLUTANTS + WEATHER_VALUES
DECIMALS: Final[Mapping[str, int]] = {
    "pm25": 1, "pm10": 1, "so2": 1, "no2": 1, "co": 3, "o3": 1, "tvoc": 3, "h2s": 1, "nh3": 1,
    "wind_speed": 1, "wind_dir": 0, "temp": 1, "rh": 1, "pressure": 2,
}
DEFAULT_BASE: Final[Mapping[str, float]] = {
    "pm25": 30.0, "pm10": 55.0, "so2": 9.0, "no2": 28.0, "co": 0.7, "o3": 85.0, "tvoc": 0.18, "h2s": 2.0,
    "nh3": 35.0,
}
"""Typical levels of a quiet day in a park (µg/m³; co and tvoc mg/m³); a station's ``base`` scales them."""

CORRUPTIONS: Final[Mapping[str, str]] = {
    "bad_crc": "crc_mismatch",
    "modbus_crc": "crc_modbus",
    "wrong_length": "length_mismatch",
    "truncated": "truncated",
}
"""Kinds of corrupted HJ 212 frame -> the reason ``ingest.hj212.decode_frame`` refuses it with."""

Format = Literal["json", "hj212"]
Cn = Literal["2011", "2051", "2061"]
_NOISE_SD: Final[Mapping[str, float]] = {
    "pm25": 0.12, "pm10": 0.10, "so2": 0.20, "no2": 0.15, "co": 0.06, "o3": 0.08, "tvoc": 0.15, "h2s": 0.25,
    "nh3": 0.15,
}
_AGGREGATES: Final[tuple[tuple[Cn, float], ...]] = (("2051", 60.0), ("2061", 3600.0))
_NOISE_TAU_S: Final = 900.0
_WEATHER_STEP_S: Final = 60.0
_LEAK_DECAY_S: Final = 120.0
_MN_TEXT = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,24}$")]
_DeviceId = Annotated[str, StringConstraints(pattern=f"^{DEVICE_ID.pattern}$")]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ------------------------------------------------------------------------------------------ devices


class StationSpec(_Spec):
    """One station: id, position in metres (x east, y north); optionally its HJ 212 MN, format, interval
    and typical levels (``base``, which scales the model's)."""

    id: _DeviceId
    x: float = 0.0
    y: float = 0.0
    mn: _MN_TEXT | None = None
    format: Format | None = None  # None: the scenario's (or the command line's) format
    interval: Annotated[Seconds, Field(ge=1)] | None = None  # None: the scenario's interval
    base: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)

    @field_validator("base")
    @classmethod
    def _known(cls, value: dict[str, float]) -> dict[str, float]:
        _check_names(value, POLLUTANTS)
        return value

    @property
    def logger_mn(self) -> str:
        """The MN of its HJ 212 data logger."""
        return self.mn or f"MN-{self.id}"[:24]


class SourceSpec(_Spec):
    """A named emission source (a reactor, a tank farm) at a position in metres."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    x: float
    y: float


class WeatherSpec(_Spec):
    """The park's weather. ``wind_dir`` (where the wind comes from) None lets it wander freely."""

    wind_dir: Annotated[float, Field(ge=0, lt=360)] | None = None
    wind_wander: Annotated[float, Field(ge=0, le=45)] = 3.0  # degrees per minute
    wind_speed: Annotated[float, Field(gt=0, le=30)] = 2.5
    temp: Annotated[float, Field(ge=-40, le=45)] = 18.0
    temp_amplitude: Annotated[float, Field(ge=0, le=20)] = 6.0
    rh: Annotated[float, Field(ge=5, le=100)] = 60.0
    pressure: Annotated[float, Field(ge=60, le=110)] = 101.3


# ------------------------------------------------------------------------------------------ weather


@dataclass(frozen=True, slots=True)
class WeatherState:
    wind_speed: float
    wind_dir: float
    temp: float
    rh: float
    pressure: float
    stagnation: float  # multiplies PM, NO2, SO2, TVOC: low wind and a stable air mass raise them together


class Weather:
    """The park's weather: one random walk, stepped every minute of simulated time from ``start``.

    ``at(t)`` interpolates between steps; the walk only ever goes forward, so any number of stations may
    ask in any order and get the same answer.
    """

    def __init__(self, spec: WeatherSpec, start: datetime, tz: tzinfo, rng: random.Random) -> None:
        self._spec = spec
        self._start = start
        self._tz = tz
        self._rng = rng
        first_dir = spec.wind_dir if spec.wind_dir is not None else rng.uniform(0, 360)
        self._dir = first_dir
        self._speed = spec.wind_speed
        self._temp_noise = 0.0
        self._rh_noise = 0.0
        self._p_noise = 0.0
        self._log_stagnation = 0.0
        self._states: list[WeatherState] = [self._state(start)]

    def at(self, moment: datetime) -> WeatherState:
        offset = max(0.0, (moment - self._start).total_seconds())
        k, frac = divmod(offset / _WEATHER_STEP_S, 1.0)
        i = int(k)
        while len(self._states) <= i + 1:
            self._step()
        a, b = self._states[i], self._states[i + 1]
        if frac == 0.0:
            return a
        return WeatherState(
            wind_speed=_lerp(a.wind_speed, b.wind_speed, frac),
            wind_dir=(a.wind_dir + _angle_diff(b.wind_dir, a.wind_dir) * frac) % 360.0,
            temp=_lerp(a.temp, b.temp, frac),
            rh=_lerp(a.rh, b.rh, frac),
            pressure=_lerp(a.pressure, b.pressure, frac),
            stagnation=_lerp(a.stagnation, b.stagnation, frac),
        )

    def _step(self) -> None:
        s, rng = self._spec, self._rng
        moment = self._start + timedelta(seconds=len(self._states) * _WEATHER_STEP_S)
        hour = local_hour(moment, self._tz)
        pull = 0.05 * _angle_diff(s.wind_dir, self._dir) if s.wind_dir is not None else 0.0
        self._dir = (self._dir + pull + rng.gauss(0.0, s.wind_wander)) % 360.0
        target = s.wind_speed * (0.75 + 0.5 * _afternoon(hour))
        self._speed = max(0.1, self._speed + 0.05 * (target - self._speed) + rng.gauss(0.0, 0.08))
        self._temp_noise = 0.98 * self._temp_noise + rng.gauss(0.0, 0.1)
        self._rh_noise = 0.98 * self._rh_noise + rng.gauss(0.0, 0.4)
        self._p_noise = 0.995 * self._p_noise + rng.gauss(0.0, 0.004)
        self._log_stagnation = 0.995 * self._log_stagnation + rng.gauss(0.0, 0.015)
        self._states.append(self._state(moment))

    def _state(self, moment: datetime) -> WeatherState:
        s = self._spec
        hour = local_hour(moment, self._tz)
        temp = s.temp + s.temp_amplitude * math.sin(2 * math.pi * (hour - 9) / 24) + self._temp_noise
        rh = min(100.0, max(10.0, s.rh - 3.0 * (temp - s.temp) + self._rh_noise))
        pressure = s.pressure + 0.08 * math.sin(2 * math.pi * (hour - 10) / 12) + self._p_noise
        dilution = 1.4 / (0.6 + 0.3 * self._speed)
        return WeatherState(self._speed, self._dir, temp, rh, pressure, math.exp(self._log_stagnation) * dilution)


def local_hour(moment: datetime, tz: tzinfo) -> float:
    """The hour of the day (0 to 24, fractional) in the park's time zone."""
    local = moment.astimezone(tz)
    return local.hour + local.minute / 60 + local.second / 3600


def traffic(hour: float) -> float:
    """Road traffic: morning (8 h) and evening (18 h) peaks over a night-time floor."""
    return 0.45 + 0.9 * math.exp(-(((hour - 8) / 1.3) ** 2)) + 0.75 * math.exp(-(((hour - 18) / 1.8) ** 2))


def mixing(hour: float) -> float:
    """How much a shallow night-time mixing layer concentrates what is emitted (peak 4 h, low 16 h)."""
    return 1 + 0.35 * math.cos(2 * math.pi * (hour - 4) / 24)


def photochemistry(hour: float) -> float:
    """Ozone production: 0 at night, rising from 8 h to a peak at 15 h, gone by 22 h."""
    return math.sin(math.pi * (hour - 8) / 14) if 8 <= hour <= 22 else 0.0


def _afternoon(hour: float) -> float:
    return math.sin(math.pi * (hour - 9) / 12) if 9 <= hour <= 21 else 0.0


# ----------------------------------------------------------------------------------------- episodes


@dataclass(slots=True)
class Reading:
    """What a station is about to report: values by name, and flags other than N."""

    values: dict[str, float]
    flags: dict[str, str] = field(default_factory=dict)


class _Timed(_Spec):
    at: Seconds  # offset from the start of the scenario
    duration: Seconds

    def active(self, offset: float) -> bool:
        return self.at <= offset < self.at + self.duration


class _Episode(_Timed):
    species: dict[str, Annotated[float, Field(gt=0)]]

    @field_validator("species")
    @classmethod
    def _species(cls, value: dict[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError("names at least one pollutant")
        _check_names(value, POLLUTANTS)
        return value

    def stations(self) -> tuple[str, ...]:
        """Stations named by the episode (checked against the scenario's); empty: it may reach any."""
        return ()


class PlumeEpisode(_Episode):
    """A release from ``source``: ``species`` are the concentrations 100 m downwind at 2.5 m/s. It reaches
    a station downwind of the source after the travel time, spread around the wind's axis."""

    type: Literal["plume"]
    source: str
    spread: Annotated[float, Field(gt=0, le=1)] = 0.15  # plume half-width per metre travelled

    def contribution(self, station: StationSpec, offset: float, wx: WeatherState,
                     sources: Mapping[str, SourceSpec]) -> dict[str, float]:
        src = sources[self.source]
        dx, dy = station.x - src.x, station.y - src.y
        bearing = math.degrees(math.atan2(dx, dy)) % 360.0
        off = math.radians(_angle_diff(bearing, (wx.wind_dir + 180.0) % 360.0))
        distance = math.hypot(dx, dy)
        along, cross = distance * math.cos(off), distance * math.sin(off)
        if along <= 0:
            return {}
        speed = max(wx.wind_speed, 0.5)
        travel = along / speed
        if not self.at + travel <= offset < self.at + self.duration + travel:
            return {}
        sigma = self.spread * along + 25.0
        factor = (100.0 / max(along, 100.0)) ** 1.5 * (2.5 / speed) * math.exp(-0.5 * (cross / sigma) ** 2)
        return {name: level * factor for name, level in self.species.items()}


class BuildupEpisode(_Episode):
    """A slow build-up (stagnant air, a regional haze): ``species`` added, ramping up over ``ramp``."""

    type: Literal["buildup"]
    ramp: Seconds = 6 * 3600.0
    targets: tuple[str, ...] = ()  # station ids; empty: every station

    def stations(self) -> tuple[str, ...]:
        return self.targets

    def contribution(self, station: StationSpec, offset: float, wx: WeatherState,
                     sources: Mapping[str, SourceSpec]) -> dict[str, float]:
        if not self.active(offset) or (self.targets and station.id not in self.targets):
            return {}
        share = min(1.0, (offset - self.at) / self.ramp) if self.ramp > 0 else 1.0
        return {name: level * share for name, level in self.species.items()}


class GasLeakEpisode(_Episode):
    """A leak next to one station: ``species`` (h2s, nh3...) rise within ``rise``, fluctuate, then decay."""

    type: Literal["gas_leak"]
    station: str
    species: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=lambda: {"h2s": 3000.0})
    rise: Seconds = 60.0

    def stations(self) -> tuple[str, ...]:
        return (self.station,)

    def contribution(self, station: StationSpec, offset: float, wx: WeatherState,
                     sources: Mapping[str, SourceSpec]) -> dict[str, float]:
        since = offset - self.at
        end = self.at + self.duration
        if station.id != self.station or since < 0 or offset >= end + 5 * _LEAK_DECAY_S:
            return {}
        share = min(1.0, since / self.rise) if self.rise > 0 else 1.0
        share *= 1.0 + 0.25 * math.sin(2 * math.pi * since / 97.0)
        if offset >= end:
            share *= math.exp(-(offset - end) / _LEAK_DECAY_S)
        return {name: level * share for name, level in self.species.items()}


StationEpisode = PlumeEpisode | BuildupEpisode | GasLeakEpisode


# ------------------------------------------------------------------------------------------- faults


@dataclass(slots=True)
class FaultContext:
    """What a fault may use: the station's fault random stream, its own memory, and its start time."""

    rng: random.Random
    memory: dict[str, float] = field(default_factory=dict)


class _StationFault(_Timed):
    station: str
    values: tuple[str, ...] = ()  # empty: the fault's default values

    default_values: ClassVar[tuple[str, ...]] = POLLUTANTS
    allowed_values: ClassVar[tuple[str, ...]] = VALUE_NAMES

    @field_validator("values")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        _check_names(value, cls.allowed_values)
        return value

    def targets(self) -> tuple[str, ...]:
        return self.values or self.default_values

    def apply(self, reading: Reading, offset: float, ctx: FaultContext) -> Reading | None:
        """The reading as the faulty instrument reports it; None when nothing is sent."""
        return reading

    def corrupt(self, payload: bytes, fmt: Format, count: int) -> bytes:
        """The payload as it reaches the broker (``count``: messages of this fault so far)."""
        return payload


class FlatlineFault(_StationFault):
    """The instrument repeats the value it had when the fault started."""

    type: Literal["flatline"]

    def apply(self, reading: Reading, offset: float, ctx: FaultContext) -> Reading | None:
        for name in self.targets():
            if name in reading.values:
                reading.values[name] = ctx.memory.setdefault(name, reading.values[name])
        return reading


class SpikeFault(_StationFault):
    """Isolated outliers: ``factor`` x the value, at the first tick and then with probability ``rate``."""

    type: Literal["spike"]
    factor: Annotated[float, Field(gt=1, le=100)] = 8.0
    rate: Annotated[float, Field(ge=0, le=1)] = 0.1
    default_values: ClassVar[tuple[str, ...]] = ("pm25", "pm10")
    allowed_values: ClassVar[tuple[str, ...]] = POLLUTANTS

    def apply(self, reading: Reading, offset: float, ctx: FaultContext) -> Reading | None:
        first = not ctx.memory
        ctx.memory["seen"] = 1.0
        if first or ctx.rng.random() < self.rate:
            for name in self.targets():
                if name in reading.values:
                    reading.values[name] = max(reading.values[name], 1.0) * self.factor
        return reading


class DropoutFault(_StationFault):
    """Nothing is sent: the logger or its link is down."""

    type: Literal["dropout"]

    def apply(self, reading: Reading, offset: float, ctx: FaultContext) -> Reading | None:
        return None


class NegativeFault(_StationFault):
    """A zero offset gone wrong: the values read slightly below zero."""

    type: Literal["negative"]
    default_values: ClassVar[tuple[str, ...]] = ("so2",)
    allowed_values: ClassVar[tuple[str, ...]] = POLLUTANTS

    def apply(self, reading: Reading, offset: float, ctx: FaultContext) -> Reading | None:
        for name in self.targets():
            if name in reading.values:
                reading.values[name] = -ctx.rng.uniform(0.5, 5.0)
        return reading


class DriftFault(_StationFault):
    """A sensor drifting away: ``rate_per_h`` added per hour since the fault started."""

    type: Literal["drift"]
    rate_per_h: float = 10.0
    default_values: ClassVar[tuple[str, ...]] = ("o3",)
    allowed_values: ClassVar[tuple[str, ...]] = POLLUTANTS

    def apply(self, reading: Reading, offset: float, ctx: FaultContext) -> Reading | None:
        for name in self.targets():
            if name in reading.values:
                reading.values[name] += self.rate_per_h * (offset - self.at) / 3600.0
        return reading


_FLAG_OF: Final = {"maintenance": "M", "calibration": "C", "fault": "D"}


class FlagFault(_StationFault):
    """Maintenance (M), calibration (C) or an instrument fault (D): values sent with that flag."""

    type: Literal["maintenance", "calibration", "fault"]

    @property
    def letter(self) -> str:
        return _FLAG_OF[self.type]

    def apply(self, reading: Reading, offset: float, ctx: FaultContext) -> Reading | None:
        for name in self.targets():
            if name in reading.values:
                reading.flags[name] = self.letter
        return reading


class CorruptFault(_StationFault):
    """Frames damaged on the way (HJ 212): ``kind`` says how; every ``every``-th message of the window.
    A JSON reading is cut in half instead (invalid_json)."""

    type: Literal["corrupt"]
    kind: Literal["bad_crc", "modbus_crc", "wrong_length", "truncated"] = "bad_crc"
    every: Annotated[int, Field(ge=1)] = 1

    def corrupt(self, payload: bytes, fmt: Format, count: int) -> bytes:
        if count % self.every:
            return payload
        if fmt == "json":
            return payload[: len(payload) // 2]
        return corrupt_frame(payload, self.kind)


StationFault = FlatlineFault | SpikeFault | DropoutFault | NegativeFault | DriftFault | FlagFault | CorruptFault


def corrupt_frame(frame: bytes, kind: str) -> bytes:
    """A damaged copy of a good HJ 212 frame; :data:`CORRUPTIONS` gives the reason the decoder says."""
    crlf = frame.endswith(b"\r\n")
    body = frame[:-2] if crlf else frame
    segment = body[6:-4]
    tail = b"\r\n" if crlf else b""
    if kind == "bad_crc":
        good, modbus = hj212.crc16(segment), hj212.modbus_crc16(segment)
        bad = next(c for c in (good ^ 0x5A5A, good ^ 0xA5A5, good ^ 0x0F0F) if c != modbus)
        return body[:-4] + f"{bad:04X}".encode() + tail
    if kind == "modbus_crc":
        return body[:-4] + f"{hj212.modbus_crc16(segment):04X}".encode() + tail
    if kind == "wrong_length":
        return b"##" + f"{len(segment) - 1:04d}".encode() + body[6:] + tail
    if kind == "truncated":
        return body[: 6 + len(segment) // 2]
    raise ValueError(f"unknown corruption {kind!r}; one of {', '.join(CORRUPTIONS)}")


# ------------------------------------------------------------------------------------------ station


class Station:
    """One simulated station: a device that fires every ``interval_s`` from ``start`` until ``end``."""

    def __init__(
        self,
        spec: StationSpec,
        *,
        park: str,
        tz: tzinfo,
        start: datetime,
        end: datetime,
        interval_s: float,
        fmt: Format,
        cns: Sequence[Cn],
        weather: Weather,
        weather_spec: WeatherSpec,
        rng: random.Random,
        fault_rng: random.Random,
        episodes: Sequence[StationEpisode] = (),
        faults: Sequence[StationFault] = (),
        sources: Mapping[str, SourceSpec] | None = None,
    ) -> None:
        if interval_s < 1:
            raise ValueError(f"interval must be at least 1 s, not {interval_s}")
        self.spec = spec
        self._park = park
        self._tz = tz
        self._start = start
        self._end = end
        self._interval = interval_s
        self._fmt: Format = spec.format or fmt
        self._cns = tuple(cns)
        self._weather = weather
        self._wx_spec = weather_spec
        self._rng = rng
        self._episodes = [e for e in episodes if not e.stations() or spec.id in e.stations()]
        self._faults = [f for f in faults if f.station == spec.id]
        self._contexts = [FaultContext(fault_rng) for _ in self._faults]
        self._counts = [0 for _ in self._faults]
        self._sources = dict(sources or {})
        self._site = {name: min(1.4, max(0.7, 1.0 + rng.gauss(0.0, 0.12))) for name in ("traffic", "industry")}
        self._noise = dict.fromkeys(POLLUTANTS, 0.0)
        self._phi = math.exp(-interval_s / _NOISE_TAU_S)
        self._tick = 0
        self._seq = 0
        self._windows: dict[Cn, _Window] = {}

    @property
    def device_id(self) -> str:
        return self.spec.id

    @property
    def format(self) -> Format:
        return self._fmt

    @property
    def status_topic(self) -> str:
        return f"park/{self._park}/air/{self.spec.id}/status"

    @property
    def will(self) -> Outgoing:
        return Outgoing(self.status_topic, b'{"online":false}', 1, True)

    def next_at(self) -> datetime | None:
        at = self._start + timedelta(seconds=self._tick * self._interval)
        return at if at < self._end else None

    def fire(self, at: datetime) -> list[Outgoing]:
        out: list[Outgoing] = []
        if self._tick == 0:
            out.append(_status(self.status_topic, at, self._tz, online=True))
        self._tick += 1
        reading = self.measure(at)
        if self._fmt == "json":
            if reading is not None:
                out.append(self._json(at, reading))
        else:
            out.extend(self._frames(at, reading))
        return out

    def finish(self, at: datetime) -> list[Outgoing]:
        return [_status(self.status_topic, at, self._tz, online=False)]

    def measure(self, at: datetime) -> Reading | None:
        """The reading of one tick as the instrument reports it (None during a dropout), rounded."""
        offset = (at - self._start).total_seconds()
        wx = self._weather.at(at)
        values = self._truth(at, wx)
        for episode in self._episodes:
            for name, extra in episode.contribution(self.spec, offset, wx, self._sources).items():
                values[name] = values.get(name, 0.0) + extra
        reading: Reading | None = Reading(values)
        for fault, ctx in zip(self._faults, self._contexts, strict=True):
            if reading is not None and fault.active(offset):
                reading = fault.apply(reading, offset, ctx)
        if reading is None:
            return None
        reading.values = {name: _round(name, v) for name, v in reading.values.items()}
        return reading

    # --- the model ------------------------------------------------------------------------------------

    def _truth(self, at: datetime, wx: WeatherState) -> dict[str, float]:
        hour = local_hour(at, self._tz)
        f = self._step_noise()
        base = {name: self.spec.base.get(name, DEFAULT_BASE[name]) for name in POLLUTANTS}
        scale = {name: base[name] / DEFAULT_BASE[name] for name in POLLUTANTS}
        tr, mix, photo, s = traffic(hour), mixing(hour), photochemistry(hour), wx.stagnation
        ind = self._site["industry"]
        pm25 = base["pm25"] * mix * (0.75 + 0.3 * tr) * s * self._site["traffic"] * f["pm25"]
        no2 = base["no2"] * tr * mix * s * self._site["traffic"] * f["no2"]
        temp_excess = wx.temp - self._wx_spec.temp
        o3 = base["o3"] * (0.25 + 1.1 * photo) * (1 + 0.03 * temp_excess) * f["o3"] - 0.35 * max(0.0, no2 - base["no2"])
        rng = self._rng
        return {
            "pm25": pm25,
            "pm10": (pm25 * (1.55 + 0.1 * wx.wind_speed) + 4.0 * wx.wind_speed) * scale["pm10"] * f["pm10"],
            "so2": base["so2"] * s * ind * (0.9 + 0.2 * photo) * f["so2"],
            "no2": no2,
            "co": (0.3 + 0.011 * no2 + 0.004 * pm25) * scale["co"] * f["co"],
            "o3": max(3.0, o3),
            "tvoc": base["tvoc"] * (0.6 + 0.4 * tr) * s * ind * f["tvoc"],
            "h2s": base["h2s"] * mix * f["h2s"],
            "nh3": base["nh3"] * (0.8 + 0.3 * photo) * f["nh3"],
            "wind_speed": max(0.0, wx.wind_speed + rng.gauss(0.0, 0.15)),
            "wind_dir": (wx.wind_dir + rng.gauss(0.0, 5.0)) % 360.0,
            "temp": wx.temp + rng.gauss(0.0, 0.15),
            "rh": min(100.0, max(0.0, wx.rh + rng.gauss(0.0, 0.8))),
            "pressure": wx.pressure + rng.gauss(0.0, 0.01),
        }

    def _step_noise(self) -> dict[str, float]:
        phi, keep = self._phi, math.sqrt(1 - self._phi**2)
        for name in POLLUTANTS:
            self._noise[name] = phi * self._noise[name] + keep * _NOISE_SD[name] * self._rng.gauss(0.0, 1.0)
        return {name: math.exp(n) for name, n in self._noise.items()}

    # --- encoding -------------------------------------------------------------------------------------

    def _json(self, at: datetime, reading: Reading) -> Outgoing:
        self._seq += 1
        body: dict[str, object] = {"ts": at.astimezone(self._tz).isoformat(), "seq": self._seq,
                                   "values": reading.values}
        if reading.flags:
            body["flags"] = reading.flags
        payload = json.dumps(body, separators=(",", ":")).encode()
        return Outgoing(f"park/{self._park}/air/{self.spec.id}/reading", self._corrupted(at, payload))

    def _frames(self, at: datetime, reading: Reading | None) -> list[Outgoing]:
        topic = f"park/{self._park}/air/{self.spec.id}/hj212"
        frames: list[bytes] = []
        if reading is None:
            return []
        for cn, step in _AGGREGATES:
            if cn not in self._cns:
                continue
            period = floor_time(at, step)
            window = self._windows.get(cn)
            if window is not None and window.start != period and window.rows:
                frames.append(self._frame(cn, window.start, *window.summary()))
            if window is None or window.start != period:
                window = self._windows[cn] = _Window(period)
            window.rows.append(reading)
        if "2011" in self._cns:
            flags = {name: reading.flags.get(name, "N") for name in reading.values}
            frames.append(self._frame("2011", at, reading.values, flags))
        return [Outgoing(topic, self._corrupted(at, frame)) for frame in frames]

    def _frame(self, cn: str, at: datetime, values: Mapping[str, float], flags: Mapping[str, str]) -> bytes:
        mn = self.spec.logger_mn
        try:
            return hj212.encode_readings(mn, cn, at, values, flags, tz=self._tz)
        except ValueError:  # over 1024 characters with Min/Max: send the averages only
            main = {k: v for k, v in values.items() if not k.endswith(("_min", "_max"))}
            return hj212.encode_readings(mn, cn, at, main, flags, tz=self._tz)

    def _corrupted(self, at: datetime, payload: bytes) -> bytes:
        offset = (at - self._start).total_seconds()
        for i, fault in enumerate(self._faults):
            if fault.active(offset):
                payload = fault.corrupt(payload, self._fmt, self._counts[i])
                self._counts[i] += 1
        return payload


@dataclass(slots=True)
class _Window:
    """The readings of one minute or hour, for CN 2051 / 2061."""

    start: datetime
    rows: list[Reading] = field(default_factory=list)

    def summary(self) -> tuple[dict[str, float], dict[str, str]]:
        """Avg, Min, Max per value (a vector mean and no Min/Max for wind_dir); the last flag other than N."""
        names = [n for n in VALUE_NAMES if any(n in r.values for r in self.rows)]
        values: dict[str, float] = {}
        flags: dict[str, str] = {}
        for name in names:
            seen = [r.values[name] for r in self.rows if name in r.values]
            if name == "wind_dir":
                values[name] = _round(name, _vector_mean(seen))
            else:
                values[name] = _round(name, sum(seen) / len(seen))
                values[f"{name}_min"] = min(seen)
                values[f"{name}_max"] = max(seen)
            letters = [r.flags[name] for r in self.rows if name in r.flags]
            flags[name] = letters[-1] if letters else "N"
        return values, flags


def _status(topic: str, at: datetime, tz: tzinfo, *, online: bool) -> Outgoing:
    body = {"online": online, "ts": at.astimezone(tz).isoformat()}
    return Outgoing(topic, json.dumps(body, separators=(",", ":")).encode(), 1, True)


def _round(name: str, value: float) -> float:
    digits = DECIMALS.get(name, 3)
    rounded = round(value, digits)
    if name == "wind_dir" and rounded >= 360.0:
        rounded -= 360.0
    return rounded + 0.0  # no -0.0


def _vector_mean(degrees: Sequence[float]) -> float:
    east = sum(math.sin(math.radians(d)) for d in degrees)
    north = sum(math.cos(math.radians(d)) for d in degrees)
    return math.degrees(math.atan2(east, north)) % 360.0


def _angle_diff(target: float, current: float) -> float:
    """The signed smallest turn from ``current`` to ``target``, in degrees (-180..180)."""
    return (target - current + 180.0) % 360.0 - 180.0


def _lerp(a: float, b: float, frac: float) -> float:
    return a + (b - a) * frac


def _check_names(names: Sequence[str] | Mapping[str, float], allowed: Sequence[str]) -> None:
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise ValueError(f"unknown value {unknown[0]!r}; one of {', '.join(allowed)}")
