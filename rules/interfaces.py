"""The rule extension point, documented once.

A rule observes events in event time and says what changed, as signals. The engine decides what a rule
sees: only timely events (late ones are stored but neither fire nor clear), nothing of a station in
maintenance. A rule keeps its own state per source and can hand it over for a restart.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from ingest.models import AirReading, Appointment, AppointmentCancelled, DeviceStatus, GateEvent
from rules.signals import Signal

Event = AirReading | GateEvent | DeviceStatus | Appointment | AppointmentCancelled


class Rule(Protocol):
    """One configured rule. `observe` is called for every timely event, `tick` with the clock's time."""

    name: str

    def observe(self, event: Event, at: datetime) -> Iterable[Signal]:
        """React to one event; `at` is its event time (the reading's ts, or when a status arrived)."""
        ...

    def tick(self, now: datetime) -> Iterable[Signal]:
        """React to time passing (silence, overstay); `now` is the service's clock."""
        ...

    def snapshot(self) -> dict[str, Any]:
        """JSON-safe state, for `restore` after a restart. Its containers are the snapshot's own, never the
        rule's live ones: it is encoded on another thread while the rule goes on (rules/state_file.py)."""
        ...

    def restore(self, state: dict[str, Any]) -> None: ...


class BaseRule:
    """Defaults for rules that need no clock and keep no state."""

    name: str = ""

    def tick(self, now: datetime) -> Iterable[Signal]:
        return ()

    def snapshot(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        return None
