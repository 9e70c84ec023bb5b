"""ParkState: who is inside the park and which vehicles are booked, shared by the gate rules.

The enclosed park (化工园区封闭化管理) is known from its gates: a granted `in` puts a vehicle (by plate)
or a person (by person id) inside, a granted `out` takes it out. A denied passage changes nothing.
Bookings (预约, contract §5) come from MQTT (`Appointment`, withdrawn by `AppointmentCancelled`) and
from an optional bookings file: a JSON list of appointment objects, read on first use and again
whenever its modification time or size changes (checked on every tick). The two merge; for the same
plate the MQTT booking wins, and withdrawing it on MQTT lets the file's booking (if any) apply again.
A file that cannot be read or does not validate (as a whole: one bad entry refuses it) keeps the
previous file bookings, is logged and raises one `notice`; so does a plate booked twice in the file.

ParkState is driven like a rule (`name` "park_state", it only ever says `notice`) and must see each
event before the gate rules do: `compile_rules` puts the one instance first and hands it to every gate
rule. So when a gate rule sees an event, the state already includes it; `before(event)` tells who was
inside just before it. Plates are compared without spaces, middle dots or hyphens and in upper case
(粤R·A1234 = 粤RA1234); the plate as written in the event is kept for messages.

Its snapshot (for a restart) holds who is inside, the MQTT bookings and when the first gate event was
seen; the file bookings are read again from the file.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from ingest.models import Appointment, AppointmentCancelled, GateEvent
from rules.interfaces import Event
from rules.signals import Signal

log = logging.getLogger(__name__)

PARK_STATE = "park_state"
HAZMAT_CLASSES = frozenset({"hazmat", "hazwaste"})
_PLATE_NOISE = re.compile(r"[\s·•・.\-]")

Subject = Literal["vehicle", "person"]


def plate_key(plate: str) -> str:
    """A plate as compared: without spaces, middle dots or hyphens, upper case."""
    return _PLATE_NOISE.sub("", plate).upper()


def subject_of(event: GateEvent) -> tuple[str, str]:
    """(key, as written) of the event's subject: its plate for a vehicle, its person id for a person."""
    shown = (event.plate if event.subject == "vehicle" else event.person_id) or ""
    return (plate_key(shown) if event.subject == "vehicle" else shown, shown)


@dataclass(frozen=True, slots=True)
class Presence:
    """One vehicle or person inside: who, since when, through which gate, of which class."""

    subject: Subject
    shown: str
    since: datetime
    gate: str
    vehicle_class: str | None = None
    un_number: str | None = None

    @property
    def key(self) -> str:
        return plate_key(self.shown) if self.subject == "vehicle" else self.shown

    @property
    def hazmat(self) -> bool:
        return self.vehicle_class in HAZMAT_CLASSES

    @classmethod
    def of(cls, event: GateEvent, at: datetime) -> Presence:
        un = event.hazmat.un_number if event.hazmat else None
        return cls(event.subject, subject_of(event)[1], at, event.gate, event.vehicle_class, un)

    def to_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "shown": self.shown, "since": self.since.isoformat(), "gate": self.gate,
                "vehicle_class": self.vehicle_class, "un_number": self.un_number}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Presence:
        since = datetime.fromisoformat(raw["since"])
        if since.tzinfo is None or raw["subject"] not in ("vehicle", "person"):
            raise ValueError(f"not a presence: {raw!r}"[:200])
        return cls(raw["subject"], str(raw["shown"]), since, str(raw["gate"]), raw.get("vehicle_class"),
                   raw.get("un_number"))


class BookingsError(ValueError):
    """The bookings file cannot be used; `reason` says why (the previous bookings stay)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def read_bookings(path: Path, tz: ZoneInfo) -> dict[str, Appointment]:
    """The bookings file as appointments by plate key; BookingsError if any part of it is bad."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BookingsError(path, f"cannot read it: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BookingsError(path, f"not JSON: {exc}") from exc
    if not isinstance(raw, list):
        raise BookingsError(path, "must be a JSON list of appointments")
    bookings: dict[str, Appointment] = {}
    for i, item in enumerate(raw):
        try:
            appointment = Appointment.model_validate(item, context={"tz": tz})
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in error["loc"])
            raise BookingsError(path, f"[{i}]{'.' + where if where else ''}: {error['msg']}") from None
        key = plate_key(appointment.plate)
        if key in bookings:
            raise BookingsError(path, f"[{i}]: plate {appointment.plate} is booked twice")
        bookings[key] = appointment
    return bookings


