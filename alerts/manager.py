"""AlertManager: turns the rules' signals into alerts with a lifecycle, and queues their deliveries.

    signal pending  -> new alert, state pending (no notification unless a route asks for "pending")
    signal firing   -> new alert or pending -> firing; severity rises/falls within the alert; a rise
                       after an acknowledgement re-opens it (firing again)
    signal resolved -> the alert is resolved and leaves the active set
    ack             -> firing/pending -> acknowledged (by whom, with a note)

Every change is written with its deliveries in one transaction (AlertDb): to the channels its routes
name, to `mqtt` (the retained alert topics) and to `store` (measurement `alert`). `tick` sends
reminders while an alert fires unacknowledged, and escalates one not acknowledged in time.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from alerts.db import AlertDb
from alerts.model import SEVERITY_RANK, Alert, AlertState
from alerts.routing import Route, Router
from rules.signals import Signal

log = logging.getLogger(__name__)
SYSTEM_CHANNELS = ("mqtt", "store")


def alert_id_for(rule: str, source: str, started_at: datetime) -> str:
    """Stable for one occurrence: the same (rule, source, start) always gives the same id."""
    digest = hashlib.sha256(f"{rule}\x00{source}\x00{started_at.isoformat()}".encode()).hexdigest()
    return f"{rule}-{digest[:12]}"


class AlertManager:
    """The rules' SignalSink. Thread-safe: signals, acknowledgements and ticks may come from any thread."""

    def __init__(
        self,
        db: AlertDb,
        router: Router,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._db = db
        self._router = router
        self._now = now
        self._on_change = on_change
        self._lock = threading.Lock()

    # --- the rules' side ------------------------------------------------------------------------------

    def emit(self, signals: Sequence[Signal]) -> None:
        changed = False
        for signal in signals:
            if signal.state == "notice":
                log.info("notice %s %s: %s", signal.rule, signal.source, signal.message)
                continue
            with self._lock:
                changed |= self._apply(signal)
        if changed:
            self._on_change()

    def _apply(self, s: Signal) -> bool:
        current = self._active(s.rule, s.source)
        if current is None:
            if s.state == "resolved":
                return False
            state: AlertState = "firing" if s.state == "firing" else "pending"
            alert = Alert(alert_id_for(s.rule, s.source, s.at), s.rule, s.source, s.severity, state, s.at, s.at,
                          s.value, s.threshold, s.message, s.message_zh, details=dict(s.details))
            return self._record(alert, 0, previous=None)
        alert, seq = current
        next_state = self._next_state(alert, s)
        if next_state == alert.state and s.severity == alert.severity:
            return False
        updated = alert.with_(state=next_state, severity=s.severity if s.state != "resolved" else alert.severity,
                              updated_at=max(s.at, alert.updated_at), value=s.value, threshold=s.threshold,
                              message=s.message, message_zh=s.message_zh)
        return self._record(updated, seq + 1, previous=alert)

    @staticmethod
    def _next_state(alert: Alert, s: Signal) -> AlertState:
        if s.state == "resolved":
            return "resolved"
        if alert.state == "acknowledged":
            rose = SEVERITY_RANK.get(s.severity, 0) > SEVERITY_RANK.get(alert.severity, 0)
            return "firing" if rose else "acknowledged"
        return "pending" if alert.state == "pending" and s.state == "pending" else "firing"

    # --- operators' side ------------------------------------------------------------------------------

    def ack(self, alert_id: str, by: str, note: str | None = None) -> Alert | None:
        """Acknowledge an active alert; returns it, or None when there is no such active alert."""
        with self._lock:
            stored = self._db.get(alert_id)
            if stored is None or not stored.alert.active or stored.alert.state == "acknowledged":
                return None
            alert = stored.alert.with_(state="acknowledged", acknowledged_by=by[:64], note=(note or "")[:500],
                                       updated_at=max(self._now(), stored.alert.updated_at))
            self._record(alert, stored.seq + 1, previous=stored.alert)
        self._on_change()
        return alert

    def active(self) -> list[Alert]:
        return [s.alert for s in self._db.active()]

    # --- time -----------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Reminders for alerts firing unacknowledged; escalation of those not acknowledged in time."""
        now = self._now()
        t = now.timestamp()
        queued = False
        with self._lock:
            for stored in self._db.active():
                alert = stored.alert
                if alert.state != "firing":
                    continue
                for route in self._router.routes_for(alert, now):
                    queued |= self._remind(stored.seq, alert, route, t, stored.last_sent)
                    queued |= self._escalate(stored.seq, alert, route, t, stored.escalated)
        if queued:
            self._on_change()

    def _remind(self, seq: int, alert: Alert, route: Route, t: float, last_sent: float | None) -> bool:
        since = last_sent if last_sent is not None else alert.updated_at.timestamp()
        if not route.repeat_s or t - since < route.repeat_s:
            return False
        with self._db.transaction() as db:
            n = int((t - alert.started_at.timestamp()) // route.repeat_s)
            for channel in route.channels:
                AlertDb.enqueue(db, f"{alert.alert_id}/r{n}/{channel}", channel, "reminder", alert, not_before=t)
            AlertDb.save(db, alert, seq, last_sent=t)
        return True

    def _escalate(self, seq: int, alert: Alert, route: Route, t: float, escalated: bool) -> bool:
        if escalated or not route.escalate_after_s or t - alert.started_at.timestamp() < route.escalate_after_s:
            return False
        with self._db.transaction() as db:
            for channel in route.escalate_to:
                AlertDb.enqueue(db, f"{alert.alert_id}/esc/{channel}", channel, "escalation", alert, not_before=t)
            AlertDb.save(db, alert, seq, escalated=True)
        return True

    # --- recording ------------------------------------------------------------------------------------

    def _active(self, rule: str, source: str) -> tuple[Alert, int] | None:
        for stored in self._db.active():
            if stored.alert.rule == rule and stored.alert.source == source:
                return stored.alert, stored.seq
        return None

    def _record(self, alert: Alert, seq: int, *, previous: Alert | None) -> bool:
        now = self._now()
        t = now.timestamp()
        notify = previous is None or previous.state != alert.state or _rose(previous, alert)
        quiet = alert.state == "resolved" and previous is not None and previous.state == "pending"
        with self._db.transaction() as db:
            for channel in SYSTEM_CHANNELS:
                AlertDb.enqueue(db, f"{alert.alert_id}/{seq}/{channel}", channel, "state", alert, not_before=t)
            sent = False
            for route in self._router.routes_for(alert, now) if notify and not quiet else ():
                if alert.state not in route.notify:
                    continue
                # a burst: changes of one rule to one state join the group queued first, sent when it is due
                group = f"{alert.rule}|{alert.state}" if route.group_s else None
                for channel in route.channels:
                    AlertDb.enqueue(db, f"{alert.alert_id}/{seq}/{channel}", channel, "state", alert,
                                    not_before=t + route.group_s if group else t, group_key=group)
                sent = True
            AlertDb.save(db, alert, seq, last_sent=t if sent else None)
        log.info("alert %s %s %s %s [%s]", alert.alert_id, alert.state, alert.rule, alert.source, alert.severity)
        return True


def _rose(before: Alert, after: Alert) -> bool:
    return SEVERITY_RANK.get(after.severity, 0) > SEVERITY_RANK.get(before.severity, 0)
