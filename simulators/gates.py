"""Simulated access gates of an enclosed park, and the park's booking system (domain.md §5.4).

Gate classes (a gate may list its own ``allows`` instead):

    hazmat     the manned dedicated gate for hazardous-goods and hazardous-waste vehicles (and rescue)
    general    manned general gates: trucks, cars, buses, other vehicles, rescue; staff on foot (face/card)
    car        unmanned, cars only
    emergency  normally closed; rescue and evacuation only

A day of traffic is planned up front, from the scenario's seed, as trips (arrive at one gate, leave by
another that admits the same class): staff by shift (day shift about 08:00-17:30, night shift about
19:45-08:10, on foot or by car), trucks, visitors' cars, staff buses, booked hazmat and hazardous-waste
vehicles (their appointment, valid for the day, goes to ``park/{park}/registry/appointment/{plate}``,
retained, before they come), rescue vehicles. A trip that would start before the run's start is left out
whole, so every exit has its entry. Then the scenario's gate episodes add the violations: an unbooked or
expired or cancelled booking, a wrong-gate attempt, a blacklisted plate, an overstay, an exit without
entry, and repeated events (the same ``event_id`` resent). A gate that goes offline publishes
``{"online": false}``, then nothing; its barrier keeps recording, and when it is back it says online
and forwards what it recorded (store and forward, with the original timestamps).

Event ids are ``{gate}-{YYYYMMDD}-{n:06d}``, numbered per gate and local day in time order.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta, tzinfo
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from ingest.models import DEVICE_ID, VehicleClass
from simulators.clock import Seconds
from simulators.publish import Outgoing

GateKind = Literal["hazmat", "general", "car", "emergency"]
Credential = Literal["plate", "card", "face", "qr", "manual"]
Load = tuple[str, str, float]  # UN number, hazard class, load in tonnes
DEFAULT_ALLOWS: Final[Mapping[GateKind, tuple[VehicleClass, ...]]] = {
    "hazmat": ("hazmat", "hazwaste", "emergency"),
    "general": ("truck", "car", "bus", "other", "emergency"),
    "car": ("car",),
    "emergency": ("emergency",),
}
PROVINCES: Final = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
PLATE_LETTERS: Final = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I and O on Chinese plates
PLATE_PATTERN: Final = r"^[\u4e00-\u9fff][A-Z]·[A-Z0-9]{5}$"
HAZMAT_LOADS: Final = (
    ("1203", "3", 10.0, 30.0),  # petrol
    ("1230", "3", 10.0, 28.0),  # methanol
    ("1114", "3", 10.0, 28.0),  # benzene
    ("1294", "3", 10.0, 28.0),  # toluene
    ("1005", "2.3", 5.0, 15.0),  # ammonia, anhydrous
    ("1017", "2.3", 5.0, 12.0),  # chlorine
    ("1075", "2.1", 8.0, 20.0),  # liquefied petroleum gas
    ("1789", "8", 10.0, 25.0),  # hydrochloric acid
    ("1830", "8", 15.0, 30.0),  # sulphuric acid
    ("2031", "8", 10.0, 25.0),  # nitric acid
)
HAZWASTE_LOADS: Final = (
    ("3082", "9", 2.0, 15.0),  # environmentally hazardous substance, liquid
    ("3077", "9", 2.0, 15.0),  # environmentally hazardous substance, solid
    ("1993", "3", 2.0, 10.0),  # flammable liquid, n.o.s. (waste solvents)
)
COMPANIES: Final = (
    "华南石化有限公司",
    "粤东精细化工有限公司",
    "惠州新材料科技有限公司",
    "联合工业气体有限公司",
    "园区危废处置中心",
)

_DeviceId = Annotated[str, StringConstraints(pattern=f"^{DEVICE_ID.pattern}$")]
_Plate = Annotated[str, StringConstraints(min_length=1, max_length=32, strip_whitespace=False)]
_Count = Annotated[int, Field(ge=0, le=100_000)]
_Share = Annotated[float, Field(ge=0, le=1)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GateSpec(_Spec):
    """One gate: id, class, and optionally the vehicle classes it admits and whether people walk through."""

    id: _DeviceId
    kind: GateKind = "general"
    allows: tuple[VehicleClass, ...] | None = None
    persons: bool | None = None  # None: general gates only

    @property
    def allowed(self) -> frozenset[str]:
        return frozenset(self.allows if self.allows is not None else DEFAULT_ALLOWS[self.kind])

    @property
    def walk_in(self) -> bool:
        return self.persons if self.persons is not None else self.kind == "general"


class TrafficSpec(_Spec):
    """How many come on a day, and the park's blacklist."""

    staff: _Count = 80  # day shift
    night_staff: _Count = 20
    drive_share: _Share = 0.5  # staff who come by car
    trucks: _Count = 40
    visitors: _Count = 30  # visitors' cars
    buses: _Count = 2  # staff buses
    hazmat: _Count = 16  # booked hazmat vehicles
    hazwaste: _Count = 3  # booked hazardous-waste vehicles
    emergency: _Count = 0
    repeat_rate: _Share = 0.0  # share of events a gate sends twice
    local_prefix: Annotated[str, StringConstraints(pattern=r"^[\u4e00-\u9fff][A-Z]$")] = "粤R"
    blacklist: tuple[_Plate, ...] = ()
    companies: tuple[Annotated[str, StringConstraints(min_length=1, max_length=128)], ...] = COMPANIES


