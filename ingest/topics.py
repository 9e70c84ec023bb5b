"""The MQTT topics of contract §1: the filters the service subscribes to, and parsing a topic into a Route."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ingest.errors import Rejected
from ingest.models import DEVICE_ID

Kind = Literal["air", "hj212", "gate", "status", "appointment", "ack"]
MAX_PLATE = 32


@dataclass(frozen=True, slots=True)
class Route:
    """What a topic says: the kind of payload and the device (station, gate, device or plate) it is about."""

    kind: Kind
    device: str = ""
    device_kind: str = ""  # "air" or "gate" for status messages


@dataclass(frozen=True, slots=True)
class Topics:
    """The topic tree of one park."""

    park: str

    @property
    def prefix(self) -> str:
        return f"park/{self.park}/"

    def subscriptions(self) -> tuple[str, ...]:
        """Every device of the park (the default: one instance takes the whole park)."""
        p = self.prefix
        return (
            f"{p}air/+/reading",
            f"{p}air/+/hj212",
            f"{p}gate/+/event",
            f"{p}+/+/status",
            f"{p}registry/appointment/+",
        )

    def subscriptions_for(self, stations: Sequence[str], gates: Sequence[str]) -> tuple[str, ...]:
        """Only the listed devices (a static split of the park between instances): each station's readings,
        HJ 212 frames and status, each gate's events and status, and the appointments if there are gates to
        check them at. For those devices, the same messages as `subscriptions()`."""
        p = self.prefix
        filters = [f"{p}air/{station}/{leaf}" for station in stations for leaf in _LEAVES["air"]]
        filters += [f"{p}gate/{gate}/{leaf}" for gate in gates for leaf in _LEAVES["gate"]]
        if gates:
            filters.append(f"{p}registry/appointment/+")
        return tuple(filters)

    @property
    def deadletter(self) -> str:
        return f"{self.prefix}deadletter"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}alerts"

    def route(self, topic: str) -> Route:
        """Parse a topic; raise Rejected('bad_topic' / 'bad_device_id') for one that breaks the contract."""
        if not topic.startswith(self.prefix):
            raise Rejected("bad_topic", f"not under {self.prefix}")
        parts = topic[len(self.prefix):].split("/")
        if len(parts) == 3 and parts[0] == "registry" and parts[1] == "appointment":
            return Route("appointment", _plate(parts[2]))
        if parts == ["alerts", "ack"]:
            return Route("ack")
        if len(parts) != 3:
            raise Rejected("bad_topic", "expected {kind}/{device}/{message}")
        kind, device, leaf = parts
        route = _ROUTES.get((kind, leaf))
        if route is None:
            raise Rejected("bad_topic", f"no message '{leaf}' for '{kind}' devices")
        if not DEVICE_ID.fullmatch(device):
            raise Rejected("bad_device_id", f"{device[:80]!r} is not 1 to 64 letters, digits, '-' or '_'")
        return Route(route, device, kind)


_ROUTES: dict[tuple[str, str], Kind] = {
    ("air", "reading"): "air",
    ("air", "hj212"): "hj212",
    ("gate", "event"): "gate",
    ("air", "status"): "status",
    ("gate", "status"): "status",
}
_LEAVES = {kind: tuple(leaf for (k, leaf) in _ROUTES if k == kind) for kind in ("air", "gate")}


def _plate(plate: str) -> str:
    if not plate or len(plate) > MAX_PLATE or not plate.isprintable() or plate != plate.strip():
        raise Rejected("bad_plate", f"plate {plate[:40]!r} in the topic is not 1 to 32 printable characters")
    return plate