class ParkState:
    """Who is inside and the bookings; a rule-like object that the gate rules read (see module doc)."""

    name = PARK_STATE

    def __init__(self, tz: ZoneInfo, bookings_file: Path | None = None) -> None:
        self.tz = tz
        self._path = bookings_file
        self._file_sig: tuple[int, int] | None = None
        self._file_checked = False
        self._file: dict[str, Appointment] = {}
        self._mqtt: dict[str, Appointment] = {}
        self._vehicles: dict[str, Presence] = {}
        self._persons: dict[str, Presence] = {}
        self._last: tuple[GateEvent, Presence | None] | None = None
        self.first_seen: datetime | None = None

    # --- the rule protocol ----------------------------------------------------------------------------

    def observe(self, event: Event, at: datetime) -> Iterable[Signal]:
        if isinstance(event, Appointment):
            self._mqtt[plate_key(event.plate)] = event
        elif isinstance(event, AppointmentCancelled):
            self._mqtt.pop(plate_key(event.plate), None)
        elif isinstance(event, GateEvent):
            notices = [] if self._file_checked else self._check_file(at)
            self._pass(event, at)
            return notices
        return ()

    def tick(self, now: datetime) -> Iterable[Signal]:
        return self._check_file(now)

    def snapshot(self) -> dict[str, Any]:
        return {
            "vehicles": [p.to_json() for p in self._vehicles.values()],
            "persons": [p.to_json() for p in self._persons.values()],
            "appointments": [a.model_dump(mode="json") for a in self._mqtt.values()],
            "first_seen": self.first_seen.isoformat() if self.first_seen else None,
        }

    def restore(self, state: dict[str, Any]) -> None:
        for raw in [*state.get("vehicles", ()), *state.get("persons", ())]:
            try:
                presence = Presence.from_json(raw)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("park state: dropped a saved presence: %s", exc)
                continue
            self._inside(presence.subject)[presence.key] = presence
        for raw in state.get("appointments", ()):
            try:
                appointment = Appointment.model_validate(raw, context={"tz": self.tz})
            except ValidationError as exc:
                log.warning("park state: dropped a saved booking: %s", exc.errors(include_url=False)[0]["msg"])
                continue
            self._mqtt[plate_key(appointment.plate)] = appointment
        first = state.get("first_seen")
        self.first_seen = datetime.fromisoformat(first) if first else None

    # --- what the gate rules read ---------------------------------------------------------------------

    def appointment(self, plate: str) -> Appointment | None:
        """The booking of a plate: the MQTT one if there is one, else the file's."""
        key = plate_key(plate)
        return self._mqtt.get(key) or self._file.get(key)

    def vehicle(self, plate: str) -> Presence | None:
        return self._vehicles.get(plate_key(plate))

    def person(self, person_id: str) -> Presence | None:
        return self._persons.get(person_id)

    def vehicles(self) -> list[Presence]:
        return list(self._vehicles.values())

    def persons(self) -> list[Presence]:
        return list(self._persons.values())

    def hazmat_inside(self) -> int:
        """Hazmat and hazwaste vehicles inside."""
        return sum(1 for p in self._vehicles.values() if p.hazmat)

    def before(self, event: GateEvent) -> Presence | None:
        """Where the event's subject stood just before this event: inside (its presence) or not (None)."""
        if self._last is not None and self._last[0] is event:
            return self._last[1]
        return self._inside(event.subject).get(subject_of(event)[0])

    # --- inside ---------------------------------------------------------------------------------------

    def _inside(self, subject: str) -> dict[str, Presence]:
        return self._vehicles if subject == "vehicle" else self._persons

    def _pass(self, event: GateEvent, at: datetime) -> None:
        if self.first_seen is None or at < self.first_seen:
            self.first_seen = at
        inside, key = self._inside(event.subject), subject_of(event)[0]
        self._last = (event, inside.get(key))
        if not event.granted:
            return
        if event.direction == "in":
            if key in inside:
                log.info("%s entered again at %s with no exit seen since %s", event.plate or event.person_id,
                         event.gate, inside[key].since.isoformat())
            inside[key] = Presence.of(event, at)
        else:
            inside.pop(key, None)

    # --- the bookings file ----------------------------------------------------------------------------

    def _check_file(self, at: datetime) -> list[Signal]:
        """Read the bookings file if it is new or changed; a bad one keeps the previous bookings."""
        if self._path is None:
            return []
        try:
            stat = self._path.stat()
            sig: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            sig = None
        if self._file_checked and sig == self._file_sig:
            return []
        self._file_checked, self._file_sig = True, sig
        try:
            if sig is None:
                raise BookingsError(self._path, "not found")
            self._file = read_bookings(self._path, self.tz)
        except BookingsError as exc:
            log.error("bookings file not loaded, %d previous file bookings kept: %s", len(self._file), exc)
            return [Signal(PARK_STATE, "bookings", "notice", at, "warning",
                           message=f"bookings file not loaded, previous bookings kept: {exc}",
                           message_zh=f"预约文件未能加载，沿用原有预约：{exc}", details={"reason": exc.reason})]
        log.info("bookings file %s loaded: %d bookings", self._path, len(self._file))
        return []