# --------------------------------------------------------------------------------------- episodes


class _GateEpisode(_Spec):
    at: Seconds
    count: Annotated[int, Field(ge=1, le=1000)] = 1
    gate: str | None = None
    plate: _Plate | None = None

    @model_validator(mode="after")
    def _one_plate(self) -> _GateEpisode:
        if self.plate is not None and self.count > 1:
            raise ValueError("a fixed plate needs count = 1")
        return self

    def gates(self) -> tuple[str, ...]:
        return (self.gate,) if self.gate else ()


class UnbookedHazmatEpisode(_GateEpisode):
    """A hazmat vehicle with no appointment comes to a hazmat gate; refused unless ``granted``."""

    type: Literal["unbooked_hazmat"]
    granted: bool = False


class ExpiredAppointmentEpisode(_GateEpisode):
    """A hazmat vehicle comes with yesterday's appointment; refused unless ``granted``."""

    type: Literal["expired_appointment"]
    granted: bool = False


class CancelledAppointmentEpisode(_GateEpisode):
    """A booking is cancelled (empty retained message) at ``at``; the vehicle still comes ``arrive_after``."""

    type: Literal["cancelled_appointment"]
    granted: bool = False
    arrive_after: Seconds = 1800.0


class WrongGateEpisode(_GateEpisode):
    """A booked hazmat vehicle tries ``gate`` (default: the first that does not admit it), is refused, and
    enters by a hazmat gate three minutes later."""

    type: Literal["wrong_gate"]


class BlacklistedEpisode(_GateEpisode):
    """A blacklisted plate (``plate``, else the next of the blacklist, else a new one) at a gate."""

    type: Literal["blacklisted"]
    vehicle_class: VehicleClass = "truck"
    granted: bool = False


class OverstayEpisode(_GateEpisode):
    """A booked hazmat vehicle enters at ``at``, booked until ``allowed`` later, and leaves ``over`` after."""

    type: Literal["overstay"]
    allowed: Seconds = 7200.0
    over: Seconds = 10800.0


class ExitWithoutEntryEpisode(_GateEpisode):
    """A vehicle leaves that was never seen entering."""

    type: Literal["exit_without_entry"]
    vehicle_class: VehicleClass = "truck"


class RepeatEpisode(_GateEpisode):
    """The next ``count`` events from ``at`` (at ``gate``, or any) are sent again ``delay`` later."""

    type: Literal["repeat"]
    count: Annotated[int, Field(ge=1, le=1000)] = 3
    delay: Seconds = 5.0


GateEpisode = (
    UnbookedHazmatEpisode | ExpiredAppointmentEpisode | CancelledAppointmentEpisode | WrongGateEpisode
    | BlacklistedEpisode | OverstayEpisode | ExitWithoutEntryEpisode | RepeatEpisode
)


