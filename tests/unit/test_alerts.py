"""Alerts: one occurrence is one alert; every change is delivered once per channel, on time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerts.db import AlertDb
from alerts.dispatch import Dispatcher
from alerts.interfaces import NotifyError
from alerts.manager import AlertManager
from alerts.model import Notification
from alerts.render import Renderer, Templates
from alerts.routing import Route, Router, Silence
from ingest.retry import RetryPolicy
from rules.signals import Signal

T0 = datetime(2026, 11, 27, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


class Channel:
    """A notifier that records what it sends, and can be told to fail."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []
        self.fail: NotifyError | None = None

    def send(self, n: Notification) -> None:
        if self.fail is not None:
            raise self.fail
        self.sent.append(n)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[AlertDb]:
    d = AlertDb(tmp_path / "alerts.db").open()
    yield d
    d.close()


def sig(state: str, source: str = "ST01", severity: str = "warning", *, at: datetime = T0, rule: str = "pm25_high",
        value: float = 80.0) -> Signal:
    return Signal(rule, source, state, at, severity, value, 75.0, f"pm25 {value}", f"pm25 {value}")  # type: ignore[arg-type]


def manager(db: AlertDb, clock: Clock, **route: object) -> AlertManager:
    return AlertManager(db, Router([Route(channels=("ops",), **route)]), now=clock)  # type: ignore[arg-type]


def deliver(db: AlertDb, clock: Clock, channel: Channel, name: str = "ops") -> Dispatcher:
    d = Dispatcher(name, channel.send, db, Renderer(Templates(language="en")), now=lambda: clock().timestamp(),
                   retry=RetryPolicy(initial_s=10, cap_s=10, jitter=0))
    while d.deliver_due():
        pass
    return d


class TestLifecycle:
    def test_one_occurrence_is_one_alert_with_a_stable_id(self, db: AlertDb, clock: Clock) -> None:
        """pending -> firing -> acknowledged -> resolved keeps one alert_id."""
        m = manager(db, clock)
        m.emit([sig("pending")])
        (alert,) = m.active()
        m.emit([sig("firing", at=T0 + timedelta(minutes=5))])
        assert m.ack(alert.alert_id, "duty", "on my way") is not None
        assert m.active()[0].state == "acknowledged" and m.active()[0].acknowledged_by == "duty"
        m.emit([sig("resolved", at=T0 + timedelta(minutes=20))])
        assert m.active() == []
        stored = db.get(alert.alert_id)
        assert stored is not None and stored.alert.state == "resolved" and stored.alert.started_at == T0

    def test_a_repeated_firing_signal_changes_nothing(self, db: AlertDb, clock: Clock) -> None:
        """The same firing signal twice (e.g. after the rules' state rolled back) notifies once."""
        m, ch = manager(db, clock), Channel()
        m.emit([sig("firing")])
        m.emit([sig("firing")])
        deliver(db, clock, ch)
        assert len(ch.sent) == 1

    def test_severity_rises_and_falls_within_one_alert(self, db: AlertDb, clock: Clock) -> None:
        """A rise notifies again; a fall updates the alert without a notification."""
        m, ch = manager(db, clock), Channel()
        m.emit([sig("firing"), sig("firing", severity="critical"), sig("firing", severity="warning")])
        deliver(db, clock, ch)
        assert [n.alerts[0].severity for n in ch.sent] == ["warning", "critical"]
        assert len({n.alerts[0].alert_id for n in ch.sent}) == 1
        assert m.active()[0].severity == "warning"

    def test_a_rise_after_acknowledgement_reopens_the_alert(self, db: AlertDb, clock: Clock) -> None:
        """Acknowledged at warning, then critical: firing again, and people are told."""
        m = manager(db, clock)
        m.emit([sig("firing")])
        m.ack(m.active()[0].alert_id, "duty")
        m.emit([sig("firing", severity="critical")])
        assert m.active()[0].state == "firing"

    def test_a_pending_that_never_fired_resolves_quietly(self, db: AlertDb, clock: Clock) -> None:
        """Nobody is told about a crossing that did not last its `for`."""
        m, ch = manager(db, clock), Channel()
        m.emit([sig("pending"), sig("resolved")])
        deliver(db, clock, ch)
        assert ch.sent == [] and m.active() == []

    def test_ack_of_an_unknown_or_resolved_alert_is_refused(self, db: AlertDb, clock: Clock) -> None:
        """Acknowledging what is not active returns None."""
        m = manager(db, clock)
        assert m.ack("nope", "x") is None

    def test_active_alerts_and_the_outbox_survive_a_restart(self, tmp_path: Path, clock: Clock) -> None:
        """After a crash the active alert is still there, its queued notification is sent once, and a
        firing signal for it notifies nobody again."""
        db1 = AlertDb(tmp_path / "a.db").open()
        manager(db1, clock).emit([sig("firing")])
        db1.close()  # the process dies before the dispatcher ran
        db2 = AlertDb(tmp_path / "a.db").open()
        m2, ch = manager(db2, clock), Channel()
        assert len(m2.active()) == 1
        m2.emit([sig("firing")])
        deliver(db2, clock, ch)
        deliver(db2, clock, ch)
        assert len(ch.sent) == 1
        db2.close()


