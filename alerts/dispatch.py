"""Dispatchers: one thread per channel takes due deliveries from the outbox and sends them.

A slow or dead channel delays only its own thread. A transient failure is retried with capped,
jittered backoff (the row stays queued with a later `not_before`); a permanent one is marked failed,
logged and counted. A row is marked sent right after its send returns, so a crash can repeat at most
the one delivery in flight (webhooks carry an Idempotency-Key, e-mails a Message-ID, for that case).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from alerts.db import AlertDb
from alerts.interfaces import NotifyError
from alerts.model import Notification
from alerts.render import Renderer
from ingest.retry import RetryPolicy

log = logging.getLogger(__name__)
Send = Callable[[Notification], None]
DEFAULT_RETRY = RetryPolicy(initial_s=1.0, cap_s=300.0)


@dataclass
class ChannelStats:
    sent: int = 0
    failed: int = 0
    retried: int = 0
    last_error: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class Dispatcher:
    def __init__(
        self, channel: str, send: Send, db: AlertDb, renderer: Renderer, *,
        retry: RetryPolicy = DEFAULT_RETRY, now: Callable[[], float] = time.time,
        poll_s: float = 1.0,
    ) -> None:
        self.channel = channel
        self._send = send
        self._db = db
        self._renderer = renderer
        self._retry = retry
        self._now = now
        self._poll = poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = ChannelStats()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"notify-{self.channel}", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.deliver_due() == 0:
                self._wake.wait(self._poll)
                self._wake.clear()

    def deliver_due(self) -> int:
        """Send what is due now (one notification, possibly a group); returns how many rows it settled."""
        rows = self._db.due(self.channel, self._now(), limit=1)
        if not rows:
            return 0
        ids = [r.id for r in rows]
        try:
            self._send(self._renderer.notification(rows))
        except NotifyError as exc:
            return self._failed(ids, rows[0].attempts, exc)
        except Exception as exc:  # a notifier bug must not kill its thread: treated as permanent
            log.exception("channel %s failed unexpectedly", self.channel)
            return self._failed(ids, rows[0].attempts, NotifyError(repr(exc), retryable=False))
        self._db.mark(ids, "sent")
        with self.stats.lock:
            self.stats.sent += 1
        return len(ids)

    def _failed(self, ids: list[int], attempts: int, exc: NotifyError) -> int:
        with self.stats.lock:
            self.stats.last_error = str(exc)[:300]
            if exc.retryable:
                self.stats.retried += 1
            else:
                self.stats.failed += 1
        if exc.retryable:
            delay = self._retry.delay(attempts)
            log.warning("channel %s: %s; retrying in %.1fs", self.channel, exc, delay)
            self._db.retry_later(ids, self._now() + delay, str(exc)[:300])
            return 0
        log.error("channel %s refused a notification for good: %s", self.channel, exc)
        self._db.mark(ids, "failed", str(exc)[:300])
        return len(ids)