class GateOfflineFault(_Spec):
    """The gate loses its link: offline status, silence, then online and the events it kept."""

    type: Literal["gate_offline"]
    gate: str
    at: Seconds
    duration: Seconds

    def covers(self, offset: float) -> bool:
        return self.at <= offset < self.at + self.duration


# ------------------------------------------------------------------------------------------ the plan


@dataclass(frozen=True, slots=True)
class Passage:
    """One passage through a gate, before it gets its event id."""

    at: datetime
    gate: str
    direction: Literal["in", "out"]
    who: str  # plate or person id
    vehicle_class: VehicleClass | None  # None: a person on foot
    credential: Credential
    granted: bool = True
    hazmat: Load | None = None
    repeat_after: float | None = None


@dataclass(slots=True)
class TrafficPlan:
    """What the gates and the booking system will publish, and the facts behind it."""

    passages: list[Passage] = field(default_factory=list)
    appointments: list[tuple[datetime, Outgoing]] = field(default_factory=list)
    blacklist: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Person:
    id: str
    plate: str | None  # drives a car
    credential: Literal["card", "face"]


class TrafficPlanner:
    """Plans the passages of ``[start, end)`` from one random stream. Pure: no I/O, no wall clock."""

    def __init__(self, gates: Sequence[GateSpec], traffic: TrafficSpec, *, park: str, tz: tzinfo,
                 start: datetime, end: datetime, rng: random.Random) -> None:
        self._gates = list(gates)
        self._t = traffic
        self._park = park
        self._tz = tz
        self._start = start
        self._end = end
        self._rng = rng
        self._used: set[str] = set(traffic.blacklist)
        self._plan = TrafficPlan(blacklist=list(traffic.blacklist))
        self._blacklist_next = 0

    # --- public ---------------------------------------------------------------------------------------

    def plan(self, episodes: Sequence[GateEpisode] = ()) -> TrafficPlan:
        staff = self._people("P", self._t.staff)
        night = self._people("N", self._t.night_staff)
        day = self._start.astimezone(self._tz).date()
        while (midnight := datetime.combine(day, time(), self._tz)) < self._end:
            self._day(midnight, staff, night)
            day += timedelta(days=1)
        repeats = [e for e in episodes if isinstance(e, RepeatEpisode)]
        for episode in episodes:
            if not isinstance(episode, RepeatEpisode):
                self._episode(episode)
        self._repeats(repeats)
        return self._plan

    def hazmat_gates(self) -> list[GateSpec]:
        """Gates that admit hazmat vehicles, dedicated hazmat gates first."""
        able = [g for g in self._gates if "hazmat" in g.allowed]
        return sorted(able, key=lambda g: g.kind != "hazmat")

    # --- a day of ordinary traffic ---------------------------------------------------------------------

    def _day(self, midnight: datetime, staff: Sequence[_Person], night: Sequence[_Person]) -> None:
        rng, t = self._rng, self._t
        for person in staff:
            if rng.random() < 0.05:
                continue  # day off
            self._commute(person, _at(midnight, 8.0, rng.gauss(0, 0.25), 7.25, 9.0),
                          _at(midnight, 17.5, rng.gauss(0, 0.33), 16.75, 19.0))
        for person in night:
            self._commute(person, _at(midnight, 19.75, rng.gauss(0, 0.15), 19.25, 20.25),
                          _at(midnight, 32.15, rng.gauss(0, 0.15), 31.75, 32.75))
        for _ in range(_jitter(rng, t.buses)):
            plate = self._new_plate()
            self._trip(plate, "bus", _at(midnight, 7.7, rng.gauss(0, 0.08), 7.3, 8.1),
                       _at(midnight, 17.7, rng.gauss(0, 0.08), 17.3, 18.1), "plate")
        for _ in range(_jitter(rng, t.trucks)):
            arrive = _clock(midnight, rng.uniform(7.0, 18.0))
            credential: Credential = "plate" if rng.random() < 0.9 else "qr"
            self._trip(self._new_plate(), "truck", arrive, _later(arrive, rng.uniform(30, 180)), credential)
        for _ in range(_jitter(rng, t.visitors)):
            arrive = _clock(midnight, rng.uniform(8.5, 17.0))
            credential = "qr" if rng.random() < 0.5 else "plate"
            self._trip(self._new_plate(), "car", arrive, _later(arrive, rng.uniform(30, 240)), credential)
        booked: tuple[tuple[VehicleClass, int], ...] = (("hazmat", t.hazmat), ("hazwaste", t.hazwaste))
        for vehicle_class, count in booked:
            for _ in range(_jitter(rng, count)):
                arrive = _clock(midnight, rng.uniform(8.0, 16.0))
                self._booked(vehicle_class, arrive, _later(arrive, rng.uniform(60, 240)),
                             midnight, midnight + timedelta(days=1))
        for _ in range(_jitter(rng, t.emergency)):
            arrive = _clock(midnight, rng.uniform(0.0, 24.0))
            self._trip(self._new_plate(), "emergency", arrive, _later(arrive, rng.uniform(20, 90)),
                       "manual")

    def _commute(self, person: _Person, arrive: datetime, leave: datetime) -> None:
        if person.plate is not None:
            self._trip(person.plate, "car", arrive, leave, "plate")
        else:
            self._trip(person.id, None, arrive, leave, person.credential)

    def _booked(self, vehicle_class: VehicleClass, arrive: datetime, leave: datetime | None,
                valid_from: datetime, valid_to: datetime, *, plate: str | None = None) -> str:
        plate = plate or self._new_plate()
        load = self._hazmat_load(vehicle_class)
        self._appoint(plate, load[0], valid_from, valid_to)
        self._trip(plate, vehicle_class, arrive, leave, "plate", hazmat=load)
        return plate

    # --- trips and passages ---------------------------------------------------------------------------

    def _trip(self, who: str, vehicle_class: VehicleClass | None, arrive: datetime, leave: datetime | None,
              credential: Credential, *, hazmat: Load | None = None, gate_in: str | None = None,
              granted: bool = True) -> None:
        """An entry and (if ``leave``) an exit; left out whole if it would begin outside the run."""
        if not self._start <= arrive < self._end:
            return
        key = vehicle_class or "person"
        gate = gate_in or self._gate_for(key)
        if gate is None:
            return
        self._pass(Passage(arrive, gate, "in", who, vehicle_class, credential, granted, hazmat))
        if granted and leave is not None and leave < self._end:
            out_gate = self._gate_for(key) or gate
            self._pass(Passage(leave, out_gate, "out", who, vehicle_class, credential, True, hazmat))

    def _pass(self, passage: Passage) -> None:
        if self._start <= passage.at < self._end:
            if self._t.repeat_rate and self._rng.random() < self._t.repeat_rate:
                passage = replace(passage, repeat_after=float(self._rng.randint(2, 10)))
            self._plan.passages.append(passage)

    def _gate_for(self, key: str) -> str | None:
        if key == "person":
            able = [g for g in self._gates if g.walk_in]
        else:
            able = [g for g in self._gates if key in g.allowed]
            if key == "car":  # cars prefer the car-only gates
                able = [g for g in able if g.kind == "car"] or able
            if key in ("hazmat", "hazwaste"):
                able = [g for g in able if g.kind == "hazmat"] or able
        return self._rng.choice(able).id if able else None

    # --- appointments ---------------------------------------------------------------------------------

    def _appoint(self, plate: str, un_number: str, valid_from: datetime, valid_to: datetime,
                 *, published: datetime | None = None) -> None:
        body = {
            "plate": plate,
            "company": self._rng.choice(self._t.companies),
            "valid_from": valid_from.astimezone(self._tz).isoformat(),
            "valid_to": valid_to.astimezone(self._tz).isoformat(),
            "un_number": un_number,
            "gates": [g.id for g in self.hazmat_gates() if g.kind == "hazmat"] or [g.id for g in self.hazmat_gates()],
        }
        when = published or max(self._start, valid_from - timedelta(hours=12))
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        self._plan.appointments.append((when, Outgoing(self.appointment_topic(plate), payload, 1, True)))

    def _cancel(self, plate: str, when: datetime) -> None:
        self._plan.appointments.append((when, Outgoing(self.appointment_topic(plate), b"", 1, True)))

    def appointment_topic(self, plate: str) -> str:
        return f"park/{self._park}/registry/appointment/{plate}"

    # --- violations -----------------------------------------------------------------------------------

    def _episode(self, ep: GateEpisode) -> None:
        at = self._start + timedelta(seconds=ep.at)
        midnight = datetime.combine(at.astimezone(self._tz).date(), time(), self._tz)
        rng = self._rng
        for i in range(ep.count):
            when = at + timedelta(minutes=2 * i)
            plate = ep.plate or self._new_plate()
            if isinstance(ep, UnbookedHazmatEpisode):
                load = self._hazmat_load("hazmat")
                self._trip(plate, "hazmat", when, _later(when, rng.uniform(60, 120)), "plate",
                           hazmat=load, gate_in=ep.gate or self._hazmat_gate(), granted=ep.granted)
            elif isinstance(ep, ExpiredAppointmentEpisode):
                load = self._hazmat_load("hazmat")
                self._appoint(plate, load[0], midnight - timedelta(days=1), midnight, published=self._start)
                self._trip(plate, "hazmat", when, _later(when, rng.uniform(60, 120)), "plate",
                           hazmat=load, gate_in=ep.gate or self._hazmat_gate(), granted=ep.granted)
            elif isinstance(ep, CancelledAppointmentEpisode):
                load = self._hazmat_load("hazmat")
                self._appoint(plate, load[0], midnight, midnight + timedelta(days=1), published=self._start)
                self._cancel(plate, when)
                arrive = when + timedelta(seconds=ep.arrive_after)
                self._trip(plate, "hazmat", arrive, _later(arrive, rng.uniform(60, 120)), "plate",
                           hazmat=load, gate_in=ep.gate or self._hazmat_gate(), granted=ep.granted)
            elif isinstance(ep, WrongGateEpisode):
                self._wrong_gate(ep, plate, when, midnight)
            elif isinstance(ep, BlacklistedEpisode):
                plate = self._blacklisted(ep.plate)
                self._trip(plate, ep.vehicle_class, when, _later(when, rng.uniform(30, 90)), "plate",
                           hazmat=self._load(ep.vehicle_class), gate_in=ep.gate, granted=ep.granted)
            elif isinstance(ep, OverstayEpisode):
                valid_to = when + timedelta(seconds=ep.allowed)
                self._booked("hazmat", when, valid_to + timedelta(seconds=ep.over), when - timedelta(hours=1),
                             valid_to, plate=plate)
            elif isinstance(ep, ExitWithoutEntryEpisode):
                gate = ep.gate or self._gate_for(ep.vehicle_class)
                if gate is not None:
                    self._pass(Passage(when, gate, "out", plate, ep.vehicle_class, "plate", True,
                                       self._load(ep.vehicle_class)))

    def _wrong_gate(self, ep: WrongGateEpisode, plate: str, when: datetime, midnight: datetime) -> None:
        wrong = ep.gate or next((g.id for g in self._gates if "hazmat" not in g.allowed), None)
        load = self._hazmat_load("hazmat")
        self._appoint(plate, load[0], midnight, midnight + timedelta(days=1), published=self._start)
        if wrong is not None:
            self._pass(Passage(when, wrong, "in", plate, "hazmat", "plate", False, load))
        arrive = when + timedelta(minutes=3)
        self._trip(plate, "hazmat", arrive, _later(arrive, self._rng.uniform(60, 180)), "plate",
                   hazmat=load, gate_in=self._hazmat_gate())

    def _repeats(self, episodes: Sequence[RepeatEpisode]) -> None:
        passages = self._plan.passages
        order = sorted(range(len(passages)), key=lambda i: passages[i].at)
        for ep in episodes:
            since = self._start + timedelta(seconds=ep.at)
            chosen = [i for i in order if passages[i].at >= since and (ep.gate is None or passages[i].gate == ep.gate)]
            for i in chosen[: ep.count]:
                passages[i] = replace(passages[i], repeat_after=ep.delay)

    def _hazmat_gate(self) -> str | None:
        able = self.hazmat_gates()
        return able[0].id if able else None

    def _blacklisted(self, plate: str | None) -> str:
        """``plate`` (added to the blacklist if need be), else the next blacklisted plate, else a new one."""
        if plate is not None:
            if plate not in self._plan.blacklist:
                self._plan.blacklist.append(plate)
            return plate
        if self._blacklist_next < len(self._plan.blacklist):
            plate = self._plan.blacklist[self._blacklist_next]
        else:
            plate = self._new_plate()
            self._plan.blacklist.append(plate)
        self._blacklist_next += 1
        return plate

    # --- people, plates, loads ------------------------------------------------------------------------

    def _people(self, prefix: str, count: int) -> list[_Person]:
        rng = self._rng
        people = []
        for n in range(1, count + 1):
            plate = self._new_plate(local=True) if rng.random() < self._t.drive_share else None
            people.append(_Person(f"{prefix}{n:04d}", plate, "face" if rng.random() < 0.7 else "card"))
        return people

    def _new_plate(self, *, local: bool = False) -> str:
        rng = self._rng
        while True:
            if local or rng.random() < 0.75:
                prefix = self._t.local_prefix
            else:
                prefix = rng.choice(PROVINCES) + rng.choice(PLATE_LETTERS)
            style = rng.random()
            if style < 0.5:
                tail = rng.choice(PLATE_LETTERS) + "".join(rng.choice("0123456789") for _ in range(4))
            elif style < 0.8:
                tail = "".join(rng.choice("0123456789") for _ in range(5))
            else:
                tail = "".join(rng.choice(PLATE_LETTERS) for _ in range(2)) + "".join(
                    rng.choice("0123456789") for _ in range(3))
            plate = f"{prefix}·{tail}"
            if plate not in self._used:
                self._used.add(plate)
                return plate

    def _load(self, vehicle_class: str) -> Load | None:
        """A load for a hazmat or hazardous-waste vehicle; None for other classes."""
        return self._hazmat_load(vehicle_class) if vehicle_class in ("hazmat", "hazwaste") else None

    def _hazmat_load(self, vehicle_class: str) -> Load:
        table = HAZWASTE_LOADS if vehicle_class == "hazwaste" else HAZMAT_LOADS
        un, hazard_class, low, high = self._rng.choice(table)
        return un, hazard_class, round(self._rng.uniform(low, high), 1)


