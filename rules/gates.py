"""Enclosed-management rules (化工园区封闭化管理): gate events judged against bookings, the vehicle
classes each gate admits, blacklists, dwell limits and the number of hazmat vehicles inside.

Every rule here reads the one `ParkState` that `compile_rules` runs before them (rules.park_state): when a
rule sees a gate event, who is inside already includes it, and `ParkState.before` says who was inside
just before. Plates are compared as ParkState compares them (粤R·A1234 = 粤RA1234).

Two kinds of alert:
- about an occurrence (a bad entry, a wrong gate, a blacklisted plate, repeated denials, an exit without
  an entry): source = the plate or person id; it resolves by itself `resolve_after_s` after the latest
  occurrence (checked on the clock's tick); a new occurrence while it fires raises nothing new but
  pushes its end back. `hazmat_appointment` also resolves when the vehicle leaves.
- about a condition (overstay, too many hazmat vehicles inside): resolves when the condition ends.

Limits are inclusive, as for the other rules a value exactly at a limit does not cross it: entering
exactly at `valid_to` is within the booking, a dwell of exactly `max_dwell_s` is not an overstay, `cap`
hazmat vehicles inside are not too many, and `count` denials exactly `window_s` apart are within it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import Field, field_validator, model_validator

from ingest.models import Appointment, GateEvent, VehicleClass
from rules.common import RuleConfig, epoch, fmt, severity_field
from rules.interfaces import BaseRule, Event, Rule
from rules.park_state import HAZMAT_CLASSES, ParkState, Presence, Subject, plate_key, subject_of
from rules.signals import Signal, State

CLASS_ZH = {"hazmat": "危化品", "hazwaste": "危废", "truck": "货车", "car": "小客车", "bus": "客车",
            "emergency": "应急", "other": "其他"}
HOUR = 3600.0
DWELL: dict[VehicleClass, float] = {"hazmat": 8 * HOUR, "hazwaste": 8 * HOUR}  # overstay's default limits


def class_zh(vehicle_class: str | None) -> str:
    return CLASS_ZH.get(vehicle_class or "other", vehicle_class or "")


def local(at: datetime, tz: tzinfo) -> str:
    """A time as the park reads it."""
    return at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


# --- configs ------------------------------------------------------------------------------------------


class GateRuleConfig(RuleConfig):
    """Gate rules watch every gate event; `stations` (an air-rule selection) is refused, not ignored."""

    @field_validator("stations")
    @classmethod
    def _no_stations(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if value != ("*",):
            raise ValueError("gate rules watch all gates and take no `stations`")
        return value


class _OccurrenceConfig(GateRuleConfig):
    resolve_after_s: float = Field(default=3600.0, gt=0)


class HazmatAppointmentConfig(_OccurrenceConfig):
    """A hazmat or hazwaste vehicle coming in (granted or not) without a booking that admits it."""

    type: Literal["hazmat_appointment"]
    severity: str = severity_field("critical")


class GateClassConfig(_OccurrenceConfig):
    """`gates`: gate id -> vehicle classes it admits (gates not listed admit any class).

    `always_allowed` classes are admitted at every listed gate: by default emergency vehicles; set it
    to [] to judge them like any other class (then list "emergency" at the gates that admit them).
    Both directions and denied attempts count: a hazmat truck queueing at a car gate is the finding.
    """

    type: Literal["gate_class"]
    gates: dict[str, tuple[VehicleClass, ...]] = Field(min_length=1)
    always_allowed: tuple[VehicleClass, ...] = ("emergency",)
    severity: str = severity_field("major")


class BlacklistConfig(_OccurrenceConfig):
    """Plates and person ids that must not come to any gate (in or out, granted or not)."""

    type: Literal["blacklist"]
    plates: tuple[str, ...] = ()
    persons: tuple[str, ...] = ()
    severity: str = severity_field("critical")

    @model_validator(mode="after")
    def _something(self) -> BlacklistConfig:
        if not self.plates and not self.persons:
            raise ValueError("list at least one of plates or persons")
        return self


class DeniedRepeatConfig(_OccurrenceConfig):
    """`count` denied passages of one plate or person within `window_s` (first to last, inclusive)."""

    type: Literal["denied_repeat"]
    count: int = Field(default=3, ge=2)
    window_s: float = Field(default=600.0, gt=0)
    subjects: tuple[Subject, ...] = Field(default=("vehicle", "person"), min_length=1)
    severity: str = severity_field("major")


class OverstayConfig(GateRuleConfig):
    """A vehicle inside longer than `max_dwell_s` of its class, or (`appointment`) past its booking's end.

    The booking is the one ParkState holds for the plate now (an extension counts); it is used only if
    the vehicle came in by its `valid_to` (a late entry is hazmat_appointment's finding).
    """

    type: Literal["overstay"]
    max_dwell_s: dict[VehicleClass, Annotated[float, Field(gt=0)]] = Field(default_factory=lambda: dict(DWELL))
    appointment: bool = True
    severity: str = severity_field("major")


class HazmatCapConfig(GateRuleConfig):
    """More than `cap` hazmat and hazwaste vehicles inside; resolves at or below `clear` (default: cap)."""

    type: Literal["hazmat_cap"]
    cap: int = Field(ge=0)
    clear: int | None = Field(default=None, ge=0)
    source: str = Field(default="park", min_length=1, max_length=64)
    severity: str = severity_field("major")

    @model_validator(mode="after")
    def _hysteresis(self) -> HazmatCapConfig:
        if self.clear is not None and self.clear > self.cap:
            raise ValueError(f"clear {self.clear} is above cap {self.cap}: the alert could resolve while over the cap")
        return self


class ExitWithoutEntryConfig(_OccurrenceConfig):
    """A granted exit of a vehicle (or person, when in `subjects`) not known to be inside.

    `warmup_s`: exits within this long after the first gate event the service ever saw are not judged
    (who was inside before it started is unknown); e.g. 86400 for a park where stays end within a day.
    """

    type: Literal["exit_without_entry"]
    subjects: tuple[Subject, ...] = Field(default=("vehicle",), min_length=1)
    warmup_s: float = Field(default=0.0, ge=0)
    severity: str = severity_field("warning")


AnyGateRuleConfig: TypeAlias = (
    HazmatAppointmentConfig | GateClassConfig | BlacklistConfig | DeniedRepeatConfig | OverstayConfig
    | HazmatCapConfig | ExitWithoutEntryConfig
)


# --- shared pieces ------------------------------------------------------------------------------------


@dataclass
class _Open:
    source: str
    until: float


class OpenAlerts:
    """Alerts open per subject key, each with the source it was raised for and when it ends by itself."""

    def __init__(self, resolve_after_s: float) -> None:
        self._after = resolve_after_s
        self._open: dict[str, _Open] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._open

    def open(self, key: str, source: str, at: datetime) -> bool:
        """Open (True) or, if already open, push its end back (False)."""
        until = epoch(at) + self._after
        current = self._open.get(key)
        if current is not None:
            current.until = max(current.until, until)
            return False
        self._open[key] = _Open(source, until)
        return True

    def close(self, key: str) -> str | None:
        """Close it now; its source, or None when it was not open."""
        current = self._open.pop(key, None)
        return current.source if current else None

    def due(self, now: datetime) -> list[str]:
        """Close the alerts whose time is up; their sources."""
        t = epoch(now)
        done = [k for k, o in self._open.items() if o.until <= t]
        return [self._open.pop(k).source for k in done]

    def snapshot(self) -> dict[str, Any]:
        return {k: [o.source, o.until] for k, o in self._open.items()}

    def restore(self, state: dict[str, Any]) -> None:
        self._open = {k: _Open(str(source), float(until)) for k, (source, until) in state.items()}


class _GateRule(BaseRule):
    """A gate rule: its config, the shared park state, and its signals (severity from the config)."""

    config: Any
    title: tuple[str, str] = ("", "")  # what the alert is about, English and Chinese, for resolutions

    def __init__(self, config: Any, state: ParkState) -> None:
        self.config = config
        self.name = config.name
        self.state = state

    def _signal(self, state: State, source: str, at: datetime, en: str, zh: str, **kw: Any) -> Signal:
        return Signal(self.name, source, state, at, self.config.severity, message=en, message_zh=zh, **kw)

    def _resolved(self, source: str, at: datetime) -> Signal:
        en, zh = self.title
        return self._signal("resolved", source, at, f"{source}: {en}: resolved", f"{source} {zh}告警解除")


class _OccurrenceRule(_GateRule):
    """A gate rule whose alerts are occurrences (see module doc)."""

    def __init__(self, config: Any, state: ParkState) -> None:
        super().__init__(config, state)
        self.open = OpenAlerts(config.resolve_after_s)

    def tick(self, now: datetime) -> Iterable[Signal]:
        return [self._resolved(source, now) for source in self.open.due(now)]

    def _raise(self, key: str, source: str, at: datetime, en: str, zh: str, **kw: Any) -> list[Signal]:
        if not self.open.open(key, source, at):
            return []
        return [self._signal("firing", source, at, en, zh, **kw)]

    def snapshot(self) -> dict[str, Any]:
        return {"open": self.open.snapshot()}

    def restore(self, state: dict[str, Any]) -> None:
        self.open.restore(state.get("open", {}))


def vehicle_event(event: Event) -> GateEvent | None:
    return event if isinstance(event, GateEvent) and event.subject == "vehicle" else None


# --- the rules ----------------------------------------------------------------------------------------


class HazmatAppointmentRule(_OccurrenceRule):
    """A hazmat/hazwaste vehicle coming in with no booking, outside its validity, at a gate its booking
    does not list, or carrying another UN number than booked. Resolves when it leaves, or by time."""

    title = ("hazmat vehicle entry not covered by a booking", "危化品车辆预约异常")

    def observe(self, event: Event, at: datetime) -> Iterable[Signal]:
        gate_event = vehicle_event(event)
        if gate_event is None:
            return ()
        key, plate = subject_of(gate_event)
        if gate_event.direction == "out":
            return [self._resolved(plate, at)] if gate_event.granted and self.open.close(key) else ()
        if gate_event.vehicle_class not in HAZMAT_CLASSES:
            return ()
        booking = self.state.appointment(plate)
        reason = self._reason(gate_event, booking, at)
        if reason is None:
            return ()
        en, zh = self._text(reason, gate_event, booking)
        details: dict[str, str | float | int] = {"reason": reason, "gate": gate_event.gate,
                                                 "vehicle_class": gate_event.vehicle_class or "",
                                                 "granted": int(gate_event.granted)}
        if booking is not None:
            details |= {"valid_from": booking.valid_from.isoformat(), "valid_to": booking.valid_to.isoformat(),
                        "booked_gates": ",".join(booking.gates), "booked_un_number": booking.un_number or ""}
        return self._raise(key, plate, at, en, zh, details=details)

    @staticmethod
    def _reason(event: GateEvent, booking: Appointment | None, at: datetime) -> str | None:
        if booking is None:
            return "no_appointment"
        if not booking.valid_from <= at <= booking.valid_to:
            return "outside_validity"
        if booking.gates and event.gate not in booking.gates:
            return "wrong_gate"
        carried = event.hazmat.un_number if event.hazmat else None
        if booking.un_number and carried and carried != booking.un_number:
            return "un_number_mismatch"
        return None

    def _text(self, reason: str, event: GateEvent, booking: Appointment | None) -> tuple[str, str]:
        plate, gate, kind = event.plate, event.gate, class_zh(event.vehicle_class)
        what = "attempted entry" if not event.granted else "entry"
        if reason == "no_appointment" or booking is None:
            return (f"{plate} {event.vehicle_class} vehicle {what} without a valid booking ({gate})",
                    f"{plate} {kind}车辆无有效预约入园 ({gate})")
        if reason == "outside_validity":
            span = f"{local(booking.valid_from, self.state.tz)} – {local(booking.valid_to, self.state.tz)}"
            return (f"{plate} {event.vehicle_class} vehicle {what} outside its booking {span} ({gate})",
                    f"{plate} {kind}车辆不在预约有效期内入园（有效期 {span}）({gate})")
        if reason == "wrong_gate":
            booked = ", ".join(booking.gates)
            return (f"{plate} {event.vehicle_class} vehicle {what} at {gate}, booked for {booked}",
                    f"{plate} {kind}车辆未从预约卡口入园：{gate}（预约 {booked}）")
        carried = event.hazmat.un_number if event.hazmat else ""
        return (f"{plate} carries UN{carried}, booked for UN{booking.un_number} ({gate})",
                f"{plate} {kind}车辆装载 UN{carried} 与预约 UN{booking.un_number} 不符 ({gate})")


class GateClassRule(_OccurrenceRule):
    """A vehicle of a class its gate does not admit (see GateClassConfig)."""

    title = ("vehicle class not admitted at the gate", "车型与卡口不符")

    def observe(self, event: Event, at: datetime) -> Iterable[Signal]:
        gate_event = vehicle_event(event)
        c = self.config
        if gate_event is None or gate_event.gate not in c.gates:
            return ()
        cls = gate_event.vehicle_class
        if cls in c.gates[gate_event.gate] or cls in c.always_allowed:
            return ()
        key, plate = subject_of(gate_event)
        gate = gate_event.gate
        en = f"{plate} ({cls}) at gate {gate}, which admits {', '.join(c.gates[gate]) or 'no vehicles'}"
        zh = f"{plate} {class_zh(cls)}车辆出现在不允许该车型通行的卡口 {gate}"
        return self._raise(key, plate, at, en, zh, details={"gate": gate, "vehicle_class": cls or "",
                                                            "direction": gate_event.direction})


class BlacklistRule(_OccurrenceRule):
    """A listed plate or person id at any gate."""

    title = ("blacklisted at a gate", "黑名单")

    def __init__(self, config: BlacklistConfig, state: ParkState) -> None:
        super().__init__(config, state)
        self._plates = {plate_key(p) for p in config.plates}
        self._persons = set(config.persons)

    def observe(self, event: Event, at: datetime) -> Iterable[Signal]:
        if not isinstance(event, GateEvent):
            return ()
        out: list[Signal] = []
        gate, way = event.gate, event.direction
        if event.plate and plate_key(event.plate) in self._plates:
            out += self._raise("vehicle:" + plate_key(event.plate), event.plate, at,
                               f"blacklisted vehicle {event.plate} at gate {gate} ({way})",
                               f"黑名单车辆 {event.plate} 出现在卡口 {gate}",
                               details={"gate": gate, "subject": "vehicle", "direction": way})
        if event.person_id and event.person_id in self._persons:
            out += self._raise("person:" + event.person_id, event.person_id, at,
                               f"blacklisted person {event.person_id} at gate {gate} ({way})",
                               f"黑名单人员 {event.person_id} 出现在卡口 {gate}",
                               details={"gate": gate, "subject": "person", "direction": way})
        return out


class DeniedRepeatRule(_OccurrenceRule):
    """`count` denied passages of one plate or person within `window_s`."""

    title = ("repeatedly denied at the gates", "多次被拒绝通行")

    def __init__(self, config: DeniedRepeatConfig, state: ParkState) -> None:
        super().__init__(config, state)
        self._denied: dict[str, list[float]] = {}

    def observe(self, event: Event, at: datetime) -> Iterable[Signal]:
        c = self.config
        if not isinstance(event, GateEvent) or event.granted or event.subject not in c.subjects:
            return ()
        key, who = subject_of(event)
        key, t = f"{event.subject}:{key}", epoch(at)
        times = [s for s in self._denied.get(key, []) if t - s <= c.window_s] + [t]
        self._denied[key] = times
        if len(times) < c.count:
            return ()
        en = f"{who} denied {len(times)} times within {fmt(c.window_s)} s (last at {event.gate})"
        zh = f"{who} 在 {fmt(c.window_s)} 秒内 {len(times)} 次被拒绝通行（最近：{event.gate}）"
        return self._raise(key, who, at, en, zh, value=float(len(times)), threshold=float(c.count),
                           details={"gate": event.gate, "subject": event.subject})

    def tick(self, now: datetime) -> Iterable[Signal]:
        t = epoch(now)
        self._denied = {k: v for k, v in self._denied.items() if v and t - max(v) <= self.config.window_s}
        return super().tick(now)

    def snapshot(self) -> dict[str, Any]:
        return {**super().snapshot(), "denied": dict(self._denied)}  # the lists are replaced, never changed

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        self._denied = {k: [float(x) for x in v] for k, v in state.get("denied", {}).items()}


class OverstayRule(_GateRule):
    """A vehicle inside past its booking or its class's dwell limit; checked on every gate event (in its
    time) and tick (in the clock's); resolves when the vehicle is no longer inside."""

    title = ("overstay", "在园超时")

    def __init__(self, config: OverstayConfig, state: ParkState) -> None:
        super().__init__(config, state)
        self._firing: dict[str, str] = {}  # plate key -> plate as shown

    def observe(self, event: Event, at: datetime) -> Iterable[Signal]:
        return self._check(at) if isinstance(event, GateEvent) else ()

    def tick(self, now: datetime) -> Iterable[Signal]:
        return self._check(now)

    def _check(self, now: datetime) -> list[Signal]:
        out = [self._resolved(self._firing.pop(k), now) for k in list(self._firing) if not self.state.vehicle(k)]
        for presence in self.state.vehicles():
            if presence.key not in self._firing:
                out += self._judge(presence, now)
        return out

    def _deadline(self, p: Presence) -> tuple[float, str] | None:
        """The earliest end of the stay: (epoch, "max_dwell" or "past_appointment"), or None if unlimited."""
        ends: list[tuple[float, str]] = []
        limit = self.config.max_dwell_s.get(p.vehicle_class)
        if limit is not None:
            ends.append((epoch(p.since) + limit, "max_dwell"))
        booking = self.state.appointment(p.shown) if self.config.appointment else None
        if booking is not None and p.since <= booking.valid_to:
            ends.append((epoch(booking.valid_to), "past_appointment"))
        return min(ends) if ends else None

    def _judge(self, p: Presence, now: datetime) -> list[Signal]:
        deadline = self._deadline(p)
        if deadline is None or epoch(now) <= deadline[0]:
            return []
        self._firing[p.key] = p.shown
        end, reason = deadline
        dwell, allowed = epoch(now) - epoch(p.since), end - epoch(p.since)
        hours, limit = f"{dwell / HOUR:.1f}", f"{allowed / HOUR:.1f}"
        if reason == "max_dwell":
            en = f"{p.shown} ({p.vehicle_class}) inside for {hours} h, limit {limit} h"
            zh = f"{p.shown} {class_zh(p.vehicle_class)}车辆在园 {hours} 小时，超过限值 {limit} 小时"
        else:
            until = local(datetime.fromtimestamp(end, self.state.tz), self.state.tz)
            en = f"{p.shown} ({p.vehicle_class}) still inside after its booking ended at {until}"
            zh = f"{p.shown} {class_zh(p.vehicle_class)}车辆预约已于 {until} 到期，仍在园内"
        return [self._signal("firing", p.shown, now, en, zh, value=dwell, threshold=allowed,
                             details={"reason": reason, "gate": p.gate, "since": p.since.isoformat(),
                                      "vehicle_class": p.vehicle_class or ""})]

    def snapshot(self) -> dict[str, Any]:
        return {"firing": dict(self._firing)}

    def restore(self, state: dict[str, Any]) -> None:
        self._firing = {str(k): str(v) for k, v in state.get("firing", {}).items()}


class HazmatCapRule(_GateRule):
    """More hazmat and hazwaste vehicles inside than `cap`; resolves at or below `clear`."""

    title = ("too many hazmat vehicles inside", "园内危化品车辆超限")

    def __init__(self, config: HazmatCapConfig, state: ParkState) -> None:
        super().__init__(config, state)
        self._firing = False

    def observe(self, event: Event, at: datetime) -> Iterable[Signal]:
        return self._check(at) if isinstance(event, GateEvent) else ()

    def tick(self, now: datetime) -> Iterable[Signal]:
        return self._check(now)

    def _check(self, at: datetime) -> list[Signal]:
        c, n = self.config, self.state.hazmat_inside()
        clear = c.cap if c.clear is None else c.clear
        if not self._firing and n > c.cap:
            self._firing = True
            return [self._signal("firing", c.source, at, f"{n} hazmat vehicles inside, more than the cap of {c.cap}",
                                 f"园内危化品车辆 {n} 辆，超过上限 {c.cap} 辆", value=float(n),
                                 threshold=float(c.cap))]
        if self._firing and n <= clear:
            self._firing = False
            return [self._signal("resolved", c.source, at, f"{n} hazmat vehicles inside, back within the cap",
                                 f"园内危化品车辆降至 {n} 辆，恢复正常", value=float(n), threshold=float(c.cap))]
        return []

    def snapshot(self) -> dict[str, Any]:
        return {"firing": self._firing}

    def restore(self, state: dict[str, Any]) -> None:
        self._firing = bool(state.get("firing", False))


class ExitWithoutEntryRule(_OccurrenceRule):
    """A granted exit of a vehicle (or person) that was not inside."""

    title = ("exit without an entry", "无入园记录出园")

    def observe(self, event: Event, at: datetime) -> Iterable[Signal]:
        c = self.config
        if (not isinstance(event, GateEvent) or event.direction != "out" or not event.granted
                or event.subject not in c.subjects or self.state.before(event) is not None):
            return ()
        first = self.state.first_seen
        if first is not None and epoch(at) - epoch(first) < c.warmup_s:
            return ()
        key, who = subject_of(event)
        noun, noun_zh = ("vehicle", "车辆") if event.subject == "vehicle" else ("person", "人员")
        return self._raise(f"{event.subject}:{key}", who, at, f"{noun} {who} left at {event.gate} with no entry seen",
                           f"{noun_zh} {who} 无入园记录即出园 ({event.gate})",
                           details={"gate": event.gate, "subject": event.subject})


# type name -> rule class; each takes (config, the shared ParkState). rules.config registers them.
GATE_RULES: dict[str, Callable[[Any, ParkState], Rule]] = {
    "hazmat_appointment": HazmatAppointmentRule,
    "gate_class": GateClassRule,
    "blacklist": BlacklistRule,
    "denied_repeat": DeniedRepeatRule,
    "overstay": OverstayRule,
    "hazmat_cap": HazmatCapRule,
    "exit_without_entry": ExitWithoutEntryRule,
}
