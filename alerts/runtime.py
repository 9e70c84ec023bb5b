"""The alerts layer of the running service: manager, outbox dispatchers (one per channel), the MQTT link,
the store channel, and the clock that drives reminders and escalation. Built by the composition root."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from alerts.db import AlertDb
from alerts.dispatch import Dispatcher
from alerts.interfaces import Notifier, NotifyError
from alerts.manager import AlertManager
from alerts.model import Alert, Notification
from alerts.mqtt import AlertLink
from alerts.render import Renderer
from alerts.routing import Router
from ingest.errors import ConfigError, SpoolError
from ingest.points import FieldValue, Point
from ingest.spool import DerivedWriter

log = logging.getLogger(__name__)


def alert_point(park: str, alert: Alert) -> Point:
    """Measurement `alert`: one point per state change (contract §9)."""
    tags = {"park": park, "rule": alert.rule, "state": alert.state, "severity": alert.severity}
    fields: dict[str, FieldValue] = {"alert_id": alert.alert_id, "source": alert.source,
                                     "started_at": alert.started_at.isoformat(), "message": alert.message}
    if alert.message_zh:
        fields["message_zh"] = alert.message_zh
    for name in ("value", "threshold"):
        if (v := getattr(alert, name)) is not None:
            fields[name] = float(v)
    if alert.acknowledged_by:
        fields["acknowledged_by"] = alert.acknowledged_by
    ts = alert.updated_at
    return Point("alert", tags, fields, int(ts.timestamp()) * 1_000_000_000 + ts.microsecond * 1000)


class StoreChannel:
    """The `store` channel: alert changes go to the spool, and from there to the store with the readings."""

    name = "store"

    def __init__(self, spool_path: Path, park: str) -> None:
        self._writer = DerivedWriter(spool_path, f"park/{park}/alerts")
        self._park = park

    def close(self) -> None:
        self._writer.close()

    def send(self, notification: Notification) -> None:
        try:
            self._writer([alert_point(self._park, a) for a in notification.alerts])
        except SpoolError as exc:
            raise NotifyError(str(exc), retryable=True) from exc


class AlertsRuntime:
    def __init__(
        self,
        db_path: Path,
        router: Router,
        renderer: Renderer,
        *,
        link: Callable[[AlertManager], AlertLink] | None,
        store: StoreChannel | None,
        notifiers: Mapping[str, Notifier],
        mqtt_aliases: set[str] | None = None,
        tick_s: float = 5.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = AlertDb(db_path)
        self.manager = AlertManager(self.db, router, now=now, on_change=self._wake)
        self.link = link(self.manager) if link is not None else None
        self._store = store
        self._tick_s = tick_s
        channels: dict[str, Callable[[Notification], None]] = {n: c.send for n, c in notifiers.items()}
        if self.link is not None:
            for alias in {"mqtt", *(mqtt_aliases or ())}:
                channels[alias] = self.link.send
        if store is not None:
            channels["store"] = store.send
        unknown = router.channels() - set(channels)
        if unknown:
            raise ConfigError("alerts.route.channels", f"no channel named {', '.join(sorted(unknown))}")
        clock = lambda: now().timestamp()  # noqa: E731 - the dispatchers' clock is the manager's
        self.dispatchers = {n: Dispatcher(n, send, self.db, renderer, now=clock) for n, send in channels.items()}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.db.open()
        if self.link is not None:
            self.link.start()
        for d in self.dispatchers.values():
            d.start()
        self._thread = threading.Thread(target=self._run, name="alerts-clock", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        for d in self.dispatchers.values():
            d.stop()
        if self.link is not None:
            self.link.stop()
        if self._store is not None:
            self._store.close()
        self.db.close()

    def _wake(self) -> None:
        for d in self.dispatchers.values():
            d.wake()

    def _run(self) -> None:
        while not self._stop.wait(self._tick_s):
            try:
                self.manager.tick()
            except Exception:
                log.exception("alert reminders failed this round")