# ---------------------------------------------------------------------------------------- devices


class PlannedDevice:
    """A device whose messages are planned up front: ``items`` are (time, message) pairs, fired in order.

    ``final`` gives the messages it sends when the run ends (at that time).
    """

    def __init__(self, device_id: str, items: Sequence[tuple[datetime, Outgoing]], *, end: datetime,
                 will: Outgoing | None = None, final: Callable[[datetime], list[Outgoing]] | None = None) -> None:
        self._id = device_id
        self._items = sorted(items, key=lambda item: item[0])
        self._end = end
        self._will = will
        self._final = final
        self._next = 0

    @property
    def device_id(self) -> str:
        return self._id

    @property
    def will(self) -> Outgoing | None:
        return self._will

    @property
    def items(self) -> list[tuple[datetime, Outgoing]]:
        return list(self._items)

    def next_at(self) -> datetime | None:
        if self._next < len(self._items) and self._items[self._next][0] < self._end:
            return self._items[self._next][0]
        return None

    def fire(self, at: datetime) -> list[Outgoing]:
        out = []
        while self._next < len(self._items) and self._items[self._next][0] <= at:
            out.append(self._items[self._next][1])
            self._next += 1
        return out

    def finish(self, at: datetime) -> list[Outgoing]:
        return self._final(at) if self._final is not None else []