class TestPolicy:
    def test_reminder_at_the_repeat_interval_while_unacknowledged(self, db: AlertDb, clock: Clock) -> None:
        """repeat_s=600: a reminder at 600 s, none at 599 s, none once acknowledged."""
        m, ch = manager(db, clock, repeat_s=600), Channel()
        m.emit([sig("firing")])
        deliver(db, clock, ch)
        clock.advance(599)
        m.tick()
        deliver(db, clock, ch)
        assert [n.kind for n in ch.sent] == ["state"]
        clock.advance(1)
        m.tick()
        deliver(db, clock, ch)
        assert [n.kind for n in ch.sent] == ["state", "reminder"]
        m.ack(m.active()[0].alert_id, "duty")
        clock.advance(1200)
        m.tick()
        deliver(db, clock, ch)
        assert [n.kind for n in ch.sent] == ["state", "reminder", "state"]

    def test_escalation_when_not_acknowledged_in_time(self, db: AlertDb, clock: Clock) -> None:
        """escalate_after_s=900: the escalation channel hears of it once, at 900 s."""
        m = AlertManager(db, Router([Route(channels=("ops",), escalate_after_s=900, escalate_to=("boss",))]),
                         now=clock)
        boss = Channel()
        m.emit([sig("firing")])
        clock.advance(899)
        m.tick()
        deliver(db, clock, boss, "boss")
        assert boss.sent == []
        clock.advance(1)
        m.tick()
        m.tick()
        deliver(db, clock, boss, "boss")
        assert [n.kind for n in boss.sent] == ["escalation"]

    def test_a_burst_is_grouped_into_one_notification(self, db: AlertDb, clock: Clock) -> None:
        """Ten stations crossing the same limit within the group window make one notification."""
        m, ch = manager(db, clock, group_s=60), Channel()
        for i in range(10):
            m.emit([sig("firing", source=f"ST{i:02d}")])
            clock.advance(5)
        deliver(db, clock, ch)
        assert ch.sent == []
        clock.advance(15)
        deliver(db, clock, ch)
        assert len(ch.sent) == 1 and len(ch.sent[0].alerts) == 10
        assert "10 sources" in ch.sent[0].title

    def test_silenced_alerts_exist_but_send_nothing(self, db: AlertDb, clock: Clock) -> None:
        """During a silence the alert is recorded, but no channel is told."""
        silence = Silence(rules=("pm25_high",), start=T0, end=T0 + timedelta(hours=1))
        m, ch = AlertManager(db, Router([Route(channels=("ops",))], [silence]), now=clock), Channel()
        m.emit([sig("firing")])
        deliver(db, clock, ch)
        assert ch.sent == [] and len(m.active()) == 1

    def test_routes_filter_by_severity(self, db: AlertDb, clock: Clock) -> None:
        """A route for critical alerts ignores a warning."""
        m, ch = manager(db, clock, severities=("critical",)), Channel()
        m.emit([sig("firing")])
        deliver(db, clock, ch)
        assert ch.sent == []


class TestDelivery:
    def test_transient_failure_is_retried_later(self, db: AlertDb, clock: Clock) -> None:
        """A timeout keeps the notification queued and retries after the backoff."""
        m, ch = manager(db, clock), Channel()
        m.emit([sig("firing")])
        ch.fail = NotifyError("timeout", retryable=True)
        d = deliver(db, clock, ch)
        assert d.stats.retried == 1 and ch.sent == []
        ch.fail = None
        clock.advance(10)
        deliver(db, clock, ch)
        assert len(ch.sent) == 1

    def test_permanent_failure_is_counted_and_not_retried(self, db: AlertDb, clock: Clock) -> None:
        """A 400 is logged, counted, and the notification is not sent again."""
        m, ch = manager(db, clock), Channel()
        m.emit([sig("firing")])
        ch.fail = NotifyError("bad request", retryable=False, status=400)
        d = deliver(db, clock, ch)
        assert d.stats.failed == 1
        ch.fail = None
        clock.advance(1000)
        deliver(db, clock, ch)
        assert ch.sent == [] and db.counts()["ops:failed"] == 1

    def test_every_change_goes_to_mqtt_and_the_store(self, db: AlertDb, clock: Clock) -> None:
        """The system channels get every change, even those no route notifies."""
        m = manager(db, clock, severities=("critical",))
        m.emit([sig("firing"), sig("resolved")])
        assert db.counts() == {"mqtt:queued": 2, "store:queued": 2}

    def test_bilingual_text(self, db: AlertDb, clock: Clock) -> None:
        """With language "both" the text carries the Chinese and the English message."""
        m, ch = manager(db, clock), Channel()
        m.emit([sig("firing")])
        d = Dispatcher("ops", ch.send, db, Renderer(Templates(language="both")), now=lambda: clock().timestamp())
        d.deliver_due()
        assert "告警" in ch.sent[0].title and "firing" in ch.sent[0].title
