"""The rule engine: feeds events to the rules in event time and collects their signals.

What the engine decides for every rule (so no rule has to):
- **Lateness.** Per source (station, gate, device), the newest event time seen is its watermark. An event
  older than the watermark minus `lateness` is late: it was stored, but it neither fires nor clears
  anything (counted in `late`). Events within the lateness are judged in the order they arrive.
- **Maintenance.** The events of a station inside a maintenance window go to no rule but those that
  watch whether devices are alive (`watches_liveness`: silent, offline); entering and
  leaving a window each give one `maintenance` notice. A condition a tick raises inside the window (a
  station falling silent) is held: if it ends inside the window nobody hears of it, if it still holds
  when the window ends it is raised then. Resolutions pass, so an alert open before the window closes.
- **Isolation.** A rule that raises is logged and skipped; the other rules still see the event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ingest.models import AirReading, Appointment, AppointmentCancelled, DeviceStatus, GateEvent
from rules.config import MaintenanceWindow
from rules.interfaces import Event, Rule
from rules.signals import Signal, SignalSink

log = logging.getLogger(__name__)
MAINTENANCE_RULE = "maintenance"


def source_of(event: Event) -> str:
    if isinstance(event, AirReading):
        return event.station
    if isinstance(event, GateEvent):
        return event.gate
    if isinstance(event, DeviceStatus):
        return event.device
    if isinstance(event, Appointment | AppointmentCancelled):
        return event.plate
    raise TypeError(f"not an event: {event!r}")


class RuleEngine:
    def __init__(
        self,
        rules: Sequence[Rule],
        sink: SignalSink,
        *,
        tz: ZoneInfo,
        lateness: timedelta = timedelta(hours=1),
        maintenance: Sequence[MaintenanceWindow] = (),
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.rules = list(rules)
        self._sink = sink
        self._tz = tz
        self._lateness = lateness
        self._maintenance = tuple(maintenance)
        self._now = now
        self._watermarks: dict[str, datetime] = {}
        self._in_maintenance: set[str] = set()
        self._held: dict[tuple[str, str], Signal] = {}  # raised by ticks inside a maintenance window
        self.late = 0
        self.errors = 0

    def process(self, event: Event, at: datetime) -> list[Signal]:
        """Judge one event at its event time `at`; returns (and emits) the signals it caused."""
        source = source_of(event)
        mark = self._watermarks.get(source)
        if mark is not None and at < mark - self._lateness:
            self.late += 1
            return []
        if mark is None or at > mark:
            self._watermarks[source] = at
        signals = self._maintenance_notice(source, at)
        maintained = source in self._in_maintenance
        for rule in self.rules:
            if not maintained or getattr(rule, "watches_liveness", False):
                signals.extend(self._call(rule, rule.observe, event, at))
        return self._emit(signals)

    def tick(self, now: datetime | None = None) -> list[Signal]:
        """Let time pass (silence, overstay); `now` defaults to the injected clock."""
        now = now or self._now()
        signals = self._release_held(now)
        for rule in self.rules:
            signals.extend(self._call(rule, rule.tick, now))
        return self._emit(signals)

    @property
    def sink(self) -> SignalSink:
        return self._sink

    def snapshot(self) -> dict[str, Any]:
        return {
            "watermarks": {s: t.isoformat() for s, t in self._watermarks.items()},
            "maintenance": sorted(self._in_maintenance),
            "rules": {r.name: r.snapshot() for r in self.rules},
        }

    def restore(self, state: dict[str, Any], restorable: set[str] | None = None) -> None:
        """Take back a snapshot; only rules named in `restorable` (unchanged since) get their state."""
        self._watermarks = {s: datetime.fromisoformat(t) for s, t in state.get("watermarks", {}).items()}
        self._in_maintenance = set(state.get("maintenance", ()))
        saved = state.get("rules", {})
        for rule in self.rules:
            if rule.name in saved and (restorable is None or rule.name in restorable):
                rule.restore(saved[rule.name])

    def _emit(self, signals: list[Signal]) -> list[Signal]:
        kept = []
        for s in signals:
            if s.state in ("pending", "firing") and self._maintained(s.source, s.at):
                self._held[s.key] = s  # raised in maintenance: held until the window ends
            elif s.state == "resolved" and s.key in self._held:
                del self._held[s.key]  # it ended inside the window: nobody needs to hear of it
            else:
                kept.append(s)
        if kept:
            self._sink.emit(kept)
        return kept

    def _release_held(self, now: datetime) -> list[Signal]:
        """Conditions that began in a maintenance window and still hold after it: raised now."""
        out = []
        for key, s in list(self._held.items()):
            if not self._maintained(s.source, now):
                del self._held[key]
                out.append(replace(s, at=max(now, s.at)))
        return out

    def _call(self, rule: Rule, fn: Callable[..., Iterable[Signal]], *args: Any) -> list[Signal]:
        try:
            return list(fn(*args))
        except Exception:
            self.errors += 1
            log.exception("rule %s failed; the other rules go on", rule.name)
            return []

    def _maintained(self, source: str, at: datetime) -> bool:
        return any(w.covers(source, at, self._tz) for w in self._maintenance)

    def _maintenance_notice(self, source: str, at: datetime) -> list[Signal]:
        inside = self._maintained(source, at)
        if inside == (source in self._in_maintenance):
            return []
        if inside:
            self._in_maintenance.add(source)
            return [Signal(MAINTENANCE_RULE, source, "notice", at, "info",
                           message=f"{source} is in maintenance: its alerts are held",
                           message_zh=f"{source} 进入维护时段，暂停告警")]
        self._in_maintenance.discard(source)
        return [Signal(MAINTENANCE_RULE, source, "notice", at, "info",
                       message=f"{source} is out of maintenance", message_zh=f"{source} 维护结束")]