def gate_devices(plan: TrafficPlan, gates: Sequence[GateSpec], faults: Sequence[GateOfflineFault], *,
                 park: str, tz: tzinfo, start: datetime, end: datetime) -> list[PlannedDevice]:
    """One device per gate: its status, its events (numbered, repeated, held back while offline)."""
    by_gate: dict[str, list[Passage]] = {g.id: [] for g in gates}
    for passage in plan.passages:
        by_gate[passage.gate].append(passage)
    devices = []
    for gate in gates:
        topic = f"park/{park}/gate/{gate.id}/status"
        outages = [f for f in faults if f.gate == gate.id]
        items = [(start, _status(topic, start, tz, online=True))]
        for fault in outages:
            down, up = start + timedelta(seconds=fault.at), start + timedelta(seconds=fault.at + fault.duration)
            items += [(down, _status(topic, down, tz, online=False)), (up, _status(topic, up, tz, online=True))]
        items += _events(gate.id, by_gate[gate.id], outages, park=park, tz=tz, start=start)
        will = Outgoing(topic, b'{"online":false}', 1, True)
        devices.append(PlannedDevice(gate.id, items, end=end, will=will, final=_offline(topic, tz)))
    return devices


def _events(gate: str, passages: Sequence[Passage], outages: Sequence[GateOfflineFault], *, park: str,
            tz: tzinfo, start: datetime) -> list[tuple[datetime, Outgoing]]:
    topic = f"park/{park}/gate/{gate}/event"
    items: list[tuple[datetime, Outgoing]] = []
    numbers: dict[str, int] = {}
    for p in sorted(passages, key=lambda p: p.at):
        day = p.at.astimezone(tz).strftime("%Y%m%d")
        numbers[day] = numbers.get(day, 0) + 1
        payload = _event_payload(p, f"{gate}-{day}-{numbers[day]:06d}", tz)
        offset = (p.at - start).total_seconds()
        down = next((f for f in outages if f.covers(offset)), None)
        sent = p.at if down is None else start + timedelta(seconds=down.at + down.duration)
        items.append((sent, Outgoing(topic, payload)))
        if p.repeat_after is not None:
            items.append((sent + timedelta(seconds=p.repeat_after), Outgoing(topic, payload)))
    return items


