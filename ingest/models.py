"""Domain values: frozen, self-validating, timezone-aware.

Each model validates one device payload (contract §2, §4, §5). A failed check raises a pydantic error whose
``type`` is one of our reason codes (see ``ingest.decode.REASONS``); ``ingest.decode`` turns it into
``Rejected``. Times are always timezone-aware; a time with no offset is read in the park's time zone,
which the caller passes in the validation context as ``tz``.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, cast, get_args
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationInfo
from pydantic_core import PydanticCustomError

DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
VALUE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
FLAG_LETTER = re.compile(r"[!-~]")  # one printable ASCII character: N F M S D C T B, and vendor letters
INVALID_FLAGS = frozenset("FMDCB")  # HJ 212-2017 Table 8: stopped, maintenance, fault, calibration, comms fault
_NONE: frozenset[str] = frozenset()
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
EARLIEST_NS = int(EARLIEST.timestamp()) * 1_000_000_000  # in nanoseconds since the epoch
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
MAX_VALUES = 64
MAX_TEXT = 128

# Values outside these bounds are not a sensor reading but garbage (unit mix-up, overflow, hostile input):
# the whole message is dead-lettered. Narrower "physical range" checks are rules (faulty sensor alerts).
HARD_LIMITS: dict[str, tuple[float, float]] = {
    "pm25": (-100.0, 100_000.0), "pm10": (-100.0, 100_000.0), "so2": (-100.0, 100_000.0),
    "no2": (-100.0, 100_000.0), "o3": (-100.0, 100_000.0), "co": (-10.0, 10_000.0),
    "tvoc": (-10.0, 100_000.0), "h2s": (-100.0, 1_000_000.0), "nh3": (-100.0, 1_000_000.0),
    "wind_speed": (0.0, 150.0), "wind_dir": (0.0, 360.0), "temp": (-90.0, 90.0), "rh": (-50.0, 200.0),
    "pressure": (50.0, 120.0),
}
ANY_LIMIT = 1e9


def _err(code: str, message: str, **ctx: Any) -> PydanticCustomError:
    return PydanticCustomError(code, message, ctx or None)


def parse_ts(raw: object, tz: ZoneInfo) -> datetime:
    """ISO 8601 text (no offset: park time zone) or integer epoch milliseconds -> aware datetime.

    A datetime (built by our own code, e.g. from an HJ 212 frame or a simulator) is taken as it is.
    """
    if isinstance(raw, datetime):
        return raw if raw.tzinfo is not None else raw.replace(tzinfo=tz)
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise _err("wrong_type", "ts must be ISO 8601 text or integer epoch milliseconds")
    if isinstance(raw, int):
        try:
            return datetime.fromtimestamp(raw / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            raise _err("timestamp_out_of_range", "epoch milliseconds {v} out of range", v=raw) from None
    try:
        ts = datetime.fromisoformat(raw)
    except ValueError:
        raise _err("bad_timestamp", "ts '{v}' is not ISO 8601", v=raw[:40]) from None
    return ts.replace(tzinfo=tz) if ts.tzinfo is None else ts


def _ts(raw: object, info: ValidationInfo) -> datetime:
    """An event time: not before 2000, not later than the receive clock plus the allowed skew."""
    ctx = info.context or {}
    ts = parse_ts(raw, ctx.get("tz") or ZoneInfo("Asia/Shanghai"))
    latest = ctx.get("latest")
    if ts < EARLIEST or (latest is not None and ts > latest):
        raise _err("timestamp_out_of_range", "ts {v} is before 2000 or too far in the future", v=ts.isoformat())
    return ts


def _any_time(raw: object, info: ValidationInfo) -> datetime:
    """A time that may lie in the future (a booking's validity), within 2000..2100."""
    ctx = info.context or {}
    ts = parse_ts(raw, ctx.get("tz") or ZoneInfo("Asia/Shanghai"))
    if not EARLIEST <= ts < LATEST:
        raise _err("timestamp_out_of_range", "time {v} is not between 2000 and 2100", v=ts.isoformat())
    return ts


def _text(value: str) -> str:
    if not value or len(value) > MAX_TEXT or not value.isprintable():
        raise _err("bad_text", "text must be 1 to 128 printable characters")
    return value


def _device_id(value: str) -> str:
    if not DEVICE_ID.fullmatch(value):
        raise _err("bad_device_id", "'{v}' is not 1 to 64 letters, digits, '-' or '_'", v=value[:80])
    return value


@functools.lru_cache(maxsize=4096)
def _limits(name: str) -> tuple[float, float]:
    """The hard limits of a value name, after checking the name (memoised: stations send few names)."""
    if not VALUE_NAME.fullmatch(name) or name.endswith("_flag"):
        raise _err("bad_value_name", "value name '{v}' is not a letter then letters, digits, '_'", v=name[:80])
    return HARD_LIMITS.get(name, (-ANY_LIMIT, ANY_LIMIT))


def _values(values: dict[str, float]) -> dict[str, float]:
    if not values:
        raise _err("no_values", "values must hold at least one number")
    if len(values) > MAX_VALUES:
        raise _err("too_many_values", "at most {n} values per reading", n=MAX_VALUES)
    for name, value in values.items():
        low, high = _limits(name)
        if not low <= value <= high:
            raise _err("value_out_of_range", "{n}={v} outside [{lo}, {hi}]", n=name, v=value, lo=low, hi=high)
    return values


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise _err("not_finite", "number is NaN or infinite")
    return value


Timestamp = Annotated[datetime, BeforeValidator(_ts)]
AnyTime = Annotated[datetime, BeforeValidator(_any_time)]
Text = Annotated[str, Strict(), AfterValidator(_text)]
DeviceId = Annotated[str, Strict(), AfterValidator(_device_id)]
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]  # checked in pydantic-core, not in Python


