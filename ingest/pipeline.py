"""The ingest pipeline: owns the threads that move a message from the source to the store.

    source.take -> decode -> spool.keep (one transaction) -> source.ack -> listeners (rules)
                                 |                                   drainer -> store
                                 +-> outbox -> dead-letter pump -> log + park/{park}/deadletter

Threads: `ingest` (decode, keep, ack), `drain` (spool -> store), `deadletters`; the source owns its
network thread. They are started in `start` and stopped in `stop`, which flushes everything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ingest.deadletters import DeadLetterPump, Publisher
from ingest.decode import Decoded, Decoder
from ingest.drain import Drainer, DrainSettings
from ingest.errors import Rejected, SpoolError
from ingest.interfaces import Store
from ingest.messages import DeadLetter, Message
from ingest.retry import RetryPolicy
from ingest.spool import Kept, SpoolDb
from ingest.throttle import ThrottledLog

log = logging.getLogger(__name__)
Listener = Callable[[Sequence[Decoded]], None]


class Source(Publisher, Protocol):
    """A source of messages that are acknowledged once kept."""

    def start(self) -> None: ...
    def take(self, max_n: int, timeout: float) -> list[Message]: ...
    def ack(self, messages: Sequence[Message]) -> None: ...
    def pause_intake(self) -> None: ...
    def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    spool_path: Path
    deadletter_log: Path | None
    deadletter_topic: str
    drain: DrainSettings = DrainSettings()
    max_batch: int = 5000
    linger_s: float = 0.0  # after the first message of a batch, wait this long for more (group commit)
    dedup_window_s: float = 48 * 3600
    synchronous: str = "FULL"
    shutdown_drain_s: float = 10.0
    spool_retry: RetryPolicy = RetryPolicy(initial_s=0.5, cap_s=10.0)


class Pipeline:
    def __init__(
        self, source: Source, decoder: Decoder, store: Store, settings: PipelineSettings,
        *, now_ns: Callable[[], int] = time.time_ns, sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._source = source
        self._sleep = sleep
        self._decoder = decoder
        self._store = store
        self._s = settings
        self._now_ns = now_ns
        self._listeners: list[Listener] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._bad = ThrottledLog(log)
        self._ingest_db = SpoolDb(settings.spool_path, synchronous=settings.synchronous)
        self._drain_db = SpoolDb(settings.spool_path, synchronous=settings.synchronous)
        self._pump_db = SpoolDb(settings.spool_path, synchronous=settings.synchronous)
        self._stats_db = SpoolDb(settings.spool_path, synchronous=settings.synchronous)
        self.drainer = Drainer(self._drain_db, store, settings.drain, now_ns=now_ns)
        self.pump = DeadLetterPump(self._pump_db, settings.deadletter_log, source, settings.deadletter_topic)
        self._last_prune_ns = 0
        self._deadline: float | None = None  # set by stop(): until when the drainer may keep writing
        self._stats_lock = threading.Lock()

    def add_listener(self, listener: Listener) -> None:
        """Called with the new (non-duplicate) values of each kept batch, on the ingest thread."""
        self._listeners.append(listener)

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        for db in (self._ingest_db, self._drain_db, self._pump_db, self._stats_db):
            db.open()
        self._spawn("ingest", self._ingest_loop)
        self._spawn("drain", lambda: self.drainer.run(deadline=lambda: self._deadline))
        self._spawn("deadletters", self.pump.run)
        self._source.start()

    def stop(self) -> None:
        """Stop taking messages, keep and ack what was taken, flush the spool to the store, exit."""
        self._source.pause_intake()
        self._stop.set()
        self._deadline = time.monotonic() + self._s.shutdown_drain_s
        self._join("ingest")
        self.drainer.stop()
        self._join("drain")
        self.pump.stop()
        self._join("deadletters")
        self._source.stop()
        for db in (self._ingest_db, self._drain_db, self._pump_db):
            db.close()

    def counters(self) -> dict[str, int]:
        with self._stats_lock:
            return self._stats_db.counters()

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=self._guard(name, target), name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _join(self, name: str) -> None:
        for thread in self._threads:
            if thread.name == name:
                thread.join(timeout=self._s.shutdown_drain_s + 30)

    @staticmethod
    def _guard(name: str, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except Exception:
                log.critical("thread %s died", name, exc_info=True)
                raise
        return run

    # --- the ingest thread ----------------------------------------------------------------------------

    def _ingest_loop(self) -> None:
        while True:
            batch = self._source.take(self._s.max_batch, timeout=0.2)
            if not batch:
                if self._stop.is_set():
                    return
                self._prune()
                continue
            if len(batch) < self._s.max_batch and self._s.linger_s > 0 and not self._stop.is_set():
                # Group commit: a spool transaction (and its fsync) costs about as much for one message as
                # for fifty, so under a steady trickle a short wait lets the batch fill instead of paying
                # that cost per message.
                self._sleep(self._s.linger_s)
                batch += self._source.take(self._s.max_batch - len(batch), timeout=0)
            self.process(batch)

    def process(self, batch: Sequence[Message]) -> None:
        """Decode, keep durably, acknowledge, and hand the new values to the listeners."""
        topics: list[str] = []
        decoded: list[Decoded] = []
        dead: list[DeadLetter] = []
        for message in batch:
            try:
                decoded.append(self._decoder.decode(message))
                topics.append(message.topic)
            except Rejected as exc:
                dead.append(DeadLetter.of(message, exc))
                self._bad.warning(exc.reason, "rejected %s: %s (payload %r)", message.topic, exc, message.payload[:80])
            except Exception as exc:  # a decoder bug must not kill the loop: the message is dead-lettered
                log.exception("decoder failed on %s", message.topic)
                dead.append(DeadLetter.of(message, Rejected("internal_error", repr(exc)[:200])))
        kept = self._keep(topics, decoded, dead)
        self._source.ack(batch)
        self.drainer.notify(len(kept.new))
        if dead:
            self.pump.notify()
        for listener in self._listeners:
            try:
                listener(kept.new)
            except Exception:
                log.exception("listener %r failed", listener)

    def _keep(self, topics: list[str], decoded: list[Decoded], dead: list[DeadLetter]) -> Kept:
        attempt = 0
        while True:
            try:
                return self._ingest_db.keep(topics, decoded, dead, now_ns=self._now_ns())
            except SpoolError as exc:
                delay = self._s.spool_retry.delay(attempt)
                attempt += 1
                log.error("cannot keep a batch in the spool (%s); nothing is acknowledged; retry in %.1fs",
                          exc, delay)
                time.sleep(delay)

    def _prune(self) -> None:
        now = self._now_ns()
        if now - self._last_prune_ns < 60 * 1_000_000_000:
            return
        self._last_prune_ns = now
        self._ingest_db.prune_seen(now - int(self._s.dedup_window_s * 1e9))