def _event_payload(p: Passage, event_id: str, tz: tzinfo) -> bytes:
    body: dict[str, object] = {
        "ts": p.at.astimezone(tz).isoformat(),
        "event_id": event_id,
        "direction": p.direction,
        "subject": "person" if p.vehicle_class is None else "vehicle",
    }
    if p.vehicle_class is None:
        body["person_id"] = p.who
    else:
        body["plate"] = p.who
        body["vehicle_class"] = p.vehicle_class
        if p.hazmat is not None:
            un, hazard_class, load = p.hazmat
            body["hazmat"] = {"un_number": un, "hazard_class": hazard_class, "load_t": load}
    body["credential"] = p.credential
    body["granted"] = p.granted
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _offline(topic: str, tz: tzinfo) -> Callable[[datetime], list[Outgoing]]:
    def final(at: datetime) -> list[Outgoing]:
        return [_status(topic, at, tz, online=False)]
    return final


def _status(topic: str, at: datetime, tz: tzinfo, *, online: bool) -> Outgoing:
    body = {"online": online, "ts": at.astimezone(tz).isoformat()}
    return Outgoing(topic, json.dumps(body, separators=(",", ":")).encode(), 1, True)


def _at(midnight: datetime, hours: float, jitter_h: float, low: float, high: float) -> datetime:
    """``midnight`` + ``hours`` + ``jitter_h``, kept within [low, high] hours after midnight; to the second."""
    seconds = round(min(high, max(low, hours + jitter_h)) * 3600)
    return midnight + timedelta(seconds=seconds)


def _clock(midnight: datetime, hours: float) -> datetime:
    """``hours`` after ``midnight``, to the second."""
    return midnight + timedelta(seconds=round(hours * 3600))


def _later(moment: datetime, minutes: float) -> datetime:
    """``minutes`` after ``moment``, to the second."""
    return moment + timedelta(seconds=round(minutes * 60))


def _jitter(rng: random.Random, count: int) -> int:
    """About ``count`` (±15 %), so that no two days are quite alike."""
    return max(0, round(count * rng.uniform(0.85, 1.15))) if count else 0