def _flag(value: str) -> str:
    if not FLAG_LETTER.fullmatch(value):
        raise _err("bad_flag", "flag '{v}' is not one printable ASCII character (N, F, M, S, D, C, ...)", v=value[:10])
    return value


FlagLetter = Annotated[str, Strict(), AfterValidator(_flag)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its class, its fields and which of them were given: every new value crosses the pipe
        from the ingest worker to the service pickled (ingest/worker.py), and pydantic's own form (its
        `__getstate__` and `__setstate__`, in Python) took twice as long to dump and to load. Loading does not
        validate again: only for values this program made, never for bytes from outside."""
        return _restored, (type(self), self.__dict__, self.__pydantic_fields_set__)


def _restored(cls: type[_Frozen], fields: dict[str, Any], fields_set: set[str]) -> _Frozen:
    """The model `_Frozen.__reduce__` took apart, put back as it was (pydantic's `__setstate__`, in one step).
    A frozen model refuses its own __setattr__: its slots are set through their descriptors (1.2 µs for an
    AirReading, against 1.6 by ``object.__setattr__``)."""
    model = cls.__new__(cls)
    object.__setattr__(model, "__dict__", fields)
    _SET_FIELDS_SET(model, fields_set)
    _SET_EXTRA(model, None)  # extra="ignore": never any
    _SET_PRIVATE(model, None)  # no private attributes
    return model


_SET_FIELDS_SET = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_SET_EXTRA = BaseModel.__dict__["__pydantic_extra__"].__set__
_SET_PRIVATE = BaseModel.__dict__["__pydantic_private__"].__set__


class AirReading(_Frozen):
    """One air-quality reading of one station (contract §2)."""

    ts: Timestamp
    values: Annotated[dict[Annotated[str, Strict()], Number], AfterValidator(_values)]
    flags: dict[Annotated[str, Strict()], FlagLetter] = Field(default_factory=dict)
    seq: Annotated[int, Strict(), Field(ge=0)] | None = None
    # set by the decoder from the topic / HJ 212 frame, not by the device's JSON
    station: str = ""
    period: Literal["", "minute", "hour", "day"] = ""
    mn: str = ""

    def model_post_init(self, __context: Any) -> None:
        stray = set(self.flags) - set(self.values)
        if stray:
            raise _err("flag_without_value", "flags given for {names} which have no value", names=sorted(stray))

    def valid(self, name: str) -> bool:
        """Whether the named value counts in thresholds, averages and AQI (its flag is not invalid)."""
        return name in self.values and self.flags.get(name, "N") not in INVALID_FLAGS

    @property
    def invalid(self) -> frozenset[str]:
        """The names of the values that do not count (flagged invalid): empty for most readings, which
        carry no flags. The averages take a reading's values against this once, not `valid` per value."""
        if not self.flags:
            return _NONE
        return frozenset(name for name, flag in self.flags.items() if flag in INVALID_FLAGS)


# The fields an HJ 212 upload gives (all but seq): checked_air_reading's default.
READING_GIVEN = ("ts", "values", "flags", "station", "period", "mn")
_PERIODS = frozenset(get_args(AirReading.model_fields["period"].annotation))  # its Literal's values
# The limits of names `_limits` passed, looked up in place: nine calls of the lru_cache'd `_limits` cost
# a microsecond more per benchmark frame (about 3 % of its decoding, 2026-12-04).
_KNOWN_NAMES = 4096
_KNOWN_LIMITS: dict[str, tuple[float, float]] = {}


def checked_air_reading(
    ts: datetime, ts_ns: int, values: Mapping[str, float], flags: Mapping[str, str],
    *, latest_ns: int, station: str, period: str = "", mn: str = "", seq: int | None = None,
    given: Iterable[str] = READING_GIVEN,
) -> AirReading | None:
    """The AirReading that ``AirReading.model_validate`` makes of these fields, built without pydantic; None
    wherever a check fails or is not certain, and the caller validates in full to learn why.

    For readings whose values are floats already: HJ 212 uploads this program parsed, and a device's JSON
    object of the plain shape (ingest/decode.py). Validating a nine-value HJ 212 reading took 11.3 µs, this
    takes 3.5 (2026-12-04). The caller promises that ``ts_ns`` is ``ts`` in nanoseconds since the epoch, that
    ``given`` names the fields the dict it would validate holds (the model's ``model_fields_set``), and
    hands over ``values`` and ``flags``: plain dicts that nothing else holds or changes. ``latest_ns`` is
    the receive clock plus the allowed skew: a time within a microsecond of it gives None, so that the
    float rounding of `_ts`'s ``latest`` decides it there. tests/unit/test_checked_air_reading.py holds
    this to model_validate.
    """
    certain = (
        EARLIEST_NS <= ts_ns <= latest_ns - 1000 and ts.tzinfo is not None and period in _PERIODS
        and type(station) is str and type(mn) is str and type(values) is dict and type(flags) is dict
        and (seq is None or (type(seq) is int and seq >= 0))
        and 0 < len(values) <= MAX_VALUES and _certain_values(values) and (not flags or _certain_flags(flags, values))
    )
    if not certain:
        return None
    fields = {"ts": ts, "values": values, "flags": flags, "seq": seq, "station": station, "period": period,
              "mn": mn}  # in the order of the model's fields, as pydantic sets them
    return cast(AirReading, _restored(AirReading, fields, set(given)))


def _certain_values(values: Mapping[str, float]) -> bool:
    """Whether AirReading's `values` validation certainly passes (and keeps every value as it is)."""
    known = _KNOWN_LIMITS
    for name, value in values.items():
        if type(name) is not str or type(value) is not float:
            return False
        limits = known.get(name)
        if limits is None:
            try:
                limits = _limits(name)
            except PydanticCustomError:
                return False
            if len(known) < _KNOWN_NAMES:
                known[name] = limits
        if not limits[0] <= value <= limits[1]:  # also False for NaN; the limits are finite
            return False
    return True


def _certain_flags(flags: Mapping[str, str], values: Mapping[str, float]) -> bool:
    """Whether AirReading's `flags` validation, and its check that each flag has a value, certainly pass."""
    return all(type(flag) is str and FLAG_LETTER.fullmatch(flag) and name in values for name, flag in flags.items())


class Hazmat(_Frozen):
    un_number: Annotated[str, Strict(), Field(pattern=r"^[0-9]{4}$")]
    hazard_class: Annotated[str, Strict(), Field(pattern=r"^[1-9](\.[1-6])?[A-Z]?$")]
    load_t: Annotated[float, Strict(), AfterValidator(_finite), Field(ge=0, le=200)] | None = None


VehicleClass = Literal["hazmat", "hazwaste", "truck", "car", "bus", "emergency", "other"]


class GateEvent(_Frozen):
    """One passage at a gate (contract §4)."""

    ts: Timestamp
    event_id: Text
    direction: Literal["in", "out"]
    subject: Literal["vehicle", "person"]
    plate: Text | None = None
    vehicle_class: VehicleClass | None = None
    hazmat: Hazmat | None = None
    person_id: Text | None = None
    credential: Literal["plate", "card", "face", "qr", "manual"]
    granted: Annotated[bool, Strict()]
    gate: str = ""

    def model_post_init(self, __context: Any) -> None:
        if self.subject == "vehicle":
            if self.plate is None or self.vehicle_class is None:
                raise _err("missing_field", "a vehicle event needs plate and vehicle_class")
            if self.vehicle_class in ("hazmat", "hazwaste") and self.hazmat is None:
                raise _err("missing_field", "a {c} vehicle needs hazmat", c=self.vehicle_class)
        elif self.person_id is None:
            raise _err("missing_field", "a person event needs person_id")


class DeviceStatus(_Frozen):
    """A device's online state (retained; the device's MQTT will says offline)."""

    online: Annotated[bool, Strict()]
    ts: Timestamp | None = None
    # set by the decoder from the topic
    kind: str = ""
    device: str = ""


class AppointmentCancelled(_Frozen):
    """An empty retained payload on an appointment topic: the booking of `plate` is withdrawn."""

    plate: str


class Appointment(_Frozen):
    """A hazmat-vehicle booking (contract §5)."""

    plate: Text
    company: Text | None = None
    valid_from: AnyTime
    valid_to: AnyTime
    un_number: Annotated[str, Strict(), Field(pattern=r"^[0-9]{4}$")] | None = None
    gates: tuple[DeviceId, ...] = ()

    def model_post_init(self, __context: Any) -> None:
        if self.valid_to <= self.valid_from:
            raise _err("bad_validity", "valid_to must be after valid_from")
